"""Every JUnit rendering validates against the current Jenkins xunit `junit-10.xsd` (tests/fixtures/junit, with
its source), whatever the durations and whatever the data says."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from cascade_ci.report import junit
from cascade_ci.verdict import Check, GateResult, Level
from tests.unit import report_verdicts
from tests.unit.test_reports import make_verdict, passing_verdict

SCHEMA = Path(__file__).parents[1] / "fixtures" / "junit" / "junit-10.xsd"
SHA256 = "a1a816f58d1bf95ebabf371994df0b9246dee66ea9572fbec4f9296f1b2c0ff6"  # xunit-plugin 8c515de, see README


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    data = SCHEMA.read_bytes()
    assert hashlib.sha256(data).hexdigest() == SHA256
    return etree.XMLSchema(etree.fromstring(data))


def valid(schema: etree.XMLSchema, xml: str) -> etree._Element:
    document = etree.fromstring(xml.encode("utf-8"), parser=etree.XMLParser(huge_tree=True))
    schema.assertValid(document)
    return document


def every_outcome() -> tuple[GateResult, ...]:
    return (
        GateResult(
            "dbt",
            checks=(
                Check("dbt", "marts.f", "unique:id", Level.ERROR, True, "passed", file="m/schema.yml", line=7),
                Check("dbt", "marts.f", "not_null:id", Level.ERROR, False, "3 failing rows", observed=3, expected=0),
                Check("dbt", "marts.f", "accepted_values:x", Level.WARN, False, "1 failing row <&>"),
            ),
            duration_s=0.4,
        ),
        GateResult("freshness", error="ServiceUnavailableError: catalog did not answer"),
        GateResult("schema"),
    )


VERDICTS = {
    "every outcome": lambda: report_verdicts.verdict(every_outcome()),
    "no gate": lambda: report_verdicts.verdict(()),
    "blocked": make_verdict,
    "passed with a warning": passing_verdict,
    "hostile data": report_verdicts.hostile,
    "10,000 failing checks": report_verdicts.ten_thousand_failing,
    "20 tables": report_verdicts.twenty_tables,
    "publishers, blocked": report_verdicts.publishers_blocked,
}


@pytest.mark.parametrize("build", VERDICTS.values(), ids=VERDICTS.keys())
def test_every_rendering_validates(schema, build):
    document = valid(schema, junit.render(build()))
    assert document.tag == "testsuites"


@pytest.mark.parametrize("seconds", [0.9410000000000001, 1e-7, 0.0005, 2.675, 123456.78915, 1 / 3, 0.1 + 0.2])
def test_float_durations_validate_with_three_decimals(schema, seconds):
    gate = GateResult("schema", checks=(Check("schema", "n.t", "c", Level.ERROR, True),) * 3, duration_s=seconds)
    document = valid(schema, junit.render(report_verdicts.verdict((gate,), duration_s=seconds)))
    times = [element.get("time") for element in document.iter("testsuites", "testsuite", "testcase")]
    assert all(len(time.split(".")[1]) == 3 for time in times), times


def test_control_characters_and_non_ascii_validate(schema):
    text = "bell\x07 nul\x00 esc\x1b form\x0c \ufffe snowman \u2603 emoji \U0001f600 tab\t cr\r"
    gate = GateResult("sql", checks=(Check("sql", text, text, Level.ERROR, False, text, observed=text),), error=text)
    xml = junit.render(report_verdicts.verdict((gate,), branch=text))
    assert xml.isascii()
    document = valid(schema, xml)
    [failure] = document.iter("failure")
    assert "\\x07" in failure.get("message") and "\u2603" in failure.get("message")


def test_the_schema_rejects_what_the_old_renderer_wrote(schema):
    """What junit-xml 1.9 wrote: `disabled` on suites, `file`/`line` on testcases, float artefacts in `time`."""
    xml = junit.render(report_verdicts.verdict(every_outcome()))
    for broken in (
        xml.replace("<testsuite ", '<testsuite disabled="0" ', 1),
        xml.replace("<testcase ", '<testcase file="m/schema.yml" line="7" ', 1),
        xml.replace('time="0.400"', 'time="0.9410000000000001"', 1),
    ):
        assert broken != xml
        assert not schema.validate(etree.fromstring(broken.encode()))


TEXT = st.text(st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(TEXT, min_size=4, max_size=4),
    passed=st.booleans(),
    warn=st.booleans(),
    seconds=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_any_data_validates(schema, texts, passed, warn, seconds):
    table, name, message, error = texts
    check = Check("g", table, name, Level.WARN if warn else Level.ERROR, passed, message, observed=message)
    gate = GateResult("g", checks=(check,), error=error or None, duration_s=seconds)
    valid(schema, junit.render(report_verdicts.verdict((gate,))))
