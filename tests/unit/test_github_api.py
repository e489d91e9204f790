"""GitHub REST API helpers (run status, approvals, sticky PR comment) against a fake GitHub API on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cascade_ci import github_api
from cascade_ci.errors import Terminal, Transient, is_transient
from cascade_ci.github_api import (
    COMMENT_LIMIT,
    MARKER,
    GitHubApi,
    GitHubApiRefusedError,
    GitHubApiUnavailableError,
    RunStatus,
    make_client,
)
from tests.fakes.github import TOKEN, assert_token_hidden, rate_limited
from tests.fakes.http import FakeServer, Request, Response, unused_port

FIXTURES = Path(__file__).parent.parent / "fixtures" / "github"
REPO = "octo-org/octo-repo"
RUN_ID = "30433642"
RUN_PATH = f"/repos/{REPO}/actions/runs/{RUN_ID}"
APPROVALS_PATH = f"{RUN_PATH}/approvals"
PR = 7
COMMENTS_PATH = f"/repos/{REPO}/issues/{PR}/comments"
EXISTING_ID = 1936210003  # the comment with the marker, on page 2 of issue_comments_page*.json


def fixture(name: str, base_url: str) -> Any:
    """A payload shaped like GitHub's, its `https://api.github.com` links pointed at the fake server."""
    return json.loads((FIXTURES / name).read_text().replace("https://api.github.com", base_url))


def comments(base_url: str) -> list[dict[str, Any]]:
    return fixture("issue_comments_page1.json", base_url) + fixture("issue_comments_page2.json", base_url)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
def api(server: FakeServer) -> Iterator[GitHubApi]:
    with GitHubApi(TOKEN, REPO, base_url=server.url) as client:
        yield client


def paged_api(server: FakeServer, per_page: int = 2) -> GitHubApi:
    return GitHubApi(
        TOKEN, REPO, base_url=server.url, client=make_client(TOKEN, base_url=server.url, per_page=per_page)
    )


def created(req: Request) -> Response:
    return 201, {}, {"id": 1936219999, "body": req.json()["body"], "user": {"login": "github-actions[bot]"}}


def edited(req: Request) -> Response:
    return 200, {}, {"id": EXISTING_ID, "body": req.json()["body"], "user": {"login": "github-actions[bot]"}}


# -- workflow runs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "conclusion", "in_progress"),
    [("completed", "success", False), ("completed", "failure", False), ("in_progress", None, True)],
)
def test_workflow_run_status(
    server: FakeServer, api: GitHubApi, status: str, conclusion: str | None, in_progress: bool
) -> None:
    run = fixture("workflow_run.json", server.url)
    run.update(status=status, conclusion=conclusion)
    server.reply("GET", RUN_PATH, run)
    got = api.workflow_run(RUN_ID)
    assert got == RunStatus(
        run_id=RUN_ID,
        status=status,
        conclusion=conclusion,
        html_url="https://github.com/octo-org/octo-repo/actions/runs/30433642",
    )
    assert got.in_progress is in_progress
    (request,) = server.requests
    assert (request.method, request.path) == ("GET", RUN_PATH)
    assert request.headers["authorization"] == f"token {TOKEN}"


def test_unknown_run_is_none(server: FakeServer, api: GitHubApi) -> None:
    assert api.workflow_run("999") is None
    assert [r.path for r in server.requests] == [f"/repos/{REPO}/actions/runs/999"]


def test_local_run_id_is_none_without_a_request(server: FakeServer, api: GitHubApi) -> None:
    assert api.workflow_run("local-20240113-1") is None
    assert api.approvers("../../user") == []
    assert server.requests == []


# -- approvals -------------------------------------------------------------------------------------


def test_approvers_are_the_approving_logins_in_order(server: FakeServer, api: GitHubApi) -> None:
    reviews = fixture("approvals.json", server.url)
    server.reply("GET", APPROVALS_PATH, [*reviews, reviews[1]])  # monalisa approved a second environment
    assert api.approvers(RUN_ID) == ["monalisa", "octocat"]


