"""dbt tests as a gate: every data test is a check; dbt's `severity: warn` stays a warning.

The transform stage turns `run_results.json` (with file paths from the manifest) into outcomes with
`outcomes_from` and commits them onto the branch next to the marts they tested; this gate reads them
from there, so it judges exactly the data version at the head, in whichever job it runs. `outcomes_from`
and `repo_path` are pure (files are only read for line numbers), for the transform stage to call.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cascade_ci.verdict import Check, GateResult, Level

if TYPE_CHECKING:
    from cascade_ci.gates.base import GateContext

GATE = "dbt"
name = GATE
PASSED = ("pass", "success")


def _line_of(project: Path, file: str, column: str | None, model: str) -> int | None:
    """The line of `- name: <column>` (else `- name: <model>`) in a schema file, for annotations."""
    try:
        lines = (project / file).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for needle in filter(None, (column, model)):
        pattern = re.compile(rf"^\s*-\s*name:\s*['\"]?{re.escape(needle)}['\"]?\s*$")
        for number, text in enumerate(lines, start=1):
            if pattern.match(text):
                return number
    return None


def repo_path(project_dir: Path, root: Path, file: str) -> str:
    """`file` (relative to the dbt project, as dbt's manifest gives it) relative to the project root, in `/` form.

    Annotations need paths in the user's repository; a dbt project outside the root gives a `../` path.
    """
    return Path(os.path.relpath(Path(project_dir).resolve() / file, Path(root).resolve())).as_posix()


def outcomes_from(
    run_results: dict[str, Any], manifest: dict[str, Any], project_dir: Path, root: Path
) -> list[dict[str, Any]]:
    """One compact record per test in `run_results` (dbt test), with model, column, severity and file.

    `project_dir` is the dbt project (where dbt's `original_file_path`s start); `file` is written relative
    to `root`, the project root (the config file's folder), so annotations point into the user's repository.
    """
    nodes = manifest.get("nodes", {})
    outcomes = []
    for result in run_results.get("results", []):
        node = nodes.get(result["unique_id"], {})
        if node.get("resource_type") != "test":
            continue
        model_id = (node.get("attached_node") or next(iter(node.get("depends_on", {}).get("nodes", [])), "")) or ""
        model_node = nodes.get(model_id, {})
        model = f"{model_node.get('schema', '?')}.{model_node.get('name', model_id.rsplit('.', 1)[-1])}"
        column = node.get("column_name")
        file = node.get("original_file_path")
        test_name = (node.get("test_metadata") or {}).get("name") or node.get("name", result["unique_id"])
        outcomes.append(
            {
                "unique_id": result["unique_id"],
                "name": f"{test_name}:{column}" if column else test_name,
                "model": model,
                "column": column,
                "status": result["status"],
                "severity": str(node.get("config", {}).get("severity", "ERROR")).lower(),
                "failures": result.get("failures"),
                "message": (result.get("message") or "").strip(),
                "file": repo_path(project_dir, root, file) if file else None,
                "line": _line_of(project_dir, file, column, model_node.get("name", "")) if file else None,
            }
        )
    return sorted(outcomes, key=lambda o: (o["model"], o["name"]))


def _check(outcome: dict[str, Any]) -> Check:
    status = outcome["status"]
    warn_only = status == "warn" or outcome["severity"] == "warn"
    message = outcome["message"] or status
    if outcome.get("failures"):
        message = f"{outcome['failures']} failing rows: {message}"
    return Check(
        gate=GATE,
        table=outcome["model"],
        name=outcome["name"],
        severity=Level.WARN if warn_only else Level.ERROR,
        passed=status in PASSED,
        message=message if status not in PASSED else "passed",
        file=outcome.get("file"),
        line=outcome.get("line"),
        observed=outcome.get("failures") if status not in PASSED else None,
        expected=0 if status not in PASSED else None,
    )


def run(ctx: GateContext) -> GateResult:
    """Judge the dbt test outcomes committed for the head's data; none, or stale ones, is an error."""
    from cascade_ci.branch_state import DBT_TESTS, MetaKind

    commit = ctx.state.latest.get(MetaKind.TRANSFORM)
    if commit is None:
        return GateResult(gate=GATE, error="dbt has not run on this branch: run `cascade transform` first")
    if not ctx.state.is_current(MetaKind.TRANSFORM):
        return GateResult(gate=GATE, error="the branch changed after dbt ran: run `cascade transform` again")
    outcomes = json.loads(commit.properties[DBT_TESTS])
    if not outcomes:
        return GateResult(gate=GATE, error="dbt ran zero tests: a pipeline without tests cannot pass this gate")
    return GateResult(gate=GATE, checks=tuple(_check(outcome) for outcome in outcomes))
