"""`cascade config check`: resolve everything a project config names, without touching any data.

Every `module:attr`, entry point, schema file and dbt project the config names is loaded; each failure
is one problem naming the config file, the key and what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cascade_ci.errors import CascadeError

if TYPE_CHECKING:
    from cascade_ci.config import Settings


def _located(text: str, where: str, key: str) -> str:
    """`text` prefixed with the file and the key (the key once, when `text` starts with it already)."""
    return f"{where}: {text}" if text.startswith(f"{key}:") else f"{where}: {key}: {text}"


def problems(settings: Settings) -> list[str]:
    """What in the config cannot be resolved; empty when everything loads."""
    from cascade_ci.plugins import resolve
    from cascade_ci.sources.base import build_source

    where = str(settings.config_file) if settings.config_file else "settings"
    found: list[str] = []

    def attempt(key: str, load: Callable[[], Any]) -> None:
        try:
            load()
        except CascadeError as e:
            found.append(_located(str(e), where, key))
        except Exception as e:  # a user's module may raise anything on import
            found.append(f"{where}: {key}: {type(e).__name__}: {e}")

    attempt("catalog", lambda: resolve("cascade_ci.catalogs", settings.catalog, settings.root))
    attempt("engine", lambda: resolve("cascade_ci.engines", settings.engine_name, settings.root))
    from cascade_ci.gates import load_gate

    for gate in sorted({*settings.gate_names, *settings.promotion_gates}):
        attempt(f"gates: {gate}", lambda gate=gate: load_gate(gate, settings.root))
    for name, source in settings.sources.items():
        attempt(f"sources.{name}", lambda name=name, source=source: build_source(name, source, settings))
    if settings.transform is not None:
        from cascade_ci.stages.transform import DbtProject

        attempt("transform.project_dir", lambda: DbtProject.from_settings(settings))
    from cascade_ci.gates.pandera_schemas import schema_for

    for table, declared in settings.tables.items():
        if declared.schema_ or declared.unique:
            attempt(f'tables."{table}"', lambda table=table, declared=declared: schema_for(table, declared, settings))
    return found
