"""Branching catalogs: the BranchCatalog contract and a registry of backends with lazy imports."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cascade_ci.catalog.base import BranchCatalog, Capabilities, ChangeKind, Commit, Ref, RefKind, TableChange

if TYPE_CHECKING:
    from cascade_ci.config import Settings

__all__ = [
    "BranchCatalog",
    "Capabilities",
    "ChangeKind",
    "Commit",
    "Ref",
    "RefKind",
    "TableChange",
    "open_catalog",
]


def _local(settings: Settings) -> BranchCatalog:
    from cascade_ci.catalog.local import LocalBranchCatalog

    return LocalBranchCatalog(settings.home, default_branch=settings.main_branch)


def _nessie(settings: Settings) -> BranchCatalog:
    from cascade_ci.catalog.nessie import NessieBranchCatalog

    return NessieBranchCatalog.from_settings(settings)


AVAILABLE_CATALOGS: dict[str, Callable[[Settings], BranchCatalog]] = {"local": _local, "nessie": _nessie}


def open_catalog(settings: Settings | None = None) -> BranchCatalog:
    """Build the catalog the settings choose (`CASCADE_CATALOG`, default the embedded one)."""
    if settings is None:
        from cascade_ci.config import load_settings

        settings = load_settings()
    return AVAILABLE_CATALOGS[settings.catalog](settings)
