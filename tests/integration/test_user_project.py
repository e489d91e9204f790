"""A user's own project, outside this repository, run end to end: `cascade init`, then `cascade run`.

The project (tests/fixtures/user_project) has its own dbt project (sources from a Python function and
from CSV files, staging views, two table models and one incremental model, dbt tests of both severities,
one source freshness), one pandera YAML schema and one custom SQL check. Each defect below must block
the run with the right gate named, and leave main as it was.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cascade_ci.catalog import open_catalog
from cascade_ci.cli import cli
from cascade_ci.config import load_settings

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "user_project"
NOW = datetime.now(UTC).replace(microsecond=0)
CUSTOMERS = [
    {"customer_id": 1, "name": "ada", "segment": "retail"},
    {"customer_id": 2, "name": "grace", "segment": "wholesale"},
]


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def orders_csv(rows: list[tuple]) -> str:
    lines = ["order_id,customer_id,amount,ordered_at"]
    lines += [f"{o},{c},{'' if a is None else a},{t:%Y-%m-%dT%H:%M:%SZ}" for o, c, a, t in rows]
    return "\n".join(lines) + "\n"


def good_orders(hours_ago: float = 1) -> list[tuple]:
    at = NOW - timedelta(hours=hours_ago)
    return [(1, 1, 10.5, at - timedelta(hours=2)), (2, 2, 4.0, at - timedelta(hours=1)), (3, 1, 7.25, at)]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's repository, before cascade-ci: code, dbt project, schema, data; then `cascade init`."""
    root = tmp_path / "shop-repo"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("project.toml", "__pycache__"))
    (root / "data").mkdir()
    (root / "data" / "orders_1.csv").write_text(orders_csv(good_orders()))
    (root / "customers.json").write_text(json.dumps(CUSTOMERS))
    monkeypatch.chdir(root)
    monkeypatch.delenv("CASCADE_HOME")
    monkeypatch.delenv("CASCADE_REPORTS_DIR")

    made = cascade("init")
    assert made.exit_code == 0, made.output
    scaffold = (root / "cascade.toml").read_text()
    assert 'project_dir = "dbt"' in scaffold and 'files = "data/*.csv"' in scaffold
    # The user replaces the scaffold's placeholders with their declarations.
    (root / "cascade.toml").write_text((FIXTURE / "project.toml").read_text())
    checked = cascade("config", "check")
    assert checked.exit_code == 0, checked.output
    return root


def run(run_id: str) -> dict:
    result = cascade("run", "--run-id", run_id, "--json")
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def failing(outcome: dict) -> dict[str, set[str]]:
    """Gate -> names of its blocking checks (and `<error>` for a gate that could not run)."""
    found: dict[str, set[str]] = {}
    for gate in outcome["verdict"]["gates"]:
        names = {c["name"] for c in gate["checks"] if not c["passed"] and c["severity"] == "error"}
        if gate["error"]:
            names.add("<error>")
        if names:
            found[gate["gate"]] = names
    return found


def main_hash() -> str:
    return open_catalog(load_settings()).get_ref("main").hash


def rows(table: str, ref: str = "main"):
    return open_catalog(load_settings()).tables(ref).load_table(table).scan().to_arrow()


def test_a_users_project_promotes_its_own_tables(project):
    first = run("1")
    assert first["outcome"] == "promoted", failing(first)
    assert first["verdict"]["warnings"] == 0
    gates = {gate["gate"] for gate in first["verdict"]["gates"]}
    assert gates == {"rejects", "schema", "pandera", "dbt", "freshness", "sql"}
    assert rows("raw.orders").num_rows == 3
    assert sorted(rows("main.customer_revenue").column("revenue").to_pylist()) == [4.0, 17.75]
    assert rows("main.order_log").num_rows == 3
    tables = {t for ns in ("main", "raw") for t in open_catalog(load_settings()).tables("main").list_tables(ns)}
    assert ("main", "stg_orders") not in tables  # views stay inside the engine

    # The next window: two later orders. The incremental model appends them; nothing is rebuilt.
    later = [(4, 2, 3.0, NOW - timedelta(minutes=30)), (5, 1, 1.0, NOW - timedelta(minutes=10))]
    (project / "data" / "orders_2.csv").write_text(orders_csv(later))
    second = run("2")
    assert second["outcome"] == "promoted", failing(second)
    log = open_catalog(load_settings()).tables("main").load_table("main.order_log")
    assert log.scan().to_arrow().num_rows == 5
    assert log.current_snapshot().summary.operation.value == "append"
    (gate,) = [gate for gate in second["verdict"]["gates"] if gate["gate"] == "freshness"]
    freshness = {c["table"]: c for c in gate["checks"]}
    assert freshness["raw.orders"]["passed"] and freshness["raw.orders"]["file"] == "dbt/models/staging/sources.yml"