def test_approvers_of_unknown_run_are_empty(api: GitHubApi) -> None:
    assert api.approvers(RUN_ID) == []


# -- sticky comment --------------------------------------------------------------------------------


def test_comment_is_created_when_absent(server: FakeServer) -> None:
    server.pages(COMMENTS_PATH, fixture("issue_comments_page1.json", server.url))
    server.route("POST", COMMENTS_PATH, created)
    with paged_api(server) as api:
        assert api.upsert_comment(PR, "### cascade-ci verdict: publish\n\nAll gates passed.") == "created"
    (post,) = [r for r in server.requests if r.method == "POST"]
    assert post.path == COMMENTS_PATH
    assert post.json() == {"body": f"{MARKER}\n### cascade-ci verdict: publish\n\nAll gates passed."}
    assert not [r for r in server.requests if r.method == "PATCH"]


def test_comment_on_page_two_is_updated_in_place(server: FakeServer) -> None:
    server.pages(COMMENTS_PATH, comments(server.url))
    server.route("PATCH", f"/repos/{REPO}/issues/comments/{EXISTING_ID}", edited)
    server.route("POST", COMMENTS_PATH, created)
    api = paged_api(server)
    assert api.upsert_comment(PR, "### cascade-ci verdict: publish") == "updated"
    assert api.upsert_comment(PR, f"{MARKER}\n### cascade-ci verdict: publish again") == "updated"
    listings = server.requests_to(COMMENTS_PATH)
    assert [(r.method, r.param("per_page"), r.param("page")) for r in listings] == [
        ("GET", "2", None),
        ("GET", "2", "2"),
        ("GET", "2", None),
        ("GET", "2", "2"),
    ]
    patches = [r for r in server.requests if r.method == "PATCH"]
    assert [r.json()["body"] for r in patches] == [
        f"{MARKER}\n### cascade-ci verdict: publish",
        f"{MARKER}\n### cascade-ci verdict: publish again",  # the marker is not doubled
    ]
    assert not [r for r in server.requests if r.method == "POST"]


def test_long_comment_is_cut_with_a_note(server: FakeServer, api: GitHubApi) -> None:
    server.pages(COMMENTS_PATH, [])
    server.route("POST", COMMENTS_PATH, created)
    api.upsert_comment(PR, ("x" * 99 + "\n") * 700)
    (post,) = [r for r in server.requests if r.method == "POST"]
    body = post.json()["body"]
    assert COMMENT_LIMIT - 100 < len(body) <= COMMENT_LIMIT  # cut at a line end
    assert body.startswith(f"{MARKER}\nxxx")
    assert set(body.split("\n\n")[0].splitlines()[1:]) == {"x" * 99}
    assert body.endswith("65,536-character limit; the full text is in reports/._")


def test_comment_without_write_permission_is_terminal(server: FakeServer, api: GitHubApi) -> None:
    server.pages(COMMENTS_PATH, [])
    server.reply("POST", COMMENTS_PATH, {"message": "Resource not accessible by integration"}, status=403)
    with pytest.raises(GitHubApiRefusedError, match="pull-requests: write") as caught:
        api.upsert_comment(PR, "verdict")
    assert caught.value.status == 403
    assert not is_transient(caught.value)


def test_bad_pr_number_is_a_config_error(server: FakeServer, api: GitHubApi) -> None:
    with pytest.raises(github_api.ConfigError):
        api.upsert_comment(0, "verdict")
    assert server.requests == []


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 429])
def test_rate_limit_says_when_it_resets(server: FakeServer, api: GitHubApi, status: int) -> None:
    reset = int(time.time()) + 1800
    server.route("GET", RUN_PATH, lambda _req: rate_limited(reset, status))
    started = time.monotonic()
    with pytest.raises(GitHubApiUnavailableError, match="rate limit exhausted") as caught:
        api.workflow_run(RUN_ID)
    assert time.monotonic() - started < 2  # no sleeping it out
    message = str(caught.value)
    assert f"resets at {datetime.fromtimestamp(reset, UTC):%Y-%m-%dT%H:%M:%SZ} (in 1" in message
    assert len(server.requests_to(RUN_PATH)) == 1
    assert is_transient(caught.value)
    assert_token_hidden(caught.value)


