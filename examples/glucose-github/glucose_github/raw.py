"""The raw tables every source writes: Arrow schemas, natural keys, and the batch they travel in.

Sources return a `RawBatch` (Arrow tables keyed by raw table name) that has already been checked
against these schemas. A record a source cannot read does not fail its file: it is kept, as the text it
was, with the reason, in the batch's `rejected`, which the example's sources hand to cascade-ci
(`ctx.reject`): ingest lands it in the table's rejects table (`<table>__rejects`) and the `rejects`
gate judges its share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

NAMESPACE = "raw"
GLUCOSE = "raw.glucose_entries"
EVENTS = "raw.github_user_events"
REPO_STATS = "raw.github_repo_stats"

# Natural keys: an upsert on these makes re-ingesting a window idempotent (cascade.toml declares the same).
NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    GLUCOSE: ("entry_id",),
    EVENTS: ("event_id",),
    REPO_STATS: ("repo_name", "snapshot_date"),
}

# Nightscout's documented `direction` values.
DIRECTIONS = (
    "NONE",
    "DoubleUp",
    "SingleUp",
    "FortyFiveUp",
    "Flat",
    "FortyFiveDown",
    "SingleDown",
    "DoubleDown",
    "NOT COMPUTABLE",
    "RATE OUT OF RANGE",
)

# The public GitHub event types (docs: "GitHub event types").
EVENT_TYPES = (
    "CommitCommentEvent",
    "CreateEvent",
    "DeleteEvent",
    "ForkEvent",
    "GollumEvent",
    "IssueCommentEvent",
    "IssuesEvent",
    "MemberEvent",
    "PublicEvent",
    "PullRequestEvent",
    "PullRequestReviewEvent",
    "PullRequestReviewCommentEvent",
    "PullRequestReviewThreadEvent",
    "PushEvent",
    "ReleaseEvent",
    "SponsorshipEvent",
    "WatchEvent",
)


def schemas() -> dict[str, pa.Schema]:
    """The Arrow schema of each raw table (`ingested_at` and `source` are stamped by ingest).

    Every column is nullable: raw tables keep what the source said, and the gates judge it. In
    `glucose_entries`, `utc_offset` is the entry's own `utcOffset` as given, `site_utc_offset` the offset
    (minutes east of UTC) its local day and hour are computed in: the source's `timezone` option, else
    the entry's own offset (`utcOffset`, else the one in `dateString`), else 0. `is_valid` is false for
    a record Nightscout marks deleted (API v3's `isValid`).
    """
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return {
        GLUCOSE: pa.schema(
            [
                pa.field("entry_id", pa.string()),
                pa.field("sgv", pa.int32()),
                pa.field("date_ms", pa.int64()),
                pa.field("date_string", pa.string()),
                pa.field("reading_timestamp", ts),
                pa.field("direction", pa.string()),
                pa.field("trend", pa.int32()),
                pa.field("device", pa.string()),
                pa.field("entry_type", pa.string()),
                pa.field("utc_offset", pa.int32()),
                pa.field("site_utc_offset", pa.int32()),
                pa.field("is_valid", pa.bool_()),
                pa.field("ingested_at", ts),
                pa.field("source", pa.string()),
            ]
        ),
        EVENTS: pa.schema(
            [
                pa.field("event_id", pa.string()),
                pa.field("event_type", pa.string()),
                pa.field("actor_login", pa.string()),
                pa.field("repo_name", pa.string()),
                pa.field("org_login", pa.string()),
                pa.field("is_public", pa.bool_()),
                pa.field("payload_action", pa.string()),
                pa.field("commit_count", pa.int32()),
                pa.field("ref", pa.string()),
                pa.field("ref_type", pa.string()),
                pa.field("head_sha", pa.string()),
                pa.field("item_number", pa.int64()),
                pa.field("release_tag", pa.string()),
                pa.field("payload_json", pa.string()),
                pa.field("created_at", ts),
                pa.field("ingested_at", ts),
                pa.field("source", pa.string()),
            ]
        ),
        REPO_STATS: pa.schema(
            [
                pa.field("repo_name", pa.string()),
                pa.field("snapshot_date", pa.date32()),
                pa.field("stargazers_count", pa.int64()),
                pa.field("forks_count", pa.int64()),
                pa.field("open_issues_count", pa.int64()),
                pa.field("watchers_count", pa.int64()),
                pa.field("size_kb", pa.int64()),
                pa.field("language", pa.string()),
                pa.field("is_archived", pa.bool_()),
                pa.field("contributors_count", pa.int32()),
                pa.field("commits_last_4_weeks", pa.int32()),
                pa.field("commits_last_52_weeks", pa.int32()),
                pa.field("repo_created_at", ts),
                pa.field("pushed_at", ts),
                pa.field("fetched_at", ts),
                pa.field("ingested_at", ts),
                pa.field("source", pa.string()),
            ]
        ),
    }


@dataclass
class RawBatch:
    """Rows for some raw tables. Columns `ingested_at` and `source` may be absent.

    `rejected` holds, per table, the records that could not be read: (record text, reason). `tallies` says,
    per table, what was read and what became of it. `failures` are the errors of the requests that failed
    while others succeeded (their records are rejected): a source that asked for several things fails
    only when all of them failed.
    """

    tables: dict[str, pa.Table] = field(default_factory=dict)
    failures: list[Exception] = field(default_factory=list)
    rejected: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    tallies: dict[str, str] = field(default_factory=dict)

    def merge(self, other: RawBatch) -> RawBatch:
        import pyarrow as pa

        merged = dict(self.tables)
        for name, rows in other.tables.items():
            merged[name] = pa.concat_tables([merged[name], rows]) if name in merged else rows
        rejected = {name: list(records) for name, records in self.rejected.items()}
        for name, records in other.rejected.items():
            rejected.setdefault(name, []).extend(records)
        return RawBatch(merged, [*self.failures, *other.failures], rejected, {**self.tallies, **other.tallies})

    def row_counts(self) -> dict[str, int]:
        return {name: rows.num_rows for name, rows in self.tables.items()}
