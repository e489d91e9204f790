"""Branch stage: one zero-copy branch per workflow run, reused by its reruns.

A run's branch appears with its creation marker already on it: the marker is committed on a private scratch
branch forked at main's head, and the run's branch is created at that marker commit in one operation. A
process killed half-way leaves at most a scratch branch (hidden, swept by gc after an hour), never a run
branch without its marker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from cascade_ci.branch_state import (
    ATTEMPT,
    BASE_HASH,
    BRANCH,
    CREATED_BY,
    CREATOR,
    KIND,
    RUN_ID,
    MetaKind,
    read_branch,
)
from cascade_ci.catalog.base import scratch_name
from cascade_ci.errors import AlreadyExistsError, ConflictError, NotFoundError, RefusedError
from cascade_ci.naming import PR_PREFIX, branch_name, is_pr_branch, validate_attempt

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog
    from cascade_ci.config import Settings


@dataclass(frozen=True)
class BranchResult:
    branch: str
    base_hash: str
    head_hash: str
    attempt: int
    action: str  # created | reused | recreated

    def outputs(self) -> dict[str, str]:
        return {key: str(value) for key, value in asdict(self).items()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def create_run_branch(
    settings: Settings, catalog: BranchCatalog, run_id: str, attempt: int = 1, recreate: bool = False
) -> BranchResult:
    """Create `pipeline/run-{run_id}` from main, or reuse it for a rerun (`recreate` starts it afresh)."""
    name = branch_name(run_id, settings.branch_prefix)
    validate_attempt(attempt)
    try:
        state = read_branch(catalog, name)
    except NotFoundError:
        state = None
    if state is not None:
        if not state.ours and not recreate:
            raise RefusedError(
                f"branch {name!r} exists but was not created by cascade-ci; not touching it "
                "(`cascade branch --recreate` replaces it)"
            )
        if not recreate:
            head = catalog.commit_meta(
                name,
                f"attempt {attempt} of run {run_id}",
                {KIND: MetaKind.ATTEMPT, RUN_ID: run_id, ATTEMPT: str(attempt)},
                expected_hash=state.ref.hash,
            )
            return BranchResult(name, state.base_hash or "", head.hash, attempt, "reused")
        catalog.delete_ref(name, expected_hash=state.ref.hash)
    main = catalog.get_ref(settings.main_branch)
    scratch = scratch_name(name)
    marker = _marker_commit(catalog, scratch, main.hash, name, run_id, attempt)
    try:
        catalog.create_ref(name, marker)
    except AlreadyExistsError as e:
        raise RefusedError(f"branch {name!r} was created concurrently by another process; rerun to reuse it") from e
    finally:
        catalog.delete_ref(scratch, marker)
    return BranchResult(name, main.hash, marker, attempt, "recreated" if state else "created")


@dataclass(frozen=True)
class DeleteResult:
    branch: str
    action: str  # deleted | absent

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def delete_pr_branch(settings: Settings, catalog: BranchCatalog, number: str) -> DeleteResult:
    """Delete pull request branch `pr/{number}` (only `pr/*` names); "absent" when it does not exist."""
    name = branch_name(number, settings.branch_prefix)
    if settings.branch_prefix != PR_PREFIX or not is_pr_branch(name):
        raise RefusedError(f"only pull request branches ({PR_PREFIX}N) are deleted this way, not {name!r}")
    for _ in range(3):  # a push racing the close may move the branch between reading and deleting
        try:
            ref = catalog.get_ref(name)
            catalog.delete_ref(name, expected_hash=ref.hash)
        except NotFoundError:
            return DeleteResult(name, "absent")
        except ConflictError:
            continue
        return DeleteResult(name, "deleted")
    raise RefusedError(f"{name} kept moving while being deleted; run `cascade branch --pr {number} --delete` again")


def _marker_commit(catalog: BranchCatalog, scratch: str, base_hash: str, name: str, run_id: str, attempt: int) -> str:
    """Commit a creation marker for `name` on top of `base_hash` on branch `scratch` (made here); its hash."""
    catalog.create_ref(scratch, base_hash)
    marker = catalog.commit_meta(
        scratch,
        f"branch for run {run_id}",
        {
            KIND: MetaKind.BRANCH,
            BRANCH: name,
            RUN_ID: run_id,
            ATTEMPT: str(attempt),
            BASE_HASH: base_hash,
            CREATED_BY: CREATOR,
        },
        expected_hash=base_hash,
    )
    return marker.hash
