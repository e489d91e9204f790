"""GitHub's faults, as recorded, through `cascade ingest --source github`: one clear line, or partial success.

The fake API serves the recorded payloads of tests/fixtures/github (their `created_at` moved into the ingest
window) and, per test, one fault: a body cut short, an HTML page served with 200, a rate-limit reset in
milliseconds, an http -> https redirect, an unknown user, statistics that stay "computing", an old
repository shape. A failure that concerns one user or repository lands in the rejects tables and the rest
is kept; when nothing can be read, the command fails with exit 2 and one line naming the URL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from cascade_ci.catalog import open_catalog
from cascade_ci.cli import cli
from tests.examples.rejects import rejected_rows
from tests.examples.test_github_source import ACTIVITY, CONTRIBUTORS, EVENTS_PATH, REPO, REPO_PATH, fixture
from tests.fakes.github import TOKEN, rate_limited
from tests.fakes.http import FakeServer, unused_port

EVENTS, EVENTS_REJECTS = "raw.github_user_events", "raw.github_user_events__rejects"
STATS, STATS_REJECTS = "raw.github_repo_stats", "raw.github_repo_stats__rejects"
OTHER = "octocat/Spoon-Knife"

pytestmark = pytest.mark.usefixtures("glucose_project")


def recent_events(base_url: str) -> list[dict]:
    """The recorded events, each an hour older than the one before, the newest an hour ago."""
    events = fixture("events_octocat.json", base_url)
    now = datetime.now(UTC)
    for hours, event in enumerate(events, start=1):
        event["created_at"] = (now - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return events


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """A fake GitHub serving user octocat and repositories octocat/Hello-World and octocat/Spoon-Knife."""
    with FakeServer() as server:
        server.pages(EVENTS_PATH, recent_events(server.url))
        server.reply("GET", "/users/hubot/events/public", [])
        for repo in (REPO, OTHER):
            payload = fixture("repo_octocat_hello_world.json", server.url) | {"full_name": repo}
            server.reply("GET", f"/repos/{repo}", payload)
            for kind in ("contributors", "commit_activity"):
                server.reply("GET", f"/repos/{repo}/stats/{kind}", fixture(f"stats_{kind}.json", server.url))
        monkeypatch.setenv("GITHUB_API_URL", server.url)
        monkeypatch.setenv("CASCADE_GITHUB_USERS", "octocat")
        monkeypatch.setenv("CASCADE_GITHUB_REPOS", REPO)
        monkeypatch.setenv("GITHUB_STATS_WAIT_S", "0.2")
        monkeypatch.delenv("GH_SOURCE_TOKEN", raising=False)
        yield server


def ingest(run_id: str, *options: str, **env: str):
    """`cascade ingest --source github` with `-o` options (`users=`, `repos=`: none) and environment variables."""
    runner = CliRunner()
    assert runner.invoke(cli, ["branch", "--run-id", run_id], catch_exceptions=False).exit_code == 0
    args = ["ingest", "--run-id", run_id, "--source", "github", "--json"]
    for option in options:
        args += ["-o", option]
    return runner.invoke(cli, args, env=env or None, catch_exceptions=False)


def rows(run_id: str, table: str) -> list[dict]:
    return open_catalog().tables(f"pipeline/run-{run_id}").load_table(table).scan().to_arrow().to_pylist()


def one_line_error(result, *parts: str) -> str:
    """The command failed with exit 2 and a one-line message holding `parts`, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    for part in parts:
        assert part in lines[0], lines[0]
    assert TOKEN not in result.stderr
    return lines[0]


def test_everything_answers_and_the_payload_is_kept(github: FakeServer) -> None:
    result = ingest("ok", GITHUB_TOKEN=TOKEN)
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert (payload["rows"][EVENTS], payload["rows"][STATS], payload["rejected"]) == (7, 1, {})
    events = {row["event_id"]: row for row in rows("ok", EVENTS)}
    push = events["35471923512"]
    assert json.loads(push["payload_json"])["commits"][0]["message"] == "Fix the README typo"
    assert (push["ref"], push["head_sha"]) == ("refs/heads/master", "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d")
    assert events["35471876004"]["item_number"] == 4521
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in github.requests)


def test_gh_source_token_alone_is_used(github: FakeServer) -> None:
    result = ingest("token", GH_SOURCE_TOKEN=TOKEN)
    assert result.exit_code == 0, result.stderr
    assert {r.headers.get("authorization") for r in github.requests} == {f"Bearer {TOKEN}"}


