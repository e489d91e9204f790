"""Workflow annotations: one per failing check, with file and line where known, capped per level."""

from __future__ import annotations

import io

from cascade_ci.stages.validate import annotate
from cascade_ci.verdict import Check, GateResult, Level, Verdict


def verdict(checks: tuple[Check, ...], error: str | None = None) -> Verdict:
    return Verdict(
        run_id="1", attempt=1, branch="pipeline/run-1", validated_hash="a" * 40, base_ref="main", base_hash="b" * 40,
        started_at="2026-11-27T00:00:00+00:00", duration_s=0.1,
        gates=(GateResult("dbt", checks=checks), GateResult("freshness", error=error)),
    )  # fmt: skip


def lines(v: Verdict, monkeypatch, in_actions: bool = True) -> list[str]:
    monkeypatch.setenv("GITHUB_ACTIONS", "true" if in_actions else "false")
    out = io.StringIO()
    annotate(v, out)
    return out.getvalue().splitlines()


def test_errors_and_warnings_with_file_and_line(monkeypatch):
    checks = (
        Check("dbt", "marts.f", "unique:id", Level.ERROR, False, "3 failing rows", file="m/schema.yml", line=7),
        Check("dbt", "marts.f", "accepted_values:x", Level.WARN, False, "1 failing row"),
        Check("dbt", "marts.f", "not_null:id", Level.ERROR, True, "passed"),
    )
    got = lines(verdict(checks, error="catalog unavailable"), monkeypatch)
    assert got == [
        "::error file=m/schema.yml,line=7,title=dbt.unique%3Aid::marts.f: 3 failing rows",
        "::warning title=dbt.accepted_values%3Ax::marts.f: 1 failing row",
        "::error title=cascade freshness gate could not run::catalog unavailable",
    ]


def test_capped_per_level(monkeypatch):
    checks = tuple(Check("dbt", "t", f"c{i}", Level.ERROR, False, "bad") for i in range(25))
    assert len(lines(verdict(checks), monkeypatch)) == 10


def test_silent_outside_actions(monkeypatch):
    checks = (Check("dbt", "t", "c", Level.ERROR, False, "bad"),)
    assert lines(verdict(checks), monkeypatch, in_actions=False) == []
