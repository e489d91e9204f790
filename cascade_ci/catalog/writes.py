"""Table writes shared by stages and engines: replace a table's rows, append to them, or upsert them on a key.

An upsert replaces the table's rows whose natural key is among the incoming rows' keys and appends the
incoming rows. It costs what it must: the key columns of the data files whose key bounds overlap the
incoming keys are read to find the files that hold one (`catalog.keys`); only those files are
rewritten (copy-on-write, without the replaced rows), in the same Iceberg commit as the append of the
incoming rows. When no key is there yet, the commit is a plain fast append.

Keys, as today's `In` filter matched them: a row with a null in its key is always appended and never
replaces a row. A key repeated within one input is appended as many times as it comes (the input is not
deduplicated); it replaces the table's older rows with that key.

Rows may be a `pyarrow.Table` (written at once, one commit) or a stream: a `pyarrow.RecordBatchReader`
or any iterable of record batches. A stream is written in chunks of about `CHUNK_BYTES` of Arrow memory,
one commit each, so memory stays flat however long it is. It is still one upsert: a chunk replaces
only rows the table held before the stream began (and rewrites of them), never rows an earlier chunk
of the same stream appended, so the result does not depend on where chunks begin. A stream that fails
midway leaves its earlier chunks committed: the caller stages on a branch it can drop (the ingest stage
writes on a scratch branch and publishes it only whole).
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import TYPE_CHECKING

from cascade_ci.catalog.keys import Keys, files_holding
from cascade_ci.catalog.lineage import added_files
from cascade_ci.errors import ServiceUnavailableError, safe_url

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table, Transaction

    Rows = pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch]

CHUNK_BYTES = 128 * 1024 * 1024  # Arrow memory per commit of a stream


def _ensure_table(tables: Catalog, name: str, schema: pa.Schema) -> Table:
    namespace = name.split(".")[0]
    if not tables.namespace_exists(namespace):
        tables.create_namespace(namespace)
    if not tables.table_exists(name):
        return tables.create_table(name, schema)
    return tables.load_table(name)


def _with_new_columns(tables: Catalog, table: Table, schema: pa.Schema) -> Table:
    """`table`, with the columns of `schema` it lacks added as optional columns (a source grew a field).

    Only additions: a column whose type changed is left to the write, which refuses it.
    """
    current = {field.name for field in table.schema().fields}
    added = [field for field in schema if field.name not in current]
    if not added:
        return table
    import pyarrow as pa

    with table.update_schema() as update:
        update.union_by_name(pa.schema(added))
    return tables.load_table(table.name())


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


def upsert(tables: Catalog, name: str, rows: Rows, keys: tuple[str, ...], chunk_bytes: int | None = None) -> int:
    """Replace the table's rows whose natural key is among `rows`' and append `rows`; the number of rows written.

    One Iceberg commit per table or chunk: an append snapshot of the rows and, when some of their keys
    were there, an overwrite snapshot replacing the files that held them by copies without those rows.
    The files are looked up and copied in another thread while the rows are written.
    """
    import pyarrow as pa

    streamed = not isinstance(rows, pa.Table)
    appended: set[str] = set()  # data files of rows this call appended: it replaces only what was there before

    def upsert_chunk(table: Table, chunk: pa.Table) -> None:
        from concurrent.futures import ThreadPoolExecutor

        incoming = Keys(chunk.select(list(keys)))
        start = table.current_snapshot()
        rewritten: set[str] = set()
        with ThreadPoolExecutor(1) as background, table.transaction() as tx:
            copies = background.submit(_copies_without, _private_copy(table), incoming, appended) if start else None
            tx.append(chunk)
            replaced = copies.result() if copies else []
            if replaced:
                rewritten = _stage_rewrite(tx, replaced, incoming.range_filter())
        if streamed:
            appended.update(added_files(table, start) - rewritten)

    return _write_rows(tables, name, rows, chunk_bytes, upsert_chunk)


def _private_copy(table: Table) -> Table:
    """The table with its own copy of the metadata, to read in another thread while a transaction stages.

    pyiceberg's metadata objects fill caches lazily and are deep-copied by every transaction step: two
    threads must not share them.
    """
    from pyiceberg.table import Table

    metadata = table.metadata.model_copy(deep=True)
    return Table(table.name(), metadata, table.metadata_location, table.io, table.catalog, table.config)


def append_rows(tables: Catalog, name: str, rows: Rows, chunk_bytes: int | None = None) -> int:
    """Append `rows` (fast appends: no file is rewritten), creating the table if needed; the number of rows."""
    return _write_rows(tables, name, rows, chunk_bytes, lambda table, chunk: table.append(chunk))


def _write_rows(
    tables: Catalog, name: str, rows: Rows, chunk_bytes: int | None, write: Callable[[Table, pa.Table], None]
) -> int:
    """Create the table if needed and `write` `rows`: a table at once, a stream chunk by chunk (none empty).

    A chunk is about `chunk_bytes` (default CHUNK_BYTES) of the stream's Arrow batches.
    """
    import pyarrow as pa

    if not isinstance(rows, pa.Table | pa.RecordBatchReader):
        batches = iter(rows)
        first = next(batches, None)
        if first is None:
            return 0  # no batch, so no schema to create a table with
        rows = pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], batches))
    table = _with_new_columns(tables, _ensure_table(tables, name, rows.schema), rows.schema)
    total = 0
    for chunk in [rows] if isinstance(rows, pa.Table) else _chunks(rows, chunk_bytes or CHUNK_BYTES):
        if chunk.num_rows:
            _write(table, functools.partial(write, table, chunk))
            total += chunk.num_rows
        del chunk  # not held while the next chunk is read
    return total


def _chunks(reader: pa.RecordBatchReader, chunk_bytes: int) -> Iterator[pa.Table]:
    """The reader's batches gathered into tables of about `chunk_bytes` of Arrow memory."""
    import pyarrow as pa

    batches: list[pa.RecordBatch] = []
    size = 0
    for batch in reader:
        batches.append(batch)
        size += batch.nbytes
        if size >= chunk_bytes:
            yield pa.Table.from_batches(batches, reader.schema)
            batches, size = [], 0
    if batches:
        yield pa.Table.from_batches(batches, reader.schema)


