"""Promotion's origin check: only a run of the pipeline workflow on the default branch, asked of a fake GitHub API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cascade_ci.cli import cli
from cascade_ci.errors import ConfigError, RefusedError
from cascade_ci.run_origin import check_origin, workflow_path
from tests.fakes.github import TOKEN
from tests.unit import test_github_api

FIXTURES = Path(__file__).parent.parent / "fixtures" / "github"
REPO = "octo-org/octo-repo"
RUN_ID = "30433642"
RUN_PATH = f"/repos/{REPO}/actions/runs/{RUN_ID}"
WORKFLOW = ".github/workflows/cascade.yml"
server, api = test_github_api.server, test_github_api.api  # fixtures: the fake GitHub API and a client of it


def run_payload(base_url: str, **changes: Any) -> dict[str, Any]:
    """The recorded run (a `cascade` workflow run on main), with some fields changed."""
    data = json.loads((FIXTURES / "workflow_run.json").read_text().replace("https://api.github.com", base_url))
    data.update({"event": "schedule", **changes})
    return data


@pytest.mark.parametrize("event", ["schedule", "workflow_dispatch", "push"])
def test_a_pipeline_run_on_the_default_branch_may_promote(server, api, event):
    server.route("GET", RUN_PATH, lambda req: (200, {}, run_payload(server.url, event=event)))
    origin = check_origin(api, RUN_ID, default_branch="main", workflow=WORKFLOW)
    assert (origin.path, origin.head_branch, origin.event) == (".github/workflows/cascade.yml@main", "main", event)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"head_branch": "feature/sneaky"}, "not the default branch 'main'"),
        ({"path": ".github/workflows/other.yml"}, "not the pipeline workflow"),
        ({"event": "pull_request"}, "'pull_request' event"),
        ({"event": "issue_comment"}, "'issue_comment' event"),
        ({"head_repository": {"full_name": "mallory/octo-repo"}}, "came from 'mallory/octo-repo'"),
        ({"head_branch": None, "path": None, "event": None}, "'(unknown)'"),
    ],
)
def test_a_run_from_elsewhere_is_refused(server, api, changes, reason):
    server.route("GET", RUN_PATH, lambda req: (200, {}, run_payload(server.url, **changes)))
    with pytest.raises(RefusedError, match=r"may not be promoted") as caught:
        check_origin(api, RUN_ID, default_branch="main", workflow=WORKFLOW)
    assert reason in str(caught.value)


def test_an_unknown_or_local_run_is_refused_without_a_request_for_a_local_id(server, api):
    with pytest.raises(RefusedError, match="knows no run"):
        check_origin(api, "999", default_branch="main", workflow=WORKFLOW)
    before = len(server.requests)
    with pytest.raises(RefusedError, match="not a GitHub workflow run"):
        check_origin(api, "../../orgs/x", default_branch="main", workflow=WORKFLOW)
    assert len(server.requests) == before


def test_workflow_path_accepts_a_file_or_a_workflow_ref():
    assert workflow_path(WORKFLOW) == WORKFLOW
    assert workflow_path(f"{REPO}/{WORKFLOW}@refs/heads/main") == WORKFLOW
    with pytest.raises(ConfigError):
        workflow_path("cascade.yml")


def test_promote_refuses_a_run_from_another_branch_before_touching_the_catalog(server, tmp_path, monkeypatch):
    server.route("GET", RUN_PATH, lambda req: (200, {}, run_payload(server.url, head_branch="feature/sneaky")))
    env = {
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_API_URL": server.url,
        "CASCADE_PIPELINE_WORKFLOW": f"{REPO}/{WORKFLOW}@refs/heads/main",
        "CASCADE_DEFAULT_BRANCH": "main",
        "CASCADE_HOME": str(tmp_path / "home"),
    }
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(cli, ["promote", "--run-id", RUN_ID], env=env)
    assert done.exit_code == 1, done.output
    assert "not the default branch 'main'" in done.output
    assert not (tmp_path / "home").exists()  # refused before the catalog was opened
    assert TOKEN not in done.output


def test_promote_with_an_origin_check_but_no_github_api_is_a_configuration_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    done = CliRunner().invoke(cli, ["promote", "--run-id", RUN_ID, "--pipeline-workflow", WORKFLOW])
    assert done.exit_code == 2 and "needs GITHUB_TOKEN" in done.output
