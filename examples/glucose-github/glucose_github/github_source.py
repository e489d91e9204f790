"""GitHub: users' public events and repository statistics.

Events and repositories come through PyGithub (which follows `Link` headers). The statistics
endpoints answer 202 while GitHub computes them and PyGithub re-requests a 202 itself without
limit, so they are read with urllib and a bounded, injectable backoff. Rate limits are reported
with their reset time, never waited out. The token never appears in a message.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from glucose_github.raw import EVENTS, REPO_STATS, RawBatch, schemas

from cascade_ci.errors import ConfigError, SourceError, SourceUnavailableError
from cascade_ci.github import mask
from cascade_ci.github_api import DEFAULT_BASE_URL, SERVER_ERRORS, make_client

if TYPE_CHECKING:
    import pyarrow as pa
    from github import Github

SOURCE = "github-api"
API_VERSION = "2022-11-28"
STATS_TRIES = 3  # tries for a stats request that fails to connect or answers 5xx
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


def fetch_user_events(
    token: str | None,
    users: list[str],
    *,
    base_url: str = DEFAULT_BASE_URL,
    per_page: int = 100,
    max_pages: int = 3,
    client: Github | None = None,
) -> RawBatch:
    """The public events of each user (`GET /users/{login}/events/public`), at most `max_pages` pages each."""
    _mask(token)
    logins = [_checked(_LOGIN, user, "GitHub user") for user in users]
    gh = client or make_client(token, base_url=base_url, per_page=per_page)
    records: list[tuple[str, dict[str, Any]]] = []
    try:
        for login in logins:
            with _translated(f"the public events of user {login}", token):
                events = gh.get_user(login).get_public_events()
                for index, event in enumerate(itertools.islice(events, per_page * max_pages)):
                    records.append((f"GitHub event #{index} of user {login}", event.raw_data))
    finally:
        if client is None:
            gh.close()
    rows: dict[str, dict[str, Any]] = {}
    for label, raw in records:
        row = _event_row(raw, label)
        rows.setdefault(row["event_id"], row)  # the feed shifts while paging: keep the first copy
    return RawBatch({EVENTS: _table(EVENTS, list(rows.values()))})


def fetch_repo_stats(
    token: str | None,
    repos: list[str],
    *,
    base_url: str = DEFAULT_BASE_URL,
    snapshot_date: date | None = None,
    max_wait_s: float = 30,
    sleep: Callable[[float], None] = time.sleep,
    client: Github | None = None,
    timeout: float = 30,
) -> RawBatch:
    """Counts, contributors and commit activity of each `owner/name`, as one snapshot per repository.

    Args:
        max_wait_s: The longest wait, per statistics endpoint, for GitHub to finish computing (HTTP 202).
        sleep: Called with each backoff delay (tests pass a no-op).
        client: A PyGithub client to use for the repository objects (its owner closes it).
    """
    _mask(token)
    names = [_checked(_REPO, repo, "repository") for repo in repos]
    snapshot = snapshot_date or datetime.now(UTC).date()
    gh = client or make_client(token, base_url=base_url)
    stats = functools.partial(_stats, base_url, token, max_wait_s=max_wait_s, sleep=sleep, timeout=timeout)
    rows = []
    try:
        for name in names:
            with _translated(f"repository {name}", token):
                raw = gh.get_repo(name).raw_data
            kinds = {kind: stats(name, kind) for kind in ("contributors", "commit_activity")}
            rows.append(_repo_row(name, raw, kinds, snapshot, datetime.now(UTC)))
    finally:
        if client is None:
            gh.close()
    return RawBatch({REPO_STATS: _table(REPO_STATS, rows)})


def _mask(token: str | None) -> None:
    if token and os.environ.get("GITHUB_ACTIONS") == "true":
        mask(token)


def _checked(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigError(f"not a valid {what} name: {value!r}")
    return value


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _failure(status: int, headers: Mapping[str, Any], message: str, what: str, token: str | None) -> SourceError:
    """The error for an HTTP error answer; rate limits say when to come back."""
    headers = {str(k).lower(): str(v) for k, v in headers.items()}
    detail = f" ({message})" if message else ""
    if status in (403, 429) and headers.get("x-ratelimit-remaining") == "0":
        reset = headers.get("x-ratelimit-reset", "")
        when = "an unknown time"
        if reset.replace(".", "", 1).isdigit():
            at = datetime.fromtimestamp(float(reset), UTC)
            when = f"{at:%Y-%m-%dT%H:%M:%SZ} (in {max(0, round(at.timestamp() - time.time()))} s)"
        text = f"GitHub API rate limit exhausted reading {what} (HTTP {status}); it resets at {when}"
        return SourceUnavailableError(_scrub(text, token))
    if status == 429 or (status == 403 and ("retry-after" in headers or "rate limit" in message.lower())):
        text = f"GitHub rate-limited reading {what}; retry after {headers.get('retry-after', '?')} s{detail}"
        return SourceUnavailableError(_scrub(text, token))
    if status >= 500:
        return SourceUnavailableError(_scrub(f"GitHub answered HTTP {status} reading {what}{detail}", token))
    if status == 401:
        return SourceError(f"GitHub rejected the token (HTTP 401) reading {what}")
    return SourceError(_scrub(f"GitHub answered HTTP {status} reading {what}{detail}", token))


@contextmanager
def _translated(what: str, token: str | None) -> Iterator[None]:
    """Turn PyGithub and requests failures into SourceError / SourceUnavailableError."""
    import requests
    from github import GithubException

    try:
        yield
    except GithubException as exc:
        message = exc.data.get("message", "") if isinstance(exc.data, dict) else ""
        raise _failure(exc.status, exc.headers or {}, str(message), what, token) from exc
    except requests.exceptions.RequestException as exc:
        text = f"GitHub did not answer reading {what}: {type(exc).__name__}"
        raise SourceUnavailableError(_scrub(text, token)) from exc


def _stats(
    base_url: str,
    token: str | None,
    repo: str,
    kind: str,
    *,
    max_wait_s: float,
    sleep: Callable[[float], None],
    timeout: float,
) -> list[Any]:
    """`GET /repos/{repo}/stats/{kind}`, waiting out 202 with exponential backoff up to `max_wait_s`."""
    url = f"{base_url.rstrip('/')}/repos/{repo}/stats/{kind}"
    what = f"{kind} statistics of {repo}"
    headers = {"Accept": "application/vnd.github+json", "User-Agent": "cascade-ci", "X-GitHub-Api-Version": API_VERSION}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    waited, delay, faults, problem = 0.0, 1.0, 0, ""
    while True:
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - the configured API URL
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                status, answer, body = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                status, answer, body = exc.code, dict(exc.headers or {}), exc.read()
        except OSError as exc:  # refused, reset, DNS, timeout (URLError is an OSError)
            status, answer, body = 0, {}, b""
            problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if status == 202:
            if waited >= max_wait_s:
                text = f"GitHub is still computing the {what} after waiting {waited:g} s (HTTP 202); try again later"
                raise SourceUnavailableError(text)
            step = min(delay, max_wait_s - waited)
            sleep(step)
            waited, delay = waited + step, delay * 2
        elif status == 0 or status in SERVER_ERRORS:
            faults += 1
            if faults >= STATS_TRIES:
                problem = problem or f"HTTP {status}"
                raise SourceUnavailableError(_scrub(f"GitHub did not answer for the {what}: {problem}", token))
            sleep(0.5 * 2 ** (faults - 1))
        else:
            try:
                data = json.loads(body) if body.strip() else None
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                if status in (200, 204):
                    raise SourceError(f"GitHub answered invalid JSON for the {what}: {exc}") from None
                data = None
            if status not in (200, 204):
                message = str(data.get("message", "")) if isinstance(data, dict) else ""
                raise _failure(status, answer, message, what, token)
            if data in (None, {}):
                return []  # 204 or empty: an empty repository has no statistics
            if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
                raise SourceError(f"GitHub answered {type(data).__name__} for the {what}, not a list of objects")
            return data


def _timestamp(value: Any, label: str, key: str, *, required: bool = False) -> datetime | None:
    if value is None and not required:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value is not None else None
    except ValueError:
        moment = None
    if moment is None:
        raise SourceError(f"{label}: {key} is missing or not an ISO timestamp: {value!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _typed(value: Any, kind: type | tuple[type, ...], label: str, key: str) -> Any:
    if value is None or (isinstance(value, kind) and not (kind is int and isinstance(value, bool))):
        return value
    raise SourceError(f"{label}: {key} has the wrong type: {value!r}")


def _event_row(raw: Any, label: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SourceError(f"{label} is {type(raw).__name__}, not an object")
    label = f"{label} (id={raw.get('id') or '?'})"
    if raw.get("id") in (None, ""):
        raise SourceError(f"{label}: missing id")
    part = {key: raw.get(key) if isinstance(raw.get(key), dict) else {} for key in ("actor", "repo", "org", "payload")}
    payload = part["payload"]
    commits = None
    if raw.get("type") == "PushEvent":
        # Since October 2025 GitHub may omit both `size` and `commits`: the count is then unknown (null).
        if "size" in payload:
            commits = payload["size"]
        elif isinstance(payload.get("commits"), list):
            commits = len(payload["commits"])
    return {
        "event_id": str(raw["id"]),
        "event_type": _typed(raw.get("type"), str, label, "type"),
        "actor_login": _typed(part["actor"].get("login"), str, label, "actor.login"),
        "repo_name": _typed(part["repo"].get("name"), str, label, "repo.name"),
        "org_login": _typed(part["org"].get("login"), str, label, "org.login"),
        "is_public": _typed(raw.get("public"), bool, label, "public"),
        "payload_action": _typed(payload.get("action"), str, label, "payload.action"),
        "commit_count": _typed(commits, int, label, "payload.size"),
        "created_at": _timestamp(raw.get("created_at"), label, "created_at", required=True),
    }


def _repo_row(
    name: str, raw: dict[str, Any], stats: dict[str, list[Any]], snapshot: date, fetched: datetime
) -> dict[str, Any]:
    label = f"GitHub repository {name}"
    weeks = sorted(stats["commit_activity"], key=lambda week: week.get("week") or 0)
    totals = [_typed(week.get("total"), int, label, "commit_activity.total") or 0 for week in weeks]
    watchers = raw["subscribers_count"] if "subscribers_count" in raw else raw.get("watchers_count")
    return {
        "repo_name": _typed(raw.get("full_name"), str, label, "full_name") or name,
        "snapshot_date": snapshot,
        "stargazers_count": _typed(raw.get("stargazers_count"), int, label, "stargazers_count"),
        "forks_count": _typed(raw.get("forks_count"), int, label, "forks_count"),
        "open_issues_count": _typed(raw.get("open_issues_count"), int, label, "open_issues_count"),
        "watchers_count": _typed(watchers, int, label, "subscribers_count"),
        "size_kb": _typed(raw.get("size"), int, label, "size"),
        "language": _typed(raw.get("language"), str, label, "language"),
        "is_archived": _typed(raw.get("archived"), bool, label, "archived"),
        "contributors_count": len(stats["contributors"]),
        "commits_last_4_weeks": sum(totals[-4:]),
        "commits_last_52_weeks": sum(totals[-52:]),
        "repo_created_at": _timestamp(raw.get("created_at"), label, "created_at"),
        "pushed_at": _timestamp(raw.get("pushed_at"), label, "pushed_at"),
        "fetched_at": fetched,
    }


def _table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    import pyarrow as pa

    schema = schemas()[name]
    data = {f.name: [row.get(f.name) for row in rows] for f in schema}
    data["source"] = [SOURCE] * len(rows)
    return pa.Table.from_pydict(data, schema=schema)
