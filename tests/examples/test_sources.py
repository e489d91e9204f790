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


def context(name: str, hours: float = 48, **options) -> SourceContext:
    return SourceContext(name, UNTIL - timedelta(hours=hours), UNTIL, "1", Path("."), options)


def assert_raw_tables(tables, label: str) -> None:
    """Every raw table, in its raw schema, stamped with the read's end and the source's label."""
    assert set(tables) == {GLUCOSE, EVENTS, REPO_STATS}
    for name, rows in tables.items():
        assert rows.schema == schemas()[name], name
        assert set(rows["ingested_at"].to_pylist()) <= {UNTIL}, name
        assert rows["ingested_at"].null_count == 0, name
    assert set(tables[GLUCOSE]["source"].to_pylist()) <= {label}


def test_sample_reads_the_window_with_options_as_the_config_gives_them():
    tables = sources.sample(context("sample", seed="7", defects=""))  # ${VAR:-...} always yields text
    assert_raw_tables(tables, "sample")
    assert {name: rows.num_rows for name, rows in tables.items()} == {GLUCOSE: 576, EVENTS: 271, REPO_STATS: 5}
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


def test_nightscout_reads_an_export_file():
    tables = sources.nightscout(context("nightscout", file=str(FIXTURE)))
    assert_raw_tables(tables, "nightscout-export")
    assert {name: rows.num_rows for name, rows in tables.items()} == {GLUCOSE: 8, EVENTS: 0, REPO_STATS: 0}


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
        tables = sources.github(context("github", users="octocat, hubot,", repos="", token="", api_url=server.url))
    assert_raw_tables(tables, "github")
    assert {name: rows.num_rows for name, rows in tables.items()} == {GLUCOSE: 0, EVENTS: 7, REPO_STATS: 0}
    assert set(tables[EVENTS]["source"].to_pylist()) == {"github-api"}  # the fetcher's label is kept
    event_paths = [r.path for r in server.requests if r.path.endswith("/events/public")]
    assert list(dict.fromkeys(event_paths)) == [EVENTS_PATH, "/users/hubot/events/public"]  # in the order given
    assert all("authorization" not in r.headers for r in server.requests)  # an empty token is no token
