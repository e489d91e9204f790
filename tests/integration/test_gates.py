"""Each defect class, end to end: the same severity in verdict.json, JUnit, the summary and the exit code.

Every test runs `cascade run` in a fresh copy of examples/glucose-github (the `glucose_project` fixture); the
sample source's `defects` option injects the defect.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from junitparser import JUnitXml

from cascade_ci.catalog import open_catalog
from cascade_ci.cli import cli

pytestmark = pytest.mark.usefixtures("glucose_project")


def run(tmp_path: Path, run_id: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["run", "--run-id", run_id, "--json", *args], env=env, catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def findings(tmp_path: Path) -> dict[tuple[str, str, str], str]:
    """(gate, table, check) -> severity of each failing check, read back from all three renderings."""
    verdict = json.loads((tmp_path / "reports" / "verdict.json").read_text())
    from_json = {
        (c["gate"], c["table"], c["name"]): c["severity"]
        for gate in verdict["gates"]
        for c in gate["checks"]
        if not c["passed"]
    }
    from_junit: dict[tuple[str, str, str], str] = {}
    for suite in JUnitXml.fromfile(str(tmp_path / "reports" / "junit.xml")):
        gate = suite.name.removeprefix("cascade.")
        for case in suite:
            table = case.classname.removeprefix(f"cascade.{gate}.")
            if case.is_skipped:  # a failing warning: <skipped type="warning">
                from_junit[(gate, table, case.name)] = "warn"
            elif not case.is_passed:
                from_junit[(gate, table, case.name)] = "error"
    summary = (tmp_path / "reports" / "summary.md").read_text()
    from_summary = {}
    for line in summary.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 5 and cells[0] in ("**fail**", "warn"):
            from_summary[(cells[1].strip("`"), cells[2].strip("`"))] = "error" if cells[0] == "**fail**" else "warn"
    assert from_json == from_junit
    assert {(table, name): level for (_, table, name), level in from_json.items()} == from_summary
    return from_json


@pytest.mark.parametrize(
    ("defect", "expected", "exit_code"),
    [
        ("duplicate_ids", {("pandera", "marts.fct_glucose_readings", "entry_id:unique"): "error"}, 1),
        ("out_of_range_glucose", {("dbt", "marts.fct_glucose_readings", "value_between:glucose_mg_dl"): "error"}, 1),
        ("null_ids", {("pandera", "marts.fct_glucose_readings", "entry_id:not_null"): "error"}, 1),
        ("unknown_event_types", {("pandera", "marts.fct_github_user_events", "event_type:isin"): "warn"}, 0),
        ("stale_timestamps", {("freshness", "raw.glucose_entries", "fresh"): "warn"}, 0),
    ],
)
def test_defect_severity_is_the_same_everywhere(tmp_path, defect, expected, exit_code):
    code, result = run(tmp_path, f"g-{defect}", "-o", f"defects={defect}")
    assert code == exit_code
    assert result["outcome"] == ("blocked" if exit_code else "promoted")
    found = findings(tmp_path)
    assert expected.items() <= found.items()
    if exit_code == 0:
        assert all(level == "warn" for level in found.values())


def test_pandera_critical_level_warning_makes_warnings_block(tmp_path):
    code, result = run(
        tmp_path, "g-crit", "-o", "defects=unknown_event_types", env={"PANDERA_CRITICAL_LEVEL": "warning"}
    )
    assert code == 1 and result["outcome"] == "blocked"
    found = findings(tmp_path)
    assert found[("pandera", "marts.fct_github_user_events", "event_type:isin")] == "error"
    assert found[("dbt", "marts.fct_github_user_events", "accepted_values:event_type")] == "warn"


def test_freshness_blocks_when_configured(tmp_path):
    # The defect comes through the example's cascade.toml: defects = "${CASCADE_SAMPLE_DEFECTS:-}".
    env = {"FRESHNESS_BLOCKS_PROMOTION": "true", "CASCADE_SAMPLE_DEFECTS": "stale_timestamps"}
    code, result = run(tmp_path, "g-fresh", env=env)
    assert code == 1 and result["outcome"] == "blocked"
    found = findings(tmp_path)
    assert {name for (gate, _, name) in found if gate == "freshness"} == {"fresh"}
    assert all(level == "error" for (gate, _, _), level in found.items() if gate == "freshness")


@pytest.fixture
def edited_project(glucose_project):
    """The dbt project of the test's copy of the example, which the test may edit."""
    return glucose_project / "dbt"


def test_dropped_column_blocks_through_the_schema_gate(tmp_path, edited_project):
    assert run(tmp_path, "g-base")[0] == 0
    model = edited_project / "models" / "marts" / "fct_glucose_readings.sql"
    model.write_text(model.read_text().replace(",\n    device\n", "\n"))
    main = open_catalog().get_ref("main").hash
    code, _ = run(tmp_path, "g-drop")
    assert code == 1
    found = findings(tmp_path)
    assert found[("schema", "marts.fct_glucose_readings", "backward_compatible")] == "error"
    assert found[("pandera", "marts.fct_glucose_readings", "device:present")] == "warn"
    assert open_catalog().get_ref("main").hash == main


def test_failing_dbt_test_blocks(tmp_path, edited_project):
    (edited_project / "tests" / "assert_no_reading_above_150.sql").write_text(
        "select * from {{ ref('fct_glucose_readings') }} where glucose_mg_dl > 150\n"
    )
    code, _ = run(tmp_path, "g-dbt")
    assert code == 1
    found = findings(tmp_path)
    assert found == {("dbt", "marts.fct_glucose_readings", "assert_no_reading_above_150"): "error"}


def test_junit_ids_are_stable_across_runs(tmp_path):
    def ids() -> list[tuple[str, str]]:
        suites = JUnitXml.fromfile(str(tmp_path / "reports" / "junit.xml"))
        return sorted((case.classname, case.name) for suite in suites for case in suite)

    assert run(tmp_path, "g-one")[0] == 0
    first = ids()
    assert run(tmp_path, "g-two")[0] == 0
    assert ids() == first
    assert len(first) > 200
