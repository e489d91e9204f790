"""Records a source could not ingest: each lands, with the reason, in its table's rejects table.

A source reports a bad record with `ctx.reject(table, record, reason)` (see `cascade_ci.sources.base`)
and goes on with the rest. Ingest writes the rejects of `namespace.table` to `namespace.table__rejects`
(`REJECTS_SCHEMA`: the source's name, the record as JSON text, the reason, when and by which run),
upserted on (source, record) so that re-reading the same window does not count a record twice, and
counts them in the branch's ingest record, where the `rejects` gate judges their share.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

SUFFIX = "__rejects"
KEY = ("source", "record")


@dataclass(frozen=True)
class Reject:
    """One record a source could not ingest: the table it was meant for, its text, and why."""

    table: str
    record: str
    reason: str


def rejects_of(table: str) -> str:
    """The rejects table of `table` (`raw.orders` -> `raw.orders__rejects`)."""
    return f"{table}{SUFFIX}"


def is_rejects(table: str) -> bool:
    return table.endswith(SUFFIX)


def record_text(record: Any) -> str:
    """A record as text: a string as it is (the raw text a source read), anything else as JSON."""
    if isinstance(record, bytes):
        return record.decode("utf-8", errors="replace")
    if isinstance(record, str):
        return record
    return json.dumps(record, sort_keys=True, default=str, ensure_ascii=False)


def schema() -> pa.Schema:
    """The columns of every rejects table."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("source", pa.string()),
            pa.field("record", pa.string()),
            pa.field("reason", pa.string()),
            pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
            pa.field("run_id", pa.string()),
        ]
    )


def rejects_table(rows: Iterable[tuple[str, Reject]], ingested_at: datetime, run_id: str) -> pa.Table:
    """(source name, reject) pairs as one rejects table, each (source, record) once (its last reason kept)."""
    import pyarrow as pa

    unique = {(source, reject.record): reject.reason for source, reject in rows}
    count = len(unique)
    return pa.table(
        {
            "source": pa.array([source for source, _ in unique], pa.string()),
            "record": pa.array([record for _, record in unique], pa.string()),
            "reason": pa.array(list(unique.values()), pa.string()),
            "ingested_at": pa.array([ingested_at] * count, pa.timestamp("us", tz="UTC")),
            "run_id": pa.array([run_id] * count, pa.string()),
        },
        schema=schema(),
    )
