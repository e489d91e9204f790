"""Branch stage: one zero-copy branch per workflow run, reused by its reruns."""

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
from cascade_ci.errors import AlreadyExistsError, NotFoundError, RefusedError
from cascade_ci.naming import branch_name, validate_attempt

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
        if not state.ours:
            raise RefusedError(f"branch {name!r} exists but was not created by cascade-ci; not touching it")
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
    try:
        catalog.create_ref(name, main.hash)
    except AlreadyExistsError as e:
        raise RefusedError(f"branch {name!r} was created concurrently by another process; rerun to reuse it") from e
    head = catalog.commit_meta(
        name,
        f"branch for run {run_id}",
        {
            KIND: MetaKind.BRANCH,
            BRANCH: name,
            RUN_ID: run_id,
            ATTEMPT: str(attempt),
            BASE_HASH: main.hash,
            CREATED_BY: CREATOR,
        },
        expected_hash=main.hash,
    )
    return BranchResult(name, main.hash, head.hash, attempt, "recreated" if state else "created")
