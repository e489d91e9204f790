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
from tests.examples.rejects import rejected_rows, tallies
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
    assert table.column("entry_id").to_pylist() == [e["_id"] for e in entries]  # in time order
    assert tallies(batch, GLUCOSE) == ["2500 records read: 2500 readings, 0 rejected, 0 skipped (not sgv), 0 repeats"]
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
        datetime(2024, 1, 13, 5, minute, tzinfo=UTC) for minute in (0, 5, 10, 15)
    ]
    assert table.column("entry_type").to_pylist() == ["sgv"] * 4


def test_max_pages_is_an_error_not_a_cut_window() -> None:
    with FakeServer() as server:
        server.route("GET", ENDPOINT, nightscout_api(synthetic(50, T0)))
        with pytest.raises(SourceError, match="more than 2 pages"):
            nightscout.fetch_entries(server.url, None, T0, T0 + timedelta(days=1), page_size=10, max_pages=2)


def test_entries_map_to_the_glucose_schema() -> None:
    batch = nightscout.entries_to_batch(fixture_entries(), "nightscout-api")
    table = batch.tables[GLUCOSE]
    assert table.schema == schemas()[GLUCOSE]
    assert table.num_rows == 8  # the mbg and cal records are skipped, not rejected
    assert tallies(batch, GLUCOSE) == ["10 records read: 8 readings, 0 rejected, 2 skipped (not sgv), 0 repeats"]
    newest = table.slice(7, 1).to_pylist()[0]  # rows are in time order
    assert newest == {
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
        "site_utc_offset": 0,
        "is_valid": None,
        "ingested_at": None,
        "source": "nightscout-api",
    }
    oldest = table.slice(0, 1).to_pylist()[0]
    assert (oldest["trend"], oldest["device"], oldest["utc_offset"], oldest["sgv"]) == (None, "share2", 60, 131)
    assert oldest["site_utc_offset"] == 60  # its own offset: no timezone was given


def test_timezone_option_sets_the_site_offset_per_reading_across_dst() -> None:
    """Europe/Berlin is +01:00 until 2024-03-31 01:00 UTC, +02:00 after; a fixed offset stays fixed."""
    switch = datetime(2024, 3, 31, 1, 0, tzinfo=UTC)
    entries = [
        {"_id": f"id{i}", "date": ms(switch + timedelta(minutes=minutes)), "sgv": 100, "type": "sgv", "utcOffset": 0}
        for i, minutes in enumerate((-5, 0, 5))
    ]
    berlin = nightscout.entries_to_batch(entries, "x", zone=nightscout.site_zone("Europe/Berlin")).tables[GLUCOSE]
    assert berlin["site_utc_offset"].to_pylist() == [60, 120, 120]
    assert berlin["utc_offset"].to_pylist() == [0, 0, 0]  # the entries' own, kept as given
    fixed = nightscout.entries_to_batch(entries, "x", zone=nightscout.site_zone("-05:30")).tables[GLUCOSE]
    assert fixed["site_utc_offset"].to_pylist() == [-330] * 3
    own = nightscout.entries_to_batch(entries, "x").tables[GLUCOSE]
    assert own["site_utc_offset"].to_pylist() == [0] * 3


@pytest.mark.parametrize(
    ("entry", "offset"),
    [
        ({"utcOffset": -420, "dateString": "2016-06-01T10:00:00+01:00"}, -420),  # utcOffset first
        ({"dateString": "2024-01-13T06:20:00.000+0100"}, 60),  # xDrip's dateString
        ({"dateString": "2024-01-13T05:20:00.000Z"}, 0),  # the bridges' toISOString
        ({"dateString": "2016-06-01T10:00:00"}, 0),  # no offset anywhere: UTC
        ({}, 0),
    ],
)
def test_own_offset_is_utcoffset_else_the_datestring_offset_else_utc(entry: dict, offset: int) -> None:
    batch = nightscout.entries_to_batch([{"date": 1705123200000, "sgv": 120, **entry}], "x")
    assert batch.tables[GLUCOSE]["site_utc_offset"].to_pylist() == [offset]


@pytest.mark.parametrize("name", ["Europe/Berln", "+25:00", "local"])
def test_unknown_timezone_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="timezone"):
        nightscout.site_zone(name)


def test_out_of_range_glucose_is_left_to_the_gates() -> None:
    entries = fixture_entries()[:2]
    entries[0]["sgv"], entries[1]["sgv"] = 900, 5
    table = nightscout.entries_to_batch(entries, "x").tables[GLUCOSE]
    assert sorted(table.column("sgv").to_pylist()) == [5, 900]  # 5 is an error code: kept, flagged by staging


