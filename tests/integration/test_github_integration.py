"""GC, promotion and the PR comment talking to a fake GitHub API with GitHub's payload shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cascade_ci.catalog import open_catalog
from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.cli import cli
from cascade_ci.config import load_settings
from cascade_ci.github_api import MARKER
from cascade_ci.stages.branch import create_run_branch
from tests.conftest import readings, write_rows
from tests.fakes.http import FakeServer

FIXTURES = Path(__file__).parent.parent / "fixtures" / "github"
REPO = "octo-org/octo-repo"


def run_payload(base_url: str, run_id: str, status: str, conclusion: str | None) -> dict:
    payload = json.loads((FIXTURES / "workflow_run.json").read_text().replace("https://api.github.com", base_url))
    payload.update(id=int(run_id), status=status, conclusion=conclusion)
    return payload


@pytest.fixture
def github(monkeypatch):
    with FakeServer() as server:
        monkeypatch.setenv("GITHUB_TOKEN", "ghs_testtoken0123456789")
        monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
        monkeypatch.setenv("GITHUB_API_URL", server.url)
        yield server


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_gc_keeps_running_runs_and_uses_conclusions(github, settings):
    runs = {"1001": ("in_progress", None), "1002": ("completed", "failure"), "1003": ("completed", "success")}
    for run_id, (status, conclusion) in runs.items():
        github.route(
            "GET",
            f"/repos/{REPO}/actions/runs/{run_id}",
            lambda req, r=run_id, s=status, c=conclusion: (200, {}, run_payload(github.url, r, s, c)),
        )
    long_ago = datetime.now(UTC) - timedelta(days=10)
    with LocalBranchCatalog(settings.home, clock=lambda: long_ago) as old:
        for run_id in runs:
            create_run_branch(settings, old, run_id)
    result = cascade("gc", "--json")
    assert result.exit_code == 0, result.output
    decided = {d["branch"]: (d["status"], d["action"]) for d in json.loads(result.stdout)}
    assert decided == {
        "pipeline/run-1001": ("running", "kept"),  # 10 days old, but its run is still going
        "pipeline/run-1002": ("failed", "kept"),  # failed runs are kept 14 days
        "pipeline/run-1003": ("passed", "deleted"),  # passed runs 7 days
    }
    assert all("testtoken" not in r.target for r in github.requests)


def test_promotion_records_run_actor_and_approvers(github, monkeypatch):
    approvals = json.loads((FIXTURES / "approvals.json").read_text().replace("https://api.github.com", github.url))
    github.route("GET", f"/repos/{REPO}/actions/runs/555/approvals", lambda req: (200, {}, approvals))
    monkeypatch.setenv("CASCADE_GATES", "schema")
    assert cascade("branch", "--run-id", "555").exit_code == 0
    write_rows(open_catalog(), "pipeline/run-555", "raw.readings", readings(1))
    assert cascade("validate", "--run-id", "555").exit_code == 0
    monkeypatch.setenv("GITHUB_RUN_ID", "555")
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    result = cascade("promote", "--run-id", "555", "--json")
    assert result.exit_code == 0, result.output
    head = open_catalog().log("main", limit=1)[0]
    record = json.loads(head.properties["cascade.promotion"])
    expected = [a["user"]["login"] for a in approvals if a["state"] == "approved"]
    assert record["approvers"] == ",".join(dict.fromkeys(expected))
    assert record["actor"] == "octocat"
    assert record["run_url"] == f"https://github.com/{REPO}/actions/runs/555"


def test_comment_is_sticky(github, tmp_path):
    stored: list[dict] = []

    def listing(req):
        return 200, {}, stored

    def create(req):
        body = req.json()["body"]
        stored.append({"id": 42, "body": body, "user": {"login": "github-actions[bot]", "id": 1, "type": "Bot"}})
        return 201, {}, stored[-1]

    def edit(req):
        stored[0]["body"] = req.json()["body"]
        return 200, {}, stored[0]

    github.route("GET", f"/repos/{REPO}/issues/9/comments", listing)
    github.route("POST", f"/repos/{REPO}/issues/9/comments", create)
    github.route("PATCH", f"/repos/{REPO}/issues/comments/42", edit)
    summary = tmp_path / "summary.md"
    summary.write_text("## verdict one")
    first = cascade("comment", "--pr", "9", "--summary", str(summary), "--json")
    summary.write_text("## verdict two")
    second = cascade("comment", "--pr", "9", "--summary", str(summary), "--json")
    assert (json.loads(first.stdout)["action"], json.loads(second.stdout)["action"]) == ("created", "updated")
    assert len(stored) == 1 and stored[0]["body"].startswith(MARKER) and "verdict two" in stored[0]["body"]


def test_comment_posts_the_summary_validate_wrote_by_default(github, monkeypatch, tmp_path):
    posted: list[str] = []

    def create(req):
        posted.append(req.json()["body"])
        return 201, {}, {"id": 1}

    github.route("GET", f"/repos/{REPO}/issues/3/comments", lambda req: (200, {}, []))
    github.route("POST", f"/repos/{REPO}/issues/3/comments", create)
    monkeypatch.setenv("CASCADE_REPORTS_DIR", str(tmp_path / "out"))
    missing = cascade("comment", "--pr", "3")
    assert missing.exit_code == 2 and str(tmp_path / "out" / "summary.md") in missing.stderr and not posted
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "summary.md").write_text("## the verdict")
    assert cascade("comment", "--pr", "3").exit_code == 0
    assert len(posted) == 1 and "## the verdict" in posted[0]


def test_comment_without_token_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    summary = tmp_path / "s.md"
    summary.write_text("x")
    result = cascade("comment", "--pr", "1", "--summary", str(summary))
    assert result.exit_code == 2 and "GITHUB_TOKEN" in result.stderr


def test_gc_without_github_settings_needs_no_network(settings):
    long_ago = datetime.now(UTC) - timedelta(days=10)
    with LocalBranchCatalog(settings.home, clock=lambda: long_ago) as old:
        create_run_branch(load_settings(), old, "2001")
    result = cascade("gc", "--json")
    assert json.loads(result.stdout)[0]["status"] == "unvalidated"
