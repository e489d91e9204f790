"""A warning is visible in each of the three popular GitHub publishers and counts as a failure in none.

Proven on their own output for our junit.xml, recorded by running their code (their packages are on neither
npm nor PyPI and tests run offline; tests/fixtures/junit/README.md names the commits and how each was run).
The recordings stay valid only while the renderer writes the very files they were made from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cascade_ci.report import junit
from cascade_ci.verdict import Verdict
from tests.unit.report_verdicts import publishers_blocked, publishers_passed

FIXTURES = Path(__file__).parents[1] / "fixtures" / "junit" / "publishers"
VERDICTS = {"blocked": publishers_blocked, "passed": publishers_passed}


def recorded(name: str, publisher: str) -> dict:
    return json.loads((FIXTURES / f"{name}.{publisher}.json").read_text(encoding="utf-8"))


def warnings(verdict: Verdict) -> list:
    return [check for check in verdict.checks if check.warns]


@pytest.mark.parametrize("name", VERDICTS)
def test_the_recorded_files_are_what_the_renderer_writes(name):
    """If this fails, re-record: `python tests/fixtures/junit/record.py ...` (see the README)."""
    assert (FIXTURES / f"{name}.xml").read_text(encoding="utf-8") == junit.render(VERDICTS[name]())


@pytest.mark.parametrize("name", VERDICTS)
def test_enricomi_lists_warnings_as_skipped(name):
    verdict, found = VERDICTS[name](), recorded(name, "enricomi")
    assert found["errors"] == []
    stats = found["stats"]
    assert stats["tests"] == verdict.check_count
    assert stats["tests_skip"] == verdict.warnings > 0
    assert stats["tests_fail"] + stats["tests_error"] == verdict.errors
    assert found["conclusion"] == ("failure" if verdict.blocked else "success")
    skipped = {(case["class_name"], case["test_name"]): case for case in found["cases"] if case["result"] == "skipped"}
    for check in warnings(verdict):
        case = skipped[(f"cascade.{check.gate}.{check.table}", check.name)]
        assert case["message"] == f"warning: {check.message}"
        listed = f"cascade.{check.gate}.{check.table} \u2011 {check.name}"  # EnricoMi joins with a non-breaking hyphen
        assert listed in found["skipped_tests"]  # the "skipped tests" notice of its check run
    assert f"{verdict.warnings} 💤" in found["summary_md"]
    assert all(annotation["annotation_level"] != "notice" for annotation in found["annotations"])


@pytest.mark.parametrize("name", VERDICTS)
def test_mikepenz_lists_warnings_as_skipped(name):
    verdict, found = VERDICTS[name](), recorded(name, "mikepenz")
    outputs = found["outputs"]
    assert int(outputs["total"]) == verdict.check_count
    assert int(outputs["skipped"]) == verdict.warnings > 0
    assert int(outputs["failed"]) == verdict.errors
    assert outputs["detailed_summary"].count("⚠️ skipped") == verdict.warnings
    for check in warnings(verdict):
        assert f"<td>{check.table.rsplit('.', 1)[-1]}.{check.name}</td><td>⚠️ skipped</td>" in found["summary"]
    assert len([command for command in found["commands"] if command.startswith("::error")]) == verdict.errors
    assert not [command for command in found["commands"] if command.startswith("::warning")]


@pytest.mark.parametrize("name", VERDICTS)
def test_dorny_lists_warnings_as_skipped(name):
    verdict, found = VERDICTS[name](), recorded(name, "dorny")
    outputs = found["outputs"]
    assert int(outputs["skipped"]) == verdict.warnings > 0
    assert int(outputs["failed"]) == verdict.errors
    assert int(outputs["passed"]) + int(outputs["failed"]) + int(outputs["skipped"]) == verdict.check_count
    assert outputs["conclusion"] == ("failure" if verdict.blocked else "success")
    assert found["exit_code"] == int(verdict.blocked)  # fail-on-error fails on failures only
    listed = dorny_tests(found["summary"])
    for check in warnings(verdict):
        assert (f"cascade.{check.gate}.{check.table}", "⚪", check.name) in listed


def dorny_tests(summary: str) -> set[tuple[str, str, str]]:
    """(group, icon, test) of each test dorny lists: a group line, then its tests indented by two spaces."""
    listed, group = set(), ""
    for line in summary.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            icon, test = line.strip().split(" ", 1)
            listed.add((group, icon, test))
        elif line and not line.startswith(("\t", "```", "#", "|", "!", "*")):
            group = line
    return listed
