"""Reports at their limits: 10,000 failing checks, 20 tables, hostile data, gates that could not run.

The summary and the PR comment are cut by structure (rows capped per gate, every section kept); no data value
becomes HTML, a link or a mention; every report counts the same checks; every JUnit testcase is timed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from junitparser import JUnitXml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from cascade_ci import github
from cascade_ci.github_api import COMMENT_LIMIT, MARKER, comment_body
from cascade_ci.report import junit, markdown, outputs
from cascade_ci.verdict import Check, GateResult, Level, Verdict
from tests.unit import report_verdicts
from tests.unit.report_verdicts import HOSTILE, hostile, ten_thousand_failing, twenty_tables

LARGE = {"10,000 failing checks": ten_thousand_failing, "20 tables": twenty_tables}
SECTIONS = ("## ", "### What this branch changes", "### Stages", "```mermaid")


def tokens(text: str) -> Iterator[Token]:
    """The Markdown's tokens as a CommonMark + GFM-tables parser reads them, inline ones included."""

    def walk(found: list[Token]) -> Iterator[Token]:
        for token in found:
            yield token
            yield from walk(token.children or [])

    yield from walk(MarkdownIt("commonmark", {"html": True}).enable("table").parse(text))


def table_rows(text: str) -> list[int]:
    """Cells per row of every table."""
    rows, cells = [], 0
    for token in tokens(text):
        cells = 0 if token.type == "tr_open" else cells + (token.type in ("td_open", "th_open"))
        if token.type == "tr_close":
            rows.append(cells)
    return rows


# --- summary and comment: cut by structure ------------------------------------------------------------


@pytest.mark.parametrize("build", LARGE.values(), ids=LARGE.keys())
def test_summary_fits_a_comment_uncut_with_every_section(build):
    verdict = build()
    text = markdown.render(verdict)
    assert comment_body(text) == f"{MARKER}\n{text}"  # GitHub's raw cut (65,536 characters) never applies
    assert len(comment_body(text)) <= COMMENT_LIMIT
    assert len(text) <= markdown.BUDGET
    for section in SECTIONS:
        assert section in text
    for gate in verdict.gates:
        assert f"### {markdown._ICON[gate.status]} `{gate.gate}`: {gate.status}" in text
    assert text.count("<details>") == text.count("</details>")
    assert "`summary-full.md`" in text  # the full report, named
    assert all(line.endswith("|") for line in text.splitlines() if line.startswith("|"))  # no row cut short


def test_ten_thousand_failing_checks_show_a_few_rows_and_how_many_more():
    verdict = ten_thousand_failing()
    text = markdown.render(verdict)
    rows = [line for line in text.splitlines() if line.startswith("| **fail** ") or line.startswith("| warn ")]
    assert len([row for row in rows if "`pandera`" in row or "value_" in row]) == 25
    assert "_… and 9,975 more failing checks: see `summary-full.md` in the reports artifact._" in text
    assert "**9,000** blocking, **1,001** warnings, 10,002 checks in 3 gates" in text


def test_twenty_tables_cap_rows_per_gate_and_changes():
    text = markdown.render(twenty_tables())
    per_gate = text.split("\n### ")[1:6]
    for section in per_gate:
        assert section.count("\n| **fail** ") + section.count("\n| warn ") <= 25
        assert "more failing checks" in section or "more passed checks" in section
    assert "Stages" in text and "What this branch changes" in text


def test_full_report_has_every_row():
    verdict = ten_thousand_failing()
    full = markdown.render(verdict, full=True)
    assert sum(line.startswith(("| **fail** ", "| warn ")) for line in full.splitlines()) == 10_001
    assert "more failing checks" not in full and "`summary-full.md`" not in full


def test_rows_shrink_until_the_budget_holds_and_gates_last():
    verdict = twenty_tables()
    assert len(markdown.render(verdict, budget=20_000)) <= 20_000
    rowless = markdown.render(verdict, budget=4_000)
    assert len(rowless) <= 4_000
    assert "| **fail** " not in rowless and "60 blocking and 20 warning checks failed." in rowless
    tight = markdown.render(verdict, budget=1_600)  # not even a section per gate fits: gates go, last
    assert len(tight) <= 1_600
    assert re.search(r"_… and [1-4] more gates: see `summary-full.md` in the reports artifact._", tight)
    for text in (rowless, tight):
        for section in SECTIONS:
            assert section in text


def test_step_summary_is_written_whole(tmp_path):
    target = tmp_path / "step_summary.md"
    text = markdown.render(ten_thousand_failing())
    assert github.write_summary(text, env={"GITHUB_STEP_SUMMARY": str(target)})
    assert target.read_text(encoding="utf-8") == text + "\n"


# --- escaping: data is text ------------------------------------------------------------------------------


