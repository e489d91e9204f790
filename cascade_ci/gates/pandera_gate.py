"""Pandera schemas as a gate: every table the config declares a `schema` or `unique` for is validated.

Lazy validation, one check per column rule, severity per column (`metadata: {severity: warning}`). Tables
not declared are not judged, and a declared table absent at the head is not reported (the schema gate
judges a table the branch dropped). A schema that cannot be loaded is an error of the gate.

A table the branch only appended to since its base is validated incrementally: row rules run on the
added rows only, and each unique key's new values are also checked against the old rows, so a
duplicate that collides with an old row is still caught. That check reads only the old data files
whose column bounds overlap the new keys' range: appending time-ordered keys (such as MongoDB ObjectIds)
reads no old file at all. `full=True` validates every row.

After `cascade update` (`GateContext.judged`), a table whose added rows an earlier verdict on the branch
already judged, all passing, keeps those checks and only has its keys checked again against the new base:
pandera is not loaded for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from cascade_ci.catalog.keys import Keys, added_range, old_key_scan
from cascade_ci.gates.pandera_schemas import YAML_SUFFIXES, load_schema, schema_for
from cascade_ci.gates.sql_gate import located, relative
from cascade_ci.verdict import Check, GateResult, Level

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    from pandera.api.polars.container import DataFrameSchema
    from pyiceberg.table import Table

    from cascade_ci.config import Settings, TableConfig
    from cascade_ci.gates.base import GateContext, Judged

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


@dataclass(frozen=True)
class Source:
    """Where a table's rules are written, relative to the project root: its schema YAML, else the config file."""

    file: str | None = None
    lines: tuple[tuple[str | None, int], ...] = ()  # (column, line); column None: the table's own line

    def at(self, column: str | None) -> dict[str, Any]:
        """`file` and `line` for a check of `column` (the table's line when the column has none)."""
        lines = dict(self.lines)
        return {"file": self.file, "line": lines.get(column, lines.get(None))}


def _yaml_lines(text: str) -> tuple[tuple[str | None, int], ...]:
    """(column, line) of each key under `columns:` in a schema YAML, and (None, line) of its `checks:` (else of
    its `columns:`) for the table's own rules."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return ()
    pairs = root.value if isinstance(root, yaml.MappingNode) else []
    keys = {key.value: (key, value) for key, value in pairs if isinstance(key, yaml.ScalarNode)}
    found: list[tuple[str | None, int]] = []
    table = keys.get("checks") or keys.get("columns")
    if table is not None:
        found.append((None, table[0].start_mark.line + 1))
    columns = keys.get("columns", (None, None))[1]
    if isinstance(columns, yaml.MappingNode):
        found += [(key.value, key.start_mark.line + 1) for key, _ in columns.value if isinstance(key, yaml.ScalarNode)]
    return tuple(found)


def source_of(table: str, config: TableConfig, settings: Settings) -> Source:
    """The schema YAML `config` names (each column at its line), else the config file at the table's section."""
    spec = config.schema_
    if spec and spec.lower().endswith(YAML_SUFFIXES):
        path = settings.path(spec)
        try:
            lines = _yaml_lines(path.read_text(encoding="utf-8"))
        except OSError:
            lines = ()
        return Source(relative(settings, path), lines)
    header = rf"^\s*\[\s*(tool\.cascade\.)?tables\.([\"']{re.escape(table)}[\"']|{re.escape(table)})\s*\]"
    file, line = located(settings, header)
    return Source(file, ((None, line),) if line else ())


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


def _unmatched(
    table: str, rules: list[Rule], failures: pl.DataFrame | None, scope: str, source: Source = Source()
) -> list[Check]:
    """A failing `schema` check for failures no rule names (e.g. `strict`), so that none passes unseen."""
    import polars as pl

    if failures is None:
        return []
    rest = failures.filter(~pl.any_horizontal([_mask(rule) for rule in rules])) if rules else failures
    if rest.is_empty():
        return []
    kinds = ", ".join(sorted(set(rest["check"].to_list())))
    message = f"{rest.height} failures in {scope}: {kinds}"
    where = source.at(None)
    return [Check(GATE, table, "schema", Level.ERROR, False, message, observed=rest.height, expected=0, **where)]


def _level(rule: Rule, critical: str) -> Level:
    return Level.WARN if rule.severity in WARNING and critical != "warning" else Level.ERROR


