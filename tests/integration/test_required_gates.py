"""Promotion needs a verdict from every gate it requires (`required_gates`, else the gates `validate` runs by
default), not only a passing one: a verdict of `validate --gates schema` cannot publish what pandera, the
freshness and the SQL checks never judged."""

from __future__ import annotations

import json
import sys
import uuid

import pytest
from click.testing import CliRunner

from cascade_ci.catalog import open_catalog
from cascade_ci.cli import cli
from tests.conftest import readings, write_rows


def cascade(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def branch_with_rows(run_id: str) -> str:
    made = cascade("branch", "--run-id", run_id)
    assert made.exit_code == 0, made.output
    name = made.stdout.strip()
    with open_catalog() as catalog:
        write_rows(catalog, name, "raw.readings", readings(1, 2, 3))
    return name


def validate(run_id: str, *args: str, env: dict[str, str] | None = None) -> dict:
    result = cascade("validate", "--run-id", run_id, "--json", *args, env=env)
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    assert verdict["outcome"] == "passed"
    return verdict


def heads() -> tuple[str, list[str]]:
    with open_catalog() as catalog:
        return catalog.get_ref("main").hash, [ref.name for ref in catalog.list_refs("prod-")]


def test_verdict_of_fewer_gates_than_required_is_refused_and_main_unchanged():
    branch_with_rows("1")
    verdict = validate("1", "--gates", "schema")
    assert [gate["gate"] for gate in verdict["gates"]] == ["schema"]
    before = heads()

    for args in (("--dry-run",), ()):
        refused = cascade("promote", "--run-id", "1", "--json", *args)
        assert refused.exit_code == 1, refused.output
        assert json.loads(refused.stdout) == {
            "type": "RefusedError",
            "message": "pipeline/run-1's verdict did not run the gate(s) promotion requires: rejects, pandera, "
            "freshness, sql; run `cascade validate --run-id 1` with every required gate",
        }
        assert heads() == before
    assert before[1] == []


def test_validating_with_every_default_gate_then_promotes():
    name = branch_with_rows("2")
    validate("2", "--gates", "schema")
    assert cascade("promote", "--run-id", "2").exit_code == 1
    verdict = validate("2")  # the default gates: rejects, schema, pandera, freshness, sql (no [transform]: no dbt)
    assert [gate["gate"] for gate in verdict["gates"]] == ["rejects", "schema", "pandera", "freshness", "sql"]
    promoted = cascade("promote", "--run-id", "2", "--json")
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.stdout)["action"] == "promoted"
    with open_catalog() as catalog:
        assert catalog.get_ref("main").hash == catalog.get_ref(name).hash


def test_required_gates_names_what_promotion_needs():
    branch_with_rows("3")
    validate("3", "--gates", "schema")
    env = {"CASCADE_REQUIRED_GATES": "schema"}
    promoted = cascade("promote", "--run-id", "3", "--json", env=env)
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.stdout)["action"] == "promoted"


def test_required_gate_missing_from_the_run_refuses_the_run(tmp_path, monkeypatch):
    """`cascade run` validates with `gates`; a required gate outside them refuses the promotion: exit 1."""
    module = f"required_gates_src_{uuid.uuid4().hex[:10]}"
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / f"{module}.py").write_text(
        "import pyarrow as pa\n\n\ndef read(ctx):\n    return {'readings': pa.table({'id': [1, 2]})}\n"
    )
    (tmp_path / "cascade.toml").write_text(
        f'gates = ["schema"]\nrequired_gates = ["schema", "pandera"]\n\n[sources.main]\npython = "{module}:read"\n'
    )
    before = heads()
    result = cascade("run", "--run-id", "4", "--json")
    assert result.exit_code == 1, result.output
    run = json.loads(result.stdout)
    assert (run["outcome"], run["tag"], run["verdict"]["outcome"]) == ("refused", None, "passed")
    assert "did not run the gate(s) promotion requires: pandera;" in result.stderr
    assert heads() == before


@pytest.mark.parametrize("gates", ["rejects,schema,pandera,freshness,sql", "sql,freshness,pandera,schema,rejects"])
def test_the_order_gates_ran_in_does_not_matter(gates):
    branch_with_rows("5")
    validate("5", "--gates", gates)
    assert cascade("promote", "--run-id", "5").exit_code == 0