FRAGMENTS = ("tracker.example", "evil.example", "octocat", "org/team", "#123", "mail.example", ":tada:", "PASSED")


@pytest.mark.parametrize("full", [False, True])
def test_no_data_value_becomes_html_a_link_or_a_mention(full):
    verdict = hostile()
    text = markdown.render(verdict, full=True) if full else markdown.render(verdict)
    found = list(tokens(text))
    html = {token.content.strip() for token in found if token.type in ("html_block", "html_inline")}
    assert html <= {"<details><summary>1 checks passed</summary>", "</details>"}
    assert [token.attrs["href"] for token in found if token.type == "link_open"] == [verdict.run_url]
    assert not [token for token in found if token.type == "image"]
    plain = "\n".join(token.content for token in found if token.type == "text")
    for fragment in FRAGMENTS:
        assert fragment not in plain  # so nothing from data is autolinked, mentioned or rendered as emoji
        assert any(fragment in token.content for token in found if token.type == "code_inline"), fragment
    assert set(table_rows(text)) <= {4, 5}  # a `|` in data splits no cell


def test_nested_backticks_stay_in_one_code_span():
    text = markdown.render(hostile())
    [line] = [line for line in text.splitlines() if line.startswith("The gate could not run:")]
    [span] = [token for token in tokens(line) if token.type == "code_inline"]
    assert span.content.startswith("`dbt` failed: <img") and "``` nested `backticks` ```" in span.content
    assert markdown.code("`a`") == "`` `a` ``" and markdown.code("a|b", cell=True) == "`a\\|b`"


def test_the_diagram_carries_no_markup_from_data():
    text = markdown.render(hostile())
    diagram = text.split("```mermaid\n", 1)[1].split("\n```", 1)[0]
    nodes = [line for line in diagram.splitlines() if line.startswith("    s")]
    assert all(re.fullmatch(r'    s\d+\["[A-Za-z0-9 _.:-]*"\]:::(ok|bad|next|idle)|    s0 --> s1', n) for n in nodes)


def test_a_link_that_is_not_a_plain_https_url_is_not_linked():
    text = markdown.render(report_verdicts.verdict((), run_url="javascript:alert(1)//https://x"))
    assert "javascript" not in text and "[workflow run]" not in text


# --- one count everywhere ---------------------------------------------------------------------------------


COUNTED = {
    "a gate could not run": lambda: report_verdicts.publishers_blocked(),
    "no gate": lambda: report_verdicts.verdict(()),
    "checks and a fault in one gate": lambda: report_verdicts.verdict(
        (GateResult("g", checks=(Check("g", "n.t", "c", Level.ERROR, False),), error="boom"),)
    ),
    "20 tables": twenty_tables,
}


@pytest.mark.parametrize("build", COUNTED.values(), ids=COUNTED.keys())
def test_tests_equal_checks_in_every_report(build):
    verdict: Verdict = build()
    faults = sum(gate.error is not None for gate in verdict.gates) if verdict.gates else 1
    counted = len(verdict.checks) + faults  # a gate that could not run is one errored check
    document = JUnitXml.fromstring(junit.render(verdict).encode())
    assert outputs.render(verdict)["checks"] == str(counted)
    assert f"{counted:,d} checks in" in markdown.render(verdict)
    assert document.tests == counted == verdict.check_count
    assert document.failures + document.errors == verdict.errors
    assert sum(suite.skipped for suite in document) == verdict.warnings


# --- JUnit: every testcase timed ----------------------------------------------------------------------------


def test_every_testcase_is_timed_and_times_add_up():
    verdict = report_verdicts.publishers_blocked()
    document = JUnitXml.fromstring(junit.render(verdict).encode())
    for suite, gate in zip(document, verdict.gates, strict=True):
        times = [case._elem.get("time") for case in suite]
        assert all(re.fullmatch(r"\d+\.\d{3}", time) for time in times), times
        assert sum(round(float(time) * 1000) for time in times) == round(gate.duration_s * 1000)
        assert suite._elem.get("time") == f"{gate.duration_s:.3f}"
    assert document._elem.get("time") == f"{sum(gate.duration_s for gate in verdict.gates):.3f}"


def test_the_location_is_in_the_failure_text():
    case = next(
        case
        for suite in JUnitXml.fromstring(junit.render(report_verdicts.publishers_blocked()).encode())
        for case in suite
        if case.name == "unique_orders_id"
    )
    assert case.result[0].text.splitlines()[-1] == "at: dbt/models/marts/schema.yml:7"
    assert case._elem.get("file") is None  # the schema has no file on a testcase


def test_hostile_data_round_trips_through_junit():
    document = JUnitXml.fromstring(junit.render(hostile()).encode())
    [failure] = [case.result[0] for suite in document for case in suite if case.is_failure]
    assert failure.message == HOSTILE.replace("\x07", "\\x07")
