"""The pandera schema a table's config declares: `module:attr` or a YAML file, plus its `unique` key.

YAML is the format pandera's polars backend writes (`pandera.polars.DataFrameSchema.to_yaml()`), with one
addition: a column may carry `metadata: {severity: warning}`, which pandera neither writes nor reads
(unionai-oss/pandera#1301). pandera's own reader (`pandera.io.polars_io.from_yaml`, 0.35) also imports
pandas to read any column check, so checks and metadata are read here and the rest (dtypes, nullable,
unique, schema options) by pandera's `deserialize_schema`.
"""

from __future__ import annotations

import copy
import inspect
from datetime import date, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from cascade_ci.errors import ConfigError

if TYPE_CHECKING:
    from pandera.api.checks import Check
    from pandera.api.polars.container import DataFrameSchema

    from cascade_ci.config import Settings, TableConfig

YAML_SUFFIXES = (".yaml", ".yml")
SEVERITIES = ("error", "warning", "warn")
# Keys of a check that are options of the check, not its statistics (pandera's CHECK_OPTION_KEYS and more).
CHECK_OPTIONS = frozenset(
    {"ignore_na", "raise_warning", "n_failure_cases", "groupby", "groups", "error", "name", "title", "description"}
)


def schema_for(table: str, config: TableConfig, settings: Settings) -> DataFrameSchema:
    """The schema `config` declares for `table`, with its `unique` key; ConfigError names table and spec."""
    from pandera.api.polars.container import DataFrameSchema

    spec = config.schema_
    try:
        schema = with_unique(load_schema(spec, settings) if spec else DataFrameSchema({}), config.unique)
        _check_severities(schema)
        return schema
    except Exception as e:
        what = f"schema {spec!r}" if spec else f"unique {config.unique!r}"
        raise ConfigError(f"tables.{table}: {what} cannot be loaded: {e}") from e


def load_schema(spec: str, settings: Settings) -> DataFrameSchema:
    """A `.yaml`/`.yml` path (relative to the project root), else `module:attr` naming a model or schema."""
    from pandera.api.polars.container import DataFrameSchema

    if spec.lower().endswith(YAML_SUFFIXES):
        return read_yaml_schema(settings.path(spec).read_text(encoding="utf-8"))
    if ":" not in spec:
        raise ValueError("give module:attr (a pandera DataFrameModel or DataFrameSchema) or a .yaml file")
    from cascade_ci.plugins import import_attr

    target = import_attr(spec, settings.root)
    schema = target.to_schema() if isinstance(target, type) and hasattr(target, "to_schema") else target
    if not isinstance(schema, DataFrameSchema):
        kind = f"{type(schema).__module__}.{type(schema).__qualname__}"
        raise ValueError(f"{kind} is not a polars schema: use pandera.polars.DataFrameModel or DataFrameSchema")
    return schema


def _check_severities(schema: DataFrameSchema) -> None:
    """Refuse a severity the gate would not understand (a typo must not turn an error into a warning)."""
    for column_name, column in schema.columns.items():
        severity = (column.metadata or {}).get("severity", "error")
        if severity not in SEVERITIES:
            raise ValueError(f"column {column_name!r}: severity {severity!r} is not one of {', '.join(SEVERITIES)}")


def with_unique(schema: DataFrameSchema, keys: list[str]) -> DataFrameSchema:
    """`schema` with `keys` unique: one column as a column rule, several as the schema's compound key."""
    from pandera.api.polars.components import Column

    if not keys:
        return schema
    if len(keys) == 1:
        (key,) = keys
        if key in schema.columns:
            return schema.update_column(key, unique=True)
        return schema.add_columns({key: Column(None, nullable=True, unique=True)})
    declared = list(schema.unique or [])
    if declared and declared != keys:
        raise ValueError(f"the schema's unique {declared} differs from the table's unique {keys}: declare one")
    return _copy(schema, unique=list(keys))


def read_yaml_schema(text: str) -> DataFrameSchema:
    """A polars DataFrameSchema from YAML as pandera writes it, plus per-column `metadata`."""
    import yaml
    from pandera.io.polars_io import deserialize_schema

    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("a schema file must be a mapping (as DataFrameSchema.to_yaml() writes it)")
    columns = data.get("columns") or {}
    if not isinstance(columns, dict):
        raise ValueError("`columns` must map column names to their rules")
    plain: dict[str, dict[str, Any]] = {}
    extra: dict[str, tuple[list[tuple[str, Any]], dict[str, Any] | None]] = {}
    for name, spec in columns.items():
        properties, checks, metadata = _split_column(str(name), spec or {})
        plain[name], extra[name] = properties, (checks, metadata)
    frame_checks = _check_entries(data.get("checks"))
    schema = deserialize_schema({**data, "columns": plain, "checks": None})
    updates = {
        name: {
            "checks": [_build_check(check, value, schema.columns[name].dtype) for check, value in checks],
            "metadata": metadata,
        }
        for name, (checks, metadata) in extra.items()
    }
    schema = schema.update_columns(updates) if updates else schema
    if frame_checks:
        schema = _copy(schema, checks=[_build_check(check, value, None) for check, value in frame_checks])
    return schema


