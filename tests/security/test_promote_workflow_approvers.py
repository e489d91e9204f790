"""promote.yml's promote job reads the approvers list the approve job reads: with CASCADE_APPROVERS set as a
repository variable, `cascade promote` must see it too, or a dispatch by anyone with write access promotes
without an approval (the list would be empty there, so no approval is asked)."""

from __future__ import annotations

import yaml

from tests.conftest import REPO


def _setup_env(job: dict) -> str:
    (setup,) = [step for step in job["steps"] if str(step.get("uses", "")).endswith("/actions/setup")]
    return str(setup["with"].get("pipeline-env", ""))


def test_the_promote_job_exports_the_repository_variables_when_dispatched() -> None:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "promote.yml").read_text(encoding="utf-8"))
    approve, promote = workflow["jobs"]["approve"], workflow["jobs"]["promote"]
    assert "vars.CASCADE_APPROVERS" in str(approve["steps"])  # the approve job's source of the list
    promote_env = {k: v for step in promote["steps"] for k, v in (step.get("env") or {}).items()}
    assert "toJSON(vars)" in _setup_env(promote) or "CASCADE_APPROVERS" in promote_env, _setup_env(promote)
