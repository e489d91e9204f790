"""Custom SQL checks (`[[checks]]` in the config): the first value of the first row must equal `expect`.

Each check runs on the engine against the head being judged. Numbers compare as numbers (`0`, `0.0` and
`Decimal("0")` are equal), anything else compares as text; a query that returns no row yields NULL. SQL
the engine refuses (a ConfigError: it does not parse, names a missing table, is not a SELECT) is a failing
check at `error`, whatever its severity: a check that cannot run proves nothing and must block. An
infrastructure fault propagates, so that `run_gate` retries the gate.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cascade_ci.errors import ConfigError
from cascade_ci.verdict import Check, GateResult, Level

if TYPE_CHECKING:
    from cascade_ci.config import CheckConfig, Settings
    from cascade_ci.engine.base import Engine
    from cascade_ci.gates.base import GateContext

GATE = "sql"
name = GATE
TABLE = "sql"
_HEADER = re.compile(r"^\s*\[")
CHECKS = r"^\[\[\s*(tool\.cascade\.)?checks\s*\]\]"  # the header of a `[[checks]]` entry


def relative(settings: Settings, path: Path | str) -> str:
    """`path` relative to the project root, in `/` form: annotations point into the user's repository."""
    return Path(os.path.relpath(Path(path).resolve(), Path(settings.root).resolve())).as_posix()


def located(settings: Settings, pattern: str, within: str | None = None) -> tuple[str | None, int | None]:
    """The config file (relative to the project root) and its first line matching `pattern`, in a section whose
    header matches `within` if given; (None, None) without a config file."""
    if settings.config_file is None:
        return None, None
    try:
        lines = Path(settings.config_file).read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    wanted, section, found = re.compile(pattern), "", None
    for number, text in enumerate(lines, start=1):
        section = text.strip() if _HEADER.match(text) else section
        if wanted.search(text) and (within is None or re.search(within, section)):
            found = number
            break
    return relative(settings, settings.config_file), found


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


def judge(check: CheckConfig, engine: Engine, ref: str, at: tuple[str | None, int | None] = (None, None)) -> Check:
    """Run one configured check at `ref`; `at` is where it is written (file and line)."""
    about = f"{check.description}: " if check.description else ""
    base = {"gate": GATE, "table": check.table or TABLE, "name": check.name, "file": at[0], "line": at[1]}
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
    """One check per `[[checks]]` entry, located at its `name` in the config file; the engine is opened only if
    there is one."""
    checks = ctx.settings.checks
    if not checks:
        return GateResult(gate=GATE)
    engine = ctx.engine()
    judged = []
    for check in checks:
        at = located(ctx.settings, rf"^\s*name\s*=\s*[\"']{re.escape(check.name)}[\"']", CHECKS)
        judged.append(judge(check, engine, ctx.head_hash, at))
    return GateResult(gate=GATE, checks=tuple(judged))
