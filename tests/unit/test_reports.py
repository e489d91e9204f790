"""Renderers of a Verdict (JUnit XML, Markdown, job outputs) and the Verdict model and its JSON form."""

from __future__ import annotations

import dataclasses
import json
from xml.etree import ElementTree

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped, TestSuite

from cascade_ci.report import junit, markdown, outputs
from cascade_ci.verdict import Check, GateResult, Level, Status, TableDelta, Verdict

VALIDATED = "a1b2c3d4e5f6" + "0" * 52
BASE = "f0e1d2c3b4a5" + "9" * 52


def make_verdict(run_id: str = "8123456789", attempt: int = 2, **changes: object) -> Verdict:
    """A blocked verdict: a passing and a failing error check, a failing warning, and an infrastructure fault."""
    schema = GateResult(
        gate="schema",
        checks=(
            Check("schema", "analytics.glucose", "columns_match", Level.ERROR, True, "columns as expected"),
            Check(
                "schema",
                "analytics.glucose",
                "type_of_value",
                Level.ERROR,
                False,
                "column value changed type | was double",
                observed="string",
                expected="double",
            ),
            Check("schema", "raw.github_events", "nullable_actor", Level.WARN, False, "actor became nullable"),
        ),
        duration_s=1.25,
    )
    dbt = GateResult(gate="dbt", error="ConnectionError: warehouse refused\nTraceback (most recent call last)")
    freshness = GateResult(
        gate="freshness",
        checks=(Check("freshness", "analytics.glucose", "max_age_24h", Level.ERROR, True, "3 h old"),),
        duration_s=0.5,
    )
    values: dict[str, object] = {
        "run_id": run_id,
        "attempt": attempt,
        "branch": f"pipeline/run-{run_id}",
        "validated_hash": VALIDATED,
        "base_ref": "main",
        "base_hash": BASE,
        "started_at": "2024-03-01T10:00:00+00:00",
        "duration_s": 2.0,
        "gates": (freshness, schema, dbt),
        "changes": (
            TableDelta(
                "analytics.glucose",
                "updated",
                rows_before=100,
                rows_after=105,
                schema_changes=("value: double -> string",),
            ),
            TableDelta("raw.github_events", "added", rows_before=None, rows_after=1200),
        ),
        "run_url": "https://github.com/o/r/actions/runs/8123456789",
        "stages": {"branch": "done", "validate": "blocked"},
    }
    values.update(changes)
    return Verdict(**values)  # type: ignore[arg-type]


def passing_verdict(**changes: object) -> Verdict:
    """Only a warning fails: the verdict passes."""
    gate = GateResult(
        gate="schema",
        checks=(
            Check("schema", "analytics.glucose", "columns_match", Level.ERROR, True),
            Check("schema", "analytics.glucose", "nullable_value", Level.WARN, False, "value became nullable"),
        ),
        duration_s=0.1,
    )
    return make_verdict(gates=(gate,), **changes)


def parse(xml: str) -> JUnitXml:
    return JUnitXml.fromstring(xml.encode("utf-8"))


def suites(xml: str) -> dict[str, TestSuite]:
    return {suite.name: suite for suite in parse(xml)}


def cases(xml: str) -> dict[tuple[str, str], object]:
    return {(case.classname, case.name): case for suite in parse(xml) for case in suite}


# --- Verdict -----------------------------------------------------------------------------------


def test_check_blocks_and_warns() -> None:
    failing_error = Check("g", "n.t", "c", Level.ERROR, False)
    failing_warn = Check("g", "n.t", "c", Level.WARN, False)
    passing_error = Check("g", "n.t", "c", Level.ERROR, True)
    passing_warn = Check("g", "n.t", "c", Level.WARN, True)
    assert (failing_error.blocks, failing_error.warns) == (True, False)
    assert (failing_warn.blocks, failing_warn.warns) == (False, True)
    assert (passing_error.blocks, passing_error.warns) == (False, False)
    assert (passing_warn.blocks, passing_warn.warns) == (False, False)


def test_gate_status() -> None:
    verdict = make_verdict()
    by_name = {gate.gate: gate for gate in verdict.gates}
    assert by_name["freshness"].status is Status.PASS
    assert by_name["schema"].status is Status.FAIL
    assert by_name["dbt"].status is Status.ERROR
    warn_only = GateResult("g", checks=(Check("g", "n.t", "c", Level.WARN, False),))
    assert warn_only.status is Status.PASS
    # An infrastructure fault outranks failed checks.
    both = GateResult("g", checks=(Check("g", "n.t", "c", Level.ERROR, False),), error="boom")
    assert both.status is Status.ERROR


