"""SQL engines dbt and the SQL checks run on, resolved through the `cascade_ci.engines` entry points."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cascade_ci.engine.base import DbtTarget, Engine, Model

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog
    from cascade_ci.config import Settings

__all__ = ["DbtTarget", "Engine", "Model", "open_engine"]


def open_engine(settings: Settings, catalog: BranchCatalog) -> Engine:
    """The configured engine (`engine`), else the one that goes with the catalog: DuckDB for local, Trino for Nessie."""
    from cascade_ci.plugins import resolve

    return resolve("cascade_ci.engines", settings.engine_name, settings.root)(settings, catalog)