def _schema_key(schema: DataFrameSchema) -> list[str]:
    """The columns a schema declares unique together, else its first column declared unique on its own."""
    together = list(schema.unique or [])
    return together or [name for name, column in schema.columns.items() if column.unique][:1]


def _reveals(rule: Rule, sensitive: Collection[str]) -> bool:
    """True if `rule`'s failure cases are values of a sensitive column (the table's own checks may be any)."""
    if not sensitive or rule.name in ("present", "dtype"):  # a column's name or type, never a value
        return False
    if rule.column is None:
        return True
    return rule.column in sensitive or bool(set(rule.keys) & set(sensitive))


def _row_labels(
    rule: Rule, failures: pl.DataFrame | None, rows: pa.Table, key: Collection[str], sensitive: Collection[str]
) -> list[str]:
    """The failing rows of `rule` named without their sensitive values: by the table's key, else by row index."""
    if failures is None:
        return []
    indices = [i for i in failures.filter(_mask(rule))["index"].to_list() if i is not None]
    shown_key = [column for column in key if column in rows.column_names and column not in sensitive]
    labels = []
    for index in dict.fromkeys(indices):
        if shown_key and 0 <= index < rows.num_rows:
            values = rows.select(shown_key).slice(index, 1).to_pylist()[0]
            labels.append(", ".join(f"{column}={value!r}" for column, value in values.items()))
        else:
            labels.append(f"row #{index}")
    return labels


def _outcome(failing: list[Any], scope: str, labels: list[str] | None = None) -> dict[str, Any]:
    """A check's outcome fields for these failing values in `scope` (e.g. "12 added rows"); `labels` (the
    failing rows' keys) stand for the values of a sensitive column."""
    sample = [repr(v) for v in failing] if labels is None else labels
    shown = ", ".join(sample[:SAMPLE_SIZE]) + (", ..." if len(sample) > SAMPLE_SIZE else "")
    if labels is not None:
        shown = f"values hidden (sensitive); rows {shown}" if shown else "values hidden (sensitive)"
    return {
        "passed": not failing,
        "message": f"{len(failing)} failing values in {scope}: {shown}" if failing else f"passed on {scope}",
        "observed": len(failing) or None,
        "expected": 0 if failing else None,
    }


def _check(
    table: str,
    rule: Rule,
    failing: list[Any],
    critical: str,
    scope: str,
    source: Source = Source(),
    labels: list[str] | None = None,
) -> Check:
    """The check of one rule; `labels` stand for the failing values of a sensitive column."""
    name = f"{rule.column}:{rule.name}" if rule.column else rule.name
    return Check(
        gate=GATE,
        table=table,
        name=name,
        severity=_level(rule, critical),
        **_outcome(failing, scope, labels),
        **source.at(rule.column),
    )


def _key_of(check: Check) -> tuple[str, ...] | None:
    """The key a uniqueness check guards, read from its name as `_check` makes it: `col:unique`, `unique:a,b`."""
    column, _, rule = check.name.rpartition(":")
    if column and rule == "unique":
        return (column,)
    return tuple(check.name.removeprefix("unique:").split(",")) if check.name.startswith("unique:") else None


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
    if not set(keys) <= set(new_rows.column_names):
        return []  # a key column the new rows lack is reported by the `present` rule
    old_names = _names_at_base(table, base_id, keys)
    new_keys = Keys(new_rows.select(list(keys)))
    if old_names is None or new_keys.rows.num_rows == 0:
        return []
    scan = old_key_scan(table, base_id, new_keys, old_names)
    # As the head's schema names and types them (a column may have been renamed, or widened from int to long).
    old = scan.to_arrow().select(list(old_names)).rename_columns(list(keys)).cast(new_keys.rows.schema)
    held = old.filter(new_keys.mask(old))
    if len(keys) == 1:
        return held.column(0).unique().to_pylist()
    return held.group_by(list(keys), use_threads=False).aggregate([]).to_pylist()


def _added_since(ctx: GateContext, table_name: str, head: str, base: str) -> tuple[Table, int | None, bool]:
    """The table at `head`, its snapshot id at `base` (None: absent or empty there), and whether the rows it
    gained since are judged alone: it only appended (snapshot lineage says so) and `ctx.full` is not set."""
    from cascade_ci.catalog.lineage import lineage_since

    table = ctx.catalog.tables(head).load_table(table_name)
    base_id = None
    base_tables = ctx.catalog.tables(base)
    if base_tables.table_exists(table_name):
        base_snapshot = base_tables.load_table(table_name).current_snapshot()
        base_id = base_snapshot.snapshot_id if base_snapshot else None
    lineage = lineage_since(table, base_id)
    return table, base_id, not ctx.full and base_id is not None and lineage is not None and lineage.append_only


