"""The Nightscout source against a fake Nightscout API on 127.0.0.1."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from glucose_github import nightscout
from glucose_github.raw import GLUCOSE, schemas

from cascade_ci.errors import ConfigError, SourceError, SourceUnavailableError
from tests.fakes.http import FakeServer, Request, Response, unused_port

FIXTURE = Path(__file__).parent.parent / "fixtures" / "nightscout_entries.json"
ENDPOINT = "/api/v1/entries/sgv.json"
SECRET = "correct-horse-battery-staple"
SECRET_SHA1 = hashlib.sha1(SECRET.encode()).hexdigest()
T0 = datetime(2024, 1, 13, tzinfo=UTC)


def fixture_entries() -> list[dict]:
    return json.loads(FIXTURE.read_text())


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def nightscout_api(entries: list[dict]):
    """A handler with the real API's semantics: sgv type only, date filters, newest first, `count` cap."""

    def handler(req: Request) -> Response:
        count = int(req.param("count") or 10)
        gte, lt = req.param("find[date][$gte]"), req.param("find[date][$lt]")
        rows = [
            e
            for e in entries
            if e.get("type") == "sgv" and (gte is None or e["date"] >= int(gte)) and (lt is None or e["date"] < int(lt))
        ]
        rows.sort(key=lambda e: e["date"], reverse=True)
        return 200, {}, rows[:count]

    return handler


def synthetic(n: int, start: datetime) -> list[dict]:
    return [
        {
            "_id": f"{i:024x}",
            "date": ms(start + timedelta(minutes=i)),
            "dateString": (start + timedelta(minutes=i)).isoformat(),
            "sgv": 80 + i % 200,
            "direction": "Flat",
            "type": "sgv",
        }
        for i in range(n)
    ]


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_pages_backwards_with_hashed_secret() -> None:
    entries = synthetic(2500, T0)
    since, until = T0, T0 + timedelta(days=3)
    with FakeServer() as server:
        server.route("GET", ENDPOINT, nightscout_api(entries))
        batch = nightscout.fetch_entries(server.url, SECRET, since, until, page_size=1000)
    table = batch.tables[GLUCOSE]
    assert table.num_rows == 2500
    assert sorted(table.column("entry_id").to_pylist()) == sorted(e["_id"] for e in entries)
    calls = server.requests_to(ENDPOINT)
    assert len(calls) == 3
    assert [c.param("count") for c in calls] == ["1000"] * 3
    assert [c.param("find[date][$gte]") for c in calls] == [str(ms(since))] * 3
    newest_first = sorted((e["date"] for e in entries), reverse=True)
    assert [c.param("find[date][$lt]") for c in calls] == [
        str(ms(until)),
        str(newest_first[999]),
        str(newest_first[1999]),
    ]
    for call in server.requests:
        assert call.headers["api-secret"] == SECRET_SHA1
        assert SECRET not in call.target + json.dumps(call.headers) + call.body.decode()


def test_exact_multiple_of_page_size_stops_on_an_empty_page() -> None:
    with FakeServer() as server:
        server.route("GET", ENDPOINT, nightscout_api(synthetic(20, T0)))
        batch = nightscout.fetch_entries(server.url, None, T0, T0 + timedelta(days=1), page_size=10)
    assert batch.row_counts() == {GLUCOSE: 20}
    assert len(server.requests) == 3
    assert "api-secret" not in server.requests[0].headers


def test_window_is_since_inclusive_until_exclusive_and_sgv_only() -> None:
    since = datetime(2024, 1, 13, 5, 0, tzinfo=UTC)
    until = datetime(2024, 1, 13, 5, 20, tzinfo=UTC)  # the newest fixture entry is exactly at `until`
    with FakeServer() as server:
        server.route("GET", ENDPOINT, nightscout_api(fixture_entries()))
        table = nightscout.fetch_entries(server.url, SECRET, since, until).tables[GLUCOSE]
    assert table.column("reading_timestamp").to_pylist() == [
        datetime(2024, 1, 13, 5, minute, tzinfo=UTC) for minute in (15, 10, 5, 0)
    ]
    assert table.column("entry_type").to_pylist() == ["sgv"] * 4


def test_max_pages_is_an_error_not_a_cut_window() -> None:
    with FakeServer() as server:
        server.route("GET", ENDPOINT, nightscout_api(synthetic(50, T0)))
        with pytest.raises(SourceError, match="more than 2 pages"):
            nightscout.fetch_entries(server.url, None, T0, T0 + timedelta(days=1), page_size=10, max_pages=2)


