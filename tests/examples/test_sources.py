"""The example's three source functions, as its cascade.toml names them: what they make of cascade's context."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from glucose_github import sources
from glucose_github.raw import EVENTS, GLUCOSE, REPO_STATS, schemas

from cascade_ci.errors import ConfigError
from cascade_ci.sources.base import SourceContext
from tests.examples.test_github_source import EVENTS_PATH, fixture
from tests.examples.test_nightscout_source import FIXTURE
from tests.fakes.http import FakeServer

UNTIL = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
RAW = {GLUCOSE, EVENTS, REPO_STATS}


def counts(tables) -> dict[str, int]:
    return {name: rows.num_rows for name, rows in tables.items()}


def context(name: str, hours: float = 48, **options) -> SourceContext:
    return SourceContext(name, UNTIL - timedelta(hours=hours), UNTIL, "1", Path("."), options)


def assert_raw_tables(tables, label: str) -> None:
    """Every raw table, in its raw schema, stamped with the read's end and the source's label."""
    assert set(tables) == RAW
    for name, rows in tables.items():
        assert rows.schema == schemas()[name], name
        assert set(rows["ingested_at"].to_pylist()) <= {UNTIL}, name
        assert rows["ingested_at"].null_count == 0, name
    assert set(tables[GLUCOSE]["source"].to_pylist()) <= {label}


def test_sample_reads_the_window_with_options_as_the_config_gives_them():
    tables = sources.sample(context("sample", seed="7", defects=""))  # ${VAR:-...} always yields text
    assert_raw_tables(tables, "sample")
    assert counts(tables) == {GLUCOSE: 576, EVENTS: 271, REPO_STATS: 5}
    assert set(tables[GLUCOSE]["site_utc_offset"].to_pylist()) == {0}  # no timezone: the entries' own (UTC)
    stamps = tables[GLUCOSE]["reading_timestamp"].to_pylist()
    assert UNTIL - timedelta(hours=48) <= min(stamps) and max(stamps) <= UNTIL
    assert sources.sample(context("sample", seed="7")) == tables  # deterministic: reruns upsert the same rows
    six_hours = sources.sample(context("sample", hours=6))
    assert six_hours[GLUCOSE].num_rows == 72


def test_sample_seed_and_defects():
    seven = set(sources.sample(context("sample", seed="7"))[GLUCOSE]["entry_id"].to_pylist())
    eight = set(sources.sample(context("sample", seed=8))[GLUCOSE]["entry_id"].to_pylist())
    assert len(seven) == len(eight) == 576 and not seven & eight
    defective = sources.sample(context("sample", defects="duplicate_ids, null_ids"))
    ids = defective[GLUCOSE]["entry_id"]
    assert (ids.length(), ids.null_count) == (579, 3)
    listed = sources.sample(context("sample", defects=["duplicate_ids", "null_ids"]))
    assert listed == defective
    with pytest.raises(ConfigError, match=r"unknown defect\(s\) \['typo'\]; choose from duplicate_ids, "):
        sources.sample(context("sample", defects="typo"))


def test_sample_defects_of_the_nightscout_semantics():
    codes = sources.sample(context("sample", defects="error_codes"))[GLUCOSE]
    assert sorted(v for v in codes["sgv"].to_pylist() if v < 39) == [5, 5, 9, 9, 10, 10]
    ctx = context("sample", defects="rejected_records")
    rejected = sources.sample(ctx)
    assert (rejected[GLUCOSE].num_rows, len(ctx.rejected)) == (576 - 58, 58)  # handed to cascade-ci to land
    assert {reject.table for reject in ctx.rejected} == {GLUCOSE}
    assert all(reject.record and reject.reason for reject in ctx.rejected)


def test_sample_timezone_sets_the_site_offset():
    tables = sources.sample(context("sample", timezone="America/New_York"))
    assert set(tables[GLUCOSE]["site_utc_offset"].to_pylist()) == {-300}  # January: EST
    with pytest.raises(ConfigError, match="is not a known time zone"):
        sources.sample(context("sample", timezone="Mars/Olympus_Mons"))


def test_nightscout_reads_an_export_file():
    tables = sources.nightscout(context("nightscout", file=str(FIXTURE)))
    assert_raw_tables(tables, "nightscout-export")
    assert counts(tables) == {GLUCOSE: 8, EVENTS: 0, REPO_STATS: 0}


def test_nightscout_file_option_takes_several_paths_and_globs(tmp_path):
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(FIXTURE.read_text())
    root = SourceContext("nightscout", UNTIL - timedelta(hours=1), UNTIL, "1", tmp_path, {"file": "*.json, b.json"})
    assert sources.nightscout(root)[GLUCOSE].num_rows == 8  # the same entries thrice: one row each
    with pytest.raises(ConfigError, match=r"no file matches 'c\*\.json'"):
        sources.nightscout(SourceContext("nightscout", UNTIL, UNTIL, "1", tmp_path, {"file": "c*.json"}))


@pytest.mark.parametrize("options", [{}, {"url": "", "api_secret": ""}])
def test_nightscout_needs_a_url_or_a_file(options):
    with pytest.raises(ConfigError) as caught:
        sources.nightscout(context("nightscout", **options))
    assert str(caught.value) == "the nightscout source needs option url (NIGHTSCOUT_URL) or file"


def test_github_reads_each_user_of_a_comma_separated_list():
    with FakeServer() as server:
        for login in ("octocat", "hubot"):
            user = {**fixture("user_octocat.json", server.url), "login": login, "url": f"{server.url}/users/{login}"}
            server.reply("GET", f"/users/{login}", user)
        server.pages(EVENTS_PATH, fixture("events_octocat.json", server.url))
        server.reply("GET", "/users/hubot/events/public", [])
        options = {"users": "octocat, hubot,", "repos": "", "token": "", "api_url": server.url}
        tables = sources.github(context("github", hours=24 * 800, **options))  # the recorded events are of 2024
        recent = sources.github(context("github", **options))
    assert_raw_tables(tables, "github")
    assert counts(tables) == {GLUCOSE: 0, EVENTS: 7, REPO_STATS: 0}
    assert recent[EVENTS].num_rows == 0  # none in the last 48 hours: the ingest window is honoured
    assert set(tables[EVENTS]["source"].to_pylist()) == {"github-api"}  # the fetcher's label is kept
    event_paths = [r.path for r in server.requests if r.path.endswith("/events/public")]
    assert list(dict.fromkeys(event_paths)) == [EVENTS_PATH, "/users/hubot/events/public"]  # in the order given
    assert all("authorization" not in r.headers for r in server.requests)  # an empty token is no token


@pytest.mark.parametrize(
    ("options", "environment", "chosen"),
    [
        ({"source_token": "src", "token": "wf"}, {}, "src"),
        ({"source_token": "", "token": "wf"}, {}, "wf"),
        ({"source_token": "", "token": ""}, {"GH_SOURCE_TOKEN": "env-src", "GITHUB_TOKEN": "env-wf"}, "env-src"),
        ({}, {"GITHUB_TOKEN": "env-wf"}, "env-wf"),
        ({"source_token": " "}, {}, None),
    ],
)
def test_github_token_prefers_gh_source_token(monkeypatch, options, environment, chosen):
    for name in ("GH_SOURCE_TOKEN", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert sources.github_token(options) == chosen
