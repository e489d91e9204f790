"""Pandera schemas as a gate: every table the config declares a `schema` or `unique` for is validated.

Lazy validation, one check per column rule, severity per column (`metadata: {severity: warning}`). Tables
not declared are not judged, and a declared table absent at the head is not reported (the schema gate
judges a table the branch dropped). A schema that cannot be loaded is an error of the gate.

A table the branch only appended to since its base is validated incrementally: row rules run on the
added rows only, and each unique key's new values are also checked against the old rows, so a
duplicate that collides with an old row is still caught. That check reads only the old data files
whose column bounds overlap the new keys' range: appending time-ordered keys (such as MongoDB ObjectIds)
reads no old file at all. `full=True` validates every row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cascade_ci.gates.pandera_schemas import load_schema, schema_for
from cascade_ci.verdict import Check, GateResult, Level

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    from pandera.api.polars.container import DataFrameSchema
    from pyiceberg.table import DataScan, Table

    from cascade_ci.gates.base import GateContext

__all__ = ["load_schema", "rules_of", "run", "schema_for", "validate_table"]

GATE = "pandera"
name = GATE
SAMPLE_SIZE = 5
WARNING = ("warning", "warn")


@dataclass(frozen=True)
class Rule:
    """One column rule of a schema, with the key its failures are reported under."""

    column: str | None
    name: str
    prefix: str  # what pandera's failure_cases `check` column starts with
    severity: str
    keys: tuple[str, ...] = ()  # the key a uniqueness rule guards


def rules_of(schema: DataFrameSchema) -> list[Rule]:
    """Every rule the schema enforces, in a stable order (these are the JUnit test cases)."""
    rules = []
    for column_name, column in schema.columns.items():
        severity = str((column.metadata or {}).get("severity", "error"))
        if column.dtype is not None:
            rules.append(Rule(column_name, "dtype", "dtype(", severity))
        if not column.nullable:
            rules.append(Rule(column_name, "not_null", "not_nullable", severity))
        if column.unique:
            rules.append(Rule(column_name, "unique", "field_uniqueness", severity, (column_name,)))
        rules += [Rule(column_name, check.name, check.name, severity) for check in column.checks]
        rules.append(Rule(column_name, "present", "column_in_dataframe", severity))
    rules += [Rule(None, check.name, check.name, "error") for check in schema.checks]
    if schema.unique:
        keys = tuple(schema.unique)
        rules.append(Rule(None, "unique:" + ",".join(keys), "multiple_fields_uniqueness", "error", keys))
    return rules


def _failures(schema: DataFrameSchema, frame: pl.DataFrame) -> pl.DataFrame | None:
    from pandera.errors import SchemaErrors

    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as e:
        return e.failure_cases
    return None


def _mask(rule: Rule) -> pl.Expr:
    """The failure_cases rows that belong to `rule`."""
    import polars as pl

    if rule.name == "present":  # a missing column is reported against the schema, naming the column
        column = pl.col("failure_case") == rule.column
    elif rule.column is None:
        column = pl.col("schema_context") == "DataFrameSchema"
    else:
        column = pl.col("column") == rule.column
    return column & pl.col("check").str.starts_with(rule.prefix)


def _null_key(row: str | None, keys: tuple[str, ...]) -> bool:
    """True if a compound-uniqueness failure (the row as JSON) has a null in the key."""
    try:
        values = json.loads(row) if row else {}
    except json.JSONDecodeError:
        return False  # not a row as pandera 0.35 reports it: keep the failure
    return isinstance(values, dict) and any(values.get(key) is None for key in keys)


def _matches(rule: Rule, failures: pl.DataFrame | None) -> list[Any]:
    if failures is None:
        return []
    values = failures.filter(_mask(rule))["failure_case"].to_list()
    # Like SQL's UNIQUE, nulls are not duplicates of each other: `not_null` reports them.
    if rule.name == "unique":
        return [v for v in values if v is not None]
    if rule.column is None and rule.keys:
        return [v for v in values if not _null_key(v, rule.keys)]
    return values


def _unmatched(table: str, rules: list[Rule], failures: pl.DataFrame | None, scope: str) -> list[Check]:
    """A failing `schema` check for failures no rule names (e.g. `strict`), so that none passes unseen."""
    import polars as pl

    if failures is None:
        return []
    rest = failures.filter(~pl.any_horizontal([_mask(rule) for rule in rules])) if rules else failures
    if rest.is_empty():
        return []
    kinds = ", ".join(sorted(set(rest["check"].to_list())))
    message = f"{rest.height} failures in {scope}: {kinds}"
    return [Check(GATE, table, "schema", Level.ERROR, False, message, observed=rest.height, expected=0)]


def _level(rule: Rule, critical: str) -> Level:
    return Level.WARN if rule.severity in WARNING and critical != "warning" else Level.ERROR


def _check(table: str, rule: Rule, failing: list[Any], critical: str, scope: str) -> Check:
    name = f"{rule.column}:{rule.name}" if rule.column else rule.name
    shown = ", ".join(repr(v) for v in failing[:SAMPLE_SIZE]) + (", ..." if len(failing) > SAMPLE_SIZE else "")
    message = f"{len(failing)} failing values in {scope}: {shown}" if failing else f"passed on {scope}"
    return Check(
        gate=GATE,
        table=table,
        name=name,
        severity=_level(rule, critical),
        passed=not failing,
        message=message,
        observed=len(failing) or None,
        expected=0 if failing else None,
    )


def old_key_scan(table: Table, base_id: int, new_keys: pa.Table, names_at_base: tuple[str, ...]) -> DataScan:
    """A scan of the base snapshot's key columns within the range of the new keys' first column.

    Iceberg prunes every data file whose bounds for that column miss the range before reading it. pyiceberg
    binds a row filter to the table's current schema and the selected fields to the snapshot's: the filter
    names the column as `new_keys` do, the selection as the base snapshot did.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThanOrEqual

    first, name = new_keys.column(0), new_keys.column_names[0]
    if pa.types.is_floating(first.type) and pc.any(pc.is_nan(first)).as_py():
        return table.scan(snapshot_id=base_id, selected_fields=names_at_base)  # NaN has no place in a range
    bounds = pc.min_max(first)
    in_range = And(GreaterThanOrEqual(name, bounds["min"].as_py()), LessThanOrEqual(name, bounds["max"].as_py()))
    return table.scan(snapshot_id=base_id, selected_fields=names_at_base, row_filter=in_range)


