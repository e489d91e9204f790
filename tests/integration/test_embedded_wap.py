"""Write-Audit-Publish end to end through the `cascade` CLI: one contract, run on both backends.

Every test runs on the embedded catalog and on real Nessie (+ moto as S3), the same assertions.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from junitparser import JUnitXml

from cascade_ci.catalog import open_catalog
from cascade_ci.catalog.base import RefKind
from cascade_ci.cli import cli
from tests.conftest import read_rows, readings, write_rows


@pytest.fixture(autouse=True, params=["local", "nessie"])
def backend(request, monkeypatch) -> str:
    """Which catalog the test runs on. These flows write tables by hand and never run dbt: schema gate only."""
    if request.param == "nessie":
        request.getfixturevalue("nessie_backend")
    monkeypatch.setenv("CASCADE_GATES", "schema")
    return request.param


def cascade(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def branch(run_id: str) -> str:
    result = cascade("branch", "--run-id", run_id)
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def ids(ref: str) -> list[int]:
    return sorted(read_rows(open_catalog(), ref, "raw.readings")["id"].to_pylist())


def test_branch_write_validate_promote(settings, tmp_path):
    name = branch("101")
    assert name == "pipeline/run-101"
    write_rows(open_catalog(), name, "raw.readings", readings(1, 2, 3))
    assert not open_catalog().tables("main").table_exists("raw.readings")

    validated = cascade("validate", "--run-id", "101")
    assert validated.exit_code == 0, validated.output
    assert validated.stdout.strip() == "passed"
    verdict = json.loads((tmp_path / "reports" / "verdict.json").read_text())
    assert verdict["outcome"] == "passed"
    assert verdict["changes"][0]["table"] == "raw.readings" and verdict["changes"][0]["rows_after"] == 3
    suites = JUnitXml.fromfile(str(tmp_path / "reports" / "junit.xml"))
    cases = [case for suite in suites for case in suite]
    assert [(c.classname, c.name, c.is_passed) for c in cases] == [
        ("cascade.schema.raw.readings", "backward_compatible", True)
    ]
    assert (tmp_path / "reports" / "summary.md").read_text().startswith("## ✅ cascade verdict: passed")

    promoted = cascade("promote", "--run-id", "101", "--json")
    assert promoted.exit_code == 0, promoted.output
    result = json.loads(promoted.stdout)
    assert result["action"] == "promoted"
    catalog = open_catalog()
    assert ids("main") == ids(name) == [1, 2, 3]
    tag = catalog.get_ref(result["tag"])
    assert tag.kind is RefKind.TAG and tag.name.startswith("prod-")
    assert tag.hash == catalog.get_ref("main").hash == result["main_after"]

    again = cascade("promote", "--run-id", "101", "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["action"] == "already-promoted"
    assert json.loads(again.stdout)["tag"] == result["tag"]
    assert catalog.get_ref("main").hash == result["main_after"]


def _main_with_readings() -> None:
    catalog = open_catalog()
    rows = pa.table({"id": pa.array([1, 2], pa.int64()), "device": pa.array(["a", "b"])})
    write_rows(catalog, "main", "raw.readings", rows)


def test_dropped_column_blocks(tmp_path):
    _main_with_readings()
    main_before = open_catalog().get_ref("main").hash
    name = branch("102")
    with open_catalog().tables(name).load_table("raw.readings").update_schema() as update:
        update.delete_column("device")

    validated = cascade("validate", "--run-id", "102")
    assert validated.exit_code == 1
    assert validated.stdout.strip() == "blocked"
    suites = JUnitXml.fromfile(str(tmp_path / "reports" / "junit.xml"))
    assert suites.failures == 1
    failing = [case for suite in suites for case in suite if not case.is_passed]
    assert failing[0].classname == "cascade.schema.raw.readings"
    assert "column device dropped" in failing[0].result[0].message

    refused = cascade("promote", "--run-id", "102")
    assert refused.exit_code == 1
    assert "blocked by its verdict" in refused.stderr
    assert open_catalog().get_ref("main").hash == main_before


def test_second_of_two_forks_is_refused():
    _main_with_readings()
    for run_id, new in (("103", 30), ("104", 40)):
        write_rows(open_catalog(), branch(run_id), "raw.readings", pa.table({"id": [new], "device": ["x"]}))
    assert cascade("validate", "--run-id", "103").exit_code == 0
    assert cascade("validate", "--run-id", "104").exit_code == 0
    assert cascade("promote", "--run-id", "103").exit_code == 0
    main_after_103 = open_catalog().get_ref("main").hash

    refused = cascade("promote", "--run-id", "104")
    assert refused.exit_code == 1
    assert "main moved since pipeline/run-104 forked" in refused.stderr
    assert open_catalog().get_ref("main").hash == main_after_103
    assert ids("main") == [1, 2, 30]


def test_write_after_validation_is_refused():
    name = branch("105")
    write_rows(open_catalog(), name, "raw.readings", readings(1))
    assert cascade("validate", "--run-id", "105").exit_code == 0
    write_rows(open_catalog(), name, "raw.readings", readings(2))
    refused = cascade("promote", "--run-id", "105")
    assert refused.exit_code == 1
    assert "changed after its verdict" in refused.stderr
    assert not open_catalog().tables("main").table_exists("raw.readings")


def test_promote_without_verdict_is_refused():
    write_rows(open_catalog(), branch("106"), "raw.readings", readings(1))
    refused = cascade("promote", "--run-id", "106", "--json")
    assert refused.exit_code == 1
    assert json.loads(refused.stdout) == {
        "type": "RefusedError",
        "message": "pipeline/run-106 has no verdict; run `cascade validate --run-id 106` first",
    }


def test_dry_run_promotion_changes_nothing():
    write_rows(open_catalog(), branch("107"), "raw.readings", readings(1))
    assert cascade("validate", "--run-id", "107").exit_code == 0
    main = open_catalog().get_ref("main").hash
    dry = cascade("promote", "--run-id", "107", "--dry-run", "--json")
    assert dry.exit_code == 0 and json.loads(dry.stdout)["action"] == "would-promote"
    assert open_catalog().get_ref("main").hash == main
    assert open_catalog().list_refs("prod-") == []


def test_eight_processes_promote_at_once(tmp_path, settings, backend):
    _main_with_readings()
    runs = [str(200 + i) for i in range(8)]
    for i, run_id in enumerate(runs):
        write_rows(open_catalog(), branch(run_id), "raw.readings", pa.table({"id": [100 + i], "device": ["x"]}))
        assert cascade("validate", "--run-id", run_id).exit_code == 0
    main_before = open_catalog().get_ref("main").hash

    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cascade_ci", "promote", "--run-id", run_id, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for run_id in runs
    ]
    outcomes = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0] + [1] * 7, outcomes
    winner = runs[[code for code, _, _ in outcomes].index(0)]
    for code, out, err in outcomes:
        if code == 1:
            assert json.loads(out)["type"] == "RefusedError", err
    catalog = open_catalog()
    main = catalog.get_ref("main")
    assert main.hash == catalog.get_ref(f"pipeline/run-{winner}").hash
    assert catalog.is_ancestor(main_before, "main")
    assert ids("main") == [1, 2, 100 + runs.index(winner)]
    assert len(catalog.list_refs("prod-")) == 1
    if backend == "local":
        with sqlite3.connect(settings.home / "catalog.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            dangling = db.execute(
                "SELECT count(*) FROM cascade_refs r LEFT JOIN cascade_commits c ON c.hash = r.hash "
                "WHERE c.hash IS NULL"
            ).fetchone()
            assert dangling == (0,)


def test_rerun_reuses_branch_and_recreate_starts_afresh():
    name = branch("108")
    write_rows(open_catalog(), name, "raw.readings", readings(1))
    rerun = cascade("branch", "--run-id", "108", "--attempt", "2", "--json")
    assert json.loads(rerun.stdout)["action"] == "reused"
    assert ids(name) == [1]
    fresh = cascade("branch", "--run-id", "108", "--attempt", "3", "--recreate", "--json")
    assert json.loads(fresh.stdout)["action"] == "recreated"
    assert not open_catalog().tables(name).table_exists("raw.readings")


def test_branch_not_created_by_cascade_is_left_alone():
    open_catalog().create_ref("pipeline/run-109", "main")
    result = cascade("branch", "--run-id", "109")
    assert result.exit_code == 1
    assert "not created by cascade-ci" in result.stderr


def test_gc_respects_retention_and_ownership():
    catalog = open_catalog()
    write_rows(catalog, branch("301"), "raw.readings", readings(1))
    assert cascade("validate", "--run-id", "301").exit_code == 0
    assert cascade("promote", "--run-id", "301").exit_code == 0
    write_rows(catalog, branch("302"), "raw.readings", readings(2))
    with catalog.tables("pipeline/run-302").load_table("raw.readings").update_schema() as update:
        update.delete_column("sgv")
    assert cascade("validate", "--run-id", "302").exit_code == 1
    branch("303")  # never validated
    catalog.create_ref("pipeline/run-999", "main")  # not ours
    catalog.create_ref("feature/x", "main")  # outside the prefix
    tags = {ref.name: ref.hash for ref in catalog.list_refs("prod-")}

    def gc_at(days: float, *extra: str) -> dict[str, str]:
        now = (datetime.now(UTC) + timedelta(days=days)).isoformat()
        result = cascade("gc", "--now", now, "--json", *extra)
        assert result.exit_code == 0, result.output
        return {d["branch"]: d["action"] for d in json.loads(result.stdout)}

    assert gc_at(1) == {
        "pipeline/run-301": "kept",
        "pipeline/run-302": "kept",
        "pipeline/run-303": "kept",
        "pipeline/run-999": "skipped",
    }
    assert gc_at(10, "--dry-run")["pipeline/run-301"] == "would-delete"
    assert catalog.get_ref("pipeline/run-301")
    assert gc_at(10) == {
        "pipeline/run-301": "deleted",
        "pipeline/run-302": "kept",
        "pipeline/run-303": "kept",
        "pipeline/run-999": "skipped",
    }
    assert gc_at(15) == {"pipeline/run-302": "deleted", "pipeline/run-303": "deleted", "pipeline/run-999": "skipped"}
    remaining = {ref.name for ref in catalog.list_refs()}
    assert remaining == {"main", "feature/x", "pipeline/run-999", *tags}
    assert {ref.name: ref.hash for ref in catalog.list_refs("prod-")} == tags


def test_rollback_restores_tag_as_new_commit():
    write_rows(open_catalog(), branch("401"), "raw.readings", readings(1))
    cascade("validate", "--run-id", "401")
    first = json.loads(cascade("promote", "--run-id", "401", "--json").stdout)["tag"]
    write_rows(open_catalog(), branch("402"), "raw.readings", readings(2))
    cascade("validate", "--run-id", "402")
    assert cascade("promote", "--run-id", "402").exit_code == 0
    assert ids("main") == [1, 2]
    head = open_catalog().get_ref("main").hash

    result = cascade("rollback", "--to", first, "--json")
    assert result.exit_code == 0, result.output
    assert ids("main") == [1]
    log = json.loads(cascade("log", "--json", "-n", "2").stdout)
    assert log[0]["message"] == f"rollback main to {first}"
    assert log[0]["parents"] == [head]
    assert cascade("rollback", "--to", "main").exit_code == 1


def test_outputs_and_summary_reach_github_files(tmp_path):
    output, summary = tmp_path / "out.txt", tmp_path / "summary.md"
    env = {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
    cascade("branch", "--run-id", "501", env=env)
    write_rows(open_catalog(), "pipeline/run-501", "raw.readings", readings(1))
    assert cascade("validate", "--run-id", "501", env=env).exit_code == 0
    lines = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    assert lines["branch"] == "pipeline/run-501"
    assert lines["verdict"] == "passed" and lines["blocked"] == "false" and lines["errors"] == "0"
    verdict_commit = open_catalog().log("pipeline/run-501", limit=1)[0]
    assert lines["validated_hash"] == verdict_commit.parent != lines["head_hash"]
    assert "cascade verdict: passed" in summary.read_text()


@pytest.mark.parametrize("run_id", ["1;rm -rf /", "$(id)", "../x", "a b", ""])
def test_unsafe_run_ids_are_refused(run_id):
    result = cascade("branch", "--run-id", run_id, "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["type"] == "InvalidNameError"


def test_bad_setting_names_the_variable():
    result = cascade("refs", env={"BRANCH_RETENTION_DAYS": "soon"})
    assert result.exit_code == 2
    assert "BRANCH_RETENTION_DAYS" in result.stderr


def test_refs_and_log_json(tmp_path: Path):
    branch("601")
    refs = json.loads(cascade("refs", "--json").stdout)
    assert [r["name"] for r in refs] == ["main", "pipeline/run-601"]
    assert refs[1]["properties"]["cascade.run-id"] == "601"
    log = json.loads(cascade("log", "pipeline/run-601", "--json").stdout)
    assert [c["message"] for c in log] == ["branch for run 601", "initialize catalog"]
    missing = cascade("log", "nope", "--json")
    assert missing.exit_code == 2 and json.loads(missing.stdout)["type"] == "NotFoundError"
