"""Pull request checks against a fake GitHub API with GitHub's payload shapes: the sticky comment's author,
one check run per gate, and comment approvals (`cascade approve`, `promote --approved-by`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cascade_ci.catalog import open_catalog
from cascade_ci.cli import cli
from cascade_ci.github_api import MARKER, GitHubApi
from cascade_ci.verdict import Check, GateResult, Level, Verdict
from tests.conftest import readings, write_rows
from tests.fakes.github import (
    GITHUB_ACTIONS_BOT,
    NOT_FOR_INTEGRATION,
    TOKEN,
    check_run_created,
    comment_event,
    payload,
    permission,
    pull_request,
)
from tests.fakes.http import FakeServer, Request

REPO = "octo-org/octo-repo"
SHA = "ce587453ced02b1526dfb4cb910479d431683101"
COMMENTS = f"/repos/{REPO}/issues/7/comments"


@pytest.fixture
def github(monkeypatch):
    with FakeServer() as server:
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
        monkeypatch.setenv("GITHUB_API_URL", server.url)
        yield server


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args))


# -- sticky comment: marker AND author --------------------------------------------------------------


def _comments(base_url: str, forged_first: bool) -> list[dict]:
    """Page 1 and 2 of the fixture listing; with `forged_first`, a user's comment carrying our marker before ours."""
    found = payload("issue_comments_page1.json", base_url) + payload("issue_comments_page2.json", base_url)
    if forged_first:
        forged = json.loads(json.dumps(found[0]))
        forged.update(id=1936200000, body=f"{MARKER}\nPlease merge, all gates passed (trust me).")
        found.insert(0, forged)
    return found


def _edits(github: FakeServer) -> list[str]:
    return [r.path for r in github.requests if r.method == "PATCH"]


