"""Table writes shared by stages and engines: replace a table's rows, or upsert them on a natural key."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from cascade_ci.errors import ServiceUnavailableError, safe_url

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import Table


def _ensure_table(tables: Catalog, name: str, schema: pa.Schema) -> Table:
    namespace = name.split(".")[0]
    if not tables.namespace_exists(namespace):
        tables.create_namespace(namespace)
    if not tables.table_exists(name):
        return tables.create_table(name, schema)
    return tables.load_table(name)


def _overwrite(table: Table, rows: pa.Table, overwrite_filter: BooleanExpression | None = None) -> None:
    """One Iceberg commit: delete what the filter matches (all rows by default), append `rows`."""
    from pyiceberg.expressions import AlwaysTrue

    def overwrite() -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Delete operation did not match any records")
            table.overwrite(rows, overwrite_filter=overwrite_filter or AlwaysTrue())

    _write(table, overwrite)


def _write(table: Table, write: Callable[[], None]) -> None:
    """Run one table write; a storage fault (S3 refusing or not answering) becomes ServiceUnavailableError."""
    try:
        write()
    except OSError as e:
        location = table.location()
        storage = "the warehouse"
        if location.startswith(("s3://", "s3a://")):
            endpoint = table.io.properties.get("s3.endpoint")
            storage = f"S3 at {safe_url(endpoint)}" if endpoint else "S3"
        raise ServiceUnavailableError(f"{storage} did not take the write to {location}: {e}") from e


def key_filter(rows: pa.Table, keys: tuple[str, ...]) -> BooleanExpression:
    """Rows whose natural key appears in `rows` (null keys never match)."""
    from pyiceberg.expressions import AlwaysFalse, And, EqualTo, In, Or

    if len(keys) == 1:
        values = {v for v in rows.column(keys[0]).to_pylist() if v is not None}
        return In(keys[0], values) if values else AlwaysFalse()
    combos = {tuple(row[k] for k in keys) for row in rows.select(list(keys)).to_pylist()}
    terms = [
        functools.reduce(And, [EqualTo(k, v) for k, v in zip(keys, combo, strict=True)])
        for combo in sorted(combos, key=str)
        if None not in combo
    ]
    return functools.reduce(Or, terms) if terms else AlwaysFalse()


def upsert(tables: Catalog, name: str, rows: pa.Table, keys: tuple[str, ...]) -> None:
    """Replace rows with the same natural key and append the rest, as one Iceberg commit (none for no rows)."""
    table = _ensure_table(tables, name, rows.schema)
    if rows.num_rows:
        _overwrite(table, rows, key_filter(rows, keys))


def append_rows(tables: Catalog, name: str, rows: pa.Table) -> None:
    """Append `rows` as one Iceberg append (a fast append: no file is rewritten), creating the table if needed."""
    table = _ensure_table(tables, name, rows.schema)
    if rows.num_rows:
        _write(table, lambda: table.append(rows))


def replace_table(tables: Catalog, name: str, rows: pa.Table) -> None:
    """Make table `name` hold exactly `rows`, evolving its schema to theirs.

    Added columns are added, dropped ones dropped, and types widen where Iceberg allows it (int -> long,
    float -> double); a column whose type changes otherwise is dropped and added again under a new field
    id, so the schema gate sees the change for what it is.
    """
    from pyiceberg.exceptions import ValidationError

    table = _ensure_table(tables, name, rows.schema)
    wanted = tables._convert_schema_if_needed(rows.schema)  # pyiceberg's own Arrow -> Iceberg
    current = {field.name: field.field_type for field in table.schema().fields}
    gone = set(current) - set(rows.schema.names)
    retyped = {f.name for f in wanted.fields if f.name in current and f.field_type != current[f.name]}
    if not (gone or retyped or set(rows.schema.names) - set(current)):
        _overwrite(table, rows)
        return
    try:
        with table.update_schema(allow_incompatible_changes=True) as update:
            update.union_by_name(rows.schema)
            for column in sorted(gone):
                update.delete_column(column)
    except ValidationError:  # a type Iceberg cannot widen to: replace those columns
        with table.update_schema(allow_incompatible_changes=True) as update:
            for column in sorted(gone | retyped):
                update.delete_column(column)
        table = tables.load_table(name)
        with table.update_schema(allow_incompatible_changes=True) as update:
            update.union_by_name(rows.schema)
    _overwrite(tables.load_table(name), rows)
