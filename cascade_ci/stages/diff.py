"""Diff stage: what a branch changes in main's data, table by table, by key.

For each table that differs between the branch's fork point on main and its head: rows added, removed and
changed (a key on both sides whose other columns differ), matched on the table's key (the config's `unique`
of `[tables.X]`, else its source's `keys`); a table with neither is compared as whole rows (a changed row
then counts as one removed and one added, and no key is shown). Schema changes (columns added, removed,
type-changed), tables added and removed, and at most SAMPLES sample keys per kind. Only keys and column
names ever leave this module, never another value.

Both versions are read through the catalog (pyiceberg, on either backend) and compared in an in-process
DuckDB; tables the branch did not change are not read.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cascade_ci.branch_state import read_branch
from cascade_ci.catalog.base import ChangeKind
from cascade_ci.naming import branch_name
from cascade_ci.rejects import SUFFIX as REJECTS_SUFFIX
from cascade_ci.report.markdown import code

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.table import Table

    from cascade_ci.catalog.base import BranchCatalog
    from cascade_ci.config import Settings

SAMPLES = 5  # sample keys per kind (added, removed, changed) and table
MARKDOWN_LIMIT = 20_000  # characters of diff.md: it shares the PR comment with the verdict's summary
TABLE_ROWS = 50  # tables diff.md lists one by one


@dataclass(frozen=True)
class TableDiff:
    """How one table differs; `key` is empty when rows were compared whole."""

    table: str
    change: str  # added | removed | modified
    key: tuple[str, ...]
    rows_added: int
    rows_removed: int
    rows_changed: int | None  # None when compared whole rows (no key)
    columns_added: tuple[str, ...] = ()
    columns_removed: tuple[str, ...] = ()
    columns_retyped: tuple[tuple[str, str, str], ...] = ()  # (column, old type, new type)
    samples: dict[str, list[list[Any]]] = field(default_factory=dict)  # kind -> up to SAMPLES keys
    note: str = ""


@dataclass(frozen=True)
class DiffResult:
    branch: str
    base_ref: str
    base_hash: str
    head_hash: str
    tables: tuple[TableDiff, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def outputs(self) -> dict[str, str]:
        return {
            "tables-changed": str(len(self.tables)),
            "rows-added": str(sum(t.rows_added for t in self.tables)),
            "rows-removed": str(sum(t.rows_removed for t in self.tables)),
            "rows-changed": str(sum(t.rows_changed or 0 for t in self.tables)),
        }


def table_key(settings: Settings, table: str) -> tuple[str, ...]:
    """The table's `unique` in the config, else the `keys` its source declares for it, else none."""
    declared = settings.tables.get(table)
    if declared is not None and declared.unique:
        return tuple(declared.unique)
    namespace, short = table.split(".", 1)
    for source in settings.sources.values():
        keys = source.keys.get(table) or (source.keys.get(short) if source.namespace == namespace else None)
        if keys:
            return tuple(keys)
    return ()


def sensitive_columns(settings: Settings, table: str) -> list[str]:
    """The table's `sensitive` columns; a rejects table's `record` when the table it belongs to has any (a
    rejected record holds the values its table hides)."""
    config = settings.tables.get(table)
    if config is not None and config.sensitive:
        return list(config.sensitive)
    base = settings.tables.get(table.removesuffix(REJECTS_SUFFIX)) if table.endswith(REJECTS_SUFFIX) else None
    return ["record"] if base is not None and base.sensitive else []


def _types(table: Table | None) -> dict[str, str]:
    return {column.name: str(column.field_type) for column in table.schema().columns} if table is not None else {}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _arrow(table: Table) -> pa.Table:
    return table.scan().to_arrow()


def _fetch(con: Any, sql: str) -> list[tuple[Any, ...]]:
    """Run one query built here: every identifier in it went through `_quote`, and no value is ever in it."""
    return con.execute(sql).fetchall()


def _count(con: Any, source: str, where: str) -> int:
    return int(_fetch(con, f"SELECT count(*) FROM {source} WHERE {where}")[0][0])  # noqa: S608 (see _fetch)


def _samples(con: Any, key: tuple[str, ...], source: str, where: str) -> list[list[Any]]:
    """Up to SAMPLES keys (the key columns only) of the rows `where` selects, smallest first."""
    if not key:
        return []
    columns = ", ".join(_quote(k) for k in key)
    sql = f"SELECT {columns} FROM {source} WHERE {where} ORDER BY {columns} LIMIT {SAMPLES}"  # noqa: S608 (see _fetch)
    return [[_plain(value) for value in row] for row in _fetch(con, sql)]