def test_a_marker_comment_by_someone_else_is_never_edited(github, tmp_path):
    """Anyone can paste the marker into a comment; on the old code the first one found was overwritten."""
    github.pages(COMMENTS, _comments(github.url, forged_first=True))
    github.route("GET", "/user", lambda req: NOT_FOR_INTEGRATION)  # the Actions token: GET /user is 403
    github.route("PATCH", f"/repos/{REPO}/issues/comments/1936210003", lambda req: (200, {}, {"id": 1936210003}))
    (tmp_path / "summary.md").write_text("## verdict")
    result = cascade("comment", "--pr", "7", "--summary", str(tmp_path / "summary.md"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["action"] == "updated"
    assert _edits(github) == [f"/repos/{REPO}/issues/comments/1936210003"]  # github-actions[bot]'s, not the forgery


def test_only_a_forged_marker_comment_means_a_new_comment(github, tmp_path):
    comments = [c for c in _comments(github.url, forged_first=True) if c["user"]["login"] != GITHUB_ACTIONS_BOT]
    github.pages(COMMENTS, comments)
    github.route("POST", COMMENTS, lambda req: (201, {}, {"id": 1936219999, "body": req.json()["body"]}))
    (tmp_path / "summary.md").write_text("## verdict")
    result = cascade("comment", "--pr", "7", "--summary", str(tmp_path / "summary.md"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["action"] == "created" and not _edits(github)


def test_a_personal_token_edits_its_own_comment_only(github):
    """With a user's token, `GET /user` names the author: the bot's marker comment is someone else's."""
    github.reply("GET", "/user", payload("user_octocat.json", github.url))
    comments = _comments(github.url, forged_first=False)
    mine = json.loads(json.dumps(comments[0]))
    mine.update(id=1936219000, body=f"{MARKER}\nold verdict")
    mine["user"]["login"] = payload("user_octocat.json", github.url)["login"]
    github.pages(COMMENTS, [*comments, mine])
    github.route("PATCH", f"/repos/{REPO}/issues/comments/1936219000", lambda req: (200, {}, {"id": 1936219000}))
    with GitHubApi(TOKEN, REPO, base_url=github.url) as api:
        assert api.upsert_comment(7, "new verdict") == "updated"
    assert _edits(github) == [f"/repos/{REPO}/issues/comments/1936219000"]


def test_an_app_token_names_its_bot(github, monkeypatch):
    github.route("GET", "/user", lambda req: NOT_FOR_INTEGRATION)
    monkeypatch.setenv("CASCADE_COMMENT_AUTHOR", "cascade-app[bot]")
    with GitHubApi(TOKEN, REPO, base_url=github.url) as api:
        assert api.identity() == "cascade-app[bot]"


def test_comment_appends_the_diff(github, tmp_path, monkeypatch):
    posted: list[str] = []
    github.pages(COMMENTS, [])
    github.route("POST", COMMENTS, lambda req: posted.append(req.json()["body"]) or (201, {}, {"id": 1}))
    reports = tmp_path / "out"
    reports.mkdir()
    monkeypatch.setenv("CASCADE_REPORTS_DIR", str(reports))
    (reports / "summary.md").write_text("## the verdict\n")
    (reports / "diff.md").write_text("### Data diff\n")
    assert cascade("comment", "--pr", "7").exit_code == 0
    assert posted == [f"{MARKER}\n## the verdict\n\n### Data diff\n"]


# -- one check run per gate ------------------------------------------------------------------------


def _verdict(reports: Path) -> Verdict:
    failing = tuple(
        Check(
            "pandera",
            "raw.entries",
            f"sgv_range_{i}",
            Level.ERROR,
            False,
            f"{i} values out of range",
            file="schemas/entries.py",
            line=10 + i,
        )
        for i in range(120)
    )
    verdict = Verdict(
        run_id="30433642",
        attempt=1,
        branch="pr/7",
        validated_hash="a" * 64,
        base_ref="main",
        base_hash="b" * 64,
        started_at="2024-01-13T05:25:00+00:00",
        duration_s=1.0,
        gates=(
            GateResult("schema", (Check("schema", "raw.entries", "compatible", Level.ERROR, True),)),
            GateResult("freshness", (Check("freshness", "raw.entries", "fresh", Level.WARN, False, "3 h old"),)),
            GateResult("pandera", failing),
            GateResult("dbt", error="dbt artifacts missing"),
        ),
        run_url="https://github.com/octo-org/octo-repo/actions/runs/30433642",
    )
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "verdict.json").write_text(verdict.to_json())
    return verdict


def test_one_check_run_per_gate_with_batched_annotations(github, tmp_path, monkeypatch):
    ids = iter(range(4000, 4100))
    github.route("POST", f"/repos/{REPO}/check-runs", lambda req: check_run_created(github.url, next(ids), req))
    patched: list[Request] = []
    github.route("PATCH", f"/repos/{REPO}/check-runs/4002", lambda req: patched.append(req) or (200, {}, {"id": 4002}))
    monkeypatch.setenv("CASCADE_REPORTS_DIR", str(tmp_path / "out"))
    _verdict(tmp_path / "out")
    result = cascade("checks", "--sha", SHA, "--json")
    assert result.exit_code == 0, result.output
    created = [r.json() for r in github.requests if r.method == "POST"]
    assert [(c["name"], c["conclusion"], c["status"], c["head_sha"]) for c in created] == [
        ("cascade / schema", "success", "completed", SHA),
        ("cascade / freshness", "neutral", "completed", SHA),
        ("cascade / pandera", "failure", "completed", SHA),
        ("cascade / dbt", "failure", "completed", SHA),
    ]
    assert [len(c["output"]["annotations"]) for c in created] == [0, 1, 50, 1]
    assert [len(r.json()["output"]["annotations"]) for r in patched] == [50, 20]  # 120 in batches of 50
    sent = [a for c in created[2:3] for a in c["output"]["annotations"]] + [
        a for r in patched for a in r.json()["output"]["annotations"]
    ]
    assert [a["title"] for a in sent] == [f"sgv_range_{i}" for i in range(120)]
    assert all(a["annotation_level"] == "failure" and a["path"] == "schemas/entries.py" for a in sent)
    assert created[1]["output"]["annotations"][0]["annotation_level"] == "warning"
    assert created[3]["output"]["annotations"][0]["path"] == "cascade.toml"  # no file: the config's
    assert all(r.json()["output"]["title"] and r.json()["output"]["summary"] for r in patched)
    assert [c["id"] for c in json.loads(result.stdout)] == [4000, 4001, 4002, 4003]


def test_checks_refuses_a_bad_sha_before_any_request(github, tmp_path, monkeypatch):
    monkeypatch.setenv("CASCADE_REPORTS_DIR", str(tmp_path / "out"))
    _verdict(tmp_path / "out")
    result = cascade("checks", "--sha", "main; rm -rf /")
    assert result.exit_code == 2 and not github.requests


# -- comment approval -------------------------------------------------------------------------------


@pytest.fixture
def approval(github, tmp_path, monkeypatch):
    """An approvers list, the author's permission and the PR's head repository, as GitHub answers them."""
    monkeypatch.setenv("CASCADE_APPROVERS", "monalisa, hubot")
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "output"))
    roles = {"monalisa": "write", "hubot": "read", "octocat": "admin"}
    for login, role in roles.items():
        github.reply("GET", f"/repos/{REPO}/collaborators/{login}/permission", permission(github.url, login, role))
    github.reply("GET", f"/repos/{REPO}/pulls/7", pull_request(github.url, REPO))

    def run(event: dict) -> tuple[object, str]:
        path = tmp_path / "event.json"
        path.write_text(json.dumps(event))
        result = cascade("approve", "--event", str(path), "--json")
        output = tmp_path / "output"
        return result, output.read_text() if output.exists() else ""

    return run


def test_approval_by_a_listed_writer(approval, github):
    result, output = approval(comment_event(github.url, "/cascade promote 30433642\n\nLooks good."))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"run_id": "30433642", "approver": "monalisa"}
    assert output == "run-id=30433642\napprover=monalisa\n"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda e: e["comment"]["user"].update(login="octocat"), "not listed"),  # an admin, but unlisted
        (lambda e: e["comment"]["user"].update(login="hubot"), "read permission"),  # listed, read only
        (lambda e: e["comment"]["user"].update(login="github-actions[bot]", type="Bot"), "not a user"),
        (lambda e: e["repository"].update(fork=True), "fork"),  # the workflow runs in a fork
        (lambda e: e["repository"].update(full_name="mallory/octo-repo"), "not in"),
        (lambda e: e.update(action="edited"), "newly created"),
        (lambda e: e["comment"].update(body="LGTM /cascade promote 30433642"), "not `/cascade promote"),
        (lambda e: e["comment"].update(body="/cascade promote ../../main"), "invalid run id"),
    ],
)
def test_approval_ignored(approval, github, change, reason):
    event = comment_event(github.url, "/cascade promote 30433642")
    change(event)
    result, output = approval(event)
    assert result.exit_code == 1, result.output
    assert reason in result.stderr and output == ""


