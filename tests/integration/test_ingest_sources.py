"""`cascade ingest` from the real-API sources, served by a local fake with the APIs' payload shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from cascade_ci.catalog import open_catalog
from cascade_ci.cli import cli
from cascade_ci.pipeline.raw import GLUCOSE
from tests.fakes.http import FakeServer
from tests.unit.test_nightscout_source import ENDPOINT, FIXTURE, nightscout_api, synthetic


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
    assert json.loads(result.stdout)["rows"] == {GLUCOSE: 300}
    assert again.exit_code == 0
    ids = glucose_ids("pipeline/run-1")
    assert len(ids) == len(set(ids)) == 300
    assert all("s3cret-value" not in r.target and "s3cret-value" not in str(r.headers) for r in server.requests)


def test_ingest_from_export_file():
    assert cascade("branch", "--run-id", "2").exit_code == 0
    result = cascade("ingest", "--run-id", "2", "--from-file", str(FIXTURE), "--json")
    assert result.exit_code == 0, result.stderr
    expected = [e["_id"] for e in json.loads(FIXTURE.read_text()) if e.get("type") == "sgv"]
    assert sorted(glucose_ids("pipeline/run-2")) == sorted(expected)


def test_malformed_payload_writes_nothing(tmp_path):
    bad = tmp_path / "export.json"
    entries = synthetic(10, datetime.now(UTC))
    entries[4]["sgv"] = "high"
    bad.write_text(json.dumps(entries))
    assert cascade("branch", "--run-id", "3").exit_code == 0
    head = open_catalog().get_ref("pipeline/run-3").hash
    result = cascade("ingest", "--run-id", "3", "--from-file", str(bad))
    assert result.exit_code == 2
    assert "#4" in result.stderr and "sgv" in result.stderr
    assert open_catalog().get_ref("pipeline/run-3").hash == head


def test_missing_nightscout_url_is_a_config_error():
    assert cascade("branch", "--run-id", "4").exit_code == 0
    result = cascade("ingest", "--run-id", "4", "--source", "nightscout")
    assert result.exit_code == 2
    assert "NIGHTSCOUT_URL" in result.stderr
