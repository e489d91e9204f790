"""Transient faults are retried, data failures are not; incremental validation judges only what was appended.

Every test runs in a copy of examples/glucose-github: its cascade.toml declares the marts' pandera schemas.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyiceberg.types import LongType

from cascade_ci.catalog import open_catalog
from cascade_ci.config import load_settings
from cascade_ci.gates import pandera_gate
from cascade_ci.report import markdown
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.stages.ingest import ingest
from cascade_ci.stages.transform import transform
from cascade_ci.stages.validate import validate
from tests.fakes.faults import FlakyCatalog

pytestmark = pytest.mark.usefixtures("glucose_project")


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setenv("VALIDATION_RETRY_DELAY_SECONDS", "0")
    monkeypatch.setenv("VALIDATION_RETRY_MAX_ATTEMPTS", "3")
    return load_settings()


def prepared(settings, run_id: str, defects: tuple[str, ...] = ()):
    catalog = open_catalog(settings)
    create_run_branch(settings, catalog, run_id)
    ingest(settings, catalog, run_id, options={"defects": ",".join(defects)})
    transform(settings, catalog, run_id)
    return catalog


def test_transient_fault_is_retried_and_the_run_passes(fast_retries):
    catalog = prepared(fast_retries, "r1")
    flaky = FlakyCatalog(catalog, {"tables": 2})
    verdict = validate(fast_retries, flaky, "r1", gates=["pandera"])
    gate = verdict.gates[0]
    assert not verdict.blocked, gate.error
    assert len(gate.retries) == 2 and "injected fault" in gate.retries[0]
    assert "retried" in markdown.render(verdict)


def test_retries_are_bounded(fast_retries):
    catalog = prepared(fast_retries, "r2")
    flaky = FlakyCatalog(catalog, {"tables": 3})  # the gate's three attempts all fail
    verdict = validate(fast_retries, flaky, "r2", gates=["freshness"])
    gate = verdict.gates[0]
    assert verdict.blocked and "injected fault" in gate.error
    assert len(gate.retries) == 2  # three attempts in all


def test_data_failure_is_not_retried(fast_retries, monkeypatch):
    catalog = prepared(fast_retries, "r3", defects=("duplicate_ids",))
    calls = []
    original = pandera_gate.run
    monkeypatch.setattr(pandera_gate, "run", lambda ctx: calls.append(1) or original(ctx))
    verdict = validate(fast_retries, catalog, "r3", gates=["pandera"])
    assert verdict.blocked and verdict.gates[0].error is None
    assert calls == [1] and verdict.gates[0].retries == ()


def test_retry_disabled(fast_retries, monkeypatch):
    monkeypatch.setenv("VALIDATION_RETRY_ENABLED", "false")
    settings = load_settings()
    catalog = prepared(settings, "r4")
    verdict = validate(settings, FlakyCatalog(catalog, {"tables": 1}), "r4", gates=["pandera"])
    assert verdict.blocked and verdict.gates[0].retries == ()


def reading_id(i: int) -> str:
    """A Mongo-ObjectId-like key: 8 hex digits of seconds, then 16 more (time-ordered, as Nightscout's)."""
    return f"{1_700_000_000 + 300 * i:08x}{i:016x}"


def readings_table(ids: range, day_offset: int = 0) -> pa.Table:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day_offset)
    stamps = [start + timedelta(minutes=5 * (i % 288)) for i in ids]
    return pa.table(
        {
            "entry_id": pa.array([reading_id(i) for i in ids]),
            "glucose_mg_dl": pa.array([100 + i % 50 for i in ids], pa.int32()),
            "reading_timestamp": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            "reading_date": pa.array([s.date() for s in stamps], pa.date32()),
            "hour_of_day": pa.array([s.hour for s in stamps], pa.int32()),
            "day_of_week": pa.array([s.isoweekday() for s in stamps], pa.int32()),
            "site_utc_offset": pa.array([0] * len(ids), pa.int32()),
            "direction": pa.array(["Flat"] * len(ids)),
            "glucose_category": pa.array(["in_range"] * len(ids)),
            "is_in_range": pa.array([True] * len(ids)),
            "device": pa.array(["xDrip"] * len(ids)),
        }
    )


def appended_branch(settings, rows: int, appended: pa.Table):
    """main holds `rows` readings; branch `inc` appended `appended` to them."""
    catalog = open_catalog(settings)
    tables = catalog.tables("main")
    tables.create_namespace("marts")
    tables.create_table("marts.fct_glucose_readings", readings_table(range(1)).schema).append(
        readings_table(range(rows))
    )
    create_run_branch(settings, catalog, "inc")
    catalog.tables("pipeline/run-inc").load_table("marts.fct_glucose_readings").append(appended)
    return catalog


def pandera_checks(settings, catalog, full: bool):
    verdict = validate(settings, catalog, "inc", gates=["pandera"], full=full)
    return {c.name: c for c in verdict.gates[0].checks if c.table == "marts.fct_glucose_readings"}


def test_incremental_validation_reads_only_appended_rows(settings):
    catalog = appended_branch(settings, 5_000, readings_table(range(5_000, 5_050)))
    checks = pandera_checks(settings, catalog, full=False)
    assert checks["entry_id:unique"].passed
    assert "50 added rows" in checks["entry_id:unique"].message
    full = pandera_checks(settings, catalog, full=True)
    assert "all 5050 rows" in full["entry_id:unique"].message


