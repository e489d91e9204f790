"""One GitHub check run per gate (`cascade / <gate>`), built from a verdict, so branch protection can require any.

A gate that blocks (a blocking check, or the gate could not run) concludes `failure`, one with warnings only
`neutral`, else `success`. Each failing check becomes an annotation on its file (the config file when the
check names none); texts are cut to the Checks API's limits.
"""

from __future__ import annotations

from typing import Any

from cascade_ci.report.markdown import code
from cascade_ci.verdict import GateResult, Status, Verdict

TITLE_LIMIT = 255  # characters GitHub keeps of an output title or annotation title
SUMMARY_LIMIT = 65_535  # characters of an output summary
MESSAGE_LIMIT = 4_000  # an annotation message is capped at 64 KB; ours stay short
LISTED = 50  # failing checks the summary lists by name


def check_name(gate: str) -> str:
    """`cascade / <gate>`: the name branch protection requires."""
    return f"cascade / {gate}"


def conclusion(gate: GateResult) -> str:
    """failure when the gate blocks or could not run, neutral with warnings only, else success."""
    if gate.status is not Status.PASS:
        return "failure"
    return "neutral" if any(check.warns for check in gate.checks) else "success"


def _title(gate: GateResult) -> str:
    if gate.error is not None:
        return f"{gate.gate} gate could not run"
    blocking = sum(check.blocks for check in gate.checks)
    warnings = sum(check.warns for check in gate.checks)
    return f"{len(gate.checks)} checks: {blocking} blocking, {warnings} warnings"[:TITLE_LIMIT]


def _summary(gate: GateResult, verdict: Verdict) -> str:
    lines = [f"Verdict **{verdict.outcome}** for {code(verdict.branch)} at {code(verdict.validated_hash[:12])}."]
    if verdict.run_url:
        lines.append(f"[Workflow run]({verdict.run_url})")
    if gate.error is not None:
        lines += ["", f"The gate could not run: {code(gate.error)}"]
    failing = [check for check in gate.checks if not check.passed]
    if failing:
        lines += ["", "| check | table | level |", "|---|---|---|"]
        lines += [
            f"| {code(check.name, cell=True)} | {code(check.table, cell=True)} | {check.severity} |"
            for check in failing[:LISTED]
        ]
        if len(failing) > LISTED:
            lines.append(f"\n... and {len(failing) - LISTED} more; see the job summary.")
    text = "\n".join(lines)
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 20] + "\n\n_(cut)_"


def annotations(gate: GateResult, fallback_path: str) -> list[dict[str, Any]]:
    """The Checks API annotations of a gate's failing checks (and of a gate that could not run)."""
    found: list[dict[str, Any]] = []
    if gate.error is not None:
        found.append(_annotation(fallback_path, 1, "failure", gate.error, f"{gate.gate} gate could not run"))
    for check in gate.checks:
        if check.passed:
            continue
        level = "failure" if check.blocks else "warning"
        path = check.file or fallback_path
        found.append(_annotation(path, check.line or 1, level, f"{check.table}: {check.message}", check.name))
    return found


def _annotation(path: str, line: int, level: str, message: str, title: str) -> dict[str, Any]:
    return {
        "path": path,
        "start_line": line,
        "end_line": line,
        "annotation_level": level,
        "message": message[:MESSAGE_LIMIT] or title,
        "title": title[:TITLE_LIMIT],
    }


def check_runs(
    verdict: Verdict, head_sha: str, fallback_path: str
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Per gate: the check run to create (completed) and its annotations, in the verdict's gate order."""
    runs = []
    # a verdict without any gate blocks: say so in a check of its own
    for gate in verdict.gates or (GateResult("verdict", error="no gate ran: a verdict without gates blocks"),):
        run = {
            "name": check_name(gate.gate),
            "head_sha": head_sha,
            "status": "completed",
            "conclusion": conclusion(gate),
            "output": {"title": _title(gate), "summary": _summary(gate, verdict)},
        }
        if verdict.run_url:
            run["details_url"] = verdict.run_url
        runs.append((run, annotations(gate, fallback_path)))
    return runs
