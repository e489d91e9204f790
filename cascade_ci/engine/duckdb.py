"""The embedded engine: dbt-duckdb over a scratch DuckDB file whose tables are the branch's, read in place.

`prepare` exposes every table of the branch as a DuckDB view over the Parquet data files of its Iceberg
snapshot (planned by pyiceberg), so a model reads only the columns and row groups its SQL needs;
nothing is copied. Files are read by column name, so a view needs the snapshot's files to carry the
current names (added columns read as NULL in older files); a table a view cannot read faithfully (delete
files, a renamed column or one retyped beyond an Iceberg promotion while older files remain, files not
on the local disk) is loaded through pyiceberg instead. The tables of incremental models are copied in,
because dbt appends or merges into them, and their original content stays visible under
`__cascade_base` so `publish` can write only what changed: an Iceberg append when rows were only
added, an upsert on the unique key, else a replacement. `query` runs one read-only SELECT over the same
views of any ref.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cascade_ci.catalog.writes import append_rows, replace_table, upsert
from cascade_ci.engine.base import DbtTarget, Model
from cascade_ci.errors import ConfigError

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table
    from pyiceberg.table.metadata import TableMetadata
    from pyiceberg.types import IcebergType

    from cascade_ci.catalog.base import BranchCatalog
    from cascade_ci.config import Settings

log = logging.getLogger(__name__)

BASE_SCHEMA = "__cascade_base"  # original content of the incremental models' tables, for `publish`
_PREPARED = f'"{BASE_SCHEMA}"."__prepared"'  # which tables were prepared for incremental models, at which snapshot
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GLOB = re.compile(r"[*?\[\]{}]")  # read_parquet would expand these in a path
_DECIMAL = re.compile(r"DECIMAL\((\d+),(\d+)\)")

Exposed = Literal["view", "empty", "copy"]


def quoted(name: str) -> str:
    """`schema.table` -> `"schema"."table"`, refusing anything but plain identifiers."""
    parts = name.split(".")
    if len(parts) != 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        raise ValueError(f"not a plain schema.table name: {name!r}")
    return ".".join(f'"{part}"' for part in parts)


def base_name(name: str) -> str:
    """The view of an incremental model's table as it was on the branch: `"__cascade_base"."<ns>__<table>"`."""
    namespace, table = quoted(name).replace('"', "").split(".")
    return f'"{BASE_SCHEMA}"."{namespace}__{table}"'


