"""Resolve what a project names: a built-in, an entry point, or `module:attr`.

Built-ins register under the same entry-point groups a third-party package uses (see pyproject.toml):

    cascade_ci.sources   python, dlt, files      -> a class built from (SourceConfig, Settings)
    cascade_ci.gates     schema, pandera, dbt, freshness, sql -> an object with `name` and `run(ctx)`
    cascade_ci.catalogs  local, nessie           -> a callable (Settings) -> BranchCatalog
    cascade_ci.engines   duckdb, trino           -> a callable (Settings, BranchCatalog) -> Engine

`module:attr` imports `module` with the project root (the config file's folder) on `sys.path`, as a user's
own code sits beside their config.
"""

from __future__ import annotations

import importlib
import sys
from functools import cache
from pathlib import Path
from typing import Any

from cascade_ci.errors import ConfigError, MissingExtraError

GROUPS = ("cascade_ci.sources", "cascade_ci.gates", "cascade_ci.catalogs", "cascade_ci.engines")


class PluginError(ConfigError):
    """A name that resolves to nothing, or an import that fails."""


@cache
def _entry_points(group: str) -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {point.name: point for point in entry_points(group=group)}


def available(group: str) -> list[str]:
    """The names registered in `group`, built-ins included."""
    return sorted(_entry_points(group))


def import_attr(spec: str, root: Path | None = None) -> Any:
    """`package.module:attr.sub` -> the object, importing with `root` first on sys.path."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise PluginError(f"{spec!r} is not of the form module:attr")
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise PluginError(f"{spec!r}: cannot import {module_name!r}: {e}") from e
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as e:
            raise PluginError(f"{spec!r}: {module_name!r} has no attribute {attr!r}") from e
    return target


def resolve(group: str, spec: str, root: Path | None = None) -> Any:
    """The object `spec` names in `group`: `module:attr`, else an entry point of that name."""
    if ":" in spec:
        return import_attr(spec, root)
    point = _entry_points(group).get(spec)
    if point is None:
        names = ", ".join(available(group)) or "none"
        raise PluginError(
            f"no {group.rsplit('.', 1)[-1][:-1]} named {spec!r} (installed: {names}; or give module:attr)"
        )
    try:
        return point.load()
    except ModuleNotFoundError as e:
        hint = f"pip install 'cascade-ci[{spec}]'" if point.dist and point.dist.name == "cascade-ci" else "install it"
        raise MissingExtraError(f"{spec!r} needs {e.name!r}, which is not installed: {hint}") from e
