"""What both GitHub clients' tests share: a token that must never show, and GitHub's rate-limit answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fakes.http import Response

TOKEN = "ghp_FAKEfakeFAKEfake0123456789abcdefABCD"


def assert_token_hidden(exc: BaseException | None) -> None:
    """TOKEN appears in no message or repr along the exception's chain of causes."""
    while exc is not None:
        assert TOKEN not in str(exc)
        assert TOKEN not in repr(exc)
        exc = exc.__cause__ or exc.__context__


def rate_limited(reset: int, status: int = 403) -> Response:
    """GitHub's answer once a token's primary rate limit is spent, until epoch second `reset`."""
    headers = {
        "X-RateLimit-Limit": "1000",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Used": "1000",
        "X-RateLimit-Reset": str(reset),
        "X-RateLimit-Resource": "core",
    }
    body = {
        "message": "API rate limit exceeded for installation ID 12345678.",
        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        "status": str(status),
    }
    return status, headers, body


# -- payloads shaped like GitHub's REST docs (tests/fixtures/github/*.json), for checks, comments, approvals --

FIXTURES = Path(__file__).parent.parent / "fixtures" / "github"
GITHUB_ACTIONS_BOT = "github-actions[bot]"  # who a workflow's GITHUB_TOKEN writes as (user.type "Bot", id 41898282)
NOT_FOR_INTEGRATION: Response = (
    403,
    {},
    {
        "message": "Resource not accessible by integration",
        "documentation_url": "https://docs.github.com/rest/users/users#get-the-authenticated-user",
        "status": "403",
    },
)  # `GET /user` with an Actions or GitHub App installation token


def payload(name: str, base_url: str) -> Any:
    """A fixture with its `https://api.github.com` links pointed at the fake server."""
    return json.loads((FIXTURES / name).read_text().replace("https://api.github.com", base_url))


def check_run_created(base_url: str, run_id: int, request: Any) -> Response:
    """`POST /repos/{o}/{r}/check-runs` answered as GitHub does: 201 and the check run."""
    body = request.json()
    run = payload("check_run.json", base_url)
    output = body.get("output") or {}
    run.update(id=run_id, name=body["name"], head_sha=body["head_sha"], status=body.get("status", "queued"))
    run.update(conclusion=body.get("conclusion"), details_url=body.get("details_url"))
    run["url"] = run["url"].replace("/check-runs/4", f"/check-runs/{run_id}")
    run["output"].update(
        title=output.get("title"),
        summary=output.get("summary"),
        annotations_count=len(output.get("annotations", [])),
        annotations_url=run["output"]["annotations_url"].replace("/check-runs/4", f"/check-runs/{run_id}"),
    )
    return 201, {}, run


def permission(base_url: str, login: str, role: str) -> dict[str, Any]:
    """`GET /repos/{o}/{r}/collaborators/{login}/permission` for a user with `role` (legacy `permission` too)."""
    legacy = {"maintain": "write", "triage": "read"}.get(role, role)
    data = payload("collaborator_permission.json", base_url)
    data.update(permission=legacy, role_name=role)
    data["user"].update(login=login, role_name=role, url=f"{base_url}/users/{login}")
    data["user"]["permissions"] = {
        "admin": role == "admin",
        "maintain": role in ("admin", "maintain"),
        "push": role in ("admin", "maintain", "write"),
        "triage": role != "read" and role != "none",
        "pull": role != "none",
    }
    return data


def comment_event(base_url: str, body: str, login: str = "monalisa", kind: str = "User") -> dict[str, Any]:
    """An `issue_comment` `created` event on pull request 7 of octo-org/octo-repo."""
    event = payload("issue_comment_event.json", base_url)
    event["comment"]["body"] = body
    event["comment"]["user"].update(login=login, type=kind)
    event["sender"].update(login=login, type=kind)
    return event


def pull_request(base_url: str, head_repo: str | None) -> dict[str, Any]:
    """`GET /repos/{o}/{r}/pulls/7`, its head in `head_repo` (None: the fork was deleted)."""
    data = payload("pull_request.json", base_url)
    if head_repo is None:
        data["head"]["repo"] = None
    elif head_repo != data["head"]["repo"]["full_name"]:
        data["head"]["repo"].update(full_name=head_repo, fork=True, name=head_repo.split("/")[1])
        data["head"]["label"] = f"{head_repo.split('/')[0]}:{data['head']['ref']}"
    return data
