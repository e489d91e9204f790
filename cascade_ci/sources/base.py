"""The Source contract: read one window of data for some tables, checked before anything is written.

A source returns a mapping from table name to its rows. A name without a dot lands in the source's
namespace (`raw` by default); `namespace.table` names the table in full. Rows may be a `pyarrow.Table`,
a `pyarrow.RecordBatchReader`, an iterable of record batches, or an iterable of dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

    from cascade_ci.config import Settings, SourceConfig

Rows = Any  # pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch] | Iterable[dict]


@dataclass(frozen=True)
class SourceContext:
    """What a source is told: its name and options, the window to read, and where the project lives."""

    name: str
    since: datetime
    until: datetime
    run_id: str
    root: Path
    options: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Source(Protocol):
    """Reads one window of rows. Built from its config section: `Kind(config, settings)`."""

    def read(self, ctx: SourceContext) -> Mapping[str, Rows]:
        """Rows per table; raise SourceError naming the record when the data cannot be ingested."""
        ...


def to_arrow(rows: Rows) -> pa.Table:
    """Any of the row shapes a source may return, as one Arrow table."""
    import pyarrow as pa

    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, pa.RecordBatchReader):
        return rows.read_all()
    if isinstance(rows, pa.RecordBatch):
        return pa.Table.from_batches([rows])
    items = list(rows) if isinstance(rows, Iterable) and not isinstance(rows, str | bytes | Mapping) else [rows]
    if items and all(isinstance(item, pa.RecordBatch) for item in items):
        return pa.Table.from_batches(items)
    odd = next((item for item in items if not isinstance(item, Mapping)), None)
    if odd is not None:
        raise TypeError(f"rows must be dicts, record batches or an Arrow table, not {type(odd).__name__}")
    return pa.Table.from_pylist(items)


def build_source(name: str, config: SourceConfig, settings: Settings) -> Source:
    """The source a config section declares, through the `cascade_ci.sources` entry points."""
    from cascade_ci.plugins import resolve

    kind = resolve("cascade_ci.sources", config.kind, settings.root)
    return kind(config, settings)
