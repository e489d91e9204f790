"""`cascade ingest` from the example's real-API sources, served by a local fake with the APIs' payload shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from cascade_ci.catalog import open_catalog
from cascade_ci.cli import cli
from tests.examples.rejects import rejected_rows
from tests.examples.test_nightscout_source import ENDPOINT, FIXTURE, nightscout_api, synthetic
from tests.fakes.http import FakeServer
from tests.integration.test_ingest_stage import assert_failed_and_unchanged

GLUCOSE = "raw.glucose_entries"
REJECTS = "raw.glucose_entries__rejects"
RAW = {GLUCOSE, "raw.github_user_events", "raw.github_repo_stats"}
NO_ROWS = dict.fromkeys(RAW - {GLUCOSE}, 0)

pytestmark = pytest.mark.usefixtures("glucose_project")


def cascade(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def glucose_ids(ref: str) -> list[str]:
    table = open_catalog().tables(ref).load_table(GLUCOSE).scan().to_arrow()
    return table["entry_id"].to_pylist()


def test_ingest_from_nightscout_api_with_secret():
    entries = synthetic(300, datetime.now(UTC) - timedelta(hours=5))
    with FakeServer() as server:
        server.route("GET", ENDPOINT, nightscout_api(entries))
        env = {"NIGHTSCOUT_URL": server.url, "NIGHTSCOUT_API_SECRET": "s3cret-value"}
        assert cascade("branch", "--run-id", "1").exit_code == 0
        result = cascade("ingest", "--run-id", "1", "--source", "nightscout", "--json", env=env)
        again = cascade("ingest", "--run-id", "1", "--source", "nightscout", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["sources"] == ["nightscout"]
    # The example's sources return every raw table, empty when they have no rows for it.
    assert (payload["rows"], payload["rejected"]) == ({**NO_ROWS, GLUCOSE: 300}, {})
    assert again.exit_code == 0
    ids = glucose_ids("pipeline/run-1")
    assert len(ids) == len(set(ids)) == 300
    assert all("s3cret-value" not in r.target and "s3cret-value" not in str(r.headers) for r in server.requests)


def test_ingest_from_export_file_given_as_an_option():
    assert cascade("branch", "--run-id", "2").exit_code == 0
    result = cascade("ingest", "--run-id", "2", "--source", "nightscout", "-o", f"file={FIXTURE}", "--json")
    assert result.exit_code == 0, result.stderr
    expected = [e["_id"] for e in json.loads(FIXTURE.read_text()) if e.get("type") == "sgv"]
    assert json.loads(result.stdout)["rows"][GLUCOSE] == len(expected) == 8
    assert json.loads(result.stdout)["rejected"] == {}
    assert sorted(glucose_ids("pipeline/run-2")) == sorted(expected)
    sources = open_catalog().tables("pipeline/run-2").load_table(GLUCOSE).scan().to_arrow()["source"]
    assert set(sources.to_pylist()) == {"nightscout-export"}


def test_a_malformed_record_is_rejected_and_the_rest_lands(tmp_path):
    bad = tmp_path / "export.json"
    entries = synthetic(10, datetime.now(UTC))
    entries[4]["sgv"] = "high"
    bad.write_text(json.dumps(entries))
    assert cascade("branch", "--run-id", "3").exit_code == 0
    result = cascade("ingest", "--run-id", "3", "--source", "nightscout", "--option", f"file={bad}", "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert (payload["rows"], payload["rejected"]) == ({**NO_ROWS, GLUCOSE: 9}, {GLUCOSE: 1})
    assert sorted(glucose_ids("pipeline/run-3")) == sorted(e["_id"] for i, e in enumerate(entries) if i != 4)
    (rejected,) = rejected_rows(open_catalog().tables("pipeline/run-3").load_table(REJECTS).scan().to_arrow())
    assert rejected["reason"] == f"export.json entry #4 (_id='{entries[4]['_id']}'): sgv is not a number: 'high'"
    assert json.loads(rejected["record"]) == entries[4]
    assert (rejected["source"], rejected["run_id"]) == ("nightscout", "3")
    again = cascade("ingest", "--run-id", "3", "--source", "nightscout", "--option", f"file={bad}", "--json")
    assert again.exit_code == 0
    rejects = open_catalog().tables("pipeline/run-3").load_table(REJECTS).scan().to_arrow()
    assert rejects.num_rows == 1  # upserted on (source, record): a rerun does not count it twice


def test_a_file_that_cannot_be_read_writes_nothing(tmp_path):
    bad = tmp_path / "export.json"
    bad.write_text(json.dumps(synthetic(10, datetime.now(UTC)))[:-40])  # cut mid-record
    assert cascade("branch", "--run-id", "3b").exit_code == 0
    head = open_catalog().get_ref("pipeline/run-3b").hash
    result = cascade("ingest", "--run-id", "3b", "--source", "nightscout", "--option", f"file={bad}")
    assert result.exit_code == 2
    assert f"Nightscout export {bad} is not valid JSON at line 1" in result.stderr
    assert "(entry #9)" in result.stderr and "Traceback" not in result.stderr
    assert_failed_and_unchanged(open_catalog(), head, "pipeline/run-3b")


def test_missing_nightscout_url_is_a_config_error():
    assert cascade("branch", "--run-id", "4").exit_code == 0
    head = open_catalog().get_ref("pipeline/run-4").hash
    result = cascade("ingest", "--run-id", "4", "--source", "nightscout")
    assert result.exit_code == 2
    assert "NIGHTSCOUT_URL" in result.stderr
    assert_failed_and_unchanged(open_catalog(), head, "pipeline/run-4")


def test_sample_source_options_from_the_environment_and_the_command_line():
    """The example's cascade.toml reads CASCADE_SAMPLE_DEFECTS through ${VAR:-}; -o wins over it for one run."""
    assert cascade("branch", "--run-id", "5").exit_code == 0
    env = {"CASCADE_SAMPLE_DEFECTS": "duplicate_ids"}
    unknown = cascade("ingest", "--run-id", "5", "-o", "defects=no_such_defect", env=env)
    assert unknown.exit_code == 2
    assert "unknown defect(s) ['no_such_defect']" in unknown.stderr
    result = cascade("ingest", "--run-id", "5", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["sources"] == ["sample"]
    assert set(payload["rows"]) == RAW
    # 576 readings in 48 h plus three repeating an id: a batch is written as the source returned it (the upsert
    # replaces rows already on the branch, it does not judge the batch); the gates block the duplicates.
    assert payload["rows"][GLUCOSE] == 579
    ids = glucose_ids("pipeline/run-5")
    assert len(ids) == 579 and len(set(ids)) == 576