def test_entries_map_to_the_glucose_schema() -> None:
    table = nightscout.entries_to_batch(fixture_entries(), "nightscout-api").tables[GLUCOSE]
    assert table.schema == schemas()[GLUCOSE]
    assert table.num_rows == 8  # the mbg and cal records are skipped
    first = table.slice(0, 1).to_pylist()[0]
    assert first == {
        "entry_id": "65a1f0c2e4b0a1b2c3d4e5f6",
        "sgv": 142,
        "date_ms": 1705123200000,
        "date_string": "2024-01-13T05:20:00.000Z",
        "reading_timestamp": datetime(2024, 1, 13, 5, 20, tzinfo=UTC),
        "direction": "Flat",
        "trend": 4,
        "device": "xDrip-DexcomG6",
        "entry_type": "sgv",
        "utc_offset": 0,
        "ingested_at": None,
        "source": "nightscout-api",
    }
    last = table.slice(7, 1).to_pylist()[0]
    assert (last["trend"], last["device"], last["utc_offset"], last["sgv"]) == (None, "share2", 60, 131)


def test_out_of_range_glucose_is_left_to_the_gates() -> None:
    entries = fixture_entries()[:2]
    entries[0]["sgv"], entries[1]["sgv"] = 900, 5
    table = nightscout.entries_to_batch(entries, "x").tables[GLUCOSE]
    assert table.column("sgv").to_pylist() == [900, 5]


@pytest.mark.parametrize("shape", ["list", "object"])
def test_load_export(tmp_path: Path, shape: str) -> None:
    entries = fixture_entries()
    path = tmp_path / "export.json"
    path.write_text(json.dumps(entries if shape == "list" else {"status": "ok", "entries": entries}))
    table = nightscout.load_export(path).tables[GLUCOSE]
    assert table.num_rows == 8
    assert table.column("source").unique().to_pylist() == ["nightscout-export"]
    assert table.column("sgv").to_pylist() == [142, 141, 139, 138, 138, 136, 133, 131]


def test_load_export_accepts_mongoexport_object_ids(tmp_path: Path) -> None:
    entries = fixture_entries()[:1]
    entries[0]["_id"] = {"$oid": "65a1f0c2e4b0a1b2c3d4e5f6"}
    path = tmp_path / "export.json"
    path.write_text(json.dumps(entries))
    assert nightscout.load_export(path).tables[GLUCOSE].column("entry_id").to_pylist() == ["65a1f0c2e4b0a1b2c3d4e5f6"]


def test_load_export_rejects_other_shapes(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text('{"status": "ok"}')
    with pytest.raises(SourceError, match="neither a list"):
        nightscout.load_export(path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("_id", None, "Nightscout entry #3 (no _id): missing _id"),
        ("sgv", "high", "Nightscout entry #3 (_id='65a1f0c2e4b0a1b2c3d4e601'): sgv is not an integer: 'high'"),
        ("sgv", 141.5, "#3 (_id='65a1f0c2e4b0a1b2c3d4e601'): sgv is not an integer: 141.5"),
        ("date", None, "#3 (_id='65a1f0c2e4b0a1b2c3d4e601'): missing date"),
        ("date", "yesterday", "#3 (_id='65a1f0c2e4b0a1b2c3d4e601'): date is not a number: 'yesterday'"),
    ],
)
def test_malformed_record_names_it(field: str, value: object, message: str) -> None:
    entries = [e for e in fixture_entries() if e["type"] == "sgv"]
    entries[3] = copy.deepcopy(entries[3]) | {"_id": "65a1f0c2e4b0a1b2c3d4e601"}
    if value is None:
        del entries[3][field]
    else:
        entries[3][field] = value
    with pytest.raises(SourceError) as caught:
        nightscout.entries_to_batch(entries, "x")
    assert message in str(caught.value)


def test_malformed_record_on_a_later_page_fails_the_whole_fetch() -> None:
    entries = synthetic(25, T0)
    entries[2]["sgv"] = "LOW"  # the oldest page
    with FakeServer() as server:
        server.route("GET", ENDPOINT, nightscout_api(entries))
        with pytest.raises(SourceError, match=r"#22 \(_id='0+2'\): sgv is not an integer: 'LOW'"):
            nightscout.fetch_entries(server.url, None, T0, T0 + timedelta(days=1), page_size=10)
    assert len(server.requests) == 3


