"""GitHub REST API helpers for the workflow itself: run status, environment approvals, a sticky PR comment.

Requests go through PyGithub's requester (configured by `make_client`: 5xx retried briefly, rate limits never
waited out), so pagination follows `Link` headers and GitHub Enterprise base URLs work. Errors say which API
URL failed and never contain the token.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cascade_ci.errors import CascadeError, ConfigError, Terminal, Transient, safe_url
from cascade_ci.http_guard import check_credential_url

if TYPE_CHECKING:
    from github import Github

MARKER = "<!-- cascade-ci:verdict -->"
COMMENT_LIMIT = 65_536  # GitHub rejects an issue comment body longer than this (characters)
_CUT_NOTE = "\n\n_Comment cut at GitHub's 65,536-character limit; the full text is in reports/._"
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")  # a user login (never a bot's)
ACTIONS_BOT = "github-actions[bot]"  # the author of what a workflow's GITHUB_TOKEN writes
AUTHOR_ENV = "CASCADE_COMMENT_AUTHOR"  # e.g. `my-app[bot]` when a GitHub App's installation token comments
ANNOTATIONS_PER_REQUEST = 50  # the Checks API takes at most 50 annotations per request


DEFAULT_BASE_URL = "https://api.github.com"
SERVER_ERRORS = (500, 502, 503, 504)


def make_client(token: str | None, *, base_url: str = DEFAULT_BASE_URL, per_page: int = 100) -> Github:
    """A PyGithub client that retries 5xx briefly and never sleeps through a rate limit."""
    from github import Auth, Github
    from urllib3.util.retry import Retry

    retry = Retry(
        total=3,
        backoff_factor=0.25,
        status_forcelist=SERVER_ERRORS,
        respect_retry_after_header=False,  # a 429/503 Retry-After of an hour must not block the job
        raise_on_status=False,  # hand the last 5xx to PyGithub, which raises it with its status
    )
    if token:  # PyGithub follows no redirect to another host; plain http only to this machine
        check_credential_url(base_url, "the GitHub token")
    auth = Auth.Token(token) if token else None
    # Reads are sequential, so no pause between requests is needed (PyGithub's default is 0.25 s).
    return Github(
        auth=auth, base_url=base_url.rstrip("/"), per_page=per_page, retry=retry, seconds_between_requests=None
    )


class GitHubApiError(CascadeError):
    """A GitHub REST API call failed; `status` is the HTTP status when GitHub answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GitHubApiRefusedError(GitHubApiError, Terminal):
    """GitHub refused the request: bad token, missing permission, unknown resource, invalid input."""


class GitHubApiUnavailableError(GitHubApiError, Transient):
    """GitHub did not answer, answered 5xx, or the rate limit is exhausted until a known time."""


@dataclass(frozen=True)
class RunStatus:
    """A workflow run's state (`status`: queued, in_progress, completed, ...; `conclusion` once completed)."""

    run_id: str
    status: str
    conclusion: str | None
    html_url: str | None

    @property
    def in_progress(self) -> bool:
        return self.status != "completed"