@pytest.mark.parametrize("shape", ["list", "object", "api-v3", "lines", "bom"])
def test_load_export(tmp_path: Path, shape: str) -> None:
    entries = fixture_entries()
    path = tmp_path / "export.json"
    if shape == "lines":
        path.write_text("\n".join(json.dumps(entry) for entry in entries) + "\n")
    elif shape == "bom":
        path.write_bytes(b"\xef\xbb\xbf" + json.dumps(entries).encode())
    else:
        wrapped = {"list": entries, "object": {"status": "ok", "entries": entries}, "api-v3": {"result": entries}}
        path.write_text(json.dumps(wrapped[shape]))
    table = nightscout.load_export(path).tables[GLUCOSE]
    assert table.num_rows == 8
    assert table.column("source").unique().to_pylist() == ["nightscout-export"]
    assert table.column("sgv").to_pylist() == [131, 133, 136, 138, 138, 139, 141, 142]


def test_load_export_accepts_mongoexport_extended_json(tmp_path: Path) -> None:
    entries = fixture_entries()[:1]
    entries[0]["_id"] = {"$oid": "65a1f0c2e4b0a1b2c3d4e5f6"}
    entries[0]["date"] = {"$numberLong": "1705123200000"}
    entries[0]["sgv"] = {"$numberInt": "142"}
    path = tmp_path / "export.json"
    path.write_text(json.dumps(entries))
    row = nightscout.load_export(path).tables[GLUCOSE].to_pylist()[0]
    assert (row["entry_id"], row["date_ms"], row["sgv"]) == ("65a1f0c2e4b0a1b2c3d4e5f6", 1705123200000, 142)


def test_files_are_deduplicated_across_each_other(tmp_path: Path) -> None:
    """The same readings in two files (one with ids, one as an uploader posted them) and a repeat in one."""
    entries = [e for e in fixture_entries() if e["type"] == "sgv"]
    (tmp_path / "a.json").write_text(json.dumps(entries[:5] + entries[:1]))
    uploaded = [{k: v for k, v in e.items() if k != "_id"} for e in entries[3:]]
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(e) + "\n" for e in uploaded + uploaded[:2]))
    batch = nightscout.load_export([tmp_path / "a.json", tmp_path / "b.jsonl"])
    table = batch.tables[GLUCOSE]
    ids = table["entry_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 5 + 5  # five by _id, five derived from (date, type, device)
    derived = [i for i in ids if i.startswith("ns-")]
    assert len(derived) == 5
    again = nightscout.load_export(tmp_path / "b.jsonl").tables[GLUCOSE]["entry_id"].to_pylist()
    assert sorted(again) == sorted(derived)  # the derived id is the same on every read: reruns upsert
    # readings 3 and 4 are in both files, under an _id and a derived id: staging keeps one per time
    dates = table["date_ms"].to_pylist()
    assert len(set(dates)) == 8


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"status": "ok"}', "without an 'entries' or 'result' list"),
        (b"", "is empty"),
        (b"\xff\xfe[]", "is not UTF-8 text (byte 0)"),
        (b"time,gl\n2024-01-01 00:00,100\n", "neither JSON nor JSON lines (line 1:"),
        (b'[{"_id": "a", "date": 1705123200000, "sgv": 100},\n {"_id": "b", "date": 17051', "(entry #1)"),
    ],
)
def test_a_file_that_cannot_be_read_fails_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "export.json"
    path.write_bytes(content)
    with pytest.raises(SourceError) as caught:
        nightscout.load_export(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("sgv", "high", "sgv is not a number: 'high'"),
        ("sgv", 141.5, "sgv is not a whole number: 141.5"),
        ("sgv", -3, "sgv is negative: -3"),
        ("sgv", None, "missing sgv"),
        ("date", None, "missing date (and no dateString with a UTC offset to take it from)"),
        ("date", "yesterday", "date is not a number: 'yesterday'"),
        ("date", True, "date is not a number: True"),
        ("trend", "up", "trend is not a number: 'up'"),
        ("device", 5, "device is not text: 5"),
        ("type", 5, "type is not text: 5"),
        ("isValid", "yes", "isValid is not true or false: 'yes'"),
    ],
)
def test_a_record_that_cannot_be_read_is_rejected_alone(field: str, value: object, reason: str) -> None:
    entries = [e for e in fixture_entries() if e["type"] == "sgv"]
    entries[3] = copy.deepcopy(entries[3]) | {"_id": "65a1f0c2e4b0a1b2c3d4e601"}
    if field == "date":
        del entries[3]["dateString"]  # else the date is taken from it
    if value is None:
        del entries[3][field]
    else:
        entries[3][field] = value
    batch = nightscout.entries_to_batch(entries, "x")
    assert batch.tables[GLUCOSE].num_rows == 7
    (rejected,) = rejected_rows(batch, GLUCOSE)
    assert rejected["reason"] == f"Nightscout entry #3 (_id='65a1f0c2e4b0a1b2c3d4e601'): {reason}"
    assert json.loads(rejected["record"]) == entries[3]


