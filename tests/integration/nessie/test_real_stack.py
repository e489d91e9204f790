"""`cascade run` of the glucose + GitHub example end to end on the production stack: Nessie, Trino (dbt-trino)
and S3 (moto). Every test runs in a fresh copy of examples/glucose-github (the `glucose_project` fixture)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cascade_ci.catalog import open_catalog
from cascade_ci.cli import cli
from cascade_ci.config import load_settings
from cascade_ci.engine.trino import TrinoEngine, catalog_name

MART_NAMES = (
    "marts.fct_daily_glucose_metrics",
    "marts.fct_github_repo_stats",
    "marts.fct_github_user_events",
    "marts.fct_glucose_readings",
)

pytestmark = pytest.mark.usefixtures("glucose_project")


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_run_promotes_through_trino(nessie_backend):
    result = cascade("run", "--run-id", "7001", "--json")
    assert result.exit_code == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["outcome"] == "promoted", run
    assert run["dbt_tests"] == {"pass": 29}
    settings = load_settings()
    catalog = open_catalog(settings)
    engine = TrinoEngine(settings, catalog)
    catalogs = {row[0] for row in engine.execute("SHOW CATALOGS")}
    assert "main" in catalogs
    assert catalog_name("pipeline/run-7001") not in catalogs  # the branch's catalog is gone
    for mart in MART_NAMES:
        through_trino = engine.execute(f"SELECT count(*) FROM main.{mart}")[0][0]
        through_pyiceberg = catalog.tables("main").load_table(mart).scan().to_arrow().num_rows
        assert through_trino == through_pyiceberg > 0
    assert catalog.get_ref(run["tag"]).hash == catalog.get_ref("main").hash


def test_blocked_run_leaves_main_alone(nessie_backend):
    main = open_catalog(load_settings()).get_ref("main").hash
    result = cascade("run", "--run-id", "7002", "-o", "defects=duplicate_ids", "--json")
    assert result.exit_code == 1, result.stderr
    run = json.loads(result.stdout)
    assert run["outcome"] == "blocked"
    failing = {(c["gate"], c["name"]) for g in run["verdict"]["gates"] for c in g["checks"] if not c["passed"]}
    assert {("pandera", "entry_id:unique"), ("dbt", "unique:entry_id")} <= failing
    assert open_catalog(load_settings()).get_ref("main").hash == main
