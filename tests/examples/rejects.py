"""Reading the example's rejected records: of a source's batch (`RawBatch.rejected`), or of a rejects table
cascade-ci landed on a branch (`<table>__rejects`)."""

from __future__ import annotations

from typing import Any


def rejected_rows(rows: Any, table: str | None = None) -> list[dict[str, Any]]:
    """The rejected records (dicts with `record` and `reason`) of a batch's `table`, or of a rejects table
    (an Arrow table or its rows)."""
    if table is not None:
        return [{"record": record, "reason": reason} for record, reason in rows.rejected.get(table, [])]
    return rows if isinstance(rows, list) else rows.to_pylist()


def tallies(batch: Any, table: str) -> list[str]:
    """What a batch's read of `table` was, and what became of its records."""
    return [batch.tallies[table]]
