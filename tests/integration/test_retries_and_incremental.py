"""Transient faults are retried, data failures are not; incremental validation judges only what was appended."""

from __future__ import annotations

import pyarrow as pa
import pytest

from cascade_ci.catalog import open_catalog
from cascade_ci.gates import pandera_gate
from cascade_ci.report import markdown
from cascade_ci.settings import load_settings
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.stages.ingest import ingest
from cascade_ci.stages.transform import transform
from cascade_ci.stages.validate import validate
from tests.fakes.faults import FlakyCatalog


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setenv("VALIDATION_RETRY_DELAY_SECONDS", "0")
    monkeypatch.setenv("VALIDATION_RETRY_MAX_ATTEMPTS", "3")
    return load_settings()


def prepared(settings, run_id: str, defects: tuple[str, ...] = ()):
    catalog = open_catalog(settings)
    create_run_branch(settings, catalog, run_id)
    ingest(settings, catalog, run_id, defects=defects)
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


def readings_table(ids: range, day_offset: int = 0) -> pa.Table:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day_offset)
    stamps = [start + timedelta(minutes=5 * (i % 288)) for i in ids]
    return pa.table(
        {
            "entry_id": pa.array([f"e{i}" for i in ids]),
            "glucose_mg_dl": pa.array([100 + i % 50 for i in ids], pa.int32()),
            "reading_timestamp": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            "reading_date": pa.array([s.date() for s in stamps], pa.date32()),
            "hour_of_day": pa.array([s.hour for s in stamps], pa.int32()),
            "day_of_week": pa.array([s.isoweekday() for s in stamps], pa.int32()),
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
    appended = appended.set_column(0, "entry_id", pa.array([f"e{i}" for i in range(5_000, 5_009)] + ["e42"]))
    catalog = appended_branch(settings, 5_000, appended)
    check = pandera_checks(settings, catalog, full=False)["entry_id:unique"]
    assert not check.passed and "'e42'" in check.message
    assert not pandera_checks(settings, catalog, full=True)["entry_id:unique"].passed


def test_rewritten_table_is_validated_in_full(settings):
    catalog = appended_branch(settings, 1_000, readings_table(range(1_000, 1_010)))
    catalog.tables("pipeline/run-inc").load_table("marts.fct_glucose_readings").overwrite(readings_table(range(300)))
    check = pandera_checks(settings, catalog, full=False)["entry_id:unique"]
    assert "all 300 rows" in check.message
