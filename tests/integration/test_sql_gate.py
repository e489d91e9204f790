"""Custom SQL checks from cascade.toml, run by the embedded engine (DuckDB) on the branch head being judged."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime

import pyarrow as pa

from cascade_ci.config import load_settings
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.stages.validate import validate
from cascade_ci.verdict import Level
from tests.conftest import read_rows, write_rows

CHECKS = """\
[[checks]]
name = "rows_on_the_head"
sql = "SELECT count(*) FROM raw.orders"
expect = 2

[[checks]]
name = "no_negative_amounts"
sql = "SELECT count(*) FROM raw.orders WHERE amount < 0"

[[checks]]
name = "total_as_decimal"
sql = "SELECT CAST(sum(amount) AS DECIMAL(10, 2)) FROM raw.orders"
expect = 30.5

[[checks]]
name = "status_as_text"
sql = "SELECT min(status) FROM raw.orders"
expect = "lost"

[[checks]]
name = "no_lost_orders"
table = "raw.orders"
sql = "SELECT count(*) FROM raw.orders WHERE status = 'lost'"
description = "Orders are never lost."

[[checks]]
name = "lost_orders_warn"
severity = "warn"
sql = "SELECT count(*) FROM raw.orders WHERE status = 'lost'"

[[checks]]
name = "no_rows"
sql = "SELECT id FROM raw.orders WHERE false"

[[checks]]
name = "bad_sql"
severity = "warn"
sql = "SELEC 1"

[[checks]]
name = "missing_table"
sql = "SELECT count(*) FROM raw.nowhere"

[[checks]]
name = "not_a_select"
sql = "DELETE FROM raw.orders"
"""


def orders(ids: list[int], amounts: list[float], status: list[str]) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "amount": pa.array(amounts, pa.float64()),
            "status": pa.array(status, pa.string()),
            "at": pa.array([datetime(2026, 3, 1, tzinfo=UTC)] * len(ids), pa.timestamp("us", "UTC")),
        }
    )


def test_sql_checks_judge_the_branch_head_on_duckdb(tmp_path, catalog):
    (tmp_path / "cascade.toml").write_text(textwrap.dedent(CHECKS), encoding="utf-8")
    settings = load_settings(tmp_path / "cascade.toml")
    assert settings.engine_name == "duckdb"
    write_rows(catalog, "main", "raw.orders", orders([1], [10.0], ["open"]))
    name = create_run_branch(settings, catalog, "sql1").branch
    write_rows(catalog, name, "raw.orders", orders([2], [20.5], ["lost"]))  # only on the branch

    verdict = validate(settings, catalog, "sql1", gates=["sql"])

    [gate] = verdict.gates
    assert gate.gate == "sql" and gate.error is None, gate.error
    checks = {check.name: check for check in gate.checks}
    assert [c.name for c in gate.checks] == [
        "rows_on_the_head", "no_negative_amounts", "total_as_decimal", "status_as_text", "no_lost_orders",
        "lost_orders_warn", "no_rows", "bad_sql", "missing_table", "not_a_select",
    ]  # fmt: skip
    passed = {name for name, check in checks.items() if check.passed}
    assert passed == {"rows_on_the_head", "no_negative_amounts", "total_as_decimal", "status_as_text"}
    lost = checks["no_lost_orders"]
    assert (lost.table, lost.severity, lost.observed, lost.expected) == ("raw.orders", Level.ERROR, 1, 0)
    assert lost.message == "Orders are never lost.: returned 1, expected 0"
    assert checks["lost_orders_warn"].severity is Level.WARN and checks["lost_orders_warn"].table == "sql"
    assert "returned None" in checks["no_rows"].message
    for broken in ("bad_sql", "missing_table", "not_a_select"):  # the user's SQL is wrong: it blocks
        assert checks[broken].severity is Level.ERROR and "cannot run" in checks[broken].message
    assert "nowhere" in checks["missing_table"].message
    assert verdict.blocked
    assert read_rows(catalog, name, "raw.orders").num_rows == 2  # the DELETE ran nowhere