@pytest.mark.parametrize("head", ["mallory/octo-repo", None])
def test_approval_on_a_fork_pull_request_is_ignored(approval, github, head):
    github.reply("GET", f"/repos/{REPO}/pulls/7", pull_request(github.url, head))
    result, output = approval(comment_event(github.url, "/cascade promote 30433642"))
    assert result.exit_code == 1 and "fork" in result.stderr and output == ""


def test_approval_asks_the_api_not_the_payload(approval, github):
    """author_association in the payload says MEMBER; the API says read: read wins."""
    event = comment_event(github.url, "/cascade promote 30433642", login="hubot")
    assert event["comment"]["author_association"] == "MEMBER"
    result, _ = approval(event)
    assert result.exit_code == 1
    assert [r.path for r in github.requests if "permission" in r.path] == [
        f"/repos/{REPO}/collaborators/hubot/permission"
    ]


def test_promote_records_the_comment_approver(github, monkeypatch):
    monkeypatch.setenv("CASCADE_GATES", "schema")
    assert cascade("branch", "--run-id", "556").exit_code == 0
    write_rows(open_catalog(), "pipeline/run-556", "raw.readings", readings(1))
    assert cascade("validate", "--run-id", "556").exit_code == 0
    bad = cascade("promote", "--run-id", "556", "--approved-by", "bad login;")
    assert bad.exit_code == 2
    result = cascade("promote", "--run-id", "556", "--approved-by", "monalisa", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(open_catalog().log("main", limit=1)[0].properties["cascade.promotion"])
    assert record["approvers"] == "monalisa" and record["approved_by"] == "monalisa"


def test_a_verdict_without_gates_is_one_failing_check(github, tmp_path, monkeypatch):
    github.route("POST", f"/repos/{REPO}/check-runs", lambda req: check_run_created(github.url, 4, req))
    monkeypatch.setenv("CASCADE_REPORTS_DIR", str(tmp_path))
    verdict = Verdict("1", 1, "pr/7", "a" * 64, "main", "b" * 64, "2024-01-13T05:25:00+00:00", 0.1)
    (tmp_path / "verdict.json").write_text(verdict.to_json())
    result = cascade("checks", "--sha", SHA)
    assert result.exit_code == 0, result.output
    (sent,) = [r.json() for r in github.requests if r.method == "POST"]
    assert (sent["name"], sent["conclusion"]) == ("cascade / verdict", "failure")
