"""Names that reach catalogs, engines and shells: built here, validated here."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from cascade_ci.errors import InvalidNameError

DEFAULT_BRANCH_PREFIX = "pipeline/run-"
MAIN = "main"
TAG_PREFIX = "prod-"
SCRATCH_PREFIX = "cascade-scratch/"  # private staging branches (catalog.base.scratch_branch)
PR_PREFIX = "pr/"  # pull request branches `pr/N`: forked from main, never promoted, deleted when the PR closes

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Nessie's own ref-name rule, narrowed: letters first, no "..", no "//", no trailing "/" or ".".
_REF_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9._/-]{0,98}[A-Za-z0-9_-])?")
_HASH = re.compile(r"[0-9a-fA-F]{8,64}")  # Nessie's HASH_RAW_REGEX
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9._/-]{0,62}")


def validate_run_id(run_id: str) -> str:
    """Return `run_id` if it is 1-64 letters, digits, `-` or `_`, starting alphanumeric."""
    if not _RUN_ID.fullmatch(run_id):
        raise InvalidNameError(
            f"invalid run id {run_id!r}: use 1-64 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return run_id


def validate_attempt(attempt: int) -> int:
    """Return `attempt` if it is a positive workflow run attempt."""
    if attempt < 1:
        raise InvalidNameError(f"invalid attempt {attempt}: attempts count from 1")
    return attempt


def validate_ref_name(name: str) -> str:
    """Return `name` if it is a safe branch or tag name."""
    if not isinstance(name, str) or not _REF_NAME.fullmatch(name) or ".." in name or "//" in name:
        raise InvalidNameError(
            f"invalid ref name {name!r}: start with a letter; use letters, digits, '.', '_', '-', '/'; "
            "no '..' or '//'; end with a letter, digit, '_' or '-'"
        )
    return name


def validate_hash(commit: str) -> str:
    """Return `commit` if it is a commit hash as Nessie writes one: 8 to 64 hex digits (a prefix allowed)."""
    if not isinstance(commit, str) or not _HASH.fullmatch(commit):
        raise InvalidNameError(f"invalid commit hash {commit!r}: give 8 to 64 hex digits")
    return commit


def validate_ref_spec(spec: str) -> str:
    """Return `spec` if it is a ref name, a commit hash, or `name@hash` / `@hash` (a commit seen from a ref)."""
    name, at, commit = spec.rpartition("@") if isinstance(spec, str) else ("", "", spec)
    if at:
        if name:
            validate_ref_name(name)
        validate_hash(commit)
    elif not (isinstance(spec, str) and _HASH.fullmatch(spec)):
        validate_ref_name(spec)
    return spec


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if branch names built from it are valid ref names."""
    if not _PREFIX.fullmatch(prefix) or ".." in prefix or "//" in prefix:
        raise InvalidNameError(
            f"invalid branch prefix {prefix!r}: start with a letter; letters, digits, '.', '_', '-', '/'"
        )
    return prefix


def main_collision(main: str, prefix: str) -> str | None:
    """Which of cascade's own refs could be named `main` (a run's or pull request's branch, a promotion tag, a
    scratch branch), or None. Stages that take a run id write to its branch: it must never be main."""
    run_id = run_id_of(main, prefix)
    if run_id is not None:
        return f"the branch of run {run_id!r} (branch_prefix {prefix!r})"
    if main.startswith(PR_PREFIX):
        return f"a pull request's branch ({PR_PREFIX}N)"
    if main.startswith(TAG_PREFIX):
        return f"a promotion tag ({TAG_PREFIX}*)"
    if main.startswith(SCRATCH_PREFIX):
        return f"a scratch branch ({SCRATCH_PREFIX}*)"
    return None


def branch_name(run_id: str, prefix: str = DEFAULT_BRANCH_PREFIX) -> str:
    """`pipeline/run-{run_id}`: one branch per workflow run, shared by all its attempts."""
    return validate_ref_name(validate_prefix(prefix) + validate_run_id(run_id))


def pr_branch(number: int) -> str:
    """`pr/{number}`: the branch a pull request's checks run on."""
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise InvalidNameError(f"invalid pull request number {number!r}: a positive integer")
    return branch_name(str(number), PR_PREFIX)


def is_pr_branch(name: str) -> bool:
    """True for a pull request branch name (`pr/N`)."""
    rest = name.removeprefix(PR_PREFIX)
    return name.startswith(PR_PREFIX) and rest.isdigit() and rest.isascii()


def run_id_of(branch: str, prefix: str = DEFAULT_BRANCH_PREFIX) -> str | None:
    """The run id a branch was made for, or None if the branch is not a pipeline branch."""
    if not branch.startswith(prefix):
        return None
    rest = branch[len(prefix) :]
    return rest if _RUN_ID.fullmatch(rest) else None


def promotion_tag(now: datetime, exists: Callable[[str], bool]) -> str:
    """`prod-YYYYMMDD-HHMMSS` in UTC; `-2`, `-3`, ... appended while `exists(name)` says taken."""
    base = TAG_PREFIX + now.astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    name, n = base, 1
    while exists(name):
        n += 1
        name = f"{base}-{n}"
    return name


def local_run_id(now: datetime) -> str:
    """A fresh run id for runs outside GitHub Actions: `local-YYYYMMDDHHMMSSffffff`."""
    return "local-" + now.astimezone(UTC).strftime("%Y%m%d%H%M%S%f")
