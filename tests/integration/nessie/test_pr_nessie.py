"""Pull request branches on the real stack (Nessie + S3): `cascade branch --pr`, `cascade diff --pr`, `--delete`,
and a dbt manifest stored as a commit property read back from the log.

Each test works under its own trunk (ICEBERG_NESSIE_REF) and a random PR number: the server is shared.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from cascade_ci.branch_state import DBT_MANIFEST
from cascade_ci.catalog.nessie import NessieBranchCatalog
from cascade_ci.cli import cli
from cascade_ci.config import load_settings
from cascade_ci.errors import NotFoundError
from cascade_ci.stages.transform import pack_manifest, stored_manifest

SECRET = 987_654


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def on_nessie(stack: dict[str, str], trunk_name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[NessieBranchCatalog]:
    """cascade pointed at the stack's Nessie, with this test's trunk as main."""
    for key, value in stack.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CASCADE_CATALOG", "nessie")
    monkeypatch.setenv("ICEBERG_NESSIE_REF", trunk_name)
    with NessieBranchCatalog.from_settings(load_settings()) as store:
        root = store._call("GET", "/config")["noAncestorHash"]
        store.create_ref(trunk_name, root)
        store.commit_meta(trunk_name, "initialize catalog", {}, root)
        yield store


def write(store: NessieBranchCatalog, ref: str, table: str, rows: pa.Table, replace: bool = False) -> None:
    tables = store.tables(ref)
    namespace = table.split(".")[0]
    if not tables.namespace_exists(namespace):
        tables.create_namespace(namespace)
    if not tables.table_exists(table):
        tables.create_table(table, rows.schema)
    (tables.load_table(table).overwrite if replace else tables.load_table(table).append)(rows)


def readings(ids: list[int], sgv: list[int]) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64()), "sgv": pa.array(sgv, pa.int64())})


def test_pr_branch_diff_and_delete_on_nessie(on_nessie: NessieBranchCatalog, trunk_name: str, tmp_path: Path) -> None:
    pr = str(random.randint(10_000, 10**9))
    (tmp_path / "cascade.toml").write_text('[tables."raw.readings"]\nunique = ["id"]\n')
    write(on_nessie, trunk_name, "raw.readings", readings([1, 2, 3], [100, 110, 120]))
    try:
        made = cascade("branch", "--pr", pr, "--json")
        assert made.exit_code == 0, made.output
        assert json.loads(made.stdout)["branch"] == f"pr/{pr}"
        write(on_nessie, f"pr/{pr}", "raw.readings", readings([1, 3, 4], [100, SECRET, 130]), replace=True)

        result = cascade("diff", "--pr", pr, "--json")
        assert result.exit_code == 0, result.output
        (table,) = json.loads(result.stdout)["tables"]
        assert table["table"] == "raw.readings"
        assert (table["rows_added"], table["rows_removed"], table["rows_changed"]) == (1, 1, 1)
        assert table["samples"] == {"added": [[4]], "removed": [[2]], "changed": [[3]]}
        markdown = (Path(os.environ["CASCADE_REPORTS_DIR"]) / "diff.md").read_text()
        assert "| `raw.readings` | modified | 1 | 1 | 1 | `id` |" in markdown and str(SECRET) not in markdown
    finally:
        gone = cascade("branch", "--pr", pr, "--delete", "--json")
    assert gone.exit_code == 0 and json.loads(gone.stdout)["action"] == "deleted"
    with pytest.raises(NotFoundError):
        on_nessie.get_ref(f"pr/{pr}")


def test_a_dbt_manifest_rides_in_a_nessie_commit(on_nessie: NessieBranchCatalog, trunk_name: str) -> None:
    """A real project's manifest is ~0.6 MB, ~90 KB packed: Nessie keeps it and the log gives it back."""
    manifest = json.dumps({"nodes": {f"model.p.m{i}": {"raw_code": "select 1 " * 40} for i in range(1500)}}).encode()
    packed = pack_manifest(manifest + os.urandom(80_000).hex().encode())  # some entropy: >100 KB packed
    assert len(packed) > 100_000
    head = on_nessie.get_ref(trunk_name)
    on_nessie.commit_meta(trunk_name, "dbt", {DBT_MANIFEST: packed}, head.hash)
    found = stored_manifest(on_nessie, trunk_name)
    assert found is not None and found[1].startswith(manifest)