def _names_at_base(table: Table, base_id: int, keys: tuple[str, ...]) -> tuple[str, ...] | None:
    """The key columns' names in the base snapshot's schema, matched by field id (a rename keeps the id).

    None when a key column did not exist at the base: the old rows hold nulls there, which collide with nothing.
    """
    current, at_base = table.schema(), table.scan(snapshot_id=base_id).projection()  # the base snapshot's schema
    names = []
    for key in keys:
        name = at_base.find_column_name(current.find_field(key).field_id)
        if name is None:
            return None
        names.append(name)
    return tuple(names)


def _collisions(table: Table, base_id: int, new_rows: pa.Table, keys: tuple[str, ...]) -> list[Any]:
    """New keys (a value, or a row of values for a compound key) that the base snapshot already holds.

    Rows with a null in the key are left out, as SQL's UNIQUE does (`not_null` reports nulls).
    """
    import pyarrow.compute as pc

    if not set(keys) <= set(new_rows.column_names):
        return []  # a key column the new rows lack is reported by the `present` rule
    old_names = _names_at_base(table, base_id, keys)
    new_keys = new_rows.select(list(keys)).drop_null()
    if old_names is None or new_keys.num_rows == 0:
        return []
    scan = old_key_scan(table, base_id, new_keys, old_names)
    # As the head's schema names and types them (a column may have been renamed, or widened from int to long).
    old = scan.to_arrow().select(list(old_names)).rename_columns(list(keys)).cast(new_keys.schema)
    if len(keys) == 1:  # probe the old keys against a hash of the few new ones
        column = old.column(0)
        return column.filter(pc.is_in(column, value_set=new_keys.column(0))).unique().to_pylist()
    distinct = new_keys.group_by(list(keys)).aggregate([])
    return old.join(distinct, keys=list(keys), join_type="inner").group_by(list(keys)).aggregate([]).to_pylist()


def validate_table(ctx: GateContext, table_name: str, schema: DataFrameSchema) -> list[Check]:
    """Checks for one table: incremental when the branch only appended to it, otherwise full."""
    import polars as pl

    from cascade_ci.catalog.lineage import lineage_since, read_added_rows

    table = ctx.catalog.tables(ctx.head_hash).load_table(table_name)
    base_id = None
    base_tables = ctx.catalog.tables(ctx.base_hash)
    if base_tables.table_exists(table_name):
        base_snapshot = base_tables.load_table(table_name).current_snapshot()
        base_id = base_snapshot.snapshot_id if base_snapshot else None
    lineage = lineage_since(table, base_id)
    incremental = not ctx.full and base_id is not None and lineage is not None and lineage.append_only
    if incremental:
        rows = read_added_rows(table, base_id)
        scope = f"{rows.num_rows} added rows"
    else:
        rows = table.scan().to_arrow()
        scope = f"all {rows.num_rows} rows"
    failures = _failures(schema, pl.from_arrow(rows))
    critical = str(ctx.settings.pandera_critical_level)
    checks = []
    rules = rules_of(schema)
    for rule in rules:
        failing = _matches(rule, failures)
        if incremental and base_id is not None and rule.keys:
            failing += _collisions(table, base_id, rows, rule.keys)
        checks.append(_check(table_name, rule, failing, critical, scope))
    return checks + _unmatched(table_name, rules, failures, scope)


def run(ctx: GateContext) -> GateResult:
    """Validate every declared table present at the head; every schema is loaded first, so a bad one is an error."""
    settings = ctx.settings
    declared = {table: config for table, config in sorted(settings.tables.items()) if config.schema_ or config.unique}
    schemas = {table: schema_for(table, config, settings) for table, config in declared.items()}
    head = ctx.catalog.tables(ctx.head_hash)
    checks: list[Check] = []
    for table_name, schema in schemas.items():
        if head.table_exists(table_name):
            checks += validate_table(ctx, table_name, schema)
    return GateResult(gate=GATE, checks=tuple(checks))