def test_verdict_counts() -> None:
    verdict = make_verdict()
    assert len(verdict.checks) == 4
    assert verdict.check_count == 5  # the gate that could not run is one more (errored) check
    assert verdict.errors == 2  # one failing error check + one gate that could not run
    assert verdict.warnings == 1
    assert verdict.blocked is True
    assert verdict.outcome == "blocked"


def test_blocked_when_an_error_check_fails() -> None:
    gate = GateResult("schema", checks=(Check("schema", "n.t", "c", Level.ERROR, False),))
    verdict = make_verdict(gates=(gate,))
    assert verdict.blocked is True
    assert verdict.errors == 1


def test_blocked_when_a_gate_has_an_error() -> None:
    ok = GateResult("schema", checks=(Check("schema", "n.t", "c", Level.ERROR, True),))
    verdict = make_verdict(gates=(ok, GateResult("dbt", error="timeout")))
    assert verdict.blocked is True
    assert verdict.errors == 1


def test_not_blocked_when_only_warnings_fail() -> None:
    verdict = passing_verdict()
    assert verdict.warnings == 1
    assert verdict.errors == 0
    assert verdict.blocked is False
    assert verdict.outcome == "passed"


def test_blocked_when_there_are_no_gates() -> None:
    verdict = make_verdict(gates=())
    assert verdict.errors == 1  # "no gate ran" counts as one error, so outputs agree with `blocked`
    assert verdict.blocked is True
    assert verdict.outcome == "blocked"


def test_gate_with_no_checks_and_no_error_passes() -> None:
    verdict = make_verdict(gates=(GateResult("schema"),))
    assert verdict.blocked is False


@pytest.mark.parametrize("verdict", [make_verdict(), passing_verdict(), make_verdict(gates=(), changes=())])
def test_json_round_trip(verdict: Verdict) -> None:
    again = Verdict.from_json(verdict.to_json())
    assert again == verdict
    assert again.blocked == verdict.blocked
    assert all(isinstance(check.severity, Level) for check in again.checks)
    assert isinstance(again.gates, tuple)
    assert isinstance(again.changes, tuple)


def test_json_round_trip_keeps_retries_and_check_details() -> None:
    gate = GateResult(
        "pandera",
        checks=(
            Check("pandera", "n.t", "in_range", Level.ERROR, False, "3 rows", "checks.py", 12, observed=3, expected=0),
        ),
        duration_s=4.5,
        retries=("attempt 1: timeout", "attempt 2: timeout"),
    )
    verdict = make_verdict(gates=(gate,))
    again = Verdict.from_json(verdict.to_json(indent=2))
    assert again == verdict
    assert again.gates[0].retries == ("attempt 1: timeout", "attempt 2: timeout")
    assert again.checks[0].line == 12


def test_to_dict_carries_derived_fields() -> None:
    data = make_verdict().to_dict()
    assert data["outcome"] == "blocked"
    assert data["blocked"] is True
    assert data["errors"] == 2
    assert data["warnings"] == 1
    assert [gate["status"] for gate in data["gates"]] == ["pass", "fail", "error"]


def test_from_json_recomputes_rather_than_trusts_derived_fields() -> None:
    data = json.loads(make_verdict().to_json())
    data.update(outcome="passed", blocked=False, errors=0, warnings=0)
    again = Verdict.from_dict(data)
    assert again.blocked is True
    assert again.errors == 2


# --- JUnit -------------------------------------------------------------------------------------


def test_junit_root_is_testsuites_with_one_suite_per_gate() -> None:
    xml = junit.render(make_verdict())
    assert xml.lstrip().startswith("<?xml")
    root = ElementTree.fromstring(xml.encode("utf-8"))
    assert root.tag == "testsuites"
    assert [child.tag for child in root] == ["testsuite"] * 3
    doc = parse(xml)
    assert [suite.name for suite in doc] == ["cascade.freshness", "cascade.schema", "cascade.dbt"]