def test_server_errors_and_429_are_retried() -> None:
    sleeps = Sleeps()
    with FakeServer() as server:
        ok: Response = (200, {}, fixture_entries()[:2])
        server.sequence("GET", ENDPOINT, [(500, {}, "boom"), (429, {"Retry-After": "1"}, ""), ok])
        batch = nightscout.fetch_entries(server.url, SECRET, T0, T0 + timedelta(days=1), sleep=sleeps)
    assert batch.row_counts() == {GLUCOSE: 2}
    assert len(server.requests) == 3
    assert sleeps == [0.5, 1.0]


def test_persistent_server_error_is_unavailable_after_four_tries() -> None:
    sleeps = Sleeps()
    with FakeServer() as server:
        server.fail_then("GET", ENDPOINT, 10, (200, {}, []), status=503)
        with pytest.raises(SourceUnavailableError, match="did not answer after 4 tries: HTTP 503"):
            nightscout.fetch_entries(server.url, SECRET, T0, T0 + timedelta(days=1), sleep=sleeps)
    assert len(server.requests) == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_timeout_is_retried() -> None:
    def slow_once(req: Request, calls: list[int] = []) -> Response:  # noqa: B006 - a call counter
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.6)
        return 200, {}, fixture_entries()[:1]

    with FakeServer() as server:
        server.route("GET", ENDPOINT, slow_once)
        batch = nightscout.fetch_entries(server.url, None, T0, T0 + timedelta(days=1), timeout=0.2, sleep=Sleeps())
    assert batch.row_counts() == {GLUCOSE: 1}
    assert len(server.requests) == 2


def test_connection_refused_is_unavailable_and_names_the_url() -> None:
    port = unused_port()
    sleeps = Sleeps()
    with pytest.raises(SourceUnavailableError) as caught:
        nightscout.fetch_entries(f"http://127.0.0.1:{port}", SECRET, T0, T0 + timedelta(days=1), sleep=sleeps)
    message = str(caught.value)
    assert f"http://127.0.0.1:{port}/api/v1/entries/sgv.json" in message
    assert "ConnectionRefusedError" in message
    assert SECRET not in message and SECRET_SHA1 not in message
    assert len(sleeps) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_refused_secret_is_a_source_error_without_retry(status: int) -> None:
    with FakeServer() as server:
        server.reply("GET", ENDPOINT, {"status": status, "message": "Unauthorized"}, status=status)
        with pytest.raises(SourceError, match="Nightscout refused the API secret") as caught:
            nightscout.fetch_entries(server.url, "wrong-secret", T0, T0 + timedelta(days=1), sleep=Sleeps())
    assert not isinstance(caught.value, SourceUnavailableError)
    assert "wrong-secret" not in str(caught.value)
    assert len(server.requests) == 1


def test_non_list_answer_is_a_source_error() -> None:
    with FakeServer() as server:
        server.reply("GET", ENDPOINT, {"status": "ok"})
        with pytest.raises(SourceError, match="not a list of entries"):
            nightscout.fetch_entries(server.url, None, T0, T0 + timedelta(days=1))


def test_secret_and_hash_are_masked_only_in_actions(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    with FakeServer() as server:
        server.reply("GET", ENDPOINT, [])
        nightscout.fetch_entries(server.url, SECRET, T0, T0 + timedelta(days=1))
        assert capsys.readouterr().out == ""
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
        batch = nightscout.fetch_entries(server.url, SECRET, T0, T0 + timedelta(days=1))
    assert capsys.readouterr().out.splitlines() == [f"::add-mask::{SECRET}", f"::add-mask::{SECRET_SHA1}"]
    assert batch.tables[GLUCOSE].schema == schemas()[GLUCOSE]
    assert batch.row_counts() == {GLUCOSE: 0}


def test_window_must_be_aware_and_non_empty() -> None:
    with pytest.raises(ConfigError, match="timezone-aware"):
        nightscout.fetch_entries("http://127.0.0.1:1", None, datetime(2024, 1, 1), datetime(2024, 1, 2))
    with pytest.raises(ConfigError, match="empty window"):
        nightscout.fetch_entries("http://127.0.0.1:1", None, T0, T0)
