"""Branching catalogs: the BranchCatalog contract and a registry of backends with lazy imports."""

from __future__ import annotations

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


def open_catalog(settings: Settings | None = None) -> BranchCatalog:
    """Build the catalog the settings choose (`catalog`: local, nessie, an entry point or module:attr)."""
    from cascade_ci.plugins import resolve

    if settings is None:
        from cascade_ci.config import load_settings

        settings = load_settings()
    return resolve("cascade_ci.catalogs", settings.catalog, settings.root)(settings)