def test_junit_totals_are_consistent() -> None:
    doc = parse(junit.render(make_verdict()))
    suite_list = list(doc)
    assert doc.tests == sum(suite.tests for suite in suite_list) == 5  # 4 checks + 1 infrastructure fault
    assert doc.failures == sum(suite.failures for suite in suite_list) == 1
    assert doc.errors == sum(suite.errors for suite in suite_list) == 1
    assert sum(suite.skipped for suite in suite_list) == 1  # the warning
    for suite in suite_list:
        assert suite.tests == len(list(suite))
        assert suite.failures == sum(case.is_failure for case in suite)
        assert suite.errors == sum(case.is_error for case in suite)
        assert suite.skipped == sum(case.is_skipped for case in suite)


def test_junit_failing_error_check_is_a_failure() -> None:
    case = cases(junit.render(make_verdict()))[("cascade.schema.analytics.glucose", "type_of_value")]
    assert case.is_failure
    [result] = case.result
    assert isinstance(result, Failure)
    assert result.message == "column value changed type | was double"
    assert "observed: string" in result.text
    assert "expected: double" in result.text


def test_junit_infrastructure_fault_is_an_error() -> None:
    suite = suites(junit.render(make_verdict()))["cascade.dbt"]
    [case] = list(suite)
    assert case.is_error
    [result] = case.result
    assert isinstance(result, Error)
    assert result.type == "infrastructure"
    assert result.message == "ConnectionError: warehouse refused"
    assert "Traceback" in result.text


def test_junit_warning_is_a_skipped_case_typed_warning() -> None:
    """Every publisher lists a skipped test, and none counts it as a failure (see test_publishers.py)."""
    case = cases(junit.render(make_verdict()))[("cascade.schema.raw.github_events", "nullable_actor")]
    assert case.is_skipped and not case.is_failure and not case.is_error
    [result] = case.result
    assert isinstance(result, Skipped)
    assert (result.type, result.message) == ("warning", "warning: actor became nullable")
    assert result.text == "actor became nullable"
    assert not case.system_out


def test_junit_passing_check_is_a_plain_passing_case() -> None:
    case = cases(junit.render(make_verdict()))[("cascade.schema.analytics.glucose", "columns_match")]
    assert case.is_passed
    assert case.result == []
    assert not case.system_out


def test_junit_classnames_are_gate_namespace_table() -> None:
    found = set(cases(junit.render(make_verdict())))
    assert found == {
        ("cascade.freshness.analytics.glucose", "max_age_24h"),
        ("cascade.schema.analytics.glucose", "columns_match"),
        ("cascade.schema.analytics.glucose", "type_of_value"),
        ("cascade.schema.raw.github_events", "nullable_actor"),
        ("cascade.dbt", "gate"),
    }


def test_junit_classname_folds_unsafe_characters() -> None:
    gate = GateResult("schema", checks=(Check("schema", "my ns.tab:le", "c", Level.ERROR, True),))
    [(classname, _)] = cases(junit.render(make_verdict(gates=(gate,))))
    assert classname == "cascade.schema.my_ns.tab_le"


def test_junit_properties_identify_the_run() -> None:
    for suite in parse(junit.render(make_verdict(run_id="777", attempt=3))):
        props = {prop.name: prop.value for prop in suite.properties()}
        assert props["cascade.run_id"] == "777"
        assert props["cascade.attempt"] == "3"
        assert props["cascade.branch"] == "pipeline/run-777"
        assert props["cascade.validated_hash"] == VALIDATED
        assert props["cascade.base_hash"] == BASE
        assert props["cascade.verdict"] == "blocked"


def test_junit_names_are_stable_across_runs() -> None:
    first = junit.render(make_verdict(run_id="1001", attempt=1))
    second = junit.render(make_verdict(run_id="2002", attempt=4))
    assert "1001" not in "".join(f"{c}{n}" for c, n in cases(first))
    assert list(cases(first)) == list(cases(second))
    assert [s.name for s in parse(first)] == [s.name for s in parse(second)]


def test_junit_is_ascii_only() -> None:
    for verdict in (make_verdict(), passing_verdict()):
        xml = junit.render(verdict)
        assert xml.isascii(), [ch for ch in xml if not ch.isascii()]


def test_junit_of_passing_verdict_has_no_failures_or_errors() -> None:
    doc = parse(junit.render(passing_verdict()))
    assert (doc.tests, doc.failures, doc.errors) == (2, 0, 0)
    for suite in doc:
        assert {prop.name: prop.value for prop in suite.properties()}["cascade.verdict"] == "passed"


# --- Markdown ----------------------------------------------------------------------------------


