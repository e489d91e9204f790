"""The stage-order guard through the CLI on the embedded catalog: transform, validate and promote refuse a branch
whose last ingest failed or landed nothing, unless told --allow-empty; a good ingest after a failed one clears it.
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

SOURCES = """
import pyarrow as pa

from cascade_ci.errors import SourceError


def feed(ctx):
    mode = ctx.options.get("mode", "ok")
    if mode == "fail":
        raise SourceError("the feed answered HTTP 503")
    if mode == "empty":
        return {}
    if mode == "rejects":
        ctx.reject("readings", {"id": "x"}, "id is not a number")
        return {}
    return {"readings": pa.table({"id": pa.array([1, 2], pa.int64())})}
"""

DBT_PROJECT = """name: guard
version: "1.0"
config-version: 2
profile: guard
model-paths: ["models"]
"""


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    module = f"guard_sources_{uuid.uuid4().hex[:10]}"
    (root / f"{module}.py").write_text(SOURCES, encoding="utf-8")
    (root / "cascade.toml").write_text(f'[sources.feed]\npython = "{module}:feed"\n', encoding="utf-8")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(root)
    assert cascade("branch", "--run-id", "1").exit_code == 0
    return root


def ingest(mode: str) -> int:
    return cascade("ingest", "--run-id", "1", "-o", f"mode={mode}").exit_code


def refused(*stage: str, allow_empty: bool = False) -> str | None:
    """The refusal of `cascade STAGE --run-id 1` (exit 1), or None when it went past the guard."""
    args = [*stage, "--run-id", "1", *(["--allow-empty"] if allow_empty else [])]
    result = cascade(*args)
    if "refused: the last ingest" not in result.stderr:
        return None
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.stderr.strip()


def main_hash() -> str:
    with open_catalog() as catalog:
        return catalog.get_ref("main").hash


def test_a_failed_ingest_is_refused_by_validate_and_promote(project: Path) -> None:
    before = main_hash()
    assert ingest("fail") == 2
    assert refused("validate") == (
        "cascade: validate refused: the last ingest on pipeline/run-1 failed (the feed answered HTTP 503); "
        "run `cascade ingest --run-id 1` again, or pass --allow-empty to validate it as it is"
    )
    assert refused("promote").startswith("cascade: promote refused: the last ingest on pipeline/run-1 failed")
    assert main_hash() == before  # nothing promoted
    with open_catalog() as catalog:
        assert not catalog.list_refs("prod-")  # nothing tagged


def test_an_empty_ingest_is_refused_and_allow_empty_goes_on(project: Path) -> None:
    assert ingest("empty") == 0
    assert refused("validate") == (
        "cascade: validate refused: the last ingest on pipeline/run-1 landed no row (its sources gave none); "
        "run `cascade ingest --run-id 1` again, or pass --allow-empty to validate it as it is"
    )
    assert refused("validate", allow_empty=True) is None
    assert refused("promote") is not None
    result = cascade("promote", "--run-id", "1", "--allow-empty", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["action"] == "promoted"


def test_only_rejected_records_are_an_empty_ingest(project: Path) -> None:
    assert ingest("rejects") == 0
    assert "landed no row (its sources gave none, only rejected records)" in refused("validate")


def test_a_good_ingest_after_a_failed_one_clears_the_guard(project: Path) -> None:
    assert ingest("fail") == 2
    assert refused("validate") is not None
    assert ingest("ok") == 0
    result = cascade("validate", "--run-id", "1", "--json")
    assert result.exit_code == 0, result.output
    assert cascade("promote", "--run-id", "1").exit_code == 0
    assert ingest("fail") == 2  # a failed ingest after the verdict: the data did not change, the guard did
    assert refused("validate") is not None


def test_transform_refuses_a_failed_ingest_and_builds_with_allow_empty(project: Path) -> None:
    (project / "dbt" / "models").mkdir(parents=True)
    (project / "dbt" / "dbt_project.yml").write_text(DBT_PROJECT, encoding="utf-8")
    (project / "dbt" / "models" / "one.sql").write_text("{{ config(materialized='table') }}\nselect 1 as x\n")
    with (project / "cascade.toml").open("a", encoding="utf-8") as toml:
        toml.write('\n[transform]\nproject_dir = "dbt"\n')
    assert ingest("fail") == 2
    assert refused("transform").startswith("cascade: transform refused: the last ingest on pipeline/run-1 failed")
    result = cascade("transform", "--run-id", "1", "--allow-empty", "--json")
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)["rows"]) == ["main.one"]


def test_run_stops_at_an_empty_ingest_unless_allowed(project: Path) -> None:
    result = cascade("run", "--run-id", "2", "-o", "mode=empty")
    assert result.exit_code == 1
    assert "validate refused: the last ingest on pipeline/run-2 landed no row" in result.stderr
    result = cascade("run", "--run-id", "3", "-o", "mode=empty", "--allow-empty", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outcome"] == "promoted"
