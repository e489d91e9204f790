"""Pandera schemas of the four marts, with a severity per column.

`metadata={"severity": "warning"}` marks a column whose failures warn; every other column's failures
are errors. IDs, timestamps and core metrics are errors; categories and flags are warnings. The
dtypes are what the dbt marts produce (ISO day of week: 1 = Monday ... 7 = Sunday).
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.polars import DataFrameModel, Field, PolarsData

from glucose_github.raw import DIRECTIONS, EVENT_TYPES

WARN = {"severity": "warning"}
UTC_TIMESTAMP = pl.Datetime(time_unit="us", time_zone="UTC")
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # no CGM reading or GitHub event is older
FUTURE_SLACK = timedelta(days=1)  # clocks drift; a day ahead is a wrong timestamp
MAX_OFFSET = 18 * 60  # minutes: the widest UTC offset there is


def _not_in_future(data: PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(data.key) <= pl.lit(datetime.now(UTC) + FUTURE_SLACK))


class _Config:
    strict = False  # extra columns are the schema gate's business
    coerce = False


class FactGlucoseReadings(DataFrameModel):
    entry_id: pl.String = Field(unique=True, nullable=False)
    # Error codes (sgv < 39) are left out by staging: a value below 39 here is a broken model.
    glucose_mg_dl: pl.Int32 = Field(ge=39, le=600, nullable=False)
    reading_timestamp: UTC_TIMESTAMP = Field(nullable=False, ge=EARLIEST)  # type: ignore[valid-type]
    reading_date: pl.Date = Field(nullable=False)
    hour_of_day: pl.Int32 = Field(ge=0, le=23, nullable=False)
    day_of_week: pl.Int32 = Field(ge=1, le=7, nullable=False)
    site_utc_offset: pl.Int32 = Field(ge=-MAX_OFFSET, le=MAX_OFFSET, nullable=False)
    direction: pl.String = Field(isin=DIRECTIONS, nullable=True, metadata=WARN)
    glucose_category: pl.String = Field(
        isin=("very_low", "low", "in_range", "high", "very_high"), nullable=True, metadata=WARN
    )
    is_in_range: pl.Boolean = Field(nullable=True, metadata=WARN)
    device: pl.String = Field(nullable=True, metadata=WARN)

    Config = _Config

    @pa.check("reading_timestamp", name="not_in_future")
    @classmethod
    def reading_not_in_future(cls, data: PolarsData) -> pl.LazyFrame:
        return _not_in_future(data)


def _percent(*, warn: bool = False) -> Any:
    """A percentage of the day's readings: empty on a day with error codes only."""
    return Field(ge=0, le=100, nullable=True, metadata=WARN if warn else None)


class FactDailyGlucoseMetrics(DataFrameModel):
    """One row per day of the site. The metrics are empty on a day with error codes only (reading_count 0)."""

    reading_date: pl.Date = Field(unique=True, nullable=False)
    reading_count: pl.Int64 = Field(ge=0, nullable=False)
    error_code_count: pl.Int64 = Field(ge=0, nullable=False)
    avg_glucose_mg_dl: pl.Float64 = Field(ge=39, le=600, nullable=True)
    min_glucose_mg_dl: pl.Int32 = Field(ge=39, le=600, nullable=True)
    max_glucose_mg_dl: pl.Int32 = Field(ge=39, le=600, nullable=True)
    stddev_glucose_mg_dl: pl.Float64 = Field(ge=0, nullable=True, metadata=WARN)
    coefficient_of_variation_pct: pl.Float64 = Field(ge=0, le=100, nullable=True, metadata=WARN)
    time_very_low_pct: pl.Float64 = _percent()
    time_low_pct: pl.Float64 = _percent()
    time_below_range_pct: pl.Float64 = _percent()
    time_in_range_pct: pl.Float64 = _percent()
    time_above_range_pct: pl.Float64 = _percent()
    time_high_pct: pl.Float64 = _percent()
    time_very_high_pct: pl.Float64 = _percent()
    reading_interval_min: pl.Int32 = Field(ge=1, le=60, nullable=True, metadata=WARN)
    data_completeness_pct: pl.Float64 = _percent(warn=True)
    gmi_window_days: pl.Int32 = Field(ge=14, nullable=False)
    gmi_window_avg_glucose_mg_dl: pl.Float64 = Field(ge=39, le=600, nullable=True)
    gmi_window_completeness_pct: pl.Float64 = Field(ge=0, le=100, nullable=True, metadata=WARN)
    gmi_pct: pl.Float64 = Field(ge=3, le=25, nullable=True)
    estimated_a1c_pct: pl.Float64 = Field(ge=2, le=25, nullable=True)

    Config = _Config

    @pa.dataframe_check(name="metrics_when_readings")
    @classmethod
    def metrics_when_readings(cls, data: PolarsData) -> pl.LazyFrame:
        """A day with readings has its mean and time in range; a day without has neither."""
        has = pl.col("reading_count") > 0
        present = pl.col("avg_glucose_mg_dl").is_not_null() & pl.col("time_in_range_pct").is_not_null()
        return data.lazyframe.select(has == present)


