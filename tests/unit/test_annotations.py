"""Workflow annotations: one per finding with file and line where known, capped per level, then "... and N more";
the validate action adds none of its own, so the run page counts what the verdict counts."""

from __future__ import annotations

import io
import re
from pathlib import Path

import yaml

from cascade_ci.stages.validate import annotate
from cascade_ci.verdict import Check, GateResult, Level, Verdict

ACTION = Path(__file__).parents[2] / "actions" / "validate" / "action.yml"


def verdict(checks: tuple[Check, ...], error: str | None = None, gates: tuple[GateResult, ...] = ()) -> Verdict:
    return Verdict(
        run_id="1", attempt=1, branch="pipeline/run-1", validated_hash="a" * 40, base_ref="main", base_hash="b" * 40,
        started_at="2026-11-27T00:00:00+00:00", duration_s=0.1,
        gates=gates or (GateResult("dbt", checks=checks), GateResult("freshness", error=error)),
    )  # fmt: skip


def lines(v: Verdict, monkeypatch, in_actions: bool = True) -> list[str]:
    monkeypatch.setenv("GITHUB_ACTIONS", "true" if in_actions else "false")
    out = io.StringIO()
    annotate(v, out)
    return out.getvalue().splitlines()


def levels(found: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in found:
        level = line[2:].split(" ", 1)[0].split("::", 1)[0]
        counts[level] = counts.get(level, 0) + 1
    return counts


def test_errors_and_warnings_with_file_and_line(monkeypatch):
    checks = (
        Check("dbt", "marts.f", "unique:id", Level.ERROR, False, "3 failing rows", file="m/schema.yml", line=7),
        Check("dbt", "marts.f", "accepted_values:x", Level.WARN, False, "1 failing row"),
        Check("dbt", "marts.f", "not_null:id", Level.ERROR, True, "passed"),
    )
    got = lines(verdict(checks, error="catalog unavailable"), monkeypatch)
    assert got == [
        "::error title=cascade freshness gate could not run::catalog unavailable",
        "::error file=m/schema.yml,line=7,title=dbt.unique%3Aid::marts.f: 3 failing rows",
        "::warning title=dbt.accepted_values%3Ax::marts.f: 1 failing row",
    ]


def test_capped_per_level_then_how_many_more(monkeypatch):
    checks = tuple(Check("dbt", "t", f"c{i}", Level.ERROR, False, "bad") for i in range(25))
    checks += tuple(Check("dbt", "t", f"w{i}", Level.WARN, False, "meh") for i in range(3))
    got = lines(verdict(checks, error="catalog unavailable"), monkeypatch)
    assert levels(got) == {"error": 10, "warning": 3, "notice": 1}
    assert got[0].startswith("::error title=cascade freshness gate could not run::")  # faults first
    assert got[-1] == (
        "::notice title=cascade::... and 16 more errors: GitHub shows 10 of each per step; see the job summary"
    )


def test_both_levels_over_the_cap(monkeypatch):
    checks = tuple(Check("dbt", "t", f"c{i}", Level.ERROR if i % 2 else Level.WARN, False, "x") for i in range(30))
    got = lines(verdict(checks), monkeypatch)
    assert levels(got) == {"error": 10, "warning": 10, "notice": 1}
    assert "... and 5 more errors and 5 more warnings:" in got[-1]


def test_no_notice_when_everything_is_shown(monkeypatch):
    checks = tuple(Check("dbt", "t", f"c{i}", Level.ERROR, False, "bad") for i in range(10))
    assert levels(lines(verdict(checks), monkeypatch)) == {"error": 10}


def test_a_verdict_without_gates_is_one_error(monkeypatch):
    empty = Verdict("1", 1, "b", "a" * 40, "main", "b" * 40, "2026-11-27T00:00:00+00:00", 0.0)
    assert levels(lines(empty, monkeypatch)) == {"error": empty.errors}


def test_silent_outside_actions(monkeypatch):
    checks = (Check("dbt", "t", "c", Level.ERROR, False, "bad"),)
    assert lines(verdict(checks), monkeypatch, in_actions=False) == []


def test_the_validate_action_adds_no_annotation_of_its_own():
    action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    scripts = "\n".join(step.get("run", "") for step in action["runs"]["steps"])
    assert not re.search(r"::(error|warning|notice)\b", scripts), scripts
    assert "exit 1" in scripts  # fail-on-blocked still fails the step