def _copies_without(table: Table, keys: Keys, skip: Collection[str]) -> list[tuple[DataFile, list[DataFile]]]:
    """Each data file holding one of `keys` (but those in `skip`), and its copy without those rows (copy-on-write).

    The key columns the lookup read are not read again. The copies are written, not committed:
    `_stage_rewrite` puts them in the transaction.
    """
    import uuid

    import pyarrow as pa
    import pyarrow.compute as pc
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files

    schema = table.metadata.schema()
    names = [field.name for field in schema.fields]
    others = [name for name in names if name not in keys.names]
    reader = ArrowScan(table.metadata, table.io, schema.select(*others), AlwaysTrue()) if others else None
    write_uuid, counter = uuid.uuid4(), itertools.count()
    replaced = []
    for hit in files_holding(table, keys, skip):
        rest = reader.to_table([hit.task]) if reader else pa.table({})
        if others and rest.num_rows != len(hit.rows):
            raise RuntimeError(f"{hit.task.file.file_path} changed while it was rewritten")
        read = {name: (hit.keys if name in keys.names else rest).column(name) for name in names}
        kept = pa.table(read).filter(pc.invert(hit.rows))
        copies = _dataframe_to_data_files(table.metadata, kept, table.io, write_uuid, counter) if kept.num_rows else []
        replaced.append((hit.task.file, list(copies)))
    return replaced


def _stage_rewrite(
    tx: Transaction, replaced: list[tuple[DataFile, list[DataFile]]], affected: BooleanExpression
) -> set[str]:
    """Stage one overwrite snapshot that replaces each file by its copies; the copies' paths.

    `affected` bounds the rows replaced (pyiceberg prunes manifests and checks concurrent commits with it).
    """
    with tx.update_snapshot().overwrite() as rewrite:
        rewrite.delete_by_predicate(affected)
        for old, copies in replaced:
            rewrite.delete_data_file(old)
            for copy in copies:
                rewrite.append_data_file(copy)
    return {copy.file_path for _, copies in replaced for copy in copies}


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