class FactGitHubUserEvents(DataFrameModel):
    event_id: pl.String = Field(unique=True, nullable=False)
    event_type: pl.String = Field(isin=EVENT_TYPES, nullable=False, metadata=WARN)
    event_category: pl.String = Field(isin=("code", "pull_request", "issue", "community"), metadata=WARN)
    actor_login: pl.String = Field(nullable=False)
    repo_name: pl.String = Field(nullable=False)
    repo_owner: pl.String = Field(nullable=True, metadata=WARN)
    payload_action: pl.String = Field(nullable=True, metadata=WARN)
    commit_count: pl.Int32 = Field(ge=0, nullable=True, metadata=WARN)
    ref: pl.String = Field(nullable=True, metadata=WARN)
    item_number: pl.Int64 = Field(ge=1, nullable=True, metadata=WARN)
    release_tag: pl.String = Field(nullable=True, metadata=WARN)
    payload_json: pl.String = Field(nullable=True, metadata=WARN)
    created_at: UTC_TIMESTAMP = Field(nullable=False, ge=EARLIEST)  # type: ignore[valid-type]
    event_date: pl.Date = Field(nullable=False)
    event_hour: pl.Int32 = Field(ge=0, le=23, nullable=False)
    day_of_week: pl.Int32 = Field(ge=1, le=7, nullable=False)
    is_weekend: pl.Boolean = Field(nullable=True, metadata=WARN)

    Config = _Config

    @pa.check("created_at", name="not_in_future")
    @classmethod
    def event_not_in_future(cls, data: PolarsData) -> pl.LazyFrame:
        return _not_in_future(data)


class FactGitHubRepoStats(DataFrameModel):
    repo_name: pl.String = Field(nullable=False, str_matches=r"^[^/\s]+/[^/\s]+$")
    snapshot_date: pl.Date = Field(nullable=False)
    stargazers_count: pl.Int64 = Field(ge=0, nullable=False)
    forks_count: pl.Int64 = Field(ge=0, nullable=False)
    open_issues_count: pl.Int64 = Field(ge=0, nullable=False)
    watchers_count: pl.Int64 = Field(ge=0, nullable=True, metadata=WARN)
    language: pl.String = Field(nullable=True, metadata=WARN)
    contributors_count: pl.Int32 = Field(ge=0, nullable=False)
    commits_last_4_weeks: pl.Int32 = Field(ge=0, nullable=False)
    commits_last_52_weeks: pl.Int32 = Field(ge=0, nullable=False)
    activity_score: pl.Float64 = Field(ge=0, nullable=True, metadata=WARN)
    activity_level: pl.String = Field(isin=("high", "medium", "low", "inactive"), nullable=True, metadata=WARN)
    health_status: pl.String = Field(
        isin=("healthy", "needs_attention", "stale", "archived"), nullable=True, metadata=WARN
    )

    class Config(_Config):
        unique = ["repo_name", "snapshot_date"]  # noqa: RUF012 (pandera reads a class attribute)


# Which mart each schema judges.
MART_SCHEMAS: dict[str, type[DataFrameModel]] = {
    "marts.fct_glucose_readings": FactGlucoseReadings,
    "marts.fct_daily_glucose_metrics": FactDailyGlucoseMetrics,
    "marts.fct_github_user_events": FactGitHubUserEvents,
    "marts.fct_github_repo_stats": FactGitHubRepoStats,
}
