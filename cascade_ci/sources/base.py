"""The Source contract: read one window of data for some tables, checked before anything is written.

A source returns a mapping from table name to its rows. A name without a dot lands in the source's
namespace (`raw` by default); `namespace.table` names the table in full. Rows may be a `pyarrow.Table`,
a `pyarrow.RecordBatchReader`, an iterable of record batches, or an iterable of dicts.

A reader, or an iterator (a generator) of record batches, is a stream: it is read while it is written,
so it is never held whole in memory. Its batches share the first batch's columns (a batch may lack a
column: it is null there) and are cast to its types. Lists of batches, tables and dicts are read at once.

A record that cannot be ingested is reported with `ctx.reject(table, record, reason)`, not raised: it
lands in `<table>__rejects` (see `cascade_ci.rejects`) and the rest of the data goes on. A source raises
SourceError only for what makes the whole read useless (an unreadable file, a refused request).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cascade_ci.rejects import Reject, record_text

if TYPE_CHECKING:
    import pyarrow as pa

    from cascade_ci.config import Settings, SourceConfig

Rows = Any  # pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch] | Iterable[dict]
_END = object()  # what an empty iterator yields first


@dataclass(frozen=True)
class SourceContext:
    """What a source is told: its name and options, the window to read, and where the project lives."""

    name: str
    since: datetime
    until: datetime
    run_id: str
    root: Path
    options: Mapping[str, Any] = field(default_factory=dict)
    rejected: list[Reject] = field(default_factory=list, compare=False, repr=False)

    def reject(self, table: str, record: Any, reason: str) -> None:
        """Report one record of `table` that cannot be ingested, and why (say what is wrong and how to fix it).

        `record` is kept as text: a string as given (the raw text read), anything else as JSON. It may be
        called while a stream is read. The rejects land in `<table>__rejects`; their share of the table's
        records is judged by the `rejects` gate.
        """
        self.rejected.append(Reject(str(table), record_text(record), str(reason)))


@runtime_checkable
class Source(Protocol):
    """Reads one window of rows. Built from its config section: `Kind(config, settings)`."""

    def read(self, ctx: SourceContext) -> Mapping[str, Rows]:
        """Rows per table; `ctx.reject` a record that cannot be ingested; raise SourceError when nothing can be."""
        ...


def to_arrow(rows: Rows) -> pa.Table:
    """Any of the row shapes a source may return, as one Arrow table (a stream is read whole)."""
    import pyarrow as pa

    rows = to_rows(rows)
    return rows.read_all() if isinstance(rows, pa.RecordBatchReader) else rows


def to_rows(rows: Rows) -> pa.Table | pa.RecordBatchReader:
    """Any of the row shapes a source may return: a stream stays a reader (its first batch read), the rest a table.

    Raises TypeError or ValueError for rows that are not tabular, and, while a stream is read, for a
    batch that does not fit the first one.
    """
    import pyarrow as pa

    if isinstance(rows, pa.Table | pa.RecordBatchReader):
        return rows
    if isinstance(rows, pa.RecordBatch):
        return pa.Table.from_batches([rows])
    if isinstance(rows, Iterator):
        first = next(rows, _END)
        if isinstance(first, pa.RecordBatch):
            return pa.RecordBatchReader.from_batches(first.schema, conformed(first.schema, chain([first], rows)))
        rows = [] if first is _END else chain([first], rows)
    items = list(rows) if isinstance(rows, Iterable) and not isinstance(rows, str | bytes | Mapping) else [rows]
    if items and all(isinstance(item, pa.RecordBatch) for item in items):
        return pa.Table.from_batches(items)
    odd = next((item for item in items if not isinstance(item, Mapping)), None)
    if odd is not None:
        raise TypeError(f"rows must be dicts, record batches or an Arrow table, not {type(odd).__name__}")
    return pa.Table.from_pylist(items)


def concat_rows(
    first: pa.Table | pa.RecordBatchReader, second: pa.Table | pa.RecordBatchReader
) -> pa.Table | pa.RecordBatchReader:
    """Two sources' rows for one table, one after the other (a column only one has is null in the other's rows).

    Two tables make a table; otherwise a stream, read as it is written.
    """
    import pyarrow as pa

    if isinstance(first, pa.Table) and isinstance(second, pa.Table):
        return pa.concat_tables([first, second], promote_options="permissive")
    schema = pa.unify_schemas([first.schema, second.schema], promote_options="permissive")
    parts = (part.to_batches() if isinstance(part, pa.Table) else part for part in (first, second))
    return pa.RecordBatchReader.from_batches(schema, conformed(schema, chain.from_iterable(parts)))


def conformed(schema: pa.Schema, batches: Iterable[Any]) -> Iterator[pa.RecordBatch]:
    """`batches` with `schema`'s columns, in its order and types (a column a batch lacks is null)."""
    import pyarrow as pa

    for number, batch in enumerate(batches, 1):
        if not isinstance(batch, pa.RecordBatch):
            raise TypeError(f"item {number} of a stream of record batches is a {type(batch).__name__}")
        if batch.schema != schema:
            extra = set(batch.schema.names) - set(schema.names)
            if extra:
                raise ValueError(f"record batch {number} has columns the first did not: {sorted(extra)}")
            columns = [
                batch.column(field.name).cast(field.type)
                if field.name in batch.schema.names
                else pa.nulls(batch.num_rows, field.type)
                for field in schema
            ]
            batch = pa.RecordBatch.from_arrays(columns, schema=schema)
        yield batch


def build_source(name: str, config: SourceConfig, settings: Settings) -> Source:
    """The source a config section declares, through the `cascade_ci.sources` entry points."""
    from cascade_ci.plugins import resolve

    kind = resolve("cascade_ci.sources", config.kind, settings.root)
    return kind(config, settings)
