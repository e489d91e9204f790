"""Verdict -> Markdown for `$GITHUB_STEP_SUMMARY`: verdict first, then one table per gate, then the changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cascade_ci.gates.result import Status

if TYPE_CHECKING:
    from cascade_ci.gates.result import Check, GateResult, TableDelta, Verdict

_ICON = {Status.PASS: "✅", Status.FAIL: "❌", Status.ERROR: "⚠️", Status.SKIPPED: "⏭️"}


def _cell(value: object) -> str:
    """Table-safe text: no pipes or newlines, bounded length."""
    text = str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


def _result(check: Check) -> str:
    if check.passed:
        return "pass"
    return "**fail**" if check.blocks else "warn"


def _gate_table(gate: GateResult) -> list[str]:
    lines = [f"### {_ICON[gate.status]} {gate.gate}: {gate.status} ({gate.duration_s:.2f} s)", ""]
    if gate.error is not None:
        lines += [f"The gate could not run: `{_cell(gate.error)}`", ""]
    for retry in gate.retries:
        lines += [f"- retried: {_cell(retry)}"]
    if gate.checks:
        ordered = sorted(gate.checks, key=lambda c: (c.passed, not c.blocks, c.table, c.name))
        lines += ["| result | table | check | severity | detail |", "|---|---|---|---|---|"]
        lines += [
            f"| {_result(c)} | `{_cell(c.table)}` | {_cell(c.name)} | {c.severity} | {_cell(c.message)} |"
            for c in ordered
        ]
    elif gate.error is None:
        lines += ["No checks: nothing this gate covers changed."]
    return [*lines, ""]


def _rows(delta: TableDelta) -> str:
    if delta.rows_before is None and delta.rows_after is None:
        return ""
    before, after = delta.rows_before or 0, delta.rows_after or 0
    return f"{after - before:+,d} ({before:,d} -> {after:,d})"


def _changes(changes: tuple[TableDelta, ...]) -> list[str]:
    lines = ["### What this branch changes", ""]
    if not changes:
        return [*lines, "No table differs from the base.", ""]
    lines += ["| table | change | rows | schema |", "|---|---|---|---|"]
    lines += [
        f"| `{_cell(d.table)}` | {d.change} | {_rows(d)} | {_cell('; '.join(d.schema_changes))} |" for d in changes
    ]
    return [*lines, ""]


def render(verdict: Verdict) -> str:
    """The job summary. The first line says whether the data version may be promoted."""
    head = (
        "passed: this data version may be promoted"
        if not verdict.blocked
        else "blocked: this data version will not be promoted"
    )
    icon = "✅" if not verdict.blocked else "❌"
    lines = [
        f"## {icon} cascade verdict: {head}",
        "",
        f"**{verdict.errors}** blocking, **{verdict.warnings}** warnings, {len(verdict.checks)} checks in "
        f"{len(verdict.gates)} gates ({verdict.duration_s:.2f} s).",
        "",
        f"- run `{verdict.run_id}` attempt {verdict.attempt}"
        + (f" ([workflow run]({verdict.run_url}))" if verdict.run_url else ""),
        f"- branch `{verdict.branch}` at `{verdict.validated_hash[:12]}`, base `{verdict.base_ref}` at "
        f"`{verdict.base_hash[:12]}`",
        "",
    ]
    if not verdict.gates:
        lines += ["No gate ran: a verdict without gates blocks.", ""]
    ordered = sorted(
        verdict.gates, key=lambda g: [Status.ERROR, Status.FAIL, Status.PASS, Status.SKIPPED].index(g.status)
    )
    for gate in ordered:
        lines += _gate_table(gate)
    lines += _changes(verdict.changes)
    return "\n".join(lines)