def _ident(name: str) -> str:
    """Any column name as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _connect(path: Path | str, read_only: bool = False) -> Any:
    import duckdb

    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("SET TimeZone = 'UTC'")
    return con


def duckdb_type(field_type: IcebergType) -> str | None:
    """The DuckDB type an Iceberg type reads as, or None when there is none to cast to."""
    from pyiceberg import types as t

    simple = {
        t.BooleanType: "BOOLEAN",
        t.IntegerType: "INTEGER",
        t.LongType: "BIGINT",
        t.FloatType: "FLOAT",
        t.DoubleType: "DOUBLE",
        t.DateType: "DATE",
        t.TimeType: "TIME",
        t.TimestampType: "TIMESTAMP",
        t.TimestamptzType: "TIMESTAMPTZ",
        t.TimestampNanoType: "TIMESTAMP_NS",
        t.StringType: "VARCHAR",
        t.UUIDType: "UUID",
        t.BinaryType: "BLOB",
        t.FixedType: "BLOB",
    }
    if type(field_type) in simple:
        return simple[type(field_type)]
    if isinstance(field_type, t.DecimalType):
        return f"DECIMAL({field_type.precision}, {field_type.scale})"
    if isinstance(field_type, t.StructType):
        members = [(f.name, duckdb_type(f.field_type)) for f in field_type.fields]
        if not members or any(kind is None for _, kind in members):
            return None
        return "STRUCT(" + ", ".join(f"{_ident(name)} {kind}" for name, kind in members) + ")"
    if isinstance(field_type, t.ListType):
        element = duckdb_type(field_type.element_type)
        return None if element is None else f"{element}[]"
    if isinstance(field_type, t.MapType):
        key, value = duckdb_type(field_type.key_type), duckdb_type(field_type.value_type)
        return None if key is None or value is None else f"MAP({key}, {value})"
    return None


def names_compatible(metadata: TableMetadata) -> bool:
    """True if files written under any of the table's schemas can be read by column name under the current one.

    Every field id keeps one (full) name and every name one field id across the schema history (added and
    dropped columns are fine; a rename, or a name reused for a new column, is not), a primitive type only
    changed by an Iceberg promotion (int -> long, float -> double, wider decimal), and nested columns kept
    their type.
    """
    from pyiceberg.exceptions import ResolveError
    from pyiceberg.schema import index_by_id, index_name_by_id, promote
    from pyiceberg.types import PrimitiveType

    current = index_by_id(metadata.schema())
    names: dict[int, str] = {}
    ids: dict[str, int] = {}
    for schema in metadata.schemas:
        for field_id, name in index_name_by_id(schema).items():
            if names.setdefault(field_id, name) != name or ids.setdefault(name, field_id) != field_id:
                return False
        for field_id, field in index_by_id(schema).items():
            now = current.get(field_id)
            if now is None or field.field_type == now.field_type:
                continue
            if not isinstance(field.field_type, PrimitiveType) or not isinstance(now.field_type, PrimitiveType):
                return False
            try:
                promote(field.field_type, now.field_type)
            except ResolveError:
                return False
    return True


def files_match(con: Any, files: list[str], schema: Schema) -> bool:
    """True if each file's top-level columns carry the current field ids under the current names.

    The precise test when the schema history is not name-compatible (a column dropped and added again
    under its old name, as `replace_table` does with a retyped column, is harmless once no file of the
    snapshot holds the old column). Flat schemas only: nested columns keep the history rule.
    """
    import duckdb
    from pyiceberg.types import PrimitiveType

    if not all(isinstance(field.field_type, PrimitiveType) for field in schema.fields):
        return False
    by_name = {field.name: field.field_id for field in schema.fields}
    by_id = {field.field_id: field.name for field in schema.fields}
    listing = f"[{', '.join(_literal(f) for f in files)}]"
    try:
        kinds = ", ".join(f"typeof(CAST(NULL AS {duckdb_type(field.field_type)}))" for field in schema.fields)
        wanted = dict(zip(by_name, con.execute(f"SELECT {kinds}").fetchall()[0], strict=True))  # DuckDB's spelling
        rows = con.execute(
            f"SELECT file_name, name, field_id, num_children, duckdb_type FROM parquet_schema({listing})"  # noqa: S608
        ).fetchall()
    except duckdb.Error:
        return False
    per_file: dict[str, list[tuple[Any, ...]]] = {}
    for file_name, *node in rows:  # each file's schema tree, depth first from its root
        per_file.setdefault(file_name, []).append(tuple(node))
    for tree in per_file.values():
        at = 1
        for _ in range(tree[0][2] or 0):
            name, field_id, _, kind = tree[at]
            if (name in by_name and field_id != by_name[name]) or (field_id in by_id and by_id[field_id] != name):
                return False
            if name in wanted and not _promotes(kind, wanted[name]):
                return False
            at = _subtree_end(tree, at)
    return len(per_file) == len(set(files))


def _promotes(stored: str, wanted: str) -> bool:
    """True if a column stored as DuckDB type `stored` reads as `wanted` by an Iceberg type promotion (or none)."""
    if stored == wanted or (stored, wanted) in (("INTEGER", "BIGINT"), ("FLOAT", "DOUBLE")):
        return True
    stored_decimal, wanted_decimal = _DECIMAL.fullmatch(stored), _DECIMAL.fullmatch(wanted)
    return bool(
        stored_decimal
        and wanted_decimal
        and stored_decimal.group(2) == wanted_decimal.group(2)
        and int(stored_decimal.group(1)) <= int(wanted_decimal.group(1))
    )


def _subtree_end(tree: list[tuple[Any, ...]], at: int) -> int:
    """The index just past the node at `at` and its descendants."""
    end = at + 1
    for _ in range(tree[at][2] or 0):
        end = _subtree_end(tree, end)
    return end


def _local_parquet_files(table: Table, tasks: list[Any]) -> list[str] | None:
    """The local paths of the tasks' data files, or None when a view over them would read them wrong."""
    from pyiceberg.io.pyarrow import PyArrowFileIO
    from pyiceberg.manifest import FileFormat

    files = []
    for task in tasks:
        if task.delete_files or task.file.file_format != FileFormat.PARQUET:
            return None
        scheme, _, path = PyArrowFileIO.parse_location(task.file.file_path, table.io.properties)
        if scheme not in ("", "file") or _GLOB.search(path):
            return None
        files.append(path)
    return files


