"""Verdict -> Markdown for `$GITHUB_STEP_SUMMARY`: verdict first, then one table per gate, then the changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cascade_ci.verdict import Status

if TYPE_CHECKING:
    from cascade_ci.verdict import Check, GateResult, TableDelta, Verdict

_ICON = {Status.PASS: "✅", Status.FAIL: "❌", Status.ERROR: "⚠️", Status.SKIPPED: "⏭️"}


def _cell(value: object) -> str:
    """Table-safe text: no pipes or newlines, bounded length."""
    text = str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


def _result(check: Check) -> str:
    if check.passed:
        return "pass"
    return "**fail**" if check.blocks else "warn"


def _check_rows(checks: list[Check]) -> list[str]:
    return ["| result | table | check | severity | detail |", "|---|---|---|---|---|"] + [
        f"| {_result(c)} | `{_cell(c.table)}` | {_cell(c.name)} | {c.severity} | {_cell(c.message)} |" for c in checks
    ]


def _gate_table(gate: GateResult) -> list[str]:
    """Failing checks in a table (errors first), passing ones folded away."""
    lines = [f"### {_ICON[gate.status]} {gate.gate}: {gate.status} ({gate.duration_s:.2f} s)", ""]
    if gate.error is not None:
        lines += [f"The gate could not run: `{_cell(gate.error)}`", ""]
    lines += [f"- retried: {_cell(retry)}" for retry in gate.retries]
    failing = sorted((c for c in gate.checks if not c.passed), key=lambda c: (not c.blocks, c.table, c.name))
    passing = sorted((c for c in gate.checks if c.passed), key=lambda c: (c.table, c.name))
    if failing:
        lines += [*_check_rows(failing), ""]
    if passing:
        lines += [
            f"<details><summary>{len(passing)} checks passed</summary>",
            "",
            *_check_rows(passing),
            "",
            "</details>",
        ]
    elif not gate.checks and gate.error is None:
        lines += ["No checks: nothing this gate covers changed."]
    return [*lines, ""]


def _rows(delta: TableDelta) -> str:
    if delta.rows_before is None and delta.rows_after is None:
        return ""
    before, after = delta.rows_before or 0, delta.rows_after or 0
    total = f"{before:,d} -> {after:,d}"
    if delta.rows_added is None:
        return f"{after - before:+,d} ({total})"
    return f"+{delta.rows_added:,d} / -{delta.rows_deleted or 0:,d} ({total})"


_STAGE_STYLE = {"done": "ok", "passed": "ok", "ready": "next", "blocked": "bad", "stale": "bad", "not run": "idle"}


def _diagram(stages: dict[str, str]) -> list[str]:
    """A Mermaid flowchart of the stages, coloured by state."""
    if not stages:
        return []
    nodes = [f'    {name}["{name}: {state}"]:::{_STAGE_STYLE.get(state, "idle")}' for name, state in stages.items()]
    edges = "    " + " --> ".join(stages)
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


def _changes(changes: tuple[TableDelta, ...]) -> list[str]:
    lines = ["### What this branch changes", ""]
    if not changes:
        return [*lines, "No table differs from the base.", ""]
    lines += ["| table | change | rows added / deleted (before -> after) | schema |", "|---|---|---|---|"]
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
    lines += _diagram(verdict.stages)
    return "\n".join(lines)