def _reused(ctx: GateContext, table_name: str, judged: Judged) -> list[Check] | None:
    """An earlier verdict's checks of the table that still hold at this head, with its keys judged again; None
    when they cannot be reused (then the table is validated as usual, and pandera loads).

    Reused only when every one of them passed and `full` is not asked. A table whose base did not move is the
    very version judged, against the very base: every check stands. Otherwise both verdicts must judge the added
    rows alone (the same rows, `Judged` says): the row rules stand, and each unique key's new values are
    checked again against the base's rows, which now hold main's newer ones. pyarrow only: no pandera, no polars.
    """
    from cascade_ci.catalog.lineage import read_added_rows

    mine = [check for check in judged.checks if check.gate == GATE]
    if ctx.full or not mine or not all(check.passed for check in mine):
        return None
    if not judged.base_moved:
        return mine
    table, base_id, incremental = _added_since(ctx, table_name, ctx.head_hash, ctx.base_hash)
    if not incremental or base_id is None or not _added_since(ctx, table_name, judged.head, judged.base)[2]:
        return None
    keys = {check.name: key for check in mine if (key := _key_of(check)) is not None}
    if not keys:
        return mine
    columns = tuple(sorted({column for key in keys.values() for column in key} & set(table.schema().column_names)))
    if not columns:  # no key column at the head: the `present` rule, which passed, could not have
        return None
    added, within = added_range(table, base_id, columns)
    if within is not None and not any(True for _ in table.scan(snapshot_id=base_id, row_filter=within).plan_files()):
        # no old data file's bounds overlap the new keys' range: no collision, and no data file is read
        passed = _outcome([], f"{added} added rows")
        return [replace(check, **passed) if check.name in keys else check for check in mine]
    rows = read_added_rows(table, base_id, columns)
    scope = f"{rows.num_rows} added rows"
    return [
        replace(check, **_outcome(_collisions(table, base_id, rows, keys[check.name]), scope))
        if check.name in keys
        else check
        for check in mine
    ]


def validate_table(
    ctx: GateContext,
    table_name: str,
    schema: DataFrameSchema,
    source: Source = Source(),
    sensitive: Collection[str] = (),
    key: Collection[str] = (),
) -> list[Check]:
    """Checks for one table: incremental when the branch only appended to it, otherwise full; each check carries
    the file and line of `source` its rule is written at. Failures of a `sensitive` column are shown as counts
    and the failing rows' `key` (else their row numbers), never as values."""
    import polars as pl

    from cascade_ci.catalog.lineage import read_added_rows

    table, base_id, incremental = _added_since(ctx, table_name, ctx.head_hash, ctx.base_hash)
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
        labels = _row_labels(rule, failures, rows, key, sensitive) if _reveals(rule, sensitive) else None
        checks.append(_check(table_name, rule, failing, critical, scope, source, labels))
    return checks + _unmatched(table_name, rules, failures, scope, source)


def run(ctx: GateContext) -> GateResult:
    """Validate every declared table present at the head; every schema is loaded first, so a bad one is an error."""
    settings = ctx.settings
    declared = {table: config for table, config in sorted(settings.tables.items()) if config.schema_ or config.unique}
    head = ctx.catalog.tables(ctx.head_hash)
    present = [table for table in declared if head.table_exists(table)]
    reused = {table: ctx.judged[table] for table in present if table in ctx.judged}
    reused = {table: checks for table, judged in reused.items() if (checks := _reused(ctx, table, judged)) is not None}
    schemas = {table: schema_for(table, config, settings) for table, config in declared.items() if table not in reused}
    checks: list[Check] = []
    for table_name in present:
        if table_name in reused:
            checks += reused[table_name]
        else:
            config = declared[table_name]
            where = source_of(table_name, config, settings)
            key = config.unique or _schema_key(schemas[table_name])
            checks += validate_table(ctx, table_name, schemas[table_name], where, config.sensitive, key)
    return GateResult(gate=GATE, checks=tuple(checks))
