"""Rejects: the share of each table's records the branch's last ingest could not read.

Ingest records, on the branch, how many rows it wrote to each table and how many records its sources
rejected (`cascade_ci.branch_state.IngestRecord`; the records are in `<table>__rejects`). One `share`
check per table of that ingest: it passes with no reject, warns while the share is within the table's
limit (`Settings.rejects_limit`: the table's `rejects_max_share`, else its sources', else the global
`rejects_max_share`, default 0), and blocks past it. A branch no ingest recorded anything on has no check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cascade_ci.rejects import rejects_of
from cascade_ci.verdict import Check, GateResult, Level

if TYPE_CHECKING:
    from cascade_ci.gates.base import GateContext

GATE = "rejects"
name = GATE
CHECK = "share"


def _pct(share: float) -> str:
    return f"{100 * share:.4g} %"


def judge(table: str, rows: int, rejected: int, limit: float) -> Check:
    """The `share` check of one table: `rows` written, `rejected` records, `limit` the share it may reject."""
    total = rows + rejected
    share = rejected / total if total else 0.0
    said = f"{rejected:,d} of {total:,d} records rejected ({_pct(share)})"
    if not rejected:
        return Check(GATE, table, CHECK, Level.ERROR, True, said, observed=0.0, expected=f"<= {limit:g}")
    over = share > limit
    where = f"see {rejects_of(table)}"
    message = (
        f"{said}, over the limit of {_pct(limit)}: {where}; fix the source or its data, or raise rejects_max_share"
        if over
        else f"{said}, within the limit of {_pct(limit)}: {where}"
    )
    level = Level.ERROR if over else Level.WARN
    return Check(GATE, table, CHECK, level, False, message, observed=round(share, 6), expected=f"<= {limit:g}")


def run(ctx: GateContext) -> GateResult:
    """One `share` check per table the branch's last ingest wrote or rejected records of."""
    record = ctx.state.ingest
    if record is None:
        return GateResult(gate=GATE)
    checks = [
        judge(table, record.rows.get(table, 0), record.rejected.get(table, 0),
              ctx.settings.rejects_limit(table, record.sources.get(table, [])))
        for table in sorted({*record.rows, *record.rejected})
    ]  # fmt: skip
    return GateResult(gate=GATE, checks=tuple(checks))
