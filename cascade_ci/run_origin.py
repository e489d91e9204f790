"""Where a workflow run came from: promotion publishes only runs of the pipeline workflow on the default branch.

A run started from another branch (by anyone with write access) or by another workflow could otherwise
carry a verdict to main. `check_origin` asks GitHub (`GET /repos/{repo}/actions/runs/{id}`) and refuses
unless the run's workflow file, branch, event and repository are the expected ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cascade_ci.errors import ConfigError, RefusedError

if TYPE_CHECKING:
    from cascade_ci.github_api import GitHubApi

# The events a pipeline run that may promote starts from; never pull_request, issue_comment or a fork's event.
PIPELINE_EVENTS = frozenset({"schedule", "workflow_dispatch", "push"})


@dataclass(frozen=True)
class RunOrigin:
    """What GitHub says about a run: its workflow file, branch, event and repository."""

    run_id: str
    path: str
    head_branch: str
    event: str
    repository: str
    head_repository: str

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> RunOrigin:
        def text(value: Any) -> str:
            return value if isinstance(value, str) else ""

        def full_name(value: Any) -> str:
            return text(value.get("full_name")) if isinstance(value, Mapping) else ""

        return cls(
            run_id=str(data.get("id", "")),
            path=text(data.get("path")),
            head_branch=text(data.get("head_branch")),
            event=text(data.get("event")),
            repository=full_name(data.get("repository")),
            head_repository=full_name(data.get("head_repository")),
        )


def workflow_path(value: str) -> str:
    """A workflow file path from `.github/workflows/x.yml` or a workflow ref `owner/repo/.github/...@ref`."""
    path = value.split("@", 1)[0]
    at = path.find(".github/workflows/")
    if at < 0:
        raise ConfigError(f"not a workflow file: {value!r} (expected .github/workflows/NAME.yml)")
    return path[at:]


def problems(origin: RunOrigin, *, repository: str, default_branch: str, workflow: str) -> list[str]:
    """Why `origin` may not promote (empty: it may)."""
    found = []
    unknown = "(unknown)"
    if origin.path.split("@", 1)[0] != workflow:
        found.append(f"it ran workflow {origin.path or unknown!r}, not the pipeline workflow {workflow!r}")
    if origin.head_branch != default_branch:
        found.append(f"it ran on branch {origin.head_branch or unknown!r}, not the default branch {default_branch!r}")
    if origin.event not in PIPELINE_EVENTS:
        allowed = ", ".join(sorted(PIPELINE_EVENTS))
        found.append(f"it was started by a {origin.event or unknown!r} event, not {allowed}")
    if origin.head_repository and origin.head_repository != repository:
        found.append(f"its code came from {origin.head_repository!r}, not {repository!r}")
    return found


def check_origin(api: GitHubApi, run_id: str, *, default_branch: str, workflow: str) -> RunOrigin:
    """The run's origin; RefusedError unless it is the pipeline workflow on the default branch of this repository."""
    if not str(run_id).isdigit():
        raise RefusedError(f"run {run_id!r} is not a GitHub workflow run; promotion from a workflow needs one")
    data = api.workflow_run_payload(str(run_id))
    if data is None:
        raise RefusedError(f"GitHub knows no run {run_id} in {api.repository}; refusing to promote it")
    origin = RunOrigin.from_payload(data)
    found = problems(origin, repository=api.repository, default_branch=default_branch, workflow=workflow_path(workflow))
    if found:
        raise RefusedError(f"run {run_id} may not be promoted: " + "; ".join(found))
    return origin