def _copy(schema: DataFrameSchema, **attributes: Any) -> DataFrameSchema:
    """A copy of `schema` with `attributes` set (as pandera's own `update_column` copies)."""
    schema = copy.deepcopy(schema)
    for name, value in attributes.items():
        setattr(schema, name, value)
    return schema


@cache
def _column_keys() -> frozenset[str]:
    from pandera.api.polars.components import Column

    params = inspect.signature(Column.__init__).parameters
    return frozenset(params) - {"self", "checks", "metadata", "column_kwargs"} | {"report_duplicates"}


def _split_column(name: str, spec: Any) -> tuple[dict[str, Any], list[tuple[str, Any]], dict[str, Any] | None]:
    """A column's YAML -> (what pandera reads, [(check name, value)], metadata)."""
    if not isinstance(spec, dict):
        raise ValueError(f"column {name!r}: expected a mapping of rules, got {spec!r}")
    properties: dict[str, Any] = {}
    checks = _check_entries(spec.get("checks"))
    metadata = spec.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"column {name!r}: metadata must be a mapping")
    for key, value in spec.items():
        if key in ("checks", "metadata"):
            continue
        if key in _column_keys():
            properties[key] = value
        elif _is_check(key):
            checks.append((key, value))
        else:
            raise ValueError(f"column {name!r}: unknown key {key!r} (not a column property or a pandera check)")
    return properties, checks, metadata


def _check_entries(checks: Any) -> list[tuple[str, Any]]:
    """`checks:` as pandera writes it (a list with `options.check_name`, or the older mapping) -> [(name, value)]."""
    if checks is None:
        return []
    if isinstance(checks, dict):
        return list(checks.items())
    if not isinstance(checks, list):
        raise ValueError(f"checks must be a list or a mapping, got {checks!r}")
    entries = []
    for entry in checks:
        options = entry.get("options") if isinstance(entry, dict) else None
        if not isinstance(options, dict) or "check_name" not in options:
            raise ValueError(f"a check in a list needs options.check_name: {entry!r}")
        entries.append((options["check_name"], entry))
    return entries


def _is_check(name: str) -> bool:
    from pandera.api.checks import Check

    return name in Check.CHECK_FUNCTION_REGISTRY or name in Check.REGISTERED_CUSTOM_CHECKS


def _build_check(name: str, value: Any, dtype: Any) -> Check:
    """`isin: [a, b]`, `in_range: {min_value: 0, ...}` or `{value: x, options: {...}}` -> the pandera Check."""
    from pandera.api.checks import Check

    if not _is_check(name):
        raise ValueError(f"unknown check {name!r}")
    args: list[Any] = []
    stats: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "options":
                options.update({k: v for k, v in (item or {}).items() if k != "check_name"})
            else:
                (options if key in CHECK_OPTIONS else stats)[key] = item
        if "value" in stats:
            args.append(stats.pop("value"))
    elif value is not None:
        args.append(value)
    args = [_stat(arg, dtype) for arg in args]
    stats = {key: _stat(item, dtype) for key, item in stats.items()}
    return getattr(Check, name)(*args, **stats, **options)


def _stat(value: Any, dtype: Any) -> Any:
    """A statistic as the column's type compares it: a date or datetime column's bounds, written as text or as a
    YAML timestamp without a zone, become dates or datetimes in the column's zone."""
    import polars as pl

    kind = getattr(dtype, "type", None)  # a polars dtype: the class (`Date`) or an instance (`Datetime("us")`)
    if isinstance(value, list):
        return [_stat(item, dtype) for item in value]
    if kind is None or not isinstance(value, str | date):
        return value
    if kind == pl.Datetime:
        stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        zone = getattr(kind, "time_zone", None)
        if zone and stamp.tzinfo is None:
            from zoneinfo import ZoneInfo

            stamp = stamp.replace(tzinfo=ZoneInfo(zone))
        return stamp
    if kind == pl.Date:
        return value.date() if isinstance(value, datetime) else date.fromisoformat(str(value))
    return value
