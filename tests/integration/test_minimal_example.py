"""The minimal example end to end, as its README tells it: CSV files, no dbt project, two gates that judge them.

A project without a [transform] runs four stages (no transform); a negative amount is blocked by its SQL check
and a repeated order id by the pandera gate (`unique` in [tables."raw.orders"]); main keeps the good data.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cascade_ci.catalog import open_catalog
from cascade_ci.cli import cli
from tests.conftest import EXAMPLES, copy_project

HEADER = "order_id,customer,amount,ordered_at\n"


@pytest.fixture
def minimal(tmp_path, monkeypatch):
    project = copy_project(EXAMPLES / "minimal", tmp_path / "minimal")
    monkeypatch.chdir(project)
    return project


def run(run_id: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["run", "--run-id", run_id, "--json"], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def main_orders() -> list[tuple[int, float]]:
    with open_catalog() as catalog:
        table = catalog.tables("main").load_table("raw.orders").scan().to_arrow()
        return sorted(zip(table["order_id"].to_pylist(), table["amount"].to_pylist(), strict=True))


def failing(run: dict) -> set[tuple[str, str, str]]:
    return {(c["gate"], c["table"], c["name"]) for g in run["verdict"]["gates"] for c in g["checks"] if not c["passed"]}


def test_the_minimal_example_promotes_then_blocks_bad_rows(minimal):
    code, first = run("1")
    assert code == 0, first
    assert first["outcome"] == "promoted"
    assert set(first["stage_seconds"]) == {"branch", "ingest", "validate", "promote"}  # no [transform]
    assert first["rows_ingested"] == {"raw.orders": 3}
    assert [g["gate"] for g in first["verdict"]["gates"]] == ["rejects", "schema", "pandera", "freshness", "sql"]
    assert failing(first) == set()
    good = [(1001, 19.9), (1002, 5.0), (1003, 42.5)]
    assert main_orders() == good
    with open_catalog() as catalog:
        tagged = catalog.get_ref(first["tag"]).hash

    with (minimal / "data" / "orders.csv").open("a") as csv:
        csv.write("1004,ada,-3,2026-11-30T12:00:00Z\n")
    code, negative = run("2")
    assert code == 1
    assert negative["outcome"] == "blocked"
    assert failing(negative) == {("sql", "raw.orders", "no_negative_amounts")}
    assert main_orders() == good

    (minimal / "data" / "more.csv").write_text(HEADER + "1005,grace,8,2026-11-30T13:00:00Z\n")
    (minimal / "data" / "orders.csv").write_text(
        HEADER + "1001,ada,19.90,2026-11-30T08:15:00Z\n1001,ada,21.00,2026-11-30T08:16:00Z\n"
    )
    code, repeated = run("3")
    assert code == 1
    assert failing(repeated) == {("pandera", "raw.orders", "order_id:unique")}
    with open_catalog() as catalog:
        assert catalog.get_ref("main").hash == tagged
    assert main_orders() == good