class GitHubApi:
    """The REST API of one repository; builds no connection until the first call."""

    def __init__(
        self,
        token: str | None,
        repository: str,
        base_url: str = DEFAULT_BASE_URL,
        client: Github | None = None,
    ) -> None:
        if not isinstance(repository, str) or not _REPO.fullmatch(repository) or ".." in repository:
            raise ConfigError(f"not a valid repository name (owner/name): {repository!r}")
        self.repository = repository
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._client = client
        self._owned = client is None
        self._login: str | None = None

    def __repr__(self) -> str:  # never the token
        return f"GitHubApi(repository={self.repository!r}, base_url={self.base_url!r})"

    def __enter__(self) -> GitHubApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client this object created (an injected client belongs to its caller)."""
        if self._owned and self._client is not None:
            self._client.close()
            self._client = None

    @property
    def _gh(self) -> Github:
        if self._client is None:
            self._client = make_client(self._token, base_url=self.base_url)
        return self._client

    # -- calls ---------------------------------------------------------------------------------------

    def workflow_run_payload(self, run_id: str) -> dict[str, Any] | None:
        """`GET /repos/{repo}/actions/runs/{run_id}` as GitHub answers it; None when there is no such run."""
        if not str(run_id).isdigit():
            return None  # a local run id: never a GitHub run, and not to be put in a URL
        path = f"/repos/{self.repository}/actions/runs/{run_id}"
        data = self._get(path, missing=None)
        if data is not None and not isinstance(data, dict):
            raise GitHubApiRefusedError(f"GitHub answered no run for {self._url(path)}")
        return data

    def workflow_run(self, run_id: str) -> RunStatus | None:
        """The run's status; None when GitHub has no such run (or the id is not one)."""
        path = f"/repos/{self.repository}/actions/runs/{run_id}"
        data = self.workflow_run_payload(run_id)
        if data is None:
            return None
        if not isinstance(data.get("status"), str):
            raise GitHubApiRefusedError(f"GitHub answered no run status for {self._url(path)}")
        return RunStatus(
            run_id=str(data.get("id", run_id)),
            status=data["status"],
            conclusion=data.get("conclusion"),
            html_url=data.get("html_url"),
        )

    def approvers(self, run_id: str) -> list[str]:
        """Logins that approved the run's environment deployments (review history), first approval first."""
        if not str(run_id).isdigit():
            return []
        reviews = self._get(f"/repos/{self.repository}/actions/runs/{run_id}/approvals", missing=[])
        logins: list[str] = []
        for review in reviews if isinstance(reviews, list) else []:
            if not isinstance(review, dict) or review.get("state") != "approved":
                continue
            user = review.get("user")
            login = user.get("login") if isinstance(user, dict) else None
            if isinstance(login, str) and isinstance(login, str) and login not in logins:
                logins.append(login)
        return logins

    def identity(self) -> str:
        """The login comments made with this token carry: `GET /user`, else (an Actions or app installation
        token, which `GET /user` answers 403) $CASCADE_COMMENT_AUTHOR, else `github-actions[bot]`."""
        if self._login is None:
            try:
                data = self._get("/user", missing=None)
            except GitHubApiRefusedError as exc:
                if exc.status != 403:
                    raise
                data = None
            login = data.get("login") if isinstance(data, dict) else None
            self._login = login if isinstance(login, str) and login else os.environ.get(AUTHOR_ENV) or ACTIONS_BOT
        return self._login

    def upsert_comment(self, pr_number: int, body: str, marker: str = MARKER) -> str:
        """Edit the PR's comment that carries `marker` and was written by this token's identity, else create one;
        "updated" or "created". A comment with the marker by anyone else is never edited."""
        from github.IssueComment import IssueComment
        from github.PaginatedList import PaginatedList

        if isinstance(pr_number, bool) or not isinstance(pr_number, int) or pr_number < 1:
            raise ConfigError(f"not a pull request number: {pr_number!r}")
        text = comment_body(body, marker)
        me = self.identity()
        listing = f"/repos/{self.repository}/issues/{pr_number}/comments"
        with self._translated("GET", listing):
            comments = PaginatedList(IssueComment, self._gh.requester, listing, None)
            found = next((c for c in comments if isinstance(c.body, str) and marker in c.body and _by(c, me)), None)
        if found is not None:
            path = f"/repos/{self.repository}/issues/comments/{found.id}"
            with self._translated("PATCH", path):
                self._gh.requester.requestJsonAndCheck("PATCH", path, input={"body": text})
            return "updated"
        with self._translated("POST", listing):
            self._gh.requester.requestJsonAndCheck("POST", listing, input={"body": text})
        return "created"

    def create_check_run(self, run: Mapping[str, Any], annotations: list[Mapping[str, Any]]) -> int:
        """`POST /repos/{repo}/check-runs` with the first ANNOTATIONS_PER_REQUEST annotations, then `PATCH` the
        rest in batches of as many (GitHub's limit per request; they accumulate); the check run's id."""
        first, rest = annotations[:ANNOTATIONS_PER_REQUEST], annotations[ANNOTATIONS_PER_REQUEST:]
        payload = {**run, "output": {**run["output"], "annotations": first}}
        created = self._send("POST", f"/repos/{self.repository}/check-runs", payload)
        run_id = created.get("id") if isinstance(created, dict) else None
        if not isinstance(run_id, int):
            raise GitHubApiRefusedError(f"GitHub answered no check run id for {self._url('/check-runs')}")
        path = f"/repos/{self.repository}/check-runs/{run_id}"
        for start in range(0, len(rest), ANNOTATIONS_PER_REQUEST):
            batch = rest[start : start + ANNOTATIONS_PER_REQUEST]
            self._send("PATCH", path, {"output": {**run["output"], "annotations": batch}})
        return run_id

    def permission(self, login: str) -> str:
        """`login`'s role on the repository (admin, maintain, write, triage, read or none); "none" when the
        login is not a valid user name or GitHub knows no such user."""
        if not valid_login(login):
            return "none"
        data = self._get(f"/repos/{self.repository}/collaborators/{login}/permission", missing=None)
        if not isinstance(data, dict):
            return "none"
        role = data.get("role_name") or data.get("permission")
        return role if isinstance(role, str) else "none"

    def pull_request_head_repo(self, number: int) -> str:
        """The `owner/name` a pull request's head branch lives in ("" when its fork was deleted)."""
        data = self._get(f"/repos/{self.repository}/pulls/{int(number)}", missing=None)
        head = data.get("head") if isinstance(data, dict) else None
        repo = head.get("repo") if isinstance(head, dict) else None
        name = repo.get("full_name") if isinstance(repo, dict) else None
        return name if isinstance(name, str) else ""

    # -- plumbing ------------------------------------------------------------------------------------

    def _send(self, verb: str, path: str, payload: Mapping[str, Any]) -> Any:
        """`verb` `path` with a JSON body; the JSON GitHub answers."""
        with self._translated(verb, path):
            return self._gh.requester.requestJsonAndCheck(verb, path, input=dict(payload))[1]

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _get(self, path: str, *, missing: Any) -> Any:
        """The JSON at `path`, or `missing` on 404."""
        try:
            with self._translated("GET", path):
                headers, data = self._gh.requester.requestJsonAndCheck("GET", path)
        except GitHubApiRefusedError as exc:
            if exc.status == 404:
                return missing
            raise
        if "location" in headers:  # a 3xx PyGithub did not follow: neither do we, the token stays here
            moved = safe_url(str(headers["location"]))
            text = f"GitHub API redirected GET {self._url(path)} to {moved}; not followed: set the API URL to it"
            raise GitHubApiRefusedError(self._scrub(text))
        return data

    @contextmanager
    def _translated(self, verb: str, path: str) -> Iterator[None]:
        """PyGithub and requests failures as GitHubApiError."""
        import requests
        from github import GithubException

        try:
            yield
        except GithubException as exc:
            raise self._failure(exc, verb, path) from exc
        except RuntimeError as exc:  # PyGithub refuses a redirect to another host or scheme with RuntimeError
            text = f"GitHub API redirected {verb} {self._url(path)} elsewhere; not followed: {exc}"
            raise GitHubApiRefusedError(self._scrub(text)) from exc
        except requests.exceptions.RequestException as exc:
            text = f"GitHub API did not answer {verb} {self._url(path)}: {type(exc).__name__}; try again later"
            raise GitHubApiUnavailableError(self._scrub(text)) from exc
        except ValueError as exc:  # a body cut short, or not the JSON it says it is
            where = f"{verb} {self._url(path)}"
            text = f"GitHub API answered {where} with a body that is not valid JSON ({exc}); try again later"
            raise GitHubApiUnavailableError(self._scrub(text)) from exc

    def _failure(self, exc: Any, verb: str, path: str) -> GitHubApiError:
        """The error for a GitHub error answer; rate limits say when to come back."""
        status = int(exc.status or 0)
        headers = {str(k).lower(): str(v) for k, v in (exc.headers or {}).items()}
        message = str(exc.data.get("message", "")) if isinstance(exc.data, dict) else ""
        where = f"{verb} {self._url(path)}"
        detail = f": {message}" if message else ""
        if status in (403, 429) and headers.get("x-ratelimit-remaining") == "0":
            text = f"GitHub API rate limit exhausted (HTTP {status} to {where}); it resets at {_reset(headers)}"
            return GitHubApiUnavailableError(self._scrub(text), status)
        if status == 429 or (status == 403 and ("retry-after" in headers or "rate limit" in message.lower())):
            after = headers.get("retry-after", "?")
            return GitHubApiUnavailableError(
                self._scrub(f"GitHub API rate-limited {where}; retry after {after} s"), status
            )
        if status >= 500:
            text = f"GitHub API answered HTTP {status} to {where}{detail}; try again later"
            return GitHubApiUnavailableError(self._scrub(text), status)
        if status == 401:
            return GitHubApiRefusedError(f"GitHub refused the token (HTTP 401) for {where}", status)
        hint = " (does the workflow grant the permission, e.g. `pull-requests: write`?)" if status == 403 else ""
        return GitHubApiRefusedError(self._scrub(f"GitHub API answered HTTP {status} to {where}{detail}{hint}"), status)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text


