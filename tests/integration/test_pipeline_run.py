"""The glucose + GitHub example end to end on the embedded default: real pyiceberg, real DuckDB, real dbt.

Every test runs in a fresh copy of examples/glucose-github (the `glucose_project` fixture), configured by its
cascade.toml as a user's repository is.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from cascade_ci.catalog import open_catalog
from cascade_ci.cli import cli
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.stages.ingest import ingest
from cascade_ci.stages.transform import TransformError, transform
from cascade_ci.stages.validate import validate

GLUCOSE, EVENTS, REPO_STATS = "raw.glucose_entries", "raw.github_user_events", "raw.github_repo_stats"
RAW = (GLUCOSE, EVENTS, REPO_STATS)
MART_NAMES = (
    "marts.fct_daily_glucose_metrics",
    "marts.fct_github_repo_stats",
    "marts.fct_github_user_events",
    "marts.fct_glucose_readings",
)

pytestmark = pytest.mark.usefixtures("glucose_project")


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def rows(ref: str, table: str):
    return open_catalog().tables(ref).load_table(table).scan().to_arrow()


def test_main_job_promotes_raw_and_marts(tmp_path):
    result = cascade("run", "--run-id", "900", "--json")
    assert result.exit_code == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["outcome"] == "promoted"
    assert run["tag"].startswith("prod-")
    assert set(run["stage_seconds"]) == {"branch", "ingest", "transform", "validate", "promote"}

    ingested = run["rows_ingested"]
    glucose, events, stats = (rows("main", table) for table in RAW)
    assert (glucose.num_rows, events.num_rows, stats.num_rows) == (
        ingested[GLUCOSE],
        ingested[EVENTS],
        ingested[REPO_STATS],
    )
    assert glucose.num_rows == 576  # 48 h of readings every 5 minutes
    readings = rows("main", "marts.fct_glucose_readings")
    assert readings.num_rows == glucose.num_rows
    days = rows("main", "marts.fct_daily_glucose_metrics")
    reading_days = {ts.date() for ts in glucose["reading_timestamp"].to_pylist()}
    assert sorted(days["reading_date"].to_pylist()) == sorted(reading_days)
    assert sum(days["reading_count"].to_pylist()) == glucose.num_rows
    assert rows("main", "marts.fct_github_user_events").num_rows == events.num_rows
    assert rows("main", "marts.fct_github_repo_stats").num_rows == stats.num_rows == 5

    reports = tmp_path / "reports"
    assert {p.name for p in reports.iterdir()} >= {"junit.xml", "summary.md", "verdict.json", "dbt"}
    assert json.loads((reports / "verdict.json").read_text())["outcome"] == "passed"
    assert (reports / "dbt" / "run_results.json").exists()


def test_marts_compute_what_the_readings_say():
    cascade("run", "--run-id", "901")
    readings = rows("main", "marts.fct_glucose_readings").to_pylist()
    for reading in readings[:50]:
        ts = reading["reading_timestamp"]
        assert reading["hour_of_day"] == ts.hour
        assert reading["day_of_week"] == ts.isoweekday()
        assert reading["reading_date"] == ts.date()
        assert reading["is_in_range"] == (70 <= reading["glucose_mg_dl"] <= 180)
    day = rows("main", "marts.fct_daily_glucose_metrics").sort_by("reading_count").to_pylist()[-1]
    values = [r["glucose_mg_dl"] for r in readings if r["reading_date"] == day["reading_date"]]
    in_range = 100 * sum(70 <= v <= 180 for v in values) / len(values)
    mean = sum(values) / len(values)
    assert day["time_in_range_pct"] == pytest.approx(in_range, rel=1e-12)  # stored unrounded
    assert day["avg_glucose_mg_dl"] == pytest.approx(mean, rel=1e-12)
    assert (day["reading_interval_min"], day["data_completeness_pct"]) == (5, 100)  # 288 readings, 5 min apart
    bands = ("very_low", "low", "in_range", "high", "very_high")
    assert sum(day[f"time_{band}_pct"] for band in bands) == pytest.approx(100, rel=1e-12)
    assert day["time_below_range_pct"] == pytest.approx(day["time_very_low_pct"] + day["time_low_pct"], rel=1e-12)
    # 48 hours hold less than 70 % of a 14-day window: GMI and eA1c stay empty rather than a day's guess.
    assert day["gmi_window_days"] == 14 and day["gmi_window_completeness_pct"] < 70
    assert day["gmi_pct"] is None and day["estimated_a1c_pct"] is None


def test_ingesting_twice_adds_no_duplicates(settings):
    catalog = open_catalog(settings)
    create_run_branch(settings, catalog, "902")
    now = datetime.now(UTC)
    ingest(settings, catalog, "902", now=now)
    ingest(settings, catalog, "902", now=now + timedelta(minutes=20))  # an overlapping, later window
    glucose = rows("pipeline/run-902", GLUCOSE)
    assert glucose.num_rows == len(set(glucose["entry_id"].to_pylist())) == 576 + 4
    events = rows("pipeline/run-902", EVENTS)
    assert events.num_rows == len(set(events["event_id"].to_pylist()))
    stats = rows("pipeline/run-902", REPO_STATS)
    assert stats.num_rows == 5


DEFECT_CHECKS = {
    "duplicate_ids": {("pandera", "entry_id:unique"), ("dbt", "unique:entry_id")},
    # 700 and 900 mg/dL: too high. A value below 39 is an error code, which never reaches the mart.
    "out_of_range_glucose": {
        ("pandera", "glucose_mg_dl:less_than_or_equal_to"),
        ("dbt", "value_between:glucose_mg_dl"),
    },
    "null_ids": {("pandera", "entry_id:not_null"), ("dbt", "not_null:entry_id")},
}


@pytest.mark.parametrize("defect", sorted(DEFECT_CHECKS))
def test_defective_run_is_blocked_and_main_unchanged(defect):
    assert cascade("run", "--run-id", "903").exit_code == 0
    main = open_catalog().get_ref("main").hash
    result = cascade("run", "--run-id", f"904-{defect}", "-o", f"defects={defect}", "--json")
    assert result.exit_code == 1, result.stderr
    run = json.loads(result.stdout)
    assert run["outcome"] == "blocked"
    failing = {
        (c["gate"], c["name"])
        for g in run["verdict"]["gates"]
        for c in g["checks"]
        if not c["passed"] and c["severity"] == "error" and c["table"] == "marts.fct_glucose_readings"
    }
    assert failing == DEFECT_CHECKS[defect]
    assert open_catalog().get_ref("main").hash == main


def test_error_codes_are_counted_not_averaged():
    result = cascade("run", "--run-id", "910", "-o", "defects=error_codes", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["outcome"] == "promoted"
    daily = rows("main", "marts.fct_daily_glucose_metrics").to_pylist()
    assert sum(day["error_code_count"] for day in daily) == 6
    assert sum(day["reading_count"] for day in daily) == 576 - 6
    assert min(rows("main", "marts.fct_glucose_readings")["glucose_mg_dl"].to_pylist()) >= 39
    assert rows("main", GLUCOSE).num_rows == 576  # raw keeps them


def test_rejected_records_over_the_share_block():
    result = cascade("run", "--run-id", "911", "-o", "defects=rejected_records", "--json")
    assert result.exit_code == 1, result.stderr
    run = json.loads(result.stdout)
    checks = [c for g in run["verdict"]["gates"] for c in g["checks"]]
    failing = {(c["gate"], c["table"]) for c in checks if not c["passed"] and c["severity"] == "error"}
    assert failing == {("rejects", "raw.glucose_entries")}  # 58 of 576 records: over 5 %


def test_warnings_do_not_block():
    result = cascade("run", "--run-id", "905", "--option", "defects=unknown_event_types", "--json")
    assert result.exit_code == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["outcome"] == "promoted"
    assert run["verdict"]["warnings"] >= 1 and run["verdict"]["errors"] == 0


def test_dbt_results_must_match_the_head(settings):
    catalog = open_catalog(settings)
    create_run_branch(settings, catalog, "906")
    ingest(settings, catalog, "906")
    built = transform(settings, catalog, "906")
    assert sorted(built.rows) == list(MART_NAMES)  # the staging models are ephemeral: only the marts are tables
    assert built.tests == {"pass": 29}
    ingest(settings, catalog, "906", now=datetime.now(UTC) + timedelta(hours=1))  # data changed after dbt
    verdict = validate(settings, catalog, "906")
    dbt = next(g for g in verdict.gates if g.gate == "dbt")
    assert verdict.blocked and dbt.error and "changed after dbt ran" in dbt.error


def test_dbt_gate_without_transform_is_an_error(settings):
    catalog = open_catalog(settings)
    create_run_branch(settings, catalog, "907")
    ingest(settings, catalog, "907")
    verdict = validate(settings, catalog, "907")
    assert verdict.blocked
    assert "has not run" in next(g for g in verdict.gates if g.gate == "dbt").error


def test_broken_model_publishes_nothing(settings, glucose_project):
    model = glucose_project / "dbt" / "models" / "marts" / "fct_github_repo_stats.sql"
    model.write_text("select no_such_column from nowhere")
    catalog = open_catalog(settings)
    create_run_branch(settings, catalog, "908")
    ingest(settings, catalog, "908")
    head = catalog.get_ref("pipeline/run-908").hash
    with pytest.raises(TransformError, match="fct_github_repo_stats"):
        transform(settings, catalog, "908")
    assert catalog.get_ref("pipeline/run-908").hash == head
    assert not any(catalog.tables(head).table_exists(mart) for mart in MART_NAMES)


def test_dbt_output_never_reaches_stdout_in_json_mode():
    result = cascade("run", "--run-id", "909", "-o", "defects=duplicate_ids", "--json")
    json.loads(result.stdout)  # the whole of stdout is the JSON payload
