"""Reading the example's rejects tables: rows with a record are rejected records; the row without is a read's tally."""

from __future__ import annotations

from typing import Any


def rejected_rows(rows: Any) -> list[dict[str, Any]]:
    """The rejected records of a rejects table (an Arrow table or its rows), without the tally rows."""
    listed = rows if isinstance(rows, list) else rows.to_pylist()
    return [row for row in listed if row["record"] is not None]


def tallies(rows: Any) -> list[str]:
    """The tally rows' reasons (`tally: ...`), one per read."""
    listed = rows if isinstance(rows, list) else rows.to_pylist()
    return [row["reason"] for row in listed if row["record"] is None]