def _create_empty(con: Any, target: str, schema: Schema) -> None:
    columns = [(field.name, duckdb_type(field.field_type)) for field in schema.fields]
    if columns and all(kind is not None for _, kind in columns):
        con.execute(f"CREATE TABLE {target} ({', '.join(f'{_ident(n)} {k}' for n, k in columns)})")
    else:
        _copy(con, target, schema.as_arrow().empty_table())


def _copy(con: Any, target: str, rows: Any) -> None:
    """A real DuckDB table `target` holding `rows` (an Arrow table or record batch reader)."""
    con.register("__cascade_incoming", rows)
    try:
        con.execute(f"CREATE TABLE {target} AS SELECT * FROM __cascade_incoming")  # noqa: S608 (quoted identifier)
    finally:
        con.unregister("__cascade_incoming")


def _create_view(con: Any, target: str, schema: Schema, files: list[str]) -> bool:
    """`CREATE VIEW target` over `files`, the current columns in order and types; False if DuckDB cannot."""
    import duckdb

    source = f"read_parquet([{', '.join(_literal(f) for f in files)}], union_by_name = true, hive_partitioning = false)"
    try:
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}  # noqa: S608
        columns = []
        for field in schema.fields:
            kind = duckdb_type(field.field_type)
            value = _ident(field.name) if field.name in present else "NULL"  # added after these files were written
            columns.append(f"CAST({value} AS {kind}) AS {_ident(field.name)}")
        con.execute(f"CREATE VIEW {target} AS SELECT {', '.join(columns)} FROM {source}")  # noqa: S608
    except duckdb.Error as e:
        log.debug("no view for %s, loading it instead: %s", target, e)
        return False
    return True


def expose(con: Any, table: Table, target: str) -> tuple[Exposed, list[str]]:
    """Make `target` (quoted) show the table's current snapshot; return how, and the files a view reads."""
    schema = table.schema()
    if table.current_snapshot() is None:
        _create_empty(con, target, schema)
        return "empty", []
    scan = table.scan()
    tasks = list(scan.plan_files())
    if not tasks:
        _create_empty(con, target, schema)
        return "empty", []
    files = _local_parquet_files(table, tasks)
    if files is None:
        reason = "delete files, or data files that are not local Parquet files"
    elif not all(duckdb_type(field.field_type) for field in schema.fields):
        reason = "a column type DuckDB has no cast to"
    elif not (names_compatible(table.metadata) or files_match(con, files, schema)):
        reason = "a column renamed, or a name reused, in its schema history"
    elif not _create_view(con, target, schema, files):
        reason = "DuckDB could not read its files by column name"
    else:
        return "view", files
    log.info("%s is loaded whole, not read in place: %s", target, reason)
    _copy(con, target, scan.to_arrow_batch_reader())
    return "copy", []


def branch_tables(tables: Catalog) -> list[str]:
    """Every `namespace.table` of the ref (the tables a plain `schema.table` cannot name are skipped, logged)."""
    names = []
    for namespace in tables.list_namespaces():
        for identifier in tables.list_tables(namespace):
            name = ".".join(identifier)
            if len(identifier) == 2 and all(_IDENTIFIER.fullmatch(part) for part in identifier):
                names.append(name)
            else:
                log.warning("table %r is not exposed to SQL: not a plain namespace.table name", name)
    return sorted(names)


