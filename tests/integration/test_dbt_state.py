"""`cascade transform --pr N` builds only `state:modified+` against the dbt manifest main's last promotion stored.

A real dbt project on the embedded catalog: staging -> marts chain plus an independent model. A promotion
stores the manifest with the data; a pull request changing one model rebuilds it and its children only
(dbt's own run_results say which), and the models it did not rebuild are still there on the branch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from cascade_ci.branch_state import DBT_MANIFEST
from cascade_ci.catalog import open_catalog
from cascade_ci.cli import cli
from cascade_ci.config import load_settings
from tests.conftest import write_rows

MODELS = {
    "stg_readings": "select id, cast(sgv as double) as sgv from {{ source('raw', 'readings') }}",
    "daily": "select count(*) as n, avg(sgv) as mean_sgv from {{ ref('stg_readings') }}",
    "daily_report": "select n, mean_sgv from {{ ref('daily') }}",
    "highs": "select id from {{ ref('stg_readings') }} where sgv > 180",
    "other": "select 1 as one",
}


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path)


def make_project(tmp_path: Path) -> Path:
    """A dbt project over raw.readings, its cascade.toml, and raw.readings on main."""
    dbt = tmp_path / "dbt"
    (dbt / "models").mkdir(parents=True)
    (dbt / "dbt_project.yml").write_text(
        "name: glu\nversion: '1.0'\nconfig-version: 2\nprofile: glu\nmodel-paths: [models]\n"
        "models:\n  glu:\n    +materialized: table\n"
    )
    (dbt / "models" / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: raw\n    schema: raw\n    tables:\n      - name: readings\n"
    )
    for name, sql in MODELS.items():
        (dbt / "models" / f"{name}.sql").write_text(sql + "\n")
    (tmp_path / "cascade.toml").write_text('gates = ["schema"]\n\n[transform]\nproject_dir = "dbt"\n')
    settings = load_settings()
    rows = pa.table({"id": pa.array([1, 2, 3]), "sgv": pa.array([90, 200, 150])})
    write_rows(open_catalog(settings), settings.main_branch, "raw.readings", rows)
    return tmp_path


def built(reports: Path) -> set[str]:
    results = json.loads((reports / "dbt" / "build_results.json").read_text())
    return {r["unique_id"].rsplit(".", 1)[1] for r in results["results"]}


def step(*args: str):
    result = cascade(*args)
    assert result.exit_code == 0, result.output
    return result


def test_pr_builds_modified_models_and_their_children(project: Path) -> None:
    exercise(project, pr=1, run=100)


def exercise(project: Path, pr: int, run: int) -> None:
    """No stored manifest: a full build; after a promotion: only what a change touches (none, when none)."""
    reports = Path(os.environ["CASCADE_REPORTS_DIR"])
    step("branch", "--pr", str(pr))
    first = step("transform", "--pr", str(pr), "--json")
    assert "main has no stored dbt manifest" in first.stderr
    assert json.loads(first.stdout)["build"] == "full"

    # a pipeline run, promoted: main's history now holds its manifest
    for command in ("branch", "transform", "validate", "promote"):
        step(command, "--run-id", str(run))
    settings = load_settings()
    assert any(DBT_MANIFEST in c.properties for c in open_catalog(settings).log(settings.main_branch))
    shown = [c["properties"].get(DBT_MANIFEST) for c in json.loads(step("log", "--json").stdout)]
    assert any(text and text.startswith("<dbt manifest, ") for text in shown)  # its size, not 100 KB of base64

    # the PR changes `daily`: only it and its child rebuild
    (project / "dbt" / "models" / "daily.sql").write_text(
        "select count(*) as n, avg(sgv) as mean_sgv, max(sgv) as max_sgv from {{ ref('stg_readings') }}\n"
    )
    step("branch", "--pr", str(pr), "--recreate")
    result = step("transform", "--pr", str(pr), "--json")
    assert "state:modified+ against the manifest stored on main" in result.stderr
    payload = json.loads(result.stdout)
    assert payload["build"] == "state:modified+" and payload["state_from"]
    assert built(reports) == {"daily", "daily_report"}
    tables = open_catalog(settings).tables(f"pr/{pr}")
    assert "max_sgv" in tables.load_table("main.daily").schema().column_names
    for untouched in ("stg_readings", "highs", "other"):  # not rebuilt, still there from main
        assert tables.load_table(f"main.{untouched}").scan().to_arrow().num_rows >= 1

    # nothing changed: nothing to build
    (project / "dbt" / "models" / "daily.sql").write_text(MODELS["daily"] + "\n")
    step("branch", "--pr", str(pr), "--recreate")
    step("transform", "--pr", str(pr))
    assert built(reports) == set()

    # a pipeline run (not a PR) always builds everything
    step("branch", "--run-id", str(run + 1))
    step("transform", "--run-id", str(run + 1))
    assert built(reports) == set(MODELS)
    step("branch", "--pr", str(pr), "--delete")