def test_server_errors_are_retried_then_transient(server: FakeServer, api: GitHubApi) -> None:
    server.reply("GET", RUN_PATH, {"message": "Server Error"}, status=500)
    with pytest.raises(GitHubApiUnavailableError) as caught:
        api.workflow_run(RUN_ID)
    assert (
        str(caught.value)
        == f"GitHub API answered HTTP 500 to GET {server.url}{RUN_PATH}: Server Error; try again later"
    )
    assert len(server.requests_to(RUN_PATH)) == 4  # the first try and make_client's three retries
    assert isinstance(caught.value, Transient) and not isinstance(caught.value, Terminal)
    assert_token_hidden(caught.value)


def test_server_error_then_success_is_retried(server: FakeServer, api: GitHubApi) -> None:
    server.fail_then("GET", RUN_PATH, 2, (200, {}, fixture("workflow_run.json", server.url)), status=502)
    assert api.workflow_run(RUN_ID) == RunStatus(
        RUN_ID, "completed", "success", fixture("workflow_run.json", "")["html_url"]
    )


def test_connection_refused_is_transient_and_names_the_url() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    with GitHubApi(TOKEN, REPO, base_url=url) as api, pytest.raises(GitHubApiUnavailableError) as caught:
        api.approvers(RUN_ID)
    assert f"GitHub API did not answer GET {url}{APPROVALS_PATH}: ConnectionError" in str(caught.value)
    assert_token_hidden(caught.value)


def test_bad_token_is_terminal(server: FakeServer, api: GitHubApi) -> None:
    body = {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}
    server.reply("GET", APPROVALS_PATH, body, status=401)
    with pytest.raises(GitHubApiRefusedError, match=r"^GitHub refused the token") as caught:
        api.approvers(RUN_ID)
    assert caught.value.exit_code == 2
    assert isinstance(caught.value, Terminal) and not is_transient(caught.value)
    assert_token_hidden(caught.value)
    assert TOKEN not in repr(api)


def test_invalid_repository_is_refused_before_any_request() -> None:
    with pytest.raises(github_api.ConfigError):
        GitHubApi(TOKEN, "octo-org/../admin")


# -- environment -----------------------------------------------------------------------------------


def test_from_env_needs_token_and_repository(capsys: pytest.CaptureFixture[str]) -> None:
    assert github_api.from_env({}) is None
    assert github_api.from_env({"GITHUB_TOKEN": TOKEN}) is None
    assert github_api.from_env({"GITHUB_REPOSITORY": REPO, "GITHUB_TOKEN": ""}) is None
    api = github_api.from_env({"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPO})
    assert api is not None
    assert (api.repository, api.base_url) == (REPO, "https://api.github.com")
    assert capsys.readouterr().out == ""  # not in Actions: nothing to mask


def test_from_env_in_actions_uses_the_api_url_and_prints_nothing(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.reply("GET", RUN_PATH, fixture("workflow_run.json", server.url))
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": server.url, "GITHUB_ACTIONS": "true"}
    api = github_api.from_env(env)
    assert api is not None
    assert capsys.readouterr() == ("", "")  # the runner masks GITHUB_TOKEN itself
    with api:
        status = api.workflow_run(RUN_ID)
    assert status is not None and status.conclusion == "success"


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GITHUB_API_URL", raising=False)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    assert github_api.from_env() is None
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    api = github_api.from_env()
    assert api is not None and api.repository == REPO
