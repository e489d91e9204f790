"""A deterministic generator of realistic pipeline data, with named defects to demonstrate blocked runs.

Every value is a function of (seed, timestamp) or (seed, name), so the same window always yields
the same rows and ids: re-ingesting it is a no-op, and a shifted window overlaps exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from cascade_ci.errors import ConfigError
from glucose_github.raw import (
    DIRECTIONS,
    EVENT_TYPES,
    EVENTS,
    GLUCOSE,
    REPO_STATS,
    RawBatch,
    schemas,
)

READING_INTERVAL = timedelta(minutes=5)
EVENT_SLOT = timedelta(minutes=15)
DEFAULT_USERS = ("octocat", "hubot", "monalisa")
DEFAULT_REPOS = (
    "octocat/Hello-World",
    "octocat/Spoon-Knife",
    "github/gitignore",
    "cli/cli",
    "nightscout/cgm-remote-monitor",
)
LANGUAGES = ("Python", "Go", "TypeScript", "JavaScript", "Rust", None)
ACTIONS = {
    "IssuesEvent": ("opened", "closed", "reopened"),
    "PullRequestEvent": ("opened", "closed", "reopened", "synchronize"),
    "PullRequestReviewEvent": ("created",),
    "PullRequestReviewCommentEvent": ("created",),
    "PullRequestReviewThreadEvent": ("resolved", "unresolved"),
    "IssueCommentEvent": ("created", "edited"),
    "ReleaseEvent": ("published",),
    "MemberEvent": ("added",),
    "WatchEvent": ("started",),
    "SponsorshipEvent": ("created",),
}
# Weights make the mix look like real accounts: mostly pushes, PRs and comments.
TYPE_WEIGHTS = {"PushEvent": 30, "PullRequestEvent": 10, "IssueCommentEvent": 10, "WatchEvent": 8, "CreateEvent": 6}

DEFECTS = {
    "duplicate_ids": "some glucose entries and events repeat an id",
    "out_of_range_glucose": "some glucose readings are 700 or 900 mg/dL",
    "null_ids": "some glucose entries have no id",
    "error_codes": "some readings are Dexcom error codes (sgv 5, 9, 10): counted per day, not glucose (passes)",
    "rejected_records": "a tenth of the glucose records cannot be read and are rejected (raw.glucose_entries__rejects)",
    "stale_timestamps": "every timestamp is three days older than the window",
    "unknown_event_types": "some events have a type GitHub does not publish",
}


def _unit(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) from its inputs."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _object_id(ms: int, *parts: object) -> str:
    """A Mongo ObjectId as Nightscout assigns: 8 hex digits of seconds, then 16 more (so ids sort by time)."""
    return f"{ms // 1000:08x}" + hashlib.blake2b(repr(parts).encode(), digest_size=8).hexdigest()


def _direction(delta_per_5min: float) -> tuple[str, int]:
    """Nightscout's arrows from the rate of change (mg/dL per minute) and their trend numbers."""
    rate = delta_per_5min / 5
    for limit, name in ((3, "DoubleUp"), (2, "SingleUp"), (1, "FortyFiveUp"), (-1, "Flat"), (-2, "FortyFiveDown")):
        if rate > limit:
            return name, DIRECTIONS.index(name)
    name = "SingleDown" if rate > -3 else "DoubleDown"
    return name, DIRECTIONS.index(name)


