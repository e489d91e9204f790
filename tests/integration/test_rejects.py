"""Record-level rejects through the CLI on the embedded catalog: a bad record lands in `<table>__rejects`, the
good ones in the table, and the `rejects` gate judges their share against `rejects_max_share`.

Each test is a small project of its own: a cascade.toml, CSV files or a module of source functions beside it.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from cascade_ci.catalog import open_catalog
from cascade_ci.cli import cli
from tests.conftest import readings, write_rows

SOURCES = '''
import pyarrow as pa

SCHEMA = pa.schema([("id", pa.int64()), ("n", pa.float64())])


def with_rejects(ctx):
    """A stream that rejects a record while it is read, and a reject for a table that has no rows."""
    def batches():
        for i in range(3):
            if i == 1:
                ctx.reject("events", {"id": i, "n": "many"}, "n is not a number: write digits")
                continue
            yield pa.record_batch([[i], [float(i)]], schema=SCHEMA)

    ctx.reject("audit.log", "2024-05-01 ??? garbled", "not a log line: expected a timestamp first")
    return {"events": batches()}
'''

ORDERS = """order_id,amount
1,10
2,twenty
3,30,extra
4,40
5,50
6,60
7,70
8,80
"""

FILES = """
[sources.orders]
files = "data/*.csv"
table = "orders"
keys = { orders = ["order_id"] }
types = { amount = "double" }
"""


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def rows(table: str, ref: str = "pipeline/run-1") -> list[dict]:
    with open_catalog() as catalog:
        return catalog.tables(ref).load_table(table).scan().to_arrow().to_pylist()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "orders.csv").write_text(ORDERS, encoding="utf-8")
    monkeypatch.chdir(root)
    return root


def configure(root: Path, toml: str) -> None:
    (root / "cascade.toml").write_text(toml, encoding="utf-8")
    made = cascade("branch", "--run-id", "1")
    assert made.exit_code == 0, made.output


def validate() -> tuple[int, dict]:
    result = cascade("validate", "--run-id", "1", "--json")
    return result.exit_code, json.loads(result.stdout)


def share_checks(verdict: dict) -> list[dict]:
    (gate,) = [gate for gate in verdict["gates"] if gate["gate"] == "rejects"]
    return gate["checks"]


def test_bad_csv_rows_land_in_the_rejects_table_and_the_good_ones_in_the_table(project: Path) -> None:
    configure(project, FILES)
    result = cascade("ingest", "--run-id", "1", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["rows"], payload["rejected"]) == ({"raw.orders": 6}, {"raw.orders": 2})
    assert "raw.orders 6 (2 rejected)" in result.stderr
    assert sorted(row["order_id"] for row in rows("raw.orders")) == [1, 4, 5, 6, 7, 8]

    rejects = sorted(rows("raw.orders__rejects"), key=lambda row: row["reason"])
    assert [(row["source"], row["run_id"]) for row in rejects] == [("orders", "1"), ("orders", "1")]
    assert all(row["ingested_at"] is not None for row in rejects)
    assert [row["reason"] for row in rejects] == [
        "data/orders.csv: line 4: 3 fields where the header has 2; fix the row (quote a value that holds a comma)",
        "data/orders.csv: row 2: amount 'twenty' is not double; fix the value or leave it empty",
    ]
    assert json.loads(rejects[0]["record"]) == {"file": "data/orders.csv", "line": 4, "text": "3,30,extra"}
    assert json.loads(rejects[1]["record"])["amount"] == "twenty"

    again = cascade("ingest", "--run-id", "1", "--json")  # the same window again: no record counted twice
    assert again.exit_code == 0, again.output
    assert len(rows("raw.orders__rejects")) == 2


def test_any_reject_blocks_by_default_and_the_gate_is_reported(project: Path) -> None:
    configure(project, FILES)
    assert cascade("ingest", "--run-id", "1").exit_code == 0
    code, verdict = validate()
    assert code == 1
    (check,) = share_checks(verdict)
    assert (check["table"], check["name"], check["severity"], check["passed"]) == (
        "raw.orders",
        "share",
        "error",
        False,
    )
    assert check["message"] == (
        "2 of 8 records rejected (25 %), over the limit of 0 %: see raw.orders__rejects; "
        "fix the source or its data, or raise rejects_max_share"
    )
    junit = (project.parent / "reports" / "junit.xml").read_text(encoding="utf-8")
    assert 'classname="cascade.rejects.raw.orders"' in junit and "2 of 8 records rejected" in junit
    assert "2 of 8 records rejected" in (project.parent / "reports" / "summary.md").read_text(encoding="utf-8")


def test_a_share_within_the_limit_warns_and_passes(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_REJECTS_MAX_SHARE", "0.25")  # 2 of 8 is exactly the limit
    configure(project, FILES)
    assert cascade("ingest", "--run-id", "1").exit_code == 0
    code, verdict = validate()
    assert code == 0, verdict
    (check,) = share_checks(verdict)
    assert (check["severity"], check["passed"]) == ("warn", False)
    assert check["message"] == "2 of 8 records rejected (25 %), within the limit of 25 %: see raw.orders__rejects"
    assert verdict["warnings"] >= 1 and verdict["outcome"] == "passed"


@pytest.mark.parametrize(
    ("extra", "blocks"),
    [
        ('\n[tables."raw.orders"]\nrejects_max_share = 0.2\n', True),  # the table's limit beats the global one
        ("rejects_max_share = 0.2\n", True),  # the source's (appended to [sources.orders])
        ('rejects_max_share = 0.1\n[tables."raw.orders"]\nrejects_max_share = 0.5\n', False),  # table over source
    ],
)
def test_the_tables_limit_wins_over_its_sources_over_the_global_one(
    project: Path, monkeypatch: pytest.MonkeyPatch, extra: str, blocks: bool
) -> None:
    monkeypatch.setenv("CASCADE_REJECTS_MAX_SHARE", "0.5")
    configure(project, FILES + extra)
    assert cascade("ingest", "--run-id", "1").exit_code == 0
    code, verdict = validate()
    assert (code, share_checks(verdict)[0]["severity"]) == ((1, "error") if blocks else (0, "warn"))


def test_a_python_source_rejects_through_its_context(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"reject_sources_{uuid.uuid4().hex[:10]}"
    (project / f"{module}.py").write_text(SOURCES, encoding="utf-8")
    monkeypatch.setattr(sys, "path", list(sys.path))
    configure(project, f'[sources.feed]\npython = "{module}:with_rejects"\nkeys = {{ events = ["id"] }}\n')
    result = cascade("ingest", "--run-id", "1", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["rows"] == {"raw.events": 2, "audit.log": 0}
    assert payload["rejected"] == {"raw.events": 1, "audit.log": 1}
    assert sorted(row["id"] for row in rows("raw.events")) == [0, 2]
    (event,) = rows("raw.events__rejects")
    assert (json.loads(event["record"]), event["reason"]) == ({"id": 1, "n": "many"}, "n is not a number: write digits")
    (line,) = rows("audit.log__rejects")
    assert (line["source"], line["record"]) == ("feed", "2024-05-01 ??? garbled")  # text stays as it was read

    code, verdict = validate()
    assert code == 1
    assert {(c["table"], c["severity"]) for c in share_checks(verdict)} == {
        ("audit.log", "error"),  # 1 of 1: everything it read was rejected
        ("raw.events", "error"),
    }


def test_an_updated_branch_keeps_its_ingest_record_for_the_rejects_gate(project: Path) -> None:
    configure(project, FILES)
    assert cascade("ingest", "--run-id", "1").exit_code == 0
    assert validate()[0] == 1
    with open_catalog() as catalog:
        write_rows(catalog, "main", "raw.other", readings(1))  # main moves on: the branch must be updated
    result = cascade("update", "--run-id", "1", "--json")
    assert result.exit_code == 1, result.output  # the new verdict still judges the rejects
    assert json.loads(result.stdout)["verdict"] == "blocked"
    verdict = json.loads((project.parent / "reports" / "verdict.json").read_text(encoding="utf-8"))
    with open_catalog() as catalog:
        assert verdict["base_hash"] == catalog.get_ref("main").hash  # judged after the update, on main's head
    (check,) = share_checks(verdict)
    assert check["message"].startswith("2 of 8 records rejected (25 %), over the limit of 0 %")
