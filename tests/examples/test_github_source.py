"""The GitHub source against a fake GitHub API on 127.0.0.1 (the faults through the CLI: test_github_faults.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from glucose_github import github_source
from glucose_github.raw import EVENTS, REPO_STATS, schemas

from cascade_ci.errors import ConfigError, SourceError, SourceUnavailableError
from tests.examples.rejects import rejected_rows, tallies
from tests.fakes.github import TOKEN, assert_token_hidden, rate_limited
from tests.fakes.http import FakeServer, Response, unused_port

FIXTURES = Path(__file__).parent.parent / "fixtures" / "github"
REPO = "octocat/Hello-World"
EVENTS_PATH = "/users/octocat/events/public"
REPO_PATH = f"/repos/{REPO}"
CONTRIBUTORS = f"{REPO_PATH}/stats/contributors"
ACTIVITY = f"{REPO_PATH}/stats/commit_activity"


def fixture(name: str, base_url: str) -> Any:
    """A recorded payload, its `https://api.github.com` links pointed at the fake server (as GHES does)."""
    return json.loads((FIXTURES / name).read_text().replace("https://api.github.com", base_url))


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def api() -> Iterator[FakeServer]:
    with FakeServer() as server:
        server.reply("GET", "/users/octocat", fixture("user_octocat.json", server.url))
        server.pages(EVENTS_PATH, fixture("events_octocat.json", server.url))
        server.reply("GET", REPO_PATH, fixture("repo_octocat_hello_world.json", server.url))
        server.reply("GET", CONTRIBUTORS, fixture("stats_contributors.json", server.url))
        server.reply("GET", ACTIVITY, fixture("stats_commit_activity.json", server.url))
        yield server


# -- events ----------------------------------------------------------------------------------------


def test_events_follow_link_headers(api: FakeServer) -> None:
    api.pages(EVENTS_PATH, fixture("events_octocat.json", api.url)[:4])
    batch = github_source.fetch_user_events(TOKEN, ["octocat"], base_url=api.url, per_page=2)
    assert batch.tables[EVENTS].column("event_id").to_pylist() == [
        "35471923512",
        "35471876004",
        "35471790317",
        "35471702266",
    ]
    pages = api.requests_to(EVENTS_PATH)
    assert [(p.param("per_page"), p.param("page")) for p in pages] == [("2", None), ("2", "2")]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in api.requests)


def test_events_stop_at_max_pages(api: FakeServer) -> None:
    batch = github_source.fetch_user_events(None, ["octocat"], base_url=api.url, per_page=2, max_pages=2)
    assert batch.row_counts() == {EVENTS: 4}  # the tally row
    assert tallies(batch, EVENTS) == ["1 users asked for: 1 read, 0 failed; 4 events kept, 0 rejected"]
    assert len(api.requests_to(EVENTS_PATH)) == 2
    assert all("authorization" not in r.headers for r in api.requests)


def test_events_map_to_the_events_schema(api: FakeServer) -> None:
    table = github_source.fetch_user_events(TOKEN, ["octocat"], base_url=api.url).tables[EVENTS]
    assert table.schema == schemas()[EVENTS]
    rows = {row["event_id"]: row for row in table.to_pylist()}
    assert len(rows) == 7
    push = rows["35471923512"]
    payload = json.loads(push.pop("payload_json"))
    assert payload["head"] == "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d" and len(payload["commits"]) == 2
    assert push == {
        "event_id": "35471923512",
        "event_type": "PushEvent",
        "actor_login": "octocat",
        "repo_name": "octocat/Hello-World",
        "org_login": None,
        "is_public": True,
        "payload_action": None,
        "commit_count": 2,
        "ref": "refs/heads/master",
        "ref_type": None,
        "head_sha": "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d",
        "item_number": None,
        "release_tag": None,
        "created_at": datetime(2024, 1, 13, 5, 20, 11, tzinfo=UTC),
        "ingested_at": None,
        "source": "github-api",
    }
    pull = rows["35471876004"]
    assert (pull["event_type"], pull["payload_action"], pull["org_login"], pull["commit_count"]) == (
        "PullRequestEvent",
        "opened",
        "github",
        None,
    )
    assert pull["item_number"] == 4521
    assert rows["35471790317"]["payload_action"] == "opened"
    assert (rows["35471702266"]["payload_action"], rows["35471702266"]["org_login"]) == ("started", "nightscout")
    assert rows["35471655890"]["event_type"] == "CreateEvent"
    assert rows["35471601122"]["commit_count"] == 1  # commits listed, no `size`
    assert rows["35471588410"]["commit_count"] is None  # neither (GitHub's payloads since October 2025)


def test_unknown_event_types_are_left_to_the_gates(api: FakeServer) -> None:
    events = fixture("events_octocat.json", api.url)[:1]
    events[0]["type"] = "CopilotAgentEvent"
    api.pages(EVENTS_PATH, events)
    table = github_source.fetch_user_events(TOKEN, ["octocat"], base_url=api.url).tables[EVENTS]
    assert table.column("event_type").to_pylist() == ["CopilotAgentEvent"]


def test_duplicate_events_across_pages_are_kept_once(api: FakeServer) -> None:
    events = fixture("events_octocat.json", api.url)[:3]
    api.pages(EVENTS_PATH, [events[0], events[1], events[1], events[2]])  # the feed shifted between pages
    table = github_source.fetch_user_events(TOKEN, ["octocat"], base_url=api.url, per_page=2).tables[EVENTS]
    assert table.column("event_id").to_pylist() == [e["id"] for e in events]


@pytest.mark.parametrize(
    ("field", "message"),
    [("id", "GitHub event #1 of user octocat (id=?): missing id"), ("created_at", "created_at is missing")],
)
def test_malformed_event_is_rejected_alone(api: FakeServer, field: str, message: str) -> None:
    events = fixture("events_octocat.json", api.url)
    del events[1][field]
    api.pages(EVENTS_PATH, events)
    batch = github_source.fetch_user_events(TOKEN, ["octocat"], base_url=api.url)
    assert batch.tables[EVENTS].num_rows == 6
    (rejected,) = rejected_rows(batch, EVENTS)
    assert message in rejected["reason"] and json.loads(rejected["record"]) == events[1]
    assert TOKEN not in rejected["reason"]
    assert batch.failures == []  # the user was read: only one event is rejected


def test_unknown_user_is_rejected_and_the_others_kept(api: FakeServer) -> None:
    batch = github_source.fetch_user_events(TOKEN, ["ghost", "octocat"], base_url=api.url)
    assert batch.tables[EVENTS].num_rows == 7
    (rejected,) = rejected_rows(batch, EVENTS)
    assert rejected["record"] == '{"user": "ghost"}'
    assert rejected["reason"] == (
        f"GitHub answered HTTP 404 reading the public events of user ghost at {api.url}/users/ghost/events/public "
        "(Not Found)"
    )
    assert github_source.all_failed(batch, 2) is None
    alone = github_source.fetch_user_events(TOKEN, ["ghost"], base_url=api.url)
    error = github_source.all_failed(alone, 1)
    assert isinstance(error, SourceError) and not isinstance(error, SourceUnavailableError)
    assert "HTTP 404 reading the public events of user ghost" in str(error)
    assert_token_hidden(error)


def test_rate_limited_events_say_when_the_limit_resets(api: FakeServer) -> None:
    reset = int(time.time()) + 1800
    api.route("GET", EVENTS_PATH, lambda _req: rate_limited(reset))
    with pytest.raises(SourceUnavailableError, match="rate limit exhausted") as caught:
        github_source.fetch_user_events(TOKEN, ["octocat"], base_url=api.url)
    assert datetime.fromtimestamp(reset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") in str(caught.value)
    assert len(api.requests_to(EVENTS_PATH)) == 1  # no waiting, no retry
    assert_token_hidden(caught.value)


def test_token_is_never_printed(api: FakeServer, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The token comes from `secrets.*`, which the runner masks itself: nothing to print, even in Actions."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    github_source.fetch_user_events(TOKEN, ["octocat"], base_url=api.url, max_pages=1)
    assert capsys.readouterr() == ("", "")


def test_names_are_checked_before_any_request(api: FakeServer) -> None:
    with pytest.raises(ConfigError):
        github_source.fetch_user_events(TOKEN, ["octo/../cat"], base_url=api.url)
    with pytest.raises(ConfigError):
        github_source.fetch_repo_stats(TOKEN, ["not-a-repo"], base_url=api.url)
    assert api.requests == []


# -- repository statistics -------------------------------------------------------------------------


def test_repo_stats_map_to_the_stats_schema(api: FakeServer) -> None:
    before = datetime.now(UTC)
    batch = github_source.fetch_repo_stats(TOKEN, [REPO], base_url=api.url, snapshot_date=date(2024, 1, 13))
    table = batch.tables[REPO_STATS]
    assert table.schema == schemas()[REPO_STATS]
    (row,) = table.to_pylist()
    fetched = row.pop("fetched_at")
    assert before <= fetched <= datetime.now(UTC)
    assert row == {
        "repo_name": "octocat/Hello-World",
        "snapshot_date": date(2024, 1, 13),
        "stargazers_count": 2983,
        "forks_count": 3142,
        "open_issues_count": 1612,
        "watchers_count": 1735,  # subscribers_count: `watchers_count` is the star count
        "size_kb": 1,
        "language": None,
        "is_archived": False,
        "contributors_count": 3,
        "commits_last_4_weeks": 45,
        "commits_last_52_weeks": 534,
        "repo_created_at": datetime(2011, 1, 26, 19, 1, 12, tzinfo=UTC),
        "pushed_at": datetime(2024, 1, 13, 5, 20, 11, tzinfo=UTC),
        "ingested_at": None,
        "source": "github-api",
    }
    stats = [r for r in api.requests if "/stats/" in r.path]
    assert len(stats) == 2
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in stats)


def test_snapshot_date_defaults_to_today_utc_and_watchers_fall_back(api: FakeServer) -> None:
    repo = fixture("repo_octocat_hello_world.json", api.url)
    del repo["subscribers_count"]
    api.reply("GET", REPO_PATH, repo)
    (row,) = github_source.fetch_repo_stats(None, [REPO], base_url=api.url).tables[REPO_STATS].to_pylist()
    assert row["snapshot_date"] in {datetime.now(UTC).date(), (datetime.now(UTC) - timedelta(seconds=5)).date()}
    assert row["watchers_count"] == 2983


def test_empty_repository_has_zero_statistics(api: FakeServer) -> None:
    api.reply("GET", CONTRIBUTORS, None, status=204)
    api.reply("GET", ACTIVITY, None, status=204)
    (row,) = github_source.fetch_repo_stats(TOKEN, [REPO], base_url=api.url).tables[REPO_STATS].to_pylist()
    assert (row["contributors_count"], row["commits_last_4_weeks"], row["commits_last_52_weeks"]) == (0, 0, 0)


def test_stats_202_is_retried_with_backoff(api: FakeServer) -> None:
    computing: Response = (202, {}, None)
    for path, name in ((CONTRIBUTORS, "stats_contributors.json"), (ACTIVITY, "stats_commit_activity.json")):
        api.sequence("GET", path, [computing, computing, (200, {}, fixture(name, api.url))])
    sleeps = Sleeps()
    table = github_source.fetch_repo_stats(TOKEN, [REPO], base_url=api.url, sleep=sleeps).tables[REPO_STATS]
    assert (table["contributors_count"][0].as_py(), table["commits_last_52_weeks"][0].as_py()) == (3, 534)
    assert len(api.requests_to(CONTRIBUTORS)) == 3
    assert len(api.requests_to(ACTIVITY)) == 3
    assert sleeps == [1.0, 2.0, 1.0, 2.0]


def test_stats_202_forever_gives_up_within_max_wait(api: FakeServer) -> None:
    api.reply("GET", CONTRIBUTORS, None, status=202)
    sleeps = Sleeps()
    started = time.monotonic()
    batch = github_source.fetch_repo_stats(TOKEN, [REPO], base_url=api.url, max_wait_s=10, sleep=sleeps)
    assert sleeps == [1.0, 2.0, 4.0, 3.0]
    assert sum(sleeps) <= 10
    assert len(api.requests_to(CONTRIBUTORS)) == 5
    assert time.monotonic() - started < 5
    assert batch.tables[REPO_STATS].num_rows == 0
    (rejected,) = rejected_rows(batch, REPO_STATS)
    assert "still computing the contributors statistics of octocat/Hello-World after waiting 10 s" in rejected["reason"]
    error = github_source.all_failed(batch, 1)
    assert isinstance(error, SourceUnavailableError)  # try again later
    assert_token_hidden(error)


def test_stats_server_errors_are_retried(api: FakeServer) -> None:
    api.fail_then("GET", ACTIVITY, 2, (200, {}, fixture("stats_commit_activity.json", api.url)), status=502)
    sleeps = Sleeps()
    (row,) = (
        github_source.fetch_repo_stats(TOKEN, [REPO], base_url=api.url, sleep=sleeps).tables[REPO_STATS].to_pylist()
    )
    assert row["commits_last_4_weeks"] == 45
    assert len(api.requests_to(ACTIVITY)) == 3
    assert sleeps == [0.5, 1.0]


def test_repo_server_errors_are_retried(api: FakeServer) -> None:
    api.fail_then("GET", REPO_PATH, 2, (200, {}, fixture("repo_octocat_hello_world.json", api.url)))
    sleeps = Sleeps()
    batch = github_source.fetch_repo_stats(TOKEN, [REPO], base_url=api.url, sleep=sleeps)
    assert batch.row_counts() == {REPO_STATS: 1}
    assert tallies(batch, REPO_STATS) == ["1 repositories asked for: 1 read, 0 failed"]
    assert len(api.requests_to(REPO_PATH)) == 3
    assert sleeps == [0.5, 1.0]


@pytest.mark.parametrize(("path", "status"), [(REPO_PATH, 403), (REPO_PATH, 429), (CONTRIBUTORS, 403), (ACTIVITY, 429)])
def test_rate_limit_is_unavailable_until_reset(api: FakeServer, path: str, status: int) -> None:
    reset = int(time.time()) + 600
    api.route("GET", path, lambda _req: rate_limited(reset, status))
    sleeps = Sleeps()
    with pytest.raises(SourceUnavailableError) as caught:
        github_source.fetch_repo_stats(TOKEN, [REPO], base_url=api.url, sleep=sleeps)
    message = str(caught.value)
    assert f"HTTP {status}" in message
    assert f"resets at {datetime.fromtimestamp(reset, UTC):%Y-%m-%dT%H:%M:%SZ} (in " in message
    assert len(api.requests_to(path)) == 1
    assert sleeps == []
    assert_token_hidden(caught.value)


def test_bad_token_is_a_source_error(api: FakeServer) -> None:
    api.reply("GET", REPO_PATH, {"message": "Bad credentials", "status": "401"}, status=401)
    with pytest.raises(SourceError, match="GitHub rejected the token") as caught:
        github_source.fetch_repo_stats(TOKEN, [REPO], base_url=api.url)
    assert not isinstance(caught.value, SourceUnavailableError)
    assert_token_hidden(caught.value)


def test_connection_refused_is_unavailable() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    batch = github_source.fetch_repo_stats(TOKEN, [REPO], base_url=url, sleep=Sleeps())
    error = github_source.all_failed(batch, 1)
    assert isinstance(error, SourceUnavailableError)
    assert str(error).startswith(f"GitHub did not answer reading repository {REPO} at {url}/repos/{REPO}: ")
    assert "ConnectionRefusedError" in str(error)
    assert_token_hidden(error)


@pytest.mark.parametrize(
    ("status", "message"),
    [(429, "Too many requests"), (403, "You have exceeded a secondary rate limit. Please wait a few minutes.")],
)
def test_secondary_rate_limit_is_not_waited_out(api: FakeServer, status: int, message: str) -> None:
    api.reply("GET", REPO_PATH, {"message": message}, status=status, headers={"Retry-After": "1"})
    with pytest.raises(SourceUnavailableError, match="retry after 1 s") as caught:
        github_source.fetch_repo_stats(TOKEN, [REPO], base_url=api.url)
    assert len(api.requests_to(REPO_PATH)) == 1
    assert_token_hidden(caught.value)


def test_an_object_instead_of_events_and_a_next_page_elsewhere_reject_the_user(api: FakeServer) -> None:
    events = fixture("events_octocat.json", api.url)
    api.reply("GET", EVENTS_PATH, {"message": "Moved", "documentation_url": "https://docs.github.com"})
    batch = github_source.fetch_user_events(TOKEN, ["octocat"], base_url=api.url)
    (rejected,) = rejected_rows(batch, EVENTS)
    assert rejected["reason"].startswith("GitHub answered dict, not a list of events, reading the public events of")
    elsewhere = {"Link": '<https://evil.example/users/octocat/events/public?page=2>; rel="next"'}
    api.reply("GET", EVENTS_PATH, events[:2], headers=elsewhere)
    batch = github_source.fetch_user_events(TOKEN, ["octocat"], base_url=api.url)
    assert batch.tables[EVENTS].num_rows == 2  # the first page is kept
    (rejected,) = rejected_rows(batch, EVENTS)
    message = "next page of the public events of user octocat is on another host (https://evil.example/"
    assert message in rejected["reason"]
    assert len(api.requests) == 2  # the token did not follow the link