def expose_all(con: Any, tables: Catalog, skip: frozenset[str] = frozenset()) -> list[str]:
    """Expose every table of the ref but `skip`; return the data files the views read."""
    files: list[str] = []
    schemas: set[str] = set()
    for name in branch_tables(tables):
        if name in skip:
            continue
        namespace = name.split(".")[0]
        if namespace not in schemas:
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{namespace}"')
            schemas.add(namespace)
        _, read = expose(con, tables.load_table(name), quoted(name))
        files.extend(read)
    return files


class DuckDbEngine:
    """dbt-duckdb on a DuckDB file under `work_dir` (kept between runs so dbt can parse partially)."""

    name = "duckdb"

    def __init__(self, catalog: BranchCatalog, work_dir: Path, threads: int = 2) -> None:
        self.catalog = catalog
        self.work_dir = Path(work_dir)
        self.path = self.work_dir / "cascade.duckdb"
        self.threads = threads

    @classmethod
    def from_settings(cls, settings: Settings, catalog: BranchCatalog) -> DuckDbEngine:
        """The engine of a project: its DuckDB file under CASCADE_HOME/dbt, dbt's threads as configured."""
        threads = settings.transform.threads if settings.transform is not None else 2
        return cls(catalog, settings.path(settings.home) / "dbt", threads=threads)

    def prepare(self, branch: str, incremental: list[str] | None = None) -> DbtTarget:
        """A fresh DuckDB file showing every table of the branch; the incremental models' tables copied in."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for stale in (self.path, self.path.with_name(self.path.name + ".wal")):
            stale.unlink(missing_ok=True)
        tables = self.catalog.tables(branch)
        present = set(branch_tables(tables))
        copied = sorted({name for name in incremental or () if name in present})
        con = _connect(self.path)
        try:
            expose_all(con, tables, skip=frozenset(copied))
            con.execute(f'CREATE SCHEMA "{BASE_SCHEMA}"')
            con.execute(f"CREATE TABLE {_PREPARED} (name VARCHAR PRIMARY KEY, snapshot_id BIGINT)")
            bases: dict[str, str] = {}
            for name in copied:
                table = tables.load_table(name)
                base = base_name(name)
                if base in bases:
                    raise ConfigError(f"incremental models {bases[base]!r} and {name!r} would share the view {base}")
                bases[base] = name
                expose(con, table, base)
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{name.split(".")[0]}"')
                con.execute(f"CREATE TABLE {quoted(name)} AS SELECT * FROM {base}")  # noqa: S608
                snapshot = table.current_snapshot()
                con.execute(
                    f"INSERT INTO {_PREPARED} VALUES (?, ?)",  # noqa: S608
                    [name, snapshot.snapshot_id if snapshot else None],
                )
        finally:
            con.close()
        output = {
            "type": "duckdb",
            "path": str(self.path),
            "threads": self.threads,
            "keep_open": False,
            "settings": {"TimeZone": "UTC"},
        }
        return DbtTarget(output=output)

    def publish(self, branch: str, models: list[Model]) -> dict[str, int]:
        """Write each built model onto the branch; return each table's rows after publishing."""
        tables = self.catalog.tables(branch)
        con = _connect(self.path, read_only=True)
        try:
            prepared = dict(con.execute(f"SELECT name, snapshot_id FROM {_PREPARED}").fetchall())  # noqa: S608
            counts = {}
            for model in models:
                target = quoted(model.table)
                counts[model.table] = int(con.execute(f"SELECT count(*) FROM {target}").fetchall()[0][0])  # noqa: S608
                if model.materialized == "incremental" and model.table in prepared:
                    how = self._publish_increment(con, tables, model, prepared[model.table])
                else:
                    replace_table(tables, model.table, con.sql(f"SELECT * FROM {target}").to_arrow_table())  # noqa: S608
                    how = "replaced"
                log.info("published %s (%s model): %s", model.table, model.materialized, how)
        finally:
            con.close()
        return counts

    def _publish_increment(self, con: Any, tables: Catalog, model: Model, snapshot_id: int | None) -> str:
        """Write what the incremental model changed: append, upsert on its unique key, else replace. Returns which."""
        target, base = quoted(model.table), base_name(model.table)
        built = con.execute(f"DESCRIBE {target}").fetchall()
        before = con.execute(f"DESCRIBE {base}").fetchall()
        table = tables.load_table(model.table) if tables.table_exists(model.table) else None
        current = table.current_snapshot() if table is not None else None
        unchanged_since = table is not None and (current.snapshot_id if current else None) == snapshot_id
        if not unchanged_since or sorted(row[:2] for row in built) != sorted(row[:2] for row in before):
            replace_table(tables, model.table, con.sql(f"SELECT * FROM {target}").to_arrow_table())  # noqa: S608
            return "replaced (schema or table changed)"
        columns = ", ".join(_ident(row[0]) for row in before)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE __cascade_added AS "  # noqa: S608
            f"SELECT {columns} FROM {target} EXCEPT ALL SELECT {columns} FROM {base}"
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE __cascade_removed AS "  # noqa: S608
            f"SELECT {columns} FROM {base} EXCEPT ALL SELECT {columns} FROM {target}"
        )
        removed = con.execute("SELECT count(*) FROM __cascade_removed").fetchall()[0][0]
        added = con.sql("SELECT * FROM __cascade_added").to_arrow_table()
        if removed == 0:
            append_rows(tables, model.table, added)
            return f"appended {added.num_rows} rows"
        keys = model.unique_key
        if keys and all(key in added.schema.names for key in keys):
            match = " AND ".join(f"a.{_ident(key)} = r.{_ident(key)}" for key in keys)
            keyed = f"EXISTS (SELECT 1 FROM __cascade_added a WHERE {match})"  # noqa: S608
            matched = con.execute(f"SELECT count(*) FROM __cascade_removed r WHERE {keyed}").fetchall()[0][0]  # noqa: S608
            replaced = con.execute(f"SELECT count(*) FROM {base} r WHERE {keyed}").fetchall()[0][0]  # noqa: S608
            # The upsert deletes every row whose key is among the added rows': exactly the removed ones.
            if removed == matched == replaced:
                upsert(tables, model.table, added, tuple(keys))
                return f"upserted {added.num_rows} rows on {', '.join(keys)}"
        replace_table(tables, model.table, con.sql(f"SELECT * FROM {target}").to_arrow_table())  # noqa: S608
        return f"replaced ({removed} rows removed)"

    def query(self, ref: str, sql: str) -> list[tuple[Any, ...]]:
        """Run one SELECT over the tables at `ref` in a scratch in-memory DuckDB; anything else is refused.

        Read-only twice over: the statement must parse as exactly one SELECT (so no CREATE, INSERT, COPY,
        ATTACH, SET, PRAGMA...), and once the views exist the connection loses file access (only the views'
        data files stay readable) and its configuration is locked.
        """
        import duckdb

        con = duckdb.connect(":memory:")
        try:
            con.execute("SET TimeZone = 'UTC'")
            files = expose_all(con, self.catalog.tables(ref))
            con.execute(f"SET allowed_paths = [{', '.join(_literal(f) for f in sorted(set(files)))}]")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            try:
                statements = con.extract_statements(sql)
            except duckdb.Error as e:
                raise ConfigError(f"SQL on {ref!r} does not parse: {e}") from e
            kinds = [statement.type.name for statement in statements]
            if kinds != ["SELECT"]:
                raise ConfigError(f"only one SELECT can run on {ref!r}; got {', '.join(kinds) or 'no statement'}")
            try:
                return con.execute(statements[0]).fetchall()
            except duckdb.Error as e:
                raise ConfigError(f"SQL on {ref!r} failed: {e}") from e
        finally:
            con.close()

    def close(self) -> None:
        """Nothing is held open between calls."""
