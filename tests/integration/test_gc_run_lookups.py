"""`cascade gc` when GitHub cannot say how a run went: the branch is kept and said so, the others go on, every
deletion is told as it happens, and a missing token is warned about. A fake GitHub API with GitHub's payloads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.cli import cli
from cascade_ci.errors import ServiceUnavailableError
from cascade_ci.stages.branch import create_run_branch
from tests.fakes.http import FakeServer
from tests.integration.test_github_integration import REPO, run_payload

TOKEN = "ghs_lookuptoken0123456789"


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def github(monkeypatch):
    with FakeServer() as server:
        monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
        monkeypatch.setenv("GITHUB_API_URL", server.url)
        yield server


def old_branches(settings, ages: dict[str, int]) -> None:
    """Pipeline branches made `ages[run_id]` days ago."""
    for run_id, days in ages.items():
        then = datetime.now(UTC) - timedelta(days=days)
        with LocalBranchCatalog(settings.home, clock=lambda then=then: then) as old:
            create_run_branch(settings, old, run_id)


def runs_path(run_id: str) -> str:
    return f"/repos/{REPO}/actions/runs/{run_id}"


def test_a_failed_run_lookup_keeps_its_branch_and_the_others_go_on(github, settings, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    github.reply("GET", runs_path("1001"), {"message": "Server Error"}, status=500)
    github.reply("GET", runs_path("1002"), '{"id": 1002, "status": "completed", "conclu')  # cut short
    github.reply("GET", runs_path("1003"), {"message": "Not Found"}, status=404)
    github.reply("GET", runs_path("1004"), run_payload(github.url, "1004", "completed", "success"))
    old_branches(settings, {"1001": 20, "1002": 20, "1003": 20, "1004": 10})

    result = cascade("gc", "--json")
    assert result.exit_code == 0, result.output
    decided = {d["branch"]: d for d in json.loads(result.stdout)}
    assert {name: (d["status"], d["action"]) for name, d in decided.items()} == {
        "pipeline/run-1001": ("unknown", "kept"),  # 20 days old, but GitHub could not say whether it runs
        "pipeline/run-1002": ("unknown", "kept"),
        "pipeline/run-1003": ("unvalidated", "deleted"),  # GitHub has no such run: judged by its age alone
        "pipeline/run-1004": ("passed", "deleted"),
    }
    assert decided["pipeline/run-1001"]["reason"] == (
        "its workflow run could not be looked up, kept until GitHub answers: GitHub API answered HTTP 500 to "
        f"GET {github.url}{runs_path('1001')}: Server Error; try again later"
    )
    assert decided["pipeline/run-1002"]["reason"].startswith(
        "its workflow run could not be looked up, kept until GitHub answers: GitHub API answered "
        f"GET {github.url}{runs_path('1002')} with a body that is not valid JSON ("
    )
    told = [line for line in result.stderr.splitlines() if line.startswith(("deleted", "kept"))]
    assert sorted(line.split()[:2] for line in told) == [
        ["deleted", "pipeline/run-1003"],
        ["deleted", "pipeline/run-1004"],
        ["kept", "pipeline/run-1001"],
        ["kept", "pipeline/run-1002"],
    ]
    assert "Traceback" not in result.output and TOKEN not in result.output
    assert "warning" not in result.stderr


def test_without_a_token_gc_warns_it_cannot_see_running_runs(github, settings):
    old_branches(settings, {"2001": 10})
    result = cascade("gc")
    assert result.exit_code == 0
    assert (
        "cascade gc: warning: GITHUB_TOKEN (or GH_SOURCE_TOKEN) is not set: workflow runs still in progress "
        "cannot be seen, so a running pipeline's branch is judged by its age alone"
    ) in result.stderr
    assert github.requests == []


def test_gh_source_token_is_accepted(github, settings, monkeypatch):
    monkeypatch.setenv("GH_SOURCE_TOKEN", TOKEN)
    github.route("GET", runs_path("3001"), lambda req: (200, {}, run_payload(github.url, "3001", "in_progress", None)))
    old_branches(settings, {"3001": 30})
    result = cascade("gc", "--json")
    assert result.exit_code == 0, result.output
    assert [(d["status"], d["action"]) for d in json.loads(result.stdout)] == [("running", "kept")]
    assert [req.headers.get("authorization", "").split()[-1] for req in github.requests] == [TOKEN]
    assert "warning" not in result.stderr


def test_a_gc_that_fails_midway_lists_the_deletions_it_made(github, settings, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    github.reply("GET", runs_path("4001"), run_payload(github.url, "4001", "completed", "success"))
    old_branches(settings, {"4001": 10})

    def unavailable(self, now):
        raise ServiceUnavailableError("the catalog did not answer listing staging refs")

    monkeypatch.setattr(LocalBranchCatalog, "sweep_leftovers", unavailable)
    result = cascade("gc", "--json")
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert payload["message"] == "the catalog did not answer listing staging refs"
    assert [(d["branch"], d["action"]) for d in payload["deleted"]] == [("pipeline/run-4001", "deleted")]
    assert "deleted      pipeline/run-4001  passed" in result.stderr  # told when it happened
