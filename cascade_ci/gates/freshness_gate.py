"""Freshness: how old is the newest value of a table's timestamp column, against its warn and error limits.

Limits come from the config (`[tables."ns.t".freshness]`) and from dbt's source freshness, which the
transform stage records on its commit (`cascade.dbt-freshness`); the config wins for a table both name.
Age is now minus the newest value in the data (not the write time); the Iceberg commit time of the
table's current snapshot is reported next to it. A `date` column counts as fresh until the end of its
day: its newest value is taken as the next midnight UTC, so today's date is never stale.

One `fresh` check per table present at the head (absent tables are not judged). It fails at `error` past
`error_after_hours`, else at `warn` past `warn_after_hours` (`error` if FRESHNESS_BLOCKS_PROMOTION). A
table whose age cannot be told (no values, the column missing or not temporal) fails at the highest
level its limits reach.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

from cascade_ci.verdict import Check, GateResult, Level

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from cascade_ci.gates.base import GateContext

GATE = "freshness"
name = GATE
CHECK = "fresh"


class Untellable(Exception):
    """The column's age cannot be told from the data."""


@dataclass(frozen=True)
class Limits:
    """How old the newest `column` value of a table may be, and where that was declared."""

    column: str
    warn_after_hours: float | None = None
    error_after_hours: float | None = None
    file: str | None = None

    def judge(self, age_hours: float | None, blocks: bool) -> tuple[Level, bool, float | None]:
        """(severity, passed, the limit it is held to) for an age; None is an age that cannot be told."""
        top = Level.ERROR if self.error_after_hours is not None or blocks else Level.WARN
        if age_hours is None:
            return top, False, None
        if self.error_after_hours is not None and age_hours > self.error_after_hours:
            return Level.ERROR, False, self.error_after_hours
        if self.warn_after_hours is not None and age_hours > self.warn_after_hours:
            return Level.ERROR if blocks else Level.WARN, False, self.warn_after_hours
        return top, True, self.warn_after_hours if self.warn_after_hours is not None else self.error_after_hours

    def describe(self) -> str:
        shown = [(kind, hours) for kind, hours in (("warn", self.warn_after_hours), ("error", self.error_after_hours))]
        return ", ".join(f"{kind} after {f'{hours:g} h' if hours is not None else 'none'}" for kind, hours in shown)


def limits_of(ctx: GateContext) -> dict[str, Limits]:
    """Table -> its limits: dbt's source freshness from the newest transform commit, overridden by the config."""
    from cascade_ci.branch_state import DBT_FRESHNESS, MetaKind

    found: dict[str, Limits] = {}
    commit = ctx.state.latest.get(MetaKind.TRANSFORM)
    for entry in json.loads(commit.properties.get(DBT_FRESHNESS) or "[]") if commit else []:
        if entry.get("warn_after_hours") is None and entry.get("error_after_hours") is None:
            continue  # dbt lets a source declare freshness without a limit
        found[entry["table"]] = Limits(
            entry["column"], entry.get("warn_after_hours"), entry.get("error_after_hours"), entry.get("file")
        )
    for table, config in ctx.settings.tables.items():
        if config.freshness is not None:
            fresh = config.freshness
            found[table] = Limits(fresh.column, fresh.warn_after_hours, fresh.error_after_hours)
    return found


def newest(table: Table, column: str) -> tuple[datetime | None, str]:
    """The newest value of `column` as an instant in UTC (None if it has none), and how to show it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column not in table.schema().column_names:
        raise Untellable(f"the table has no column {column}")
    values = table.scan(selected_fields=(column,)).to_arrow().column(column)
    kind = values.type
    top = pc.max(values)
    if pa.types.is_timestamp(kind):
        stamp = pc.cast(top, pa.timestamp("us", kind.tz), safe=False).as_py()  # ns has no datetime
        if stamp is None:
            return None, ""
        stamp = stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC)  # naive timestamps are UTC
        return stamp, f"{stamp:%Y-%m-%d %H:%M} UTC"
    if pa.types.is_date(kind):
        day = top.as_py()
        if day is None:
            return None, ""
        return datetime.combine(day + timedelta(days=1), time(), UTC), f"{day:%Y-%m-%d} (fresh to the end of its day)"
    raise Untellable(f"column {column} is {kind}, not a timestamp or a date")


def _hours(hours: float) -> str:
    return f"{hours:.1f} h"


def judge_table(table: Table, table_name: str, limits: Limits, now: datetime, blocks: bool) -> Check:
    """The `fresh` check of one table."""
    snapshot = table.current_snapshot()
    committed = datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC) if snapshot else None
    written = f"; last written {committed:%Y-%m-%d %H:%M} UTC" if committed else "; never written"
    try:
        stamp, shown = newest(table, limits.column)
        problem = None if stamp is not None else f"no {limits.column} values"
    except Untellable as e:
        stamp, shown, problem = None, "", str(e)
    age = max(0.0, (now - stamp).total_seconds() / 3600) if stamp is not None else None  # a future value is fresh
    severity, passed, held_to = limits.judge(age, blocks)
    if age is None:
        message = f"{problem}: its age cannot be told ({limits.describe()}){written}"
    else:
        message = f"newest {limits.column} {shown} is {_hours(age)} old ({limits.describe()}){written}"
    return Check(
        gate=GATE,
        table=table_name,
        name=CHECK,
        severity=severity,
        passed=passed,
        message=message,
        file=limits.file,
        observed=_hours(age) if age is not None else None,
        expected=f"<= {held_to:g} h" if held_to is not None else None,
    )


def run(ctx: GateContext) -> GateResult:
    """One `fresh` check per table with limits that is present at the head."""
    head = ctx.catalog.tables(ctx.head_hash)
    now = ctx.now or datetime.now(UTC)
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    blocks = ctx.settings.freshness_blocks_promotion
    checks = [
        judge_table(head.load_table(table_name), table_name, limits, now, blocks)
        for table_name, limits in sorted(limits_of(ctx).items())
        if head.table_exists(table_name)
    ]
    return GateResult(gate=GATE, checks=tuple(checks))
