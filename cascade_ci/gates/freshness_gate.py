"""Freshness: how old is the newest event in each raw table, against its threshold.

Age is now minus the newest event timestamp in the data (not the write time); the Iceberg commit
time of the table's current snapshot is reported next to it. FRESHNESS_BLOCKS_PROMOTION decides
whether stale data is an error or a warning.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cascade_ci.pipeline.raw import EVENTS, GLUCOSE, REPO_STATS
from cascade_ci.verdict import Check, GateResult, Level

if TYPE_CHECKING:
    from cascade_ci.config import Settings
    from cascade_ci.gates import GateContext

GATE = "freshness"


def thresholds(settings: Settings) -> dict[str, tuple[str, float]]:
    """Table -> (event timestamp column, maximum age in hours)."""
    return {
        GLUCOSE: ("reading_timestamp", settings.glucose_freshness_hours),
        EVENTS: ("created_at", settings.github_events_freshness_hours),
        REPO_STATS: ("fetched_at", settings.github_stats_freshness_hours),
    }


def _hours(delta_seconds: float) -> str:
    return f"{delta_seconds / 3600:.1f} h"


def run(ctx: GateContext) -> GateResult:
    """One `fresh` check per raw table on the branch; absent tables are not judged."""
    import pyarrow.compute as pc

    head = ctx.catalog.tables(ctx.head_hash)
    now = ctx.now or datetime.now(UTC)
    level = Level.ERROR if ctx.settings.freshness_blocks_promotion else Level.WARN
    checks = []
    for table_name, (column, max_hours) in thresholds(ctx.settings).items():
        if not head.table_exists(table_name):
            continue
        table = head.load_table(table_name)
        newest = pc.max(table.scan(selected_fields=(column,)).to_arrow().column(column)).as_py()
        snapshot = table.current_snapshot()
        committed = datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC) if snapshot else None
        written = f"; last written {committed:%Y-%m-%d %H:%M} UTC" if committed else ""
        if newest is None:
            checks.append(Check(GATE, table_name, "fresh", level, False, f"no {column} values{written}"))
            continue
        age = (now - newest).total_seconds()
        fresh = age <= max_hours * 3600
        checks.append(
            Check(
                gate=GATE,
                table=table_name,
                name="fresh",
                severity=level,
                passed=fresh,
                message=f"newest {column} {newest:%Y-%m-%d %H:%M} UTC is {_hours(age)} old "
                f"(limit {max_hours:g} h){written}",
                observed=_hours(age),
                expected=f"<= {max_hours:g} h",
            )
        )
    return GateResult(gate=GATE, checks=tuple(checks))
