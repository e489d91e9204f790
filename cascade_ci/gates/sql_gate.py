"""Custom SQL checks (`[[checks]]` in the config): the first value of the first row must equal `expect`.

Each check runs on the engine against the head being judged. Numbers compare as numbers (`0`, `0.0` and
`Decimal("0")` are equal), anything else compares as text; a query that returns no row yields NULL. SQL
the engine refuses (a ConfigError: it does not parse, names a missing table, is not a SELECT) is a failing
check at `error`, whatever its severity: a check that cannot run proves nothing and must block. An
infrastructure fault propagates, so that `run_gate` retries the gate.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from cascade_ci.errors import ConfigError
from cascade_ci.verdict import Check, GateResult, Level

if TYPE_CHECKING:
    from cascade_ci.config import CheckConfig
    from cascade_ci.engine.base import Engine
    from cascade_ci.gates.base import GateContext

GATE = "sql"
name = GATE
TABLE = "sql"


def _number(value: Any) -> Decimal | None:
    """`value` as an exact number (bools are 0 and 1, text that spells a number counts), else None."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool | int):
        return Decimal(int(value))
    try:
        return Decimal(str(value).strip()) if isinstance(value, float | str) else None
    except InvalidOperation:
        return None


def matches(observed: Any, expected: int | float | bool | str) -> bool:
    """True if the query's value equals `expect`: numerically when `expect` is a number, else as text."""
    if observed is None:
        return False
    if isinstance(expected, str):
        return str(observed) == expected
    want, got = _number(expected), _number(observed)
    return want is not None and got is not None and want == got


def _first(rows: list[tuple[Any, ...]]) -> Any:
    return rows[0][0] if rows and rows[0] else None


def judge(check: CheckConfig, engine: Engine, ref: str) -> Check:
    """Run one configured check at `ref`."""
    about = f"{check.description}: " if check.description else ""
    base = {"gate": GATE, "table": check.table or TABLE, "name": check.name}
    try:
        observed = _first(engine.query(ref, check.sql))
    except ConfigError as e:
        message = f"{about}the check's SQL cannot run: {e}"
        return Check(**base, severity=Level.ERROR, passed=False, message=message, expected=check.expect)
    passed = matches(observed, check.expect)
    message = f"{about}returned {observed!r}" + ("" if passed else f", expected {check.expect!r}")
    return Check(
        **base,
        severity=Level(check.severity),
        passed=passed,
        message=message,
        observed=None if passed else observed,
        expected=None if passed else check.expect,
    )


def run(ctx: GateContext) -> GateResult:
    """One check per `[[checks]]` entry; the engine is opened only if there is one."""
    checks = ctx.settings.checks
    if not checks:
        return GateResult(gate=GATE)
    engine = ctx.engine()
    return GateResult(gate=GATE, checks=tuple(judge(check, engine, ctx.head_hash) for check in checks))