def test_markdown_first_line_says_blocked() -> None:
    first = markdown.render(make_verdict()).splitlines()[0]
    assert "blocked" in first
    assert "passed" not in first


def test_markdown_first_line_says_passed_when_only_warnings_fail() -> None:
    first = markdown.render(passing_verdict()).splitlines()[0]
    assert "passed" in first
    assert "blocked" not in first


def test_markdown_of_verdict_without_gates_blocks() -> None:
    text = markdown.render(make_verdict(gates=()))
    assert "blocked" in text.splitlines()[0]
    assert "No gate ran" in text


def test_markdown_puts_broken_gates_before_passing_ones() -> None:
    text = markdown.render(make_verdict())
    headings = [line for line in text.splitlines() if line.startswith("### ") and ":" in line]
    order = [heading.split()[2].rstrip(":").strip("`") for heading in headings]
    assert order == ["dbt", "schema", "freshness"]
    assert "The gate could not run" in text


def test_markdown_counts_line() -> None:
    text = markdown.render(make_verdict())
    assert "**2** blocking, **1** warnings, 5 checks in 3 gates" in text  # the dbt gate could not run: one check
    assert VALIDATED[:12] in text
    assert VALIDATED[:13] not in text
    assert "([workflow run](https://github.com/o/r/actions/runs/8123456789))" in text


def test_markdown_escapes_pipes_and_newlines_in_cells() -> None:
    gate = GateResult(
        "schema",
        checks=(Check("schema", "n.t", "a|b", Level.ERROR, False, "left | right\nnext line"),),
    )
    text = markdown.render(make_verdict(gates=(gate,)))
    [row] = [line for line in text.splitlines() if "left" in line]
    assert "left \\| right next line" in row
    assert "a\\|b" in row
    # Unescaped pipes delimit exactly the five columns.
    assert row.replace("\\|", "").count("|") == 6


def test_markdown_orders_failures_first_within_a_gate() -> None:
    text = markdown.render(make_verdict())
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`" in line and "updated" not in line]
    schema_rows = [row for row in rows if "columns_match" in row or "type_of_value" in row or "nullable" in row]
    assert [row.split("|")[1].strip() for row in schema_rows] == ["**fail**", "warn", "pass"]


def test_markdown_changes_table_shows_row_deltas() -> None:
    text = markdown.render(make_verdict())
    [glucose] = [line for line in text.splitlines() if line.startswith("| `analytics.glucose`") and "updated" in line]
    assert "+5" in glucose
    assert "100 -> 105" in glucose
    assert "value: double -> string" in glucose
    [events] = [line for line in text.splitlines() if line.startswith("| `raw.github_events`") and "added" in line]
    assert "+1,200" in events


def test_markdown_changes_table_shows_negative_delta() -> None:
    verdict = make_verdict(changes=(TableDelta("n.t", "updated", rows_before=10, rows_after=7),))
    [row] = [line for line in markdown.render(verdict).splitlines() if line.startswith("| `n.t`")]
    assert "-3 (10 -> 7)" in row


def test_markdown_without_changes() -> None:
    assert "No table differs from the base." in markdown.render(make_verdict(changes=()))


# --- job outputs -------------------------------------------------------------------------------


def test_outputs_of_blocked_verdict() -> None:
    values = outputs.render(make_verdict())
    assert values["verdict"] == "blocked"
    assert values["blocked"] == "true"
    assert values["errors"] == "2"
    assert values["warnings"] == "1"
    assert values["checks"] == "5"  # as junit.xml counts its tests
    assert values["branch"] == "pipeline/run-8123456789"
    assert values["validated_hash"] == VALIDATED
    assert values["base_hash"] == BASE
    assert values["run_id"] == "8123456789"
    assert values["attempt"] == "2"
    assert values["gates"] == "freshness:pass,schema:fail,dbt:error"
    assert all(isinstance(value, str) for value in values.values())


def test_outputs_of_passing_verdict() -> None:
    values = outputs.render(passing_verdict())
    assert values["verdict"] == "passed"
    assert values["blocked"] == "false"
    assert values["errors"] == "0"
    assert values["warnings"] == "1"
    assert values["gates"] == "schema:pass"


def test_outputs_have_no_newlines() -> None:
    for value in outputs.render(make_verdict()).values():
        assert "\n" not in value


def test_verdict_is_frozen() -> None:
    verdict = make_verdict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.run_id = "other"  # type: ignore[misc]