def test_warn_failures_pass_with_warnings(project):
    (project / "customers.json").write_text(
        json.dumps([*CUSTOMERS, {"customer_id": 3, "name": "alan", "segment": "vip"}])
    )
    outcome = run("1")
    assert outcome["outcome"] == "promoted", failing(outcome)
    warned = {(c["gate"], c["name"]) for g in outcome["verdict"]["gates"] for c in g["checks"] if not c["passed"]}
    assert warned == {("dbt", "accepted_values:segment"), ("pandera", "segment:isin")}
    assert outcome["verdict"]["warnings"] == 2


def test_a_stale_source_blocks_by_freshness(project):
    (project / "data" / "orders_1.csv").write_text(orders_csv(good_orders(hours_ago=100)))
    outcome = run("1")
    assert outcome["outcome"] == "blocked"
    assert failing(outcome) == {"freshness": {"fresh"}}
    assert not open_catalog(load_settings()).tables("main").table_exists("raw.orders")


@pytest.mark.parametrize(
    ("defect", "gate", "check"),
    [
        ("duplicate_key", "pandera", "order_id:unique"),
        ("failing_dbt_test", "dbt", "not_null:revenue"),
        ("breaking_model_change", "schema", "backward_compatible"),
        ("failing_custom_check", "sql", "no_negative_amounts"),
    ],
)
def test_each_defect_blocks_with_its_gate_and_main_stays(project, defect, gate, check):
    assert run("1")["outcome"] == "promoted"
    before = main_hash()
    at = NOW - timedelta(minutes=5)
    if defect == "duplicate_key":
        (project / "data" / "orders_2.csv").write_text(orders_csv([(7, 1, 2.0, at), (7, 2, 3.0, at)]))
    elif defect == "failing_dbt_test":  # a day whose only order has no amount: its revenue is null
        (project / "data" / "orders_2.csv").write_text(orders_csv([(8, 1, None, at - timedelta(days=5))]))
    elif defect == "breaking_model_change":  # `orders` changes type: bigint -> varchar
        model = project / "dbt" / "models" / "marts" / "daily_orders.sql"
        model.write_text(model.read_text().replace("count(*) as orders", "cast(count(*) as varchar) as orders"))
    else:
        (project / "data" / "orders_2.csv").write_text(orders_csv([(9, 2, -1.0, at)]))
    outcome = run("2")
    assert outcome["outcome"] == "blocked"
    blocked = failing(outcome)
    assert list(blocked) == [gate], blocked
    assert any(check in name for name in blocked[gate]), blocked
    assert main_hash() == before


@pytest.mark.integration
def test_the_same_project_on_nessie_and_trino(project, nessie_backend):
    first = run("1")
    assert first["outcome"] == "promoted", failing(first)
    assert sorted(rows("main.customer_revenue").column("revenue").to_pylist()) == [4.0, 17.75]
    assert rows("main.order_log").num_rows == 3
    before = main_hash()
    (project / "data" / "orders_2.csv").write_text(orders_csv([(9, 2, -1.0, NOW - timedelta(minutes=5))]))
    second = run("2")
    assert second["outcome"] == "blocked"
    assert failing(second) == {"sql": {"no_negative_amounts"}}
    assert main_hash() == before
