"""Comment approval: a `/cascade promote <run id>` comment on a pull request or issue approves a promotion.

For repositories without environment reviewers. The comment counts only when all hold: a new comment (the
`created` action), whose first line is exactly the command, by a user (never a bot) the config's `approvers`
lists, who has write, maintain or admin permission on the repository (asked of the API, not taken from the
payload), in this repository, which is not a fork, and not on a pull request from a fork. Anything else is
ignored with the reason (a RefusedError: exit 1, nothing written).

With `approvers` listed, a promotion needs an approval (`require_approval`): the approver a comment named
(`promote --approved-by`, which must be listed), or a GitHub environment review of the promoting run. A
dispatch of the promote workflow by anyone with write access carries neither.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cascade_ci.errors import ConfigError, InvalidNameError, RefusedError
from cascade_ci.naming import validate_run_id

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cascade_ci.github_api import GitHubApi

COMMAND = re.compile(r"/cascade promote[ \t]+(\S+)[ \t]*")
WRITE_ROLES = frozenset({"admin", "maintain", "write"})


@dataclass(frozen=True)
class Approval:
    run_id: str
    approver: str

    def outputs(self) -> dict[str, str]:
        return {"run-id": self.run_id, "approver": self.approver}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_event(path: Path) -> dict[str, Any]:
    """The webhook payload GitHub wrote for this run (`$GITHUB_EVENT_PATH`)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the event payload {path}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"the event payload {path} is not a JSON object")
    return data


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _ignored(reason: str) -> RefusedError:
    return RefusedError(f"approval comment ignored: {reason}")


def command_run_id(body: Any) -> str:
    """The run id of a `/cascade promote <run id>` comment (its first line, exactly); RefusedError otherwise."""
    first = body.strip().splitlines()[0] if isinstance(body, str) and body.strip() else ""
    match = COMMAND.fullmatch(first.strip())
    if match is None:
        raise _ignored("the comment is not `/cascade promote <run id>`")
    try:
        return validate_run_id(match.group(1))
    except InvalidNameError as e:
        raise _ignored(str(e)) from e


def judge(event: dict[str, Any], approvers: list[str], api: GitHubApi) -> Approval:
    """The approval an `issue_comment` event carries, or RefusedError saying why it is ignored."""
    if _get(event, "action") != "created" or not isinstance(_get(event, "comment"), dict):
        raise _ignored("not a newly created issue comment")
    run_id = command_run_id(_get(event, "comment", "body"))
    repository = _get(event, "repository", "full_name")
    if not isinstance(repository, str) or repository.lower() != api.repository.lower():
        raise _ignored(f"the comment is not in {api.repository}")
    if _get(event, "repository", "fork") is not False:
        raise _ignored(f"{api.repository} is a fork (or the payload does not say it is not)")
    user = _get(event, "comment", "user")
    login, kind = _get(user, "login"), _get(user, "type")
    if not isinstance(login, str) or kind != "User" or login.endswith("[bot]"):
        raise _ignored("the comment's author is not a user (bots never approve)")
    if login.lower() not in {name.lower() for name in approvers}:
        raise _ignored(f"{login} is not listed in the config's `approvers`")
    number = _get(event, "issue", "number")
    on_pull_request = _get(event, "issue", "pull_request") is not None
    if on_pull_request and (
        not isinstance(number, int) or api.pull_request_head_repo(number).lower() != api.repository.lower()
    ):
        raise _ignored("the comment is on a pull request from a fork")
    role = api.permission(login)
    if role not in WRITE_ROLES:
        raise _ignored(f"{login} has {role} permission on {api.repository}; write, maintain or admin is needed")
    return Approval(run_id, login)


def require_approval(approvers: list[str], provenance: Mapping[str, str] | None) -> None:
    """RefusedError unless a promotion under a config listing `approvers` carries an approval.

    `provenance["approved_by"]` (a comment approval) must be a listed login; without it, the environment
    reviewers GitHub says approved the promoting run (`provenance["approvers"]`) count. No list: no check
    (the environment's reviewers, if any, are GitHub's to enforce).
    """
    if not approvers:
        return
    listed = {name.lower() for name in approvers}
    found = provenance or {}
    by = found.get("approved_by")
    if by:
        if by.lower() not in listed:
            raise RefusedError(f"promotion refused: {by} is not listed in the config's `approvers`")
        return
    if not found.get("approvers"):
        raise RefusedError(
            "promotion refused: the config lists `approvers` and this promotion has no approval; "
            "a listed approver comments `/cascade promote <run id>`, or an environment reviewer approves the job"
        )
