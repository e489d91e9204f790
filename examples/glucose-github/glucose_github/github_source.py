"""GitHub: users' public events and repository statistics, through GitHub's REST API.

Requests go through a small urllib client that owns every failure: a 5xx or a connection fault is
retried briefly, rate limits are reported with their reset time (seconds or milliseconds) and never
waited out, a redirect is refused (the token must not follow it), and an answer that is not JSON (a
truncated body, an HTML page served with 200) is named as such. Each failure is one line naming the
URL and the user or repository; the token never appears in it.

One failing user or repository does not discard the others: its failure, and any event or repository
GitHub answered in a shape that cannot be read, lands in the rejects tables (`<table>__rejects`) and
the rest is kept. Only a failure that concerns every request (the token refused, the rate limit spent)
ends the read. The statistics endpoints answer 202 while GitHub computes them: they are re-asked with
a bounded, injectable backoff.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from cascade_ci.errors import ConfigError, SourceError, SourceUnavailableError, safe_url
from cascade_ci.github_api import DEFAULT_BASE_URL, SERVER_ERRORS
from cascade_ci.http_guard import check_credential_url
from glucose_github.raw import EVENTS, REPO_STATS, RawBatch, schemas

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DEFAULT_BASE_URL", "all_failed", "fetch_repo_stats", "fetch_user_events"]

SOURCE = "github-api"
API_VERSION = "2022-11-28"
TRIES = 3  # tries for a request that fails to connect or answers 5xx
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_MS_EPOCH = 10**11  # a reset time above this is in milliseconds (10**11 s is the year 5138)
_PULL_REQUEST_EVENTS = frozenset(
    {"PullRequestEvent", "PullRequestReviewEvent", "PullRequestReviewCommentEvent", "PullRequestReviewThreadEvent"}
)


class GitHubFailure(SourceError):
    """One request failed: the user or repository it was for is rejected, the others are kept."""


class GitHubUnavailable(GitHubFailure, SourceUnavailableError):
    """One request found GitHub not answering (connection fault, 5xx, 202 for too long)."""


class GitHubRefusedAll(SourceError):
    """GitHub refused the token (HTTP 401): every request would fail, so the read stops."""


class GitHubRateLimited(SourceUnavailableError):
    """The rate limit is spent until a known time: every request would fail, so the read stops."""


def fetch_user_events(
    token: str | None,
    users: list[str],
    *,
    base_url: str = DEFAULT_BASE_URL,
    per_page: int = 100,
    max_pages: int = 3,
    since: datetime | None = None,
    until: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = 30,
) -> RawBatch:
    """The public events of each user (`GET /users/{login}/events/public`) created in [since, until).

    At most `max_pages` pages of `per_page` per user (the API serves only the latest ~300). A user whose
    events cannot be read, and an event that cannot be read, go to `raw.github_user_events__rejects`.
    """
    logins = [_checked(_LOGIN, user, "GitHub user") for user in users]
    client = _Client(base_url, token, sleep, timeout)
    rows: dict[str, dict[str, Any]] = {}
    rejected: list[tuple[str, str]] = []
    failures: list[Exception] = []
    for login in logins:
        what = f"the public events of user {login}"
        url: str | None = f"{client.base}/users/{urllib.parse.quote(login)}/events/public?per_page={per_page}"
        index = 0
        try:
            for _page in range(max_pages):
                if url is None:
                    break
                data, headers = client.get(url, what)
                if not isinstance(data, list):
                    answer = f"GitHub answered {_kind(data)}, not a list of events"
                    raise GitHubFailure(f"{answer}, reading {what} at {safe_url(url)}")
                for raw in data:
                    label = f"GitHub event #{index} of user {login}"
                    index += 1
                    try:
                        row = _event_row(raw, label)
                    except SourceError as e:
                        rejected.append((_as_text(raw), str(e)))
                        continue
                    if (since and row["created_at"] < since) or (until and row["created_at"] >= until):
                        continue  # outside the ingest window
                    rows.setdefault(row["event_id"], row)  # the feed shifts while paging: keep the first copy
                url = client.next_page(headers, what)
        except GitHubFailure as e:
            rejected.append((json.dumps({"user": login}), str(e)))
            failures.append(e)
    tally = (
        f"{len(logins)} users asked for: {len(logins) - len(failures)} read, {len(failures)} failed; "
        f"{len(rows)} events kept, {len(rejected) - len(failures)} rejected"
    )
    return RawBatch({EVENTS: _table(EVENTS, list(rows.values()))}, failures, {EVENTS: rejected}, {EVENTS: tally})


def fetch_repo_stats(
    token: str | None,
    repos: list[str],
    *,
    base_url: str = DEFAULT_BASE_URL,
    snapshot_date: date | None = None,
    max_wait_s: float = 30,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = 30,
) -> RawBatch:
    """Counts, contributors and commit activity of each `owner/name`, as one snapshot per repository.

    A repository that cannot be read whole goes to `raw.github_repo_stats__rejects`; the others are kept.

    Args:
        max_wait_s: The longest wait, per statistics endpoint, for GitHub to finish computing (HTTP 202).
        sleep: Called with each backoff delay (tests pass a no-op).
    """
    names = [_checked(_REPO, repo, "repository") for repo in repos]
    snapshot = snapshot_date or datetime.now(UTC).date()
    client = _Client(base_url, token, sleep, timeout)
    rows, rejected, failures = [], [], []
    for name in names:
        try:
            url = f"{client.base}/repos/{name}"
            raw, _headers = client.get(url, f"repository {name}")
            stats = {kind: client.stats(name, kind, max_wait_s) for kind in ("contributors", "commit_activity")}
            rows.append(_repo_row(name, url, raw, stats, snapshot, datetime.now(UTC)))
        except GitHubFailure as e:
            rejected.append((json.dumps({"repo": name}), str(e)))
            failures.append(e)
    tally = f"{len(names)} repositories asked for: {len(rows)} read, {len(failures)} failed"
    return RawBatch({REPO_STATS: _table(REPO_STATS, rows)}, failures, {REPO_STATS: rejected}, {REPO_STATS: tally})


def all_failed(batch: RawBatch, asked: int) -> SourceError | None:
    """The error to raise when `asked` users and repositories were asked for and every one failed, else None."""
    if not asked or len(batch.failures) < asked:
        return None
    first = batch.failures[0]
    more = f"; all {asked} users and repositories asked for failed" if asked > 1 else ""
    unavailable = all(isinstance(failure, SourceUnavailableError) for failure in batch.failures)
    return (SourceUnavailableError if unavailable else SourceError)(f"{first}{more}")


# -- HTTP ------------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answered as errors: the token must not follow them to another scheme or host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Client:
    """GET JSON from GitHub's REST API with the token, bounded retries and one-line errors."""

    def __init__(self, base_url: str, token: str | None, sleep: Callable[[float], None], timeout: float) -> None:
        if token:
            check_credential_url(base_url, "the GitHub token")
        self.base = base_url.rstrip("/")
        self.token = token
        self.sleep = sleep
        self.timeout = timeout
        self.opener = urllib.request.build_opener(_NoRedirect())

    def _request(self, url: str) -> tuple[int, dict[str, str], bytes, str]:
        """(status, lower-cased headers, body, problem): status 0 when GitHub did not answer."""
        headers = {
            "Accept": "application/vnd.github+json",
            "User-Agent": "cascade-ci",
            "X-GitHub-Api-Version": API_VERSION,
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - the configured API URL
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return response.status, _lower(response.headers), response.read(), ""
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, _lower(exc.headers or {}), exc.read(), ""
        except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, reset, DNS, timeout, cut body
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            return 0, {}, b"", f"{type(reason).__name__}: {reason}"

    def answer(self, url: str, what: str) -> tuple[int, dict[str, str], bytes]:
        """The first answer that is not a 5xx or a connection fault, after up to TRIES tries."""
        for attempt in range(1, TRIES + 1):
            status, headers, body, problem = self._request(url)
            if status and status not in SERVER_ERRORS:
                return status, headers, body
            if attempt == TRIES:
                problem = self._scrub(problem) or f"HTTP {status}"
                raise GitHubUnavailable(f"GitHub did not answer reading {what} at {safe_url(url)}: {problem}")
            self.sleep(0.5 * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def get(self, url: str, what: str) -> tuple[Any, dict[str, str]]:
        """The JSON GitHub answers with 200 (None for 204), and the answer's headers."""
        status, headers, body = self.answer(url, what)
        if status in (200, 204):
            return self._json(url, what, headers, body), headers
        raise self._failure(url, what, status, headers, body)

    def next_page(self, headers: Mapping[str, str], what: str) -> str | None:
        """The `Link: rel="next"` URL, if the answer has one; one on another host is refused (the token stays)."""
        found = _NEXT.search(headers.get("link", ""))
        if not found:
            return None
        url = found.group(1)
        here, there = urllib.parse.urlsplit(self.base), urllib.parse.urlsplit(url)
        if (here.scheme, here.netloc) != (there.scheme, there.netloc):
            raise GitHubFailure(f"GitHub's next page of {what} is on another host ({safe_url(url)}); not followed")
        return url

    def stats(self, repo: str, kind: str, max_wait_s: float) -> list[Any]:
        """`GET /repos/{repo}/stats/{kind}`, waiting out 202 with exponential backoff up to `max_wait_s`."""
        url = f"{self.base}/repos/{repo}/stats/{kind}"
        what = f"{kind} statistics of {repo}"
        waited, delay = 0.0, 1.0
        while True:
            status, headers, body = self.answer(url, f"the {what}")
            if status != 202:
                break
            if waited >= max_wait_s:
                raise GitHubUnavailable(
                    f"GitHub is still computing the {what} after waiting {waited:g} s (HTTP 202) "
                    f"at {safe_url(url)}; try again later"
                )
            step = min(delay, max_wait_s - waited)
            self.sleep(step)
            waited, delay = waited + step, delay * 2
        if status not in (200, 204):
            raise self._failure(url, f"the {what}", status, headers, body)
        data = self._json(url, f"the {what}", headers, body)
        if data in (None, {}):
            return []  # 204 or empty: an empty repository has no statistics
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise GitHubFailure(f"GitHub answered {_kind(data)}, not a list of objects, for the {what} at {url}")
        return data

    def _json(self, url: str, what: str, headers: Mapping[str, str], body: bytes) -> Any:
        if not body.strip():
            return None
        content_type = headers.get("content-type", "")
        if "html" in content_type or body.lstrip()[:1] == b"<":
            raise GitHubFailure(
                f"GitHub answered an HTML page, not JSON, reading {what} at {safe_url(url)}: "
                "is api_url the API's address (https://api.github.com, or https://HOST/api/v3 for GHES)?"
            )
        try:
            return json.loads(body)
        except UnicodeDecodeError as e:
            raise GitHubFailure(
                f"GitHub answered text that is not UTF-8 reading {what} at {safe_url(url)}: {e}"
            ) from None
        except json.JSONDecodeError as e:
            where = f"{e.msg}, line {e.lineno} column {e.colno} of a {len(body)}-byte body"
            raise GitHubFailure(f"GitHub answered invalid JSON reading {what} at {safe_url(url)}: {where}") from None

    def _failure(self, url: str, what: str, status: int, headers: dict[str, str], body: bytes) -> SourceError:
        """The error for an HTTP error answer; rate limits say when to come back."""
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError:
            data = None
        message = str(data.get("message", "")) if isinstance(data, dict) else ""
        detail = f" ({self._scrub(message)})" if message else ""
        at = safe_url(url)
        if status in (403, 429) and headers.get("x-ratelimit-remaining") == "0":
            when = _reset_time(headers.get("x-ratelimit-reset", ""))
            return GitHubRateLimited(
                f"GitHub API rate limit exhausted reading {what} at {at} (HTTP {status}); it resets at {when}"
            )
        if status == 429 or (status == 403 and ("retry-after" in headers or "rate limit" in message.lower())):
            retry = headers.get("retry-after", "?")
            return GitHubRateLimited(f"GitHub rate-limited reading {what} at {at}; retry after {retry} s{detail}")
        if status == 401:
            return GitHubRefusedAll(f"GitHub rejected the token (HTTP 401) reading {what} at {at}")
        if 300 <= status < 400:
            location = safe_url(headers.get("location", "")) or "an address it did not give"
            return GitHubFailure(
                f"GitHub redirected {what} from {at} to {location} (HTTP {status}); the token is not sent on: "
                "set api_url to the address GitHub redirects to"
            )
        return GitHubFailure(f"GitHub answered HTTP {status} reading {what} at {at}{detail}")

    def _scrub(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text


def _lower(headers: Any) -> dict[str, str]:
    return {str(key).lower(): str(value) for key, value in headers.items()}


def _reset_time(value: str) -> str:
    """`x-ratelimit-reset` (epoch seconds; some proxies send milliseconds) as a UTC time and a wait."""
    try:
        stamp = float(value)
    except ValueError:
        return "an unknown time"
    if stamp > _MS_EPOCH:
        stamp /= 1000
    try:
        at = datetime.fromtimestamp(stamp, UTC)
    except (OverflowError, OSError, ValueError):
        return f"an unknown time (reset header {value!r})"
    return f"{at:%Y-%m-%dT%H:%M:%SZ} (in {max(0, round(stamp - time.time()))} s)"


def _checked(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigError(f"not a valid {what} name: {value!r}")
    return value


def _kind(data: Any) -> str:
    return "nothing" if data is None else type(data).__name__


def _as_text(raw: Any) -> str:
    try:
        return json.dumps(raw, ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps(str(raw))


# -- rows ------------------------------------------------------------------------------------------


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


def _part(raw: dict[str, Any], *path: str) -> Any:
    """A nested value, None where the path stops at something that is not an object."""
    value: Any = raw
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _event_fields(kind: Any, payload: dict[str, Any], label: str) -> dict[str, Any]:
    """Typed fields of the payload, per event type: the ref, the head commit, the PR or issue number, the tag."""
    ref = ref_type = head = number = tag = None
    commits = None
    if kind == "PushEvent":
        ref, head = payload.get("ref"), payload.get("head")
        # Since October 2025 GitHub may omit both `size` and `commits`: the count is then unknown (null).
        if "size" in payload:
            commits = payload["size"]
        elif isinstance(payload.get("commits"), list):
            commits = len(payload["commits"])
    elif kind in ("CreateEvent", "DeleteEvent"):
        ref, ref_type = payload.get("ref"), payload.get("ref_type")
    elif kind in _PULL_REQUEST_EVENTS:
        number = payload.get("number", _part(payload, "pull_request", "number"))
    elif kind in ("IssuesEvent", "IssueCommentEvent"):
        number = _part(payload, "issue", "number")
    elif kind == "ReleaseEvent":
        tag = _part(payload, "release", "tag_name")
    return {
        "commit_count": _typed(commits, int, label, "payload.size"),
        "ref": _typed(ref, str, label, "payload.ref"),
        "ref_type": _typed(ref_type, str, label, "payload.ref_type"),
        "head_sha": _typed(head, str, label, "payload.head"),
        "item_number": _typed(number, int, label, "payload.number"),
        "release_tag": _typed(tag, str, label, "payload.release.tag_name"),
    }


def _event_row(raw: Any, label: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SourceError(f"{label} is {type(raw).__name__}, not an object")
    label = f"{label} (id={raw.get('id') or '?'})"
    if raw.get("id") in (None, ""):
        raise SourceError(f"{label}: missing id")
    part = {key: raw.get(key) if isinstance(raw.get(key), dict) else {} for key in ("actor", "repo", "org", "payload")}
    payload = part["payload"]
    return {
        "event_id": str(raw["id"]),
        "event_type": _typed(raw.get("type"), str, label, "type"),
        "actor_login": _typed(part["actor"].get("login"), str, label, "actor.login"),
        "repo_name": _typed(part["repo"].get("name"), str, label, "repo.name"),
        "org_login": _typed(part["org"].get("login"), str, label, "org.login"),
        "is_public": _typed(raw.get("public"), bool, label, "public"),
        "payload_action": _typed(payload.get("action"), str, label, "payload.action"),
        **_event_fields(raw.get("type"), payload, label),
        "payload_json": json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
        "created_at": _timestamp(raw.get("created_at"), label, "created_at", required=True),
    }


def _count(raw: dict[str, Any], label: str, *keys: str) -> int | None:
    """The first of `keys` the answer has (the older API's names come last), as an integer."""
    for key in keys:
        if key in raw:
            return _typed(raw[key], int, label, key)
    return None


def _repo_row(
    name: str, url: str, raw: Any, stats: dict[str, list[Any]], snapshot: date, fetched: datetime
) -> dict[str, Any]:
    label = f"GitHub repository {name} at {safe_url(url)}"
    if not isinstance(raw, dict) or not (raw.get("full_name") or raw.get("name")):
        raise GitHubFailure(f"{label}: the answer is {_kind(raw)} without full_name or name, not a repository")
    try:
        stars = _count(raw, label, "stargazers_count", "watchers_count", "watchers")
        forks = _count(raw, label, "forks_count", "forks")
        issues = _count(raw, label, "open_issues_count", "open_issues")
        if stars is None or forks is None or issues is None:
            raise GitHubFailure(f"{label}: the answer lacks the star, fork or open-issue count")
        weeks = sorted(stats["commit_activity"], key=lambda week: week.get("week") or 0)
        totals = [_typed(week.get("total"), int, label, "commit_activity.total") or 0 for week in weeks]
        return {
            "repo_name": _typed(raw.get("full_name"), str, label, "full_name") or name,
            "snapshot_date": snapshot,
            "stargazers_count": stars,
            "forks_count": forks,
            "open_issues_count": issues,
            # `watchers_count` is the star count; the watchers are `subscribers_count`.
            "watchers_count": _count(raw, label, "subscribers_count", "watchers_count"),
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
    except GitHubFailure:
        raise
    except SourceError as e:
        raise GitHubFailure(str(e)) from None


def _table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    import pyarrow as pa

    schema = schemas()[name]
    data = {f.name: [row.get(f.name) for row in rows] for f in schema}
    data["source"] = [SOURCE] * len(rows)
    return pa.Table.from_pydict(data, schema=schema)