def _sgv(seed: int, t: datetime) -> float:
    """A plausible glucose curve: circadian drift, meal peaks, some night lows, sensor noise; 40-400 mg/dL."""
    hours = t.timestamp() / 3600
    day, hour = int(hours // 24), hours % 24
    value = 125 + 30 * math.sin(2 * math.pi * (hours - 4) / 24) + 18 * math.sin(2 * math.pi * hours / 5.3 + seed)
    for meal_hour in (7.5, 12.5, 19):
        since = hour - meal_hour
        if 0 <= since < 5:
            size = 0.6 + 0.9 * _unit(seed, "meal", day, meal_hour)
            value += 260 * size * since * math.exp(-1.6 * since)
    if _unit(seed, "low", day) < 0.4:  # a night low on some days
        value -= 75 * math.exp(-(((hour - 3.5) / 0.8) ** 2))
    value += 8 * (_unit(seed, "noise", t.timestamp()) - 0.5)
    return min(400, max(40, value))


def glucose_rows(seed: int, start: datetime, end: datetime, zone: tzinfo | None = None) -> list[dict[str, Any]]:
    """Readings every 5 minutes in [start, end), on the 5-minute grid; their local time is in `zone` (else UTC)."""
    step = int(READING_INTERVAL.total_seconds())
    first = math.ceil(start.timestamp() / step) * step
    rows = []
    t = datetime.fromtimestamp(first, UTC)
    while t < end:
        sgv = round(_sgv(seed, t))
        direction, trend = _direction(sgv - round(_sgv(seed, t - READING_INTERVAL)))
        ms = int(t.timestamp() * 1000)
        rows.append(
            {
                "entry_id": _object_id(ms, seed, "entry"),
                "sgv": sgv,
                "date_ms": ms,
                "date_string": t.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "reading_timestamp": t,
                "direction": direction,
                "trend": trend,
                "device": "xDrip-DexcomG6",
                "entry_type": "sgv",
                "utc_offset": 0,
                "site_utc_offset": _offset(t, zone),
            }
        )
        t += READING_INTERVAL
    return rows


def _offset(moment: datetime, zone: tzinfo | None) -> int:
    """Minutes east of UTC of `zone` at `moment` (0 without a zone: the entries say UTC)."""
    offset = moment.astimezone(zone).utcoffset() if zone is not None else None
    return int(offset // timedelta(minutes=1)) if offset is not None else 0


def _payload(event_type: str, action: str | None, commits: int | None, number: int, ref: str) -> dict[str, Any]:
    """A small payload of the event's type, with the fields the typed columns are read from."""
    if event_type == "PushEvent":
        return {"ref": ref, "size": commits, "head": hashlib.sha1(f"{ref}{number}".encode()).hexdigest()}  # noqa: S324
    if event_type in ("CreateEvent", "DeleteEvent"):
        return {"ref": ref.removeprefix("refs/heads/"), "ref_type": "branch"}
    if event_type.startswith("PullRequest"):
        return {"action": action, "number": number}
    if event_type in ("IssuesEvent", "IssueCommentEvent"):
        return {"action": action, "issue": {"number": number}}
    if event_type == "ReleaseEvent":
        return {"action": action, "release": {"tag_name": f"v1.{number % 40}.0"}}
    return {"action": action} if action else {}


def _event_type(seed: int, user: str, slot: float) -> str:
    weights = [TYPE_WEIGHTS.get(name, 2) for name in EVENT_TYPES]
    pick = _unit(seed, "type", user, slot) * sum(weights)
    for name, weight in zip(EVENT_TYPES, weights, strict=True):
        pick -= weight
        if pick < 0:
            return name
    return EVENT_TYPES[-1]


def event_rows(seed: int, users: Iterable[str], repos: tuple[str, ...], start: datetime, end: datetime) -> list[dict]:
    """About one public event per user per half hour, each on a 15-minute slot."""
    step = int(EVENT_SLOT.total_seconds())
    rows = []
    for user in users:
        slot = math.ceil(start.timestamp() / step) * step
        while slot < end.timestamp():
            if _unit(seed, "active", user, slot) < 0.5:
                event_type = _event_type(seed, user, slot)
                repo = repos[int(_unit(seed, "repo", user, slot) * len(repos))]
                actions = ACTIONS.get(event_type)
                action = actions[int(_unit(seed, "action", slot) * len(actions))] if actions else None
                commits = 1 + int(_unit(seed, "size", slot) * 5) if event_type == "PushEvent" else None
                number = 1 + int(_unit(seed, "number", user, slot) * 5000)
                ref = f"refs/heads/{('main', 'fix-sensor-gap', 'docs')[int(_unit(seed, 'ref', slot) * 3)]}"
                payload = _payload(event_type, action, commits, number, ref)
                rows.append(
                    {
                        "event_id": str(30_000_000_000 + int(_unit(seed, "event", user, slot) * 9_000_000_000)),
                        "event_type": event_type,
                        "actor_login": user,
                        "repo_name": repo,
                        "org_login": repo.split("/")[0] if repo.split("/")[0] != user else None,
                        "is_public": True,
                        "payload_action": action,
                        "commit_count": commits,
                        "ref": payload.get("ref"),
                        "ref_type": payload.get("ref_type"),
                        "head_sha": payload.get("head"),
                        "item_number": payload.get("number") or (payload.get("issue") or {}).get("number"),
                        "release_tag": (payload.get("release") or {}).get("tag_name"),
                        "payload_json": json.dumps(payload, separators=(",", ":")),
                        "created_at": datetime.fromtimestamp(slot + int(_unit(seed, "sec", slot) * 600), UTC),
                    }
                )
            slot += step
    return rows


def repo_stat_rows(seed: int, repos: Iterable[str], day: date, fetched_at: datetime) -> list[dict[str, Any]]:
    """One stats row per repository for `day`."""
    rows = []
    for repo in repos:
        size = _unit(seed, "size", repo)
        stars = int(10 ** (1 + 4 * size))
        recent = int(_unit(seed, "recent", repo, day.isoformat()) * 60 * size)
        rows.append(
            {
                "repo_name": repo,
                "snapshot_date": day,
                "stargazers_count": stars,
                "forks_count": stars // 7,
                "open_issues_count": int(_unit(seed, "issues", repo) * 300 * size),
                "watchers_count": max(1, stars // 40),
                "size_kb": int(500 + 90_000 * _unit(seed, "kb", repo)),
                "language": LANGUAGES[int(_unit(seed, "lang", repo) * len(LANGUAGES))],
                "is_archived": _unit(seed, "archived", repo) < 0.1,
                "contributors_count": 1 + int(200 * size),
                "commits_last_4_weeks": recent,
                "commits_last_52_weeks": recent * 11 + int(_unit(seed, "year", repo) * 200),
                "repo_created_at": datetime(2011, 1, 26, tzinfo=UTC)
                + timedelta(days=int(3000 * _unit(seed, "born", repo))),
                "pushed_at": fetched_at - timedelta(hours=int(400 * (1 - size) * _unit(seed, "push", repo))),
                "fetched_at": fetched_at,
            }
        )
    return rows


def _inject(defects: set[str], seed: int, glucose: list[dict], events: list[dict]) -> list[tuple[str, str]]:
    """Apply the defects to the rows; the glucose records rejected (record text, reason)."""
    every = max(1, len(glucose) // 10)
    rejected: list[tuple[str, str]] = []
    if "duplicate_ids" in defects:
        # The same id a minute later: a key collision, not a repeat of one reading (which staging would merge).
        minute = timedelta(minutes=1)
        glucose.extend(
            dict(
                row,
                sgv=row["sgv"] + 1,
                date_ms=row["date_ms"] + 60_000,
                reading_timestamp=row["reading_timestamp"] + minute,
            )
            for row in glucose[::every][:3]
        )
        events.extend(dict(row) for row in events[:2])
    if "out_of_range_glucose" in defects:
        for i, row in enumerate(glucose[every // 2 :: every][:4]):
            row["sgv"] = 900 if i % 2 else 700
    if "error_codes" in defects:
        for i, row in enumerate(glucose[every // 4 :: every][:6]):
            row["sgv"], row["direction"], row["trend"] = (5, 9, 10)[i % 3], "NOT COMPUTABLE", 8
    if "rejected_records" in defects:
        for row in glucose[::10]:
            record = {"_id": row["entry_id"], "date": row["date_ms"], "sgv": "HIGH", "type": "sgv"}
            rejected.append(
                (json.dumps(record), f"sample entry (_id={row['entry_id']!r}): sgv is not a number: 'HIGH'")
            )
        del glucose[::10]
    if "null_ids" in defects:
        for row in glucose[every // 3 :: every][:3]:
            row["entry_id"] = None
    if "unknown_event_types" in defects:
        for row in events[::7][:3]:
            row["event_type"] = "MysteryEvent"
    return rejected


def generate(
    now: datetime,
    *,
    seed: int = 7,
    hours: float = 48,
    users: Iterable[str] = DEFAULT_USERS,
    repos: Iterable[str] = DEFAULT_REPOS,
    defects: Iterable[str] = (),
    zone: tzinfo | None = None,
) -> RawBatch:
    """Glucose readings and GitHub events for the `hours` before `now`, and today's repo stats.

    `zone` is the site's time zone the readings' local days are computed in (None: UTC, their own).
    """
    import pyarrow as pa

    wanted = set(defects)
    unknown = wanted - DEFECTS.keys()
    if unknown:
        raise ConfigError(f"unknown defect(s) {sorted(unknown)}; choose from {', '.join(DEFECTS)}")
    end = now.astimezone(UTC) - (timedelta(days=3) if "stale_timestamps" in wanted else timedelta())
    start = end - timedelta(hours=hours)
    repo_names = tuple(repos)
    glucose = glucose_rows(seed, start, end, zone)
    events = event_rows(seed, users, repo_names, start, end)
    stats = repo_stat_rows(seed, repo_names, end.date(), end)
    rejected = _inject(wanted, seed, glucose, events)
    tables = schemas()

    def table(name: str, rows: list[dict]) -> pa.Table:
        schema = tables[name]
        columns = {f.name: [row.get(f.name) for row in rows] for f in schema if f.name not in ("ingested_at", "source")}
        return pa.table(columns, schema=pa.schema([f for f in schema if f.name in columns]))

    return RawBatch(
        {
            GLUCOSE: table(GLUCOSE, glucose),
            EVENTS: table(EVENTS, events),
            REPO_STATS: table(REPO_STATS, stats),
        },
        rejected={GLUCOSE: rejected},
        tallies={
            GLUCOSE: f"{len(glucose) + len(rejected)} records read: {len(glucose)} readings, {len(rejected)} rejected",
            EVENTS: f"{len(events)} events generated",
            REPO_STATS: f"{len(stats)} repositories generated",
        },
    )