def _same(column: str, retyped: set[str]) -> str:
    """`o.column` and `n.column` hold the same value (compared as text where the two versions' types differ)."""
    old, new = f"o.{_quote(column)}", f"n.{_quote(column)}"
    if column in retyped:
        old, new = f"CAST({old} AS VARCHAR)", f"CAST({new} AS VARCHAR)"
    return f"{old} IS NOT DISTINCT FROM {new}"


@dataclass(frozen=True)
class _Shape:
    """Columns of the two versions of a table."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    retyped: tuple[tuple[str, str, str], ...]
    common: tuple[str, ...]

    @classmethod
    def of(cls, old: Table | None, new: Table | None) -> _Shape:
        before, after = _types(old), _types(new)
        return cls(
            added=tuple(c for c in after if c not in before),
            removed=tuple(c for c in before if c not in after),
            retyped=tuple((c, before[c], after[c]) for c in after if c in before and before[c] != after[c]),
            common=tuple(c for c in after if c in before),
        )


def compare(
    old: Table | None,
    new: Table | None,
    key: tuple[str, ...],
    name: str,
    change: str,
    sensitive: Collection[str] = (),
) -> TableDiff:
    """Rows and columns that differ between two versions of one table (either may be absent); no sample
    keys when a key column is `sensitive`."""
    import duckdb

    shape = _Shape.of(old, new)
    hidden = sorted(set(key) & set(sensitive))
    shown = () if hidden else key
    note = f"no sample keys: key column(s) {', '.join(hidden)} are sensitive" if hidden else ""
    if old is not None and new is not None:
        if key and any(k not in shape.common for k in key):
            note, key = f"key {', '.join(key)} is not in both versions: whole rows compared", ()
        elif not key:
            note = "no key declared (`unique` of [tables.X] or the source's `keys`): whole rows compared"
    columns = {"columns_added": shape.added, "columns_removed": shape.removed, "columns_retyped": shape.retyped}
    con = duckdb.connect()
    try:
        for view, table in (("old_rows", old), ("new_rows", new)):
            if table is not None:  # an absent version is never queried
                con.register(view, _arrow(table))
        if old is None or new is None:  # a table added or removed: every row is
            kind, source = ("added", "new_rows") if old is None else ("removed", "old_rows")
            rows = _count(con, source, "TRUE")
            samples = _samples(con, shown, source, "TRUE")
            return TableDiff(name, change, key, rows if old is None else 0, rows if new is None else 0, 0,
                             **columns, samples={kind: samples} if samples else {}, note=note)  # fmt: skip
        if not key:
            added, removed = _whole_rows(con, shape)
            return TableDiff(name, change, (), added, removed, None, **columns, note=note)
        retyped = {c for c, _, _ in shape.retyped}
        on = " AND ".join(_same(k, retyped) for k in key)
        differs = " OR ".join(f"NOT ({_same(c, retyped)})" for c in shape.common if c not in key) or "FALSE"
        where = {
            "added": ("new_rows n", f"NOT EXISTS (SELECT 1 FROM old_rows o WHERE {on})"),  # noqa: S608
            "removed": ("old_rows o", f"NOT EXISTS (SELECT 1 FROM new_rows n WHERE {on})"),  # noqa: S608
            "changed": ("new_rows n", f"EXISTS (SELECT 1 FROM old_rows o WHERE {on} AND ({differs}))"),  # noqa: S608
        }
        counts = {kind: _count(con, source, cond) for kind, (source, cond) in where.items()}
        samples = {kind: _samples(con, shown, source, cond) for kind, (source, cond) in where.items()}
        return TableDiff(name, change, key, counts["added"], counts["removed"], counts["changed"], **columns,
                         samples={kind: keys for kind, keys in samples.items() if keys}, note=note)  # fmt: skip
    finally:
        con.close()


def _whole_rows(con: Any, shape: _Shape) -> tuple[int, int]:
    """Rows added and removed as a multiset difference of whole rows over the common columns."""
    retyped = {c for c, _, _ in shape.retyped}

    def select(alias: str, table: str) -> str:
        cells = [
            f"CAST({alias}.{_quote(c)} AS VARCHAR)" if c in retyped else f"{alias}.{_quote(c)}" for c in shape.common
        ]
        return f"SELECT {', '.join(cells) or '1'} FROM {table} {alias}"  # noqa: S608 (see _fetch)

    old, new = select("o", "old_rows"), select("n", "new_rows")
    added = _fetch(con, f"SELECT count(*) FROM ({new} EXCEPT ALL {old})")[0][0]  # noqa: S608 (see _fetch)
    removed = _fetch(con, f"SELECT count(*) FROM ({old} EXCEPT ALL {new})")[0][0]  # noqa: S608 (see _fetch)
    return int(added), int(removed)


def _plain(value: Any) -> Any:
    """A key value as JSON can carry it (dates and decimals as text)."""
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def diff_branch(settings: Settings, catalog: BranchCatalog, run_id: str) -> DiffResult:
    """Diff the branch of `run_id` (or of a pull request) against main where it forked."""
    name = branch_name(run_id, settings.branch_prefix)
    state = read_branch(catalog, name)
    base = state.base_hash or catalog.get_ref(settings.main_branch).hash
    head = state.ref.hash
    before, after = catalog.tables(base), catalog.tables(head)
    found = []
    for change in sorted(catalog.diff(base, head), key=lambda c: c.table):
        old = before.load_table(change.table) if change.kind is not ChangeKind.ADDED else None
        new = after.load_table(change.table) if change.kind is not ChangeKind.REMOVED else None
        key = table_key(settings, change.table)
        found.append(compare(old, new, key, change.table, str(change.kind), sensitive_columns(settings, change.table)))
    return DiffResult(name, settings.main_branch, base, head, tuple(found))


# -- reports -----------------------------------------------------------------------------------------


def _key_text(values: list[Any]) -> str:
    return code(values[0] if len(values) == 1 else tuple(values))


def _table_line(diff: TableDiff) -> str:
    changed = "n/a" if diff.rows_changed is None else f"{diff.rows_changed:,d}"
    return (
        f"| {code(diff.table, cell=True)} | {diff.change} | {diff.rows_added:,d} | {diff.rows_removed:,d} | "
        f"{changed} | {', '.join(code(k, cell=True) for k in diff.key) or 'whole rows'} |"
    )


def _details(diff: TableDiff) -> list[str]:
    lines = []
    for column in diff.columns_added:
        lines.append(f"- {code(diff.table)}: column {code(column)} added")
    for column in diff.columns_removed:
        lines.append(f"- {code(diff.table)}: column {code(column)} removed")
    for column, old, new in diff.columns_retyped:
        lines.append(f"- {code(diff.table)}: column {code(column)} type {code(old)} -> {code(new)}")
    for kind, keys in diff.samples.items():
        lines.append(f"- {code(diff.table)}: {kind}, e.g. " + ", ".join(_key_text(k) for k in keys))
    if diff.note:
        lines.append(f"- {code(diff.table)}: {diff.note}")
    return lines


def render_markdown(result: DiffResult) -> str:
    """diff.md: one row per table, then schema changes and sample keys; escaped and capped."""
    head = [
        "### Data diff",
        "",
        f"{code(result.branch)} against {code(result.base_ref)} at {code(result.base_hash[:12])}: "
        f"{len(result.tables)} table(s) differ.",
    ]
    if not result.tables:
        return "\n".join(head) + "\n"
    lines = [
        *head,
        "",
        "| table | change | rows added | rows removed | rows changed | key |",
        "|---|---|---:|---:|---:|---|",
    ]
    lines += [_table_line(diff) for diff in result.tables[:TABLE_ROWS]]
    if len(result.tables) > TABLE_ROWS:
        lines.append(f"\n... and {len(result.tables) - TABLE_ROWS} more tables; see diff.json.")
    details = [line for diff in result.tables for line in _details(diff)]
    if details:
        lines += ["", *details]
    text = "\n".join(lines) + "\n"
    if len(text) > MARKDOWN_LIMIT:
        cut = text[:MARKDOWN_LIMIT].rsplit("\n", 1)[0]
        text = cut + "\n\n_Diff cut to fit the comment; the full diff is in diff.json._\n"
    return text


def write_reports(result: DiffResult, reports_dir: Path) -> dict[str, Path]:
    """Write diff.md and diff.json into the reports folder."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": reports_dir / "diff.md", "json": reports_dir / "diff.json"}
    paths["markdown"].write_text(render_markdown(result), encoding="utf-8")
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str), encoding="utf-8")
    return paths
