"""Rejects and the stage-order guard on the real stack: Nessie 0.99 + S3 (moto), through the CLI.

The test has a trunk and a branch prefix of its own (the server is shared), standing in for main.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from cascade_ci.catalog import open_catalog
from cascade_ci.catalog.nessie import NessieBranchCatalog
from cascade_ci.cli import cli
from cascade_ci.config import load_settings
from tests.integration.test_rejects import FILES, ORDERS

pytestmark = pytest.mark.integration


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def project(stack: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in stack.items():
        monkeypatch.setenv(key, value)
    tag = uuid.uuid4().hex[:10]
    monkeypatch.setenv("CASCADE_CATALOG", "nessie")
    monkeypatch.setenv("ICEBERG_NESSIE_REF", f"t{tag}/main")
    monkeypatch.setenv("CASCADE_BRANCH_PREFIX", f"t{tag}/run-")
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "orders.csv").write_text(ORDERS, encoding="utf-8")
    (root / "cascade.toml").write_text('gates = ["rejects", "schema"]\n' + FILES, encoding="utf-8")
    monkeypatch.chdir(root)
    with NessieBranchCatalog.from_settings(load_settings()) as nessie:
        start = nessie._call("GET", "/config")["noAncestorHash"]
        nessie.create_ref(f"t{tag}/main", start)
        nessie.commit_meta(f"t{tag}/main", "initialize catalog", {}, start)
    return root


def test_rejects_land_beside_the_rows_and_block_on_nessie(project: Path) -> None:
    settings = load_settings()
    branch = f"{settings.branch_prefix}1"
    assert cascade("branch", "--run-id", "1").exit_code == 0
    result = cascade("ingest", "--run-id", "1", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["rows"], payload["rejected"]) == ({"raw.orders": 6}, {"raw.orders": 2})
    with open_catalog(settings) as catalog:
        rejects = catalog.tables(branch).load_table("raw.orders__rejects").scan().to_arrow().to_pylist()
        assert sorted(json.loads(row["record"]).get("line", 0) for row in rejects) == [0, 4]
        assert {row["run_id"] for row in rejects} == {"1"}

    validated = cascade("validate", "--run-id", "1", "--json")
    assert validated.exit_code == 1, validated.output
    (gate,) = [g for g in json.loads(validated.stdout)["gates"] if g["gate"] == "rejects"]
    assert [(c["table"], c["severity"], c["passed"]) for c in gate["checks"]] == [("raw.orders", "error", False)]

    (project / "data" / "orders.csv").write_text("order_id,amount\n1,10\n", encoding="utf-8")
    assert cascade("ingest", "--run-id", "1").exit_code == 0  # the bad rows fixed: the last ingest rejected none
    assert cascade("validate", "--run-id", "1").exit_code == 0
    assert cascade("promote", "--run-id", "1").exit_code == 0


def test_a_failed_ingest_is_refused_on_nessie(project: Path) -> None:
    (project / "data" / "orders.csv").write_text("", encoding="utf-8")  # an empty file cannot be read as CSV
    assert cascade("branch", "--run-id", "2").exit_code == 0
    failed = cascade("ingest", "--run-id", "2")
    assert failed.exit_code == 2 and "data/orders.csv: cannot read as CSV: Empty CSV file" in failed.stderr
    refused = cascade("validate", "--run-id", "2")
    assert refused.exit_code == 1
    assert "validate refused: the last ingest on" in refused.stderr and "failed (data/orders.csv:" in refused.stderr
