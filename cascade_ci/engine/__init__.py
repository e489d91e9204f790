"""SQL engines dbt runs on: a registry keyed by catalog kind, with lazy imports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cascade_ci.engine.base import DbtTarget, Engine

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog
    from cascade_ci.config import Settings

__all__ = ["DbtTarget", "Engine", "open_engine"]


def open_engine(settings: Settings, catalog: BranchCatalog) -> Engine:
    """The engine that goes with the configured catalog: DuckDB for local, Trino for Nessie."""
    from cascade_ci.errors import ConfigError, MissingExtraError
    from cascade_ci.config import CatalogKind

    if settings.catalog is CatalogKind.LOCAL:
        try:
            from cascade_ci.engine.duckdb import DuckDbEngine
        except ImportError as e:  # pragma: no cover - duckdb is a core dependency
            raise MissingExtraError("the embedded engine needs duckdb: pip install cascade-ci") from e
        return DuckDbEngine(catalog, settings.home.resolve() / "dbt")
    try:
        from cascade_ci.engine.trino import TrinoEngine
    except ImportError as e:
        raise MissingExtraError("the production engine needs Trino: pip install 'cascade-ci[trino]'") from e
    if settings.catalog is CatalogKind.NESSIE:
        return TrinoEngine(settings, catalog)
    raise ConfigError(f"no engine for CASCADE_CATALOG={settings.catalog}")
