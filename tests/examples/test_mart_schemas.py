"""The example's mart schemas through the pandera gate's rule matching: every failure lands on the right
(column, rule) with the column's severity."""

from __future__ import annotations

from datetime import date

import polars as pl
from glucose_github.schemas import FactGitHubRepoStats

from cascade_ci.gates.pandera_gate import _check, _failures, _matches, rules_of
from cascade_ci.verdict import Level


def repo_stats(**overrides):
    rows = {
        "repo_name": ["a/b", "a/b", "c/d"],
        "snapshot_date": [date(2026, 1, 1)] * 3,
        "stargazers_count": [1, 2, 3],
        "forks_count": [0, 0, 0],
        "open_issues_count": [0, 0, 0],
        "watchers_count": [1, 1, 1],
        "language": ["Go", None, "Rust"],
        "contributors_count": pl.Series([1, 2, 3], dtype=pl.Int32),
        "commits_last_4_weeks": pl.Series([1, 2, 3], dtype=pl.Int32),
        "commits_last_52_weeks": pl.Series([1, 2, 3], dtype=pl.Int32),
        "activity_score": [1.0, 2.0, 3.0],
        "activity_level": ["low", "low", "bogus"],
        "health_status": ["healthy"] * 3,
    }
    rows.update(overrides)
    return pl.DataFrame(rows)


def failing(frame: pl.DataFrame) -> dict[str, list]:
    schema = FactGitHubRepoStats.to_schema()
    failures = _failures(schema, frame)
    result = {}
    for rule in rules_of(schema):
        values = _matches(rule, failures)
        if values:
            result[f"{rule.column}:{rule.name}" if rule.column else rule.name] = values
    return result


def test_table_level_uniqueness_and_warn_column():
    found = failing(repo_stats())
    assert set(found) == {"unique:repo_name,snapshot_date", "activity_level:isin"}
    assert found["activity_level:isin"] == ["bogus"]


def test_missing_column_is_reported_against_it():
    found = failing(repo_stats().drop("language"))
    assert found["language:present"] == ["language"]


def test_dtype_drift_is_reported():
    found = failing(repo_stats(contributors_count=[1, 2, 3]))  # Int64 instead of Int32
    assert "contributors_count:dtype" in found


def test_rules_carry_column_severity_and_critical_level():
    rules = {(r.column, r.name): r for r in rules_of(FactGitHubRepoStats.to_schema())}
    language, stars = rules[("language", "dtype")], rules[("stargazers_count", "greater_than_or_equal_to")]
    assert (language.severity, stars.severity) == ("warning", "error")
    assert _check("t", language, ["x"], "error", "all rows").severity is Level.WARN
    assert _check("t", language, ["x"], "warning", "all rows").severity is Level.ERROR
    check = _check("t", stars, list(range(8)), "error", "all 8 rows")
    assert not check.passed and check.observed == 8
    assert check.message == "8 failing values in all 8 rows: 0, 1, 2, 3, 4, ..."
