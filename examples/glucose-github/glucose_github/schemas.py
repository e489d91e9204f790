"""Pandera schemas of the four marts, with a severity per column.

`metadata={"severity": "warning"}` marks a column whose failures warn; every other column's failures
are errors. IDs, timestamps and core metrics are errors; categories and flags are warnings. The
dtypes are what the dbt marts produce (ISO day of week: 1 = Monday ... 7 = Sunday).
"""

from datetime import UTC, datetime, timedelta

import pandera.polars as pa
import polars as pl
from glucose_github.raw import DIRECTIONS, EVENT_TYPES
from pandera.polars import DataFrameModel, Field, PolarsData

WARN = {"severity": "warning"}
UTC_TIMESTAMP = pl.Datetime(time_unit="us", time_zone="UTC")
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # no CGM reading or GitHub event is older
FUTURE_SLACK = timedelta(days=1)  # clocks drift; a day ahead is a wrong timestamp


def _not_in_future(data: PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(data.key) <= pl.lit(datetime.now(UTC) + FUTURE_SLACK))


class _Config:
    strict = False  # extra columns are the schema gate's business
    coerce = False


class FactGlucoseReadings(DataFrameModel):
    entry_id: pl.String = Field(unique=True, nullable=False)
    glucose_mg_dl: pl.Int32 = Field(ge=20, le=600, nullable=False)
    reading_timestamp: UTC_TIMESTAMP = Field(nullable=False, ge=EARLIEST)  # type: ignore[valid-type]
    reading_date: pl.Date = Field(nullable=False)
    hour_of_day: pl.Int32 = Field(ge=0, le=23, nullable=False)
    day_of_week: pl.Int32 = Field(ge=1, le=7, nullable=False)
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


class FactDailyGlucoseMetrics(DataFrameModel):
    reading_date: pl.Date = Field(unique=True, nullable=False)
    reading_count: pl.Int64 = Field(ge=1, nullable=False)
    avg_glucose_mg_dl: pl.Float64 = Field(ge=20, le=600, nullable=False)
    min_glucose_mg_dl: pl.Int32 = Field(ge=20, le=600, nullable=False)
    max_glucose_mg_dl: pl.Int32 = Field(ge=20, le=600, nullable=False)
    stddev_glucose_mg_dl: pl.Float64 = Field(ge=0, nullable=True, metadata=WARN)
    coefficient_of_variation_pct: pl.Float64 = Field(ge=0, le=100, nullable=True, metadata=WARN)
    time_in_range_pct: pl.Float64 = Field(ge=0, le=100, nullable=False)
    time_below_range_pct: pl.Float64 = Field(ge=0, le=100, nullable=False)
    time_above_range_pct: pl.Float64 = Field(ge=0, le=100, nullable=False)
    time_very_low_pct: pl.Float64 = Field(ge=0, le=100, nullable=False)
    time_very_high_pct: pl.Float64 = Field(ge=0, le=100, nullable=False)
    estimated_a1c_pct: pl.Float64 = Field(ge=2, le=25, nullable=False)
    gmi_pct: pl.Float64 = Field(ge=2, le=25, nullable=True, metadata=WARN)
    data_completeness_pct: pl.Float64 = Field(ge=0, le=100, nullable=True, metadata=WARN)

    Config = _Config


class FactGitHubUserEvents(DataFrameModel):
    event_id: pl.String = Field(unique=True, nullable=False)
    event_type: pl.String = Field(isin=EVENT_TYPES, nullable=False, metadata=WARN)
    event_category: pl.String = Field(isin=("code", "pull_request", "issue", "community"), metadata=WARN)
    actor_login: pl.String = Field(nullable=False)
    repo_name: pl.String = Field(nullable=False)
    repo_owner: pl.String = Field(nullable=True, metadata=WARN)
    payload_action: pl.String = Field(nullable=True, metadata=WARN)
    commit_count: pl.Int32 = Field(ge=0, nullable=True, metadata=WARN)
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
