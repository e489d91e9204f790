"""Verdict -> Markdown for `$GITHUB_STEP_SUMMARY` and the pull-request comment.

The verdict first, then one section per gate (broken gates first), then the changes, then the stages. The
summary fits GitHub's 65,536-character comment limit by structure, never by a raw cut: each table shows at
most a few rows and says how many more there are, with fewer rows per table until the whole fits, so every
section is always there. `full=True` renders every row, for `summary-full.md` in the reports artifact.

Every data value (table, check, message, branch, error, ...) is written as an inline code span, with a
fence longer than any backtick run in it: GitHub renders no HTML, link, mention, emoji or issue reference
inside code, and a `|` is escaped in table cells.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cascade_ci.verdict import Status

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cascade_ci.verdict import Check, GateResult, TableDelta, Verdict

BUDGET = 60_000  # characters: under GitHub's 65,536-character comment limit with room for its marker line
CELL = 300  # characters of one value at most
FULL_REPORT = "summary-full.md"


@dataclass(frozen=True)
class Caps:
    """How many rows each table shows: failing and passing checks per gate, changed tables, retries."""

    checks: int | None
    changes: int | None
    retries: int | None


ALL = Caps(None, None, None)
# Tried in turn until the summary fits the budget; the last shows no row at all.
LEVELS = (Caps(25, 50, 5), Caps(10, 20, 3), Caps(3, 5, 1), Caps(0, 0, 0))

_ICON = {Status.PASS: "✅", Status.FAIL: "❌", Status.ERROR: "⚠️", Status.SKIPPED: "⏭️"}
_SPACE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_BACKTICKS = re.compile(r"`+")
_URL = re.compile(r"https://[A-Za-z0-9._~:/%-]+")


def code(value: object, *, cell: bool = False) -> str:
    """`value` as one inline code span on one line, at most CELL characters; `cell=True` escapes `|` for a table."""
    text = _SPACE.sub(" ", str(value if value is not None else "")).strip()
    if not text:
        return ""
    if len(text) > CELL:
        text = text[: CELL - 1] + "…"
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" else ""
    if cell:
        text = text.replace("|", "\\|")
    return f"{fence}{pad}{text}{pad}{fence}"


def _more(count: int, what: str) -> str:
    return f"_… and {count:,d} more {what}: see `{FULL_REPORT}` in the reports artifact._"


def _result(check: Check) -> str:
    if check.passed:
        return "pass"
    return "**fail**" if check.blocks else "warn"


def _check_rows(checks: Sequence[Check], cap: int | None) -> list[str]:
    shown = checks if cap is None else checks[:cap]
    rows = [
        f"| {_result(c)} | {code(c.table, cell=True)} | {code(c.name, cell=True)} | {c.severity} | "
        f"{code(c.message, cell=True)} |"
        for c in shown
    ]
    return ["| result | table | check | severity | detail |", "|---|---|---|---|---|", *rows]


def _capped(lines: list[str], total: int, cap: int | None, what: str) -> list[str]:
    """`lines` (a table of at most `cap` of `total` rows), then a line for the rows left out."""
    left = total - (total if cap is None else min(cap, total))
    return [*lines, "", *([_more(left, what), ""] if left else [])]


def _gate_section(gate: GateResult, caps: Caps) -> list[str]:
    """Failing checks in a table (errors first), passing ones folded away; at most `caps.checks` rows each."""
    lines = [f"### {_ICON[gate.status]} {code(gate.gate)}: {gate.status} ({gate.duration_s:.2f} s)", ""]
    if gate.error is not None:
        lines += [f"The gate could not run: {code(gate.error)}", ""]
    retries = gate.retries if caps.retries is None else gate.retries[: caps.retries]
    lines += [f"- retried: {code(retry)}" for retry in retries]
    if len(retries) < len(gate.retries):
        left = len(gate.retries) - len(retries)
        lines.append(f"- … and {left:,d} more retries" if retries else f"- retries: {left:,d}")
    if gate.retries:
        lines.append("")
    failing = sorted((c for c in gate.checks if not c.passed), key=lambda c: (not c.blocks, c.table, c.name))
    passing = sorted((c for c in gate.checks if c.passed), key=lambda c: (c.table, c.name))
    if failing and caps.checks != 0:
        lines += _capped(_check_rows(failing, caps.checks), len(failing), caps.checks, "failing checks")
    elif failing:
        blocking = sum(c.blocks for c in failing)
        lines += [f"{blocking:,d} blocking and {len(failing) - blocking:,d} warning checks failed.", ""]
        lines += [_more(len(failing), "failing checks"), ""]
    if passing and caps.checks != 0:
        table = _capped(_check_rows(passing, caps.checks), len(passing), caps.checks, "passed checks")
        lines += [f"<details><summary>{len(passing):,d} checks passed</summary>", "", *table, "</details>", ""]
    elif passing:
        lines += [f"{len(passing):,d} checks passed.", ""]
    if not gate.checks and gate.error is None:
        lines += ["No checks: nothing this gate covers changed.", ""]
    return lines


def _rows(delta: TableDelta) -> str:
    if delta.rows_before is None and delta.rows_after is None:
        return ""
    before, after = delta.rows_before or 0, delta.rows_after or 0
    total = f"{before:,d} -> {after:,d}"
    if delta.rows_added is None:
        return f"{after - before:+,d} ({total})"
    return f"+{delta.rows_added:,d} / -{delta.rows_deleted or 0:,d} ({total})"


def _changes(changes: tuple[TableDelta, ...], cap: int | None) -> list[str]:
    lines = ["### What this branch changes", ""]
    if not changes:
        return [*lines, "No table differs from the base.", ""]
    if cap == 0:
        return [*lines, f"{len(changes):,d} tables differ from the base.", "", _more(len(changes), "tables"), ""]
    shown = changes if cap is None else changes[:cap]
    table = ["| table | change | rows added / deleted (before -> after) | schema |", "|---|---|---|---|"]
    table += [
        f"| {code(d.table, cell=True)} | {code(d.change, cell=True)} | {_rows(d)} | "
        f"{code('; '.join(d.schema_changes), cell=True)} |"
        for d in shown
    ]
    return [*lines, *_capped(table, len(changes), cap, "tables")]


_STAGE_STYLE = {"done": "ok", "passed": "ok", "ready": "next", "blocked": "bad", "stale": "bad", "not run": "idle"}
_LABEL = re.compile(r"[^A-Za-z0-9 _.:-]+")


def _diagram(stages: dict[str, str]) -> list[str]:
    """A Mermaid flowchart of the stages, coloured by state (labels keep only letters, digits and `_.:-`)."""
    if not stages:
        return []
    nodes = [
        f'    s{index}["{_LABEL.sub("_", f"{name}: {state}")[:80]}"]:::{_STAGE_STYLE.get(state, "idle")}'
        for index, (name, state) in enumerate(stages.items())
    ]
    edges = "    " + " --> ".join(f"s{index}" for index in range(len(stages)))
    return [
        "### Stages",
        "",
        "```mermaid",
        "flowchart LR",
        *nodes,
        edges,
        "    classDef ok fill:#d4edda,stroke:#28a745",
        "    classDef bad fill:#f8d7da,stroke:#dc3545",
        "    classDef next fill:#fff3cd,stroke:#ffc107",
        "    classDef idle fill:#e2e3e5,stroke:#6c757d",
        "```",
        "",
    ]


def _head(verdict: Verdict, full: bool) -> list[str]:
    head = (
        "passed: this data version may be promoted"
        if not verdict.blocked
        else "blocked: this data version will not be promoted"
    )
    icon = "✅" if not verdict.blocked else "❌"
    url = verdict.run_url if verdict.run_url and _URL.fullmatch(verdict.run_url) else None
    run = f"- run {code(verdict.run_id)} attempt {int(verdict.attempt)}" + (f" ([workflow run]({url}))" if url else "")
    lines = [
        f"## {icon} cascade verdict: {head}",
        "",
        f"**{verdict.errors:,d}** blocking, **{verdict.warnings:,d}** warnings, {verdict.check_count:,d} checks in "
        f"{len(verdict.gates):,d} gates ({verdict.duration_s:.2f} s).",
        "",
        run,
        f"- branch {code(verdict.branch)} at {code(verdict.validated_hash[:12])}, base {code(verdict.base_ref)} "
        f"at {code(verdict.base_hash[:12])}",
    ]
    if not full:
        lines.append(
            f"- full report: `{FULL_REPORT}`, `junit.xml` and `verdict.json` in the run's reports artifact "
            "(`reports-*`)"
        )
    lines.append("")
    if not verdict.gates:
        lines += ["No gate ran: a verdict without gates blocks.", ""]
    return lines


def _ordered(gates: tuple[GateResult, ...]) -> list[GateResult]:
    return sorted(gates, key=lambda g: [Status.ERROR, Status.FAIL, Status.PASS, Status.SKIPPED].index(g.status))


def _assemble(verdict: Verdict, caps: Caps, budget: int | None) -> str:
    """The summary at `caps`; gate sections that do not fit `budget` (hundreds of gates) become one line."""
    head = _head(verdict, full=caps == ALL)
    tail = _changes(verdict.changes, caps.changes) + _diagram(verdict.stages)
    sections = [_gate_section(gate, caps) for gate in _ordered(verdict.gates)]
    room = None if budget is None else budget - len("\n".join(head + tail)) - 200
    body: list[str] = []
    for index, section in enumerate(sections):
        if room is not None and len("\n".join(body + section)) > room:
            body += [_more(len(sections) - index, "gates"), ""]
            break
        body += section
    return "\n".join(head + body + tail)


def render(verdict: Verdict, *, full: bool = False, budget: int = BUDGET) -> str:
    """The job summary, within `budget` characters unless `full`. The first line says whether it may be promoted."""
    if full:
        return _assemble(verdict, ALL, None)
    for caps in LEVELS[:-1]:
        text = _assemble(verdict, caps, None)
        if len(text) <= budget:
            return text
    return _assemble(verdict, LEVELS[-1], budget)