def test_incremental_validation_catches_a_key_colliding_with_an_old_row(settings):
    appended = readings_table(range(5_000, 5_010))
    keys = [reading_id(i) for i in range(5_000, 5_009)] + [reading_id(42)]
    catalog = appended_branch(settings, 5_000, appended.set_column(0, "entry_id", pa.array(keys)))
    check = pandera_checks(settings, catalog, full=False)["entry_id:unique"]
    assert not check.passed and repr(reading_id(42)) in check.message
    assert not pandera_checks(settings, catalog, full=True)["entry_id:unique"].passed


def test_rewritten_table_is_validated_in_full(settings):
    catalog = appended_branch(settings, 1_000, readings_table(range(1_000, 1_010)))
    catalog.tables("pipeline/run-inc").load_table("marts.fct_glucose_readings").overwrite(readings_table(range(300)))
    check = pandera_checks(settings, catalog, full=False)["entry_id:unique"]
    assert "all 300 rows" in check.message


def test_time_ordered_keys_skip_every_old_file_when_checked_against_old_rows(settings):
    catalog = appended_branch(settings, 1_000, readings_table(range(1_000, 1_010)))
    table = catalog.tables("pipeline/run-inc").load_table("marts.fct_glucose_readings")
    base_id = catalog.tables("main").load_table("marts.fct_glucose_readings").current_snapshot().snapshot_id

    def old_files(ids: range) -> int:
        keys = readings_table(ids).select(["entry_id"])
        return len(list(pandera_gate.old_key_scan(table, base_id, keys, ("entry_id",)).plan_files()))

    assert old_files(range(1_000, 1_010)) == 0
    assert old_files(range(500, 510)) == 1


def repo_stats(keys: list[tuple[str, int]]) -> pa.Table:
    from datetime import date, timedelta

    n = len(keys)
    counts = pa.array([1] * n, pa.int64())
    return pa.table(
        {
            "repo_name": pa.array([repo for repo, _ in keys]),
            "snapshot_date": pa.array([date(2026, 1, 1) + timedelta(days=day) for _, day in keys], pa.date32()),
            "stargazers_count": counts,
            "forks_count": counts,
            "open_issues_count": counts,
            "contributors_count": pa.array([1] * n, pa.int32()),
            "commits_last_4_weeks": pa.array([1] * n, pa.int32()),
            "commits_last_52_weeks": pa.array([1] * n, pa.int32()),
        }
    )


def test_incremental_validation_catches_a_compound_key_colliding_with_an_old_row(settings):
    catalog = open_catalog(settings)
    tables = catalog.tables("main")
    tables.create_namespace("marts")
    old = repo_stats([("octo/cat", 0), ("octo/cat", 1), ("octo/dog", 0)])
    tables.create_table("marts.fct_github_repo_stats", old.schema).append(old)
    create_run_branch(settings, catalog, "inc")
    branch = catalog.tables("pipeline/run-inc").load_table("marts.fct_github_repo_stats")
    branch.append(repo_stats([("octo/cat", 2), ("octo/dog", 0)]))

    def compound(full: bool):
        verdict = validate(settings, catalog, "inc", gates=["pandera"], full=full)
        (check,) = [c for c in verdict.gates[0].checks if c.name == "unique:repo_name,snapshot_date"]
        return check

    incremental = compound(full=False)
    assert "2 added rows" in incremental.message
    assert not incremental.passed and "octo/dog" in incremental.message and "octo/cat" not in incremental.message
    assert not compound(full=True).passed


def test_incremental_validation_follows_a_renamed_key_column(settings):
    old = readings_table(range(1_000))
    catalog = open_catalog(settings)
    tables = catalog.tables("main")
    tables.create_namespace("marts")
    renamed = old.rename_columns(["entry_key", *old.column_names[1:]])
    tables.create_table("marts.fct_glucose_readings", renamed.schema).append(renamed)
    create_run_branch(settings, catalog, "inc")
    branch = catalog.tables("pipeline/run-inc").load_table("marts.fct_glucose_readings")
    with branch.update_schema() as update:
        update.rename_column("entry_key", "entry_id")
    appended = readings_table(range(1_000, 1_005))
    keys = [reading_id(i) for i in range(1_000, 1_004)] + [reading_id(7)]
    catalog.tables("pipeline/run-inc").load_table("marts.fct_glucose_readings").append(
        appended.set_column(0, "entry_id", pa.array(keys))
    )
    check = pandera_checks(settings, catalog, full=False)["entry_id:unique"]
    assert "5 added rows" in check.message
    assert not check.passed and repr(reading_id(7)) in check.message


def test_old_keys_are_found_across_a_widened_column_and_long_shared_prefixes(settings):
    """int -> long on a compound key; string keys longer than the 16 characters Iceberg keeps as bounds."""
    prefix = "nightscout-entry-0000000000-"  # longer than the truncated bounds

    def rows(numbers: list[int], wide: bool) -> pa.Table:
        kind = pa.int64() if wide else pa.int32()
        return pa.table({"k": pa.array([f"{prefix}{n}" for n in numbers]), "n": pa.array(numbers, kind)})

    tables = open_catalog(settings).tables("main")
    tables.create_namespace("t")
    table = tables.create_table("t.keys", rows([0], wide=False).schema)
    table.append(rows(list(range(0, 100, 2)), wide=False))
    base_id = table.current_snapshot().snapshot_id
    with table.update_schema() as update:
        update.update_column("n", field_type=LongType())
    table = tables.load_table("t.keys")
    table.append(rows([11, 12, 98], wide=True))
    table = tables.load_table("t.keys")
    new = rows([11, 12, 98], wide=True)
    assert pandera_gate._collisions(table, base_id, new, ("k",)) == [f"{prefix}12", f"{prefix}98"]
    assert pandera_gate._collisions(table, base_id, new, ("k", "n")) == [
        {"k": f"{prefix}12", "n": 12},
        {"k": f"{prefix}98", "n": 98},
    ]