def valid_login(login: str) -> bool:
    """True for a GitHub user login (letters, digits, single inner hyphens, at most 39; never a bot's)."""
    return bool(_LOGIN.fullmatch(login))


def _by(comment: Any, login: str) -> bool:
    """True if `comment` was written by `login` (GitHub's own user object of the comment)."""
    user = comment.user  # from the listing itself (reading `raw_data` would fetch each comment again)
    return user is not None and user.login == login


def comment_body(body: str, marker: str = MARKER) -> str:
    """`body` headed by the marker line, cut with a note to fit GitHub's comment limit.

    The cut falls at a line end: a line cut inside an inline code span would leave its fence open and the
    data value before the cut rendered as Markdown (mentions, links, images).
    """
    body = body.removeprefix(marker).lstrip("\n")
    text = f"{marker}\n{body}"
    if len(text) > COMMENT_LIMIT:
        text = text[: COMMENT_LIMIT - len(_CUT_NOTE) + 1].rsplit("\n", 1)[0] + _CUT_NOTE
    return text


def _reset(headers: Mapping[str, str]) -> str:
    reset = headers.get("x-ratelimit-reset", "")
    if not reset.replace(".", "", 1).isdigit():
        return "an unknown time"
    at = datetime.fromtimestamp(float(reset), UTC)
    return f"{at:%Y-%m-%dT%H:%M:%SZ} (in {max(0, round(at.timestamp() - time.time()))} s)"


TOKEN_VARIABLES = ("GITHUB_TOKEN", "GH_SOURCE_TOKEN")


def token_from_env(env: Mapping[str, str] = os.environ) -> str | None:
    """The GitHub token: `GITHUB_TOKEN`, else `GH_SOURCE_TOKEN`; None when neither is set."""
    return next((env[name].strip() for name in TOKEN_VARIABLES if env.get(name, "").strip()), None)


def from_env(env: Mapping[str, str] = os.environ) -> GitHubApi | None:
    """An api for `GITHUB_REPOSITORY` with `GITHUB_TOKEN` or `GH_SOURCE_TOKEN` (at `GITHUB_API_URL` if set),
    else None.

    The token is not masked here: the runner masks GITHUB_TOKEN (and every `secrets.*` value) itself.
    """
    token, repository = token_from_env(env), env.get("GITHUB_REPOSITORY")
    if not token or not repository:
        return None
    return GitHubApi(token, repository, base_url=env.get("GITHUB_API_URL") or DEFAULT_BASE_URL)
