"""Real uploaders' record shapes through the CLI: nothing valid dropped, nothing invalid promoted.

Each fixture in tests/fixtures/nightscout/ is shaped after its uploader's own code (see the README there):
xDrip+'s REST upload, the Dexcom Share bridge, nightscout-librelink-up, AndroidAPS (API v1 and v3), an
OpenAPS rig, and a mongoexport of a Nightscout `entries` collection (JSON lines with a BOM). What each must
yield is written down here by hand, from the fixture's design, not from the parser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from cascade_ci.catalog import open_catalog
from cascade_ci.cli import cli
from tests.conftest import REPO
from tests.examples.rejects import rejected_rows

FIXTURES = REPO / "tests" / "fixtures" / "nightscout"
GLUCOSE, REJECTS = "raw.glucose_entries", "raw.glucose_entries__rejects"

pytestmark = pytest.mark.usefixtures("glucose_project")


@dataclass(frozen=True)
class Expect:
    rows: int  # raw.glucose_entries rows: each reading once (error codes and deleted ones included)
    readings: int  # marts.fct_glucose_readings rows: one per reading time, no error code, none deleted
    rejected: list[str] = field(default_factory=list)  # the reasons, in file order
    error_codes: int = 0
    offsets: frozenset[int] = frozenset({0})  # site_utc_offset without a timezone option: the entries' own
    derived_ids: bool = True  # the uploader sends no _id: ids derived from (date, type, device)


EXPECTED = {
    # 12 readings, one posted twice; a meter reading (with its date as text) and a calibration skipped.
    "xdrip_upload.json": Expect(rows=12, readings=12, offsets=frozenset({60})),
    # Two sgv as text ("178", "142.0"), two error codes (5 and 9), and a 39 (LOW: glucose, not an error).
    "dexcom_share_bridge.json": Expect(rows=14, readings=12, error_codes=2),
    # One reading a minute; three posted again on the next poll.
    "librelinkup_upload.json": Expect(rows=60, readings=60),
    # sgv as a double; one 141.5 (not a whole mg/dL); one invalidated in AAPS (isValid false).
    "aaps_nsclient.json": Expect(
        rows=9,
        readings=8,
        rejected=["aaps_nsclient.json entry #4 (_id='66240627a6d7e3de88a14df3'): sgv is not a whole number: 141.5"],
        derived_ids=False,
    ),
    # API v3: `identifier` is the id, utcOffset +120.
    "aaps_api_v3.json": Expect(rows=8, readings=8, offsets=frozenset({120}), derived_ids=False),
    # The CGM said nothing once (sgv null); one date written as text; local dateString without an offset.
    "openaps_rig.json": Expect(rows=9, readings=9, rejected=["openaps_rig.json entry #3 (no _id): missing sgv"]),
    # JSON lines with a BOM; $oid and $numberLong; mbg and cal skipped; one document exported twice; the same
    # reading under another uploader's _id (two raw rows, one reading); an error code; "HIGH"; a cut line.
    "mongoexport_entries.jsonl": Expect(
        rows=16,
        readings=14,
        error_codes=1,
        offsets=frozenset({120}),
        derived_ids=False,
        rejected=[
            "mongoexport_entries.jsonl line 4 (_id='6658f938244fb37908ddee28'): sgv is not a number: 'HIGH'",
            "mongoexport_entries.jsonl line 20: not valid JSON (Expecting ',' delimiter at column 114)",
        ],
    ),
}


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def table(ref: str, name: str):
    return open_catalog().tables(ref).load_table(name).scan().to_arrow()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_uploader_file_ingests_what_it_holds(name: str) -> None:
    expect = EXPECTED[name]
    run = name.split(".")[0].replace("_", "-")
    assert cascade("branch", "--run-id", run).exit_code == 0
    result = cascade("ingest", "--run-id", run, "--source", "nightscout", "-o", f"file={FIXTURES / name}", "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert (payload["rows"][GLUCOSE], payload["rejected"].get(GLUCOSE, 0)) == (expect.rows, len(expect.rejected))
    raw = table(f"pipeline/run-{run}", GLUCOSE)
    ids = raw["entry_id"].to_pylist()
    assert len(set(ids)) == len(ids) == expect.rows
    assert all(i.startswith("ns-") for i in ids) == expect.derived_ids
    assert set(raw["site_utc_offset"].to_pylist()) == expect.offsets
    assert sum(1 for v in raw["sgv"].to_pylist() if v < 39) == expect.error_codes
    if expect.rejected:
        rejects = table(f"pipeline/run-{run}", REJECTS)
        assert sorted(row["reason"] for row in rejected_rows(rejects)) == sorted(expect.rejected)
        assert set(rejects["source"].to_pylist()) == {"nightscout"}
    again = cascade("ingest", "--run-id", run, "--source", "nightscout", "-o", f"file={FIXTURES / name}")
    assert again.exit_code == 0, again.stderr
    assert table(f"pipeline/run-{run}", GLUCOSE).num_rows == expect.rows  # a rerun upserts: no row twice
    if expect.rejected:
        assert len(rejected_rows(table(f"pipeline/run-{run}", REJECTS))) == len(expect.rejected)


def test_all_uploaders_run_end_to_end_and_only_valid_readings_are_promoted() -> None:
    files = ",".join(str(FIXTURES / name) for name in sorted(EXPECTED))
    result = cascade("run", "--run-id", "uploaders", "--source", "nightscout", "-o", f"file={files}", "--json")
    assert result.exit_code == 0, result.stderr + result.stdout
    run = json.loads(result.stdout)
    assert run["outcome"] == "promoted"
    assert run["rows_ingested"][GLUCOSE] == sum(e.rows for e in EXPECTED.values())
    readings = table("main", "marts.fct_glucose_readings")
    assert readings.num_rows == sum(e.readings for e in EXPECTED.values())
    assert min(readings["glucose_mg_dl"].to_pylist()) >= 39  # no error code is a glucose value
    assert len(set(readings["entry_id"].to_pylist())) == readings.num_rows
    stamps = readings["reading_timestamp"].to_pylist()
    assert len(set(stamps)) == len(stamps)  # the reading re-uploaded under another _id counts once
    daily = table("main", "marts.fct_daily_glucose_metrics")
    assert sum(daily["error_code_count"].to_pylist()) == sum(e.error_codes for e in EXPECTED.values())
    assert sum(daily["reading_count"].to_pylist()) == readings.num_rows
    rejects = rejected_rows(table("main", REJECTS))
    assert sorted(row["reason"] for row in rejects) == sorted(r for e in EXPECTED.values() for r in e.rejected)
    shares = {c["table"]: c for g in run["verdict"]["gates"] if g["gate"] == "rejects" for c in g["checks"]}
    assert (shares[GLUCOSE]["severity"], shares[GLUCOSE]["passed"]) == ("warn", False)  # listed, under 5 %
    assert shares[GLUCOSE]["message"].startswith("4 of 132 records rejected (3.03 %), within the limit of 5 %")

    # The mongoexport day: its utcOffset is +120, so 22:10 UTC on May 30 is 00:10 on May 31 at the site.
    day = next(r for r in daily.to_pylist() if r["reading_date"] == date(2024, 5, 31))
    assert (day["reading_count"], day["error_code_count"]) == (14, 1)
    late = next(r for r in readings.to_pylist() if r["reading_timestamp"] == datetime(2024, 5, 30, 22, 10, tzinfo=UTC))
    assert (late["reading_date"], late["hour_of_day"], late["site_utc_offset"]) == (date(2024, 5, 31), 0, 120)
    libre = next(r for r in daily.to_pylist() if r["reading_date"] == date(2024, 3, 9))
    assert libre["reading_interval_min"] == 1  # a Libre uploading every minute
    assert libre["data_completeness_pct"] == pytest.approx(100 * 60 / 1440)  # an hour of the day, not 500 %


def test_timezone_option_moves_days_and_hours_to_the_site() -> None:
    file = FIXTURES / "xdrip_upload.json"  # 05:00-05:55 UTC, dateString +0100: the site's 06:xx by default
    assert cascade("run", "--run-id", "own", "--source", "nightscout", "-o", f"file={file}").exit_code == 0
    assert sorted(set(table("main", "marts.fct_glucose_readings")["hour_of_day"].to_pylist())) == [6]
    options = ("-o", f"file={file}", "-o", "timezone=America/New_York")
    told = cascade("run", "--run-id", "nyc", "--source", "nightscout", *options)
    assert told.exit_code == 0, told.stderr
    readings = table("main", "marts.fct_glucose_readings")
    assert sorted(set(readings["hour_of_day"].to_pylist())) == [0]  # January in New York: -05:00
    assert set(readings["site_utc_offset"].to_pylist()) == {-300}
    assert set(readings["reading_date"].to_pylist()) == {date(2024, 1, 13)}


def test_a_file_mostly_unreadable_blocks_the_run(tmp_path: Path) -> None:
    entries = json.loads((FIXTURES / "dexcom_share_bridge.json").read_text())
    for entry in entries[:3]:
        entry["sgv"] = "---"  # a bridge that lost the value
    bad = tmp_path / "share.json"
    bad.write_text(json.dumps(entries))
    assert cascade("run", "--run-id", "ok", "--source", "nightscout", "-o", f"file={FIXTURES / 'xdrip_upload.json'}")
    main = open_catalog().get_ref("main").hash
    result = cascade("run", "--run-id", "bad", "--source", "nightscout", "-o", f"file={bad}", "--json")
    assert result.exit_code == 1, result.stderr
    run = json.loads(result.stdout)
    failing = [c for g in run["verdict"]["gates"] for c in g["checks"] if not c["passed"] and c["severity"] == "error"]
    assert [(c["gate"], c["table"]) for c in failing] == [("rejects", GLUCOSE)]
    assert failing[0]["message"].startswith("3 of 14 records rejected (21.43 %), over the limit of 5 %")
    assert open_catalog().get_ref("main").hash == main