@pytest.mark.parametrize(
    ("value", "read"), [("178", 178), (" 178 ", 178), ("178.0", 178), (178.0, 178), ({"$numberDouble": "178"}, 178)]
)
def test_sgv_may_be_a_numeric_string(value: object, read: int) -> None:
    batch = nightscout.entries_to_batch([{"date": 1705123200000, "sgv": value, "type": "sgv"}], "x")
    assert batch.tables[GLUCOSE]["sgv"].to_pylist() == [read]


def test_mbg_and_cal_are_skipped_before_their_fields_are_checked() -> None:
    entries = [
        {"type": "mbg", "mbg": 131, "date": "13/01/2024 06:31"},
        {"type": "cal", "slope": 1005.8, "date": None, "device": 7},
        {"type": "sgv", "sgv": 120, "date": 1705123200000},
    ]
    batch = nightscout.entries_to_batch(entries, "x")
    assert batch.row_counts() == {GLUCOSE: 1}


def test_repeats_keep_the_last_copy_and_deleted_records_are_kept_flagged() -> None:
    first = {"_id": "a", "date": 1705123200000, "sgv": 120, "type": "sgv"}
    entries = [first, {"_id": "b", "date": 1705123500000, "sgv": 125, "isValid": False}, first | {"sgv": 121}]
    table = nightscout.entries_to_batch(entries, "x").tables[GLUCOSE]
    assert table.select(["entry_id", "sgv", "is_valid"]).to_pylist() == [
        {"entry_id": "a", "sgv": 121, "is_valid": None},
        {"entry_id": "b", "sgv": 125, "is_valid": False},
    ]


def test_rejected_records_on_a_later_page_do_not_fail_the_fetch() -> None:
    entries = synthetic(25, T0)
    entries[2]["sgv"] = "LOW"  # on the oldest page
    api = nightscout_api(entries)
    undated = {"_id": "undated", "sgv": 100, "type": "sgv"}

    def handler(req: Request) -> Response:
        status, headers, rows = api(req)
        if req.param("find[date][$lt]") == str(entries[15]["date"]):  # the middle page: a proxy adds a record
            rows = [*rows, undated]
        return status, headers, rows

    with FakeServer() as server:
        server.route("GET", ENDPOINT, handler)
        batch = nightscout.fetch_entries(server.url, None, T0, T0 + timedelta(days=1), page_size=10)
    assert len(server.requests) == 3
    assert batch.tables[GLUCOSE].num_rows == 24
    assert [row["reason"] for row in rejected_rows(batch, GLUCOSE)] == [
        "Nightscout entry #20 (_id='undated'): missing date (and no dateString with a UTC offset to take it from)",
        "Nightscout entry #23 (_id='000000000000000000000002'): sgv is not a number: 'LOW'",
    ]


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


def test_only_the_hash_is_masked_on_stderr_only_in_actions(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    with FakeServer() as server:
        server.reply("GET", ENDPOINT, [])
        nightscout.fetch_entries(server.url, SECRET, T0, T0 + timedelta(days=1))
        assert capsys.readouterr() == ("", "")
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
        batch = nightscout.fetch_entries(server.url, SECRET, T0, T0 + timedelta(days=1))
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout may be --json output
    assert captured.err.splitlines() == [f"::add-mask::{SECRET_SHA1}"]  # the runner masks the secret itself
    assert batch.tables[GLUCOSE].schema == schemas()[GLUCOSE]
    assert batch.row_counts() == {GLUCOSE: 0}


def test_window_must_be_aware_and_non_empty() -> None:
    with pytest.raises(ConfigError, match="timezone-aware"):
        nightscout.fetch_entries("http://127.0.0.1:1", None, datetime(2024, 1, 1), datetime(2024, 1, 2))
    with pytest.raises(ConfigError, match="empty window"):
        nightscout.fetch_entries("http://127.0.0.1:1", None, T0, T0)