def test_the_ingest_window_is_honoured(github: FakeServer) -> None:
    events = recent_events(github.url)
    events[-1]["created_at"] = (datetime.now(UTC) - timedelta(days=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    events[0]["created_at"] = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    github.pages(EVENTS_PATH, events)
    result = ingest("window")
    assert result.exit_code == 0, result.stderr
    kept = {row["event_id"] for row in rows("window", EVENTS)}
    assert kept == {e["id"] for e in events[1:-1]}  # not 5 days ago (ingest_hours is 48), not in the future


def test_a_body_cut_short_rejects_that_user_and_keeps_the_others(github: FakeServer) -> None:
    body = json.dumps(recent_events(github.url)).encode()
    json_type = {"Content-Type": "application/json"}
    github.reply("GET", "/users/hubot/events/public", body[: len(body) // 2], headers=json_type)
    result = ingest("cut", CASCADE_GITHUB_USERS="octocat,hubot")
    assert result.exit_code == 0, result.stderr
    assert len(rows("cut", EVENTS)) == 7
    (rejected,) = rejected_rows(rows("cut", EVENTS_REJECTS))
    assert rejected["record"] == '{"user": "hubot"}'
    url = f"{github.url}/users/hubot/events/public"
    expected = f"GitHub answered invalid JSON reading the public events of user hubot at {url}: "
    assert rejected["reason"].startswith(expected)


def test_a_body_cut_short_for_the_only_user_is_one_line(github: FakeServer) -> None:
    body = json.dumps(recent_events(github.url)).encode()
    github.reply("GET", EVENTS_PATH, body[:900], headers={"Content-Type": "application/json"})
    result = ingest("cut-all", "repos=")
    one_line_error(result, "GitHub answered invalid JSON", f"{github.url}{EVENTS_PATH}", "user octocat")


def test_an_html_page_served_with_200_is_named(github: FakeServer) -> None:
    page = "<!DOCTYPE html><html><head><title>Sign in · Proxy</title></head><body>Sign in</body></html>"
    github.reply("GET", REPO_PATH, page, headers={"Content-Type": "text/html; charset=utf-8"})
    result = ingest("html", "users=", f"repos={REPO},{OTHER}")
    assert result.exit_code == 0, result.stderr
    assert [row["repo_name"] for row in rows("html", STATS)] == [OTHER]  # no row of nulls for the page
    (rejected,) = rejected_rows(rows("html", STATS_REJECTS))
    assert rejected["reason"].startswith(f"GitHub answered an HTML page, not JSON, reading repository {REPO} at ")
    alone = ingest("html-all", "users=")
    one_line_error(alone, "HTML page", f"{github.url}{REPO_PATH}", "is api_url")


def test_an_old_repository_shape_is_read_or_rejected_never_a_row_of_nulls(github: FakeServer) -> None:
    old = fixture("repo_octocat_hello_world.json", github.url)
    for modern in ("stargazers_count", "forks_count", "open_issues_count", "subscribers_count", "watchers_count"):
        old.pop(modern)
    github.reply("GET", REPO_PATH, old)  # GitHub Enterprise 2.x: `watchers`, `forks`, `open_issues`
    github.reply("GET", f"/repos/{OTHER}", {"full_name": OTHER, "id": 1, "owner": {"login": "octocat"}})
    result = ingest("old", "users=", f"repos={REPO},{OTHER}")
    assert result.exit_code == 0, result.stderr
    (row,) = rows("old", STATS)
    assert (row["stargazers_count"], row["forks_count"], row["open_issues_count"]) == (
        old["watchers"],
        old["forks"],
        old["open_issues"],
    )
    (rejected,) = rejected_rows(rows("old", STATS_REJECTS))
    assert "lacks the star, fork or open-issue count" in rejected["reason"] and OTHER in rejected["reason"]


def test_a_rate_limit_reset_in_milliseconds_is_read(github: FakeServer) -> None:
    reset = time.time() + 900
    status, headers, body = rate_limited(int(reset))
    headers["X-RateLimit-Reset"] = str(int(reset * 1000))  # a proxy's milliseconds
    github.route("GET", EVENTS_PATH, lambda _req: (status, headers, body))
    line = one_line_error(ingest("ms", CASCADE_GITHUB_USERS="octocat,hubot"), "rate limit exhausted", EVENTS_PATH)
    assert f"resets at {datetime.fromtimestamp(int(reset), UTC):%Y-%m-%dT%H:%M:%SZ} (in " in line
    assert len(github.requests_to("/users/hubot/events/public")) == 0  # the limit concerns every request: stop


def test_an_http_to_https_redirect_is_refused_with_the_fix(github: FakeServer) -> None:
    secure = github.url.replace("http://", "https://")
    github.reply("GET", EVENTS_PATH, "", status=301, headers={"Location": f"{secure}{EVENTS_PATH}?per_page=100"})
    result = ingest("redirect", "repos=", GITHUB_TOKEN=TOKEN)
    one_line_error(result, f"redirected the public events of user octocat from {github.url}{EVENTS_PATH} to {secure}")
    assert "set api_url" in result.stderr
    assert len(github.requests) == 1  # the token was not sent on


def test_an_unknown_user_does_not_discard_the_others(github: FakeServer) -> None:
    result = ingest("ghost", CASCADE_GITHUB_USERS="ghost,octocat")
    assert result.exit_code == 0, result.stderr
    assert len(rows("ghost", EVENTS)) == 7 and len(rows("ghost", STATS)) == 1
    (rejected,) = rejected_rows(rows("ghost", EVENTS_REJECTS))
    assert rejected["reason"] == (
        f"GitHub answered HTTP 404 reading the public events of user ghost at {github.url}/users/ghost/events/public "
        "(Not Found)"
    )


def test_statistics_that_stay_computing_reject_that_repository_only(github: FakeServer) -> None:
    github.reply("GET", f"/repos/{OTHER}/stats/contributors", None, status=202)
    result = ingest("computing", CASCADE_GITHUB_REPOS=f"{OTHER},{REPO}")
    assert result.exit_code == 0, result.stderr
    assert len(rows("computing", EVENTS)) == 7  # the events are not discarded either
    assert [row["repo_name"] for row in rows("computing", STATS)] == [REPO]
    (rejected,) = rejected_rows(rows("computing", STATS_REJECTS))
    assert f"still computing the contributors statistics of {OTHER} after waiting 0.2 s" in rejected["reason"]
    assert rejected["record"] == json.dumps({"repo": OTHER})
    assert len(github.requests_to(CONTRIBUTORS)) == 1 and len(github.requests_to(ACTIVITY)) == 1


def test_github_not_answering_is_one_line() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    env = {"GITHUB_API_URL": url, "CASCADE_GITHUB_USERS": "octocat", "CASCADE_GITHUB_REPOS": REPO}
    line = one_line_error(ingest("down", **env), "GitHub did not answer reading", url, "ConnectionRefusedError")
    assert line.endswith("; all 2 users and repositories asked for failed")
