"""GC stage: delete pipeline branches past their retention; touch nothing else.

Only branches under the configured prefix that carry cascade-ci's creation marker are candidates.
Passed and promoted runs are kept `BRANCH_RETENTION_DAYS`, failed or never-validated runs
`BRANCH_RETENTION_DAYS_FAILED`, counted from the branch's last commit. Deletes are compare-and-swap
on the head that was judged: a branch written to meanwhile is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cascade_ci.branch_state import RUN_ID, read_branch
from cascade_ci.catalog.base import RefKind
from cascade_ci.errors import ConflictError, NotFoundError, ServiceUnavailableError

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog, Ref
    from cascade_ci.config import Settings
    from cascade_ci.github_api import RunStatus


@dataclass(frozen=True)
class GcDecision:
    branch: str
    hash: str
    status: str  # promoted | passed | failed | unvalidated | running | foreign | leftover
    age_days: float
    retention_days: int | None
    action: str  # deleted | would-delete | kept | skipped
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


GC_WORKERS = 8
RunLookup = Callable[[str], "RunStatus | None"]
PASSED_CONCLUSIONS = frozenset({"success"})


def _status(state: Any, published: set[str], run: RunStatus | None) -> str:
    """promoted > the stored verdict > the workflow run's conclusion > unvalidated."""
    if state.ref.hash in published:
        return "promoted"
    if state.verdict is not None:
        return "failed" if state.verdict.blocked else "passed"
    if run is not None and run.conclusion:
        return "passed" if run.conclusion in PASSED_CONCLUSIONS else "failed"
    return "unvalidated"


def collect_garbage(
    settings: Settings,
    catalog: BranchCatalog,
    now: datetime,
    dry_run: bool = False,
    runs: RunLookup | None = None,
) -> list[GcDecision]:
    """Judge every branch under the prefix; delete the expired ones unless `dry_run`.

    `runs` looks up a run id's workflow run (GitHub API): a run still in progress keeps its branch
    whatever its age, and a finished run's conclusion decides retention when no verdict was stored.
    """
    main = catalog.get_ref(settings.main_branch)
    # Main moves only by fast-forwards and appended commits, so a promoted branch's head is on main's
    # first-parent history: read it once, not once per branch.
    published = {commit.hash for commit in catalog.log(main.hash)}

    def decide(ref: Ref) -> GcDecision:
        state = read_branch(catalog, ref.name)
        age = (now - state.last_activity).total_seconds() / 86400
        if not state.ours:
            return GcDecision(ref.name, ref.hash, "foreign", age, None, "skipped", "not created by cascade-ci")
        run_id = state.created.properties.get(RUN_ID) if state.created else None
        run = runs(run_id) if runs and run_id else None
        if run is not None and run.in_progress:
            return GcDecision(ref.name, ref.hash, "running", age, None, "kept", "its workflow run is in progress")
        status = _status(state, published, run)
        keep_days = (
            settings.branch_retention_days
            if status in ("promoted", "passed")
            else settings.branch_retention_days_failed
        )
        if age <= keep_days:
            return GcDecision(ref.name, ref.hash, status, age, keep_days, "kept", "within retention")
        if dry_run:
            return GcDecision(ref.name, ref.hash, status, age, keep_days, "would-delete", "expired")
        try:
            catalog.delete_ref(ref.name, expected_hash=ref.hash)
        except (ConflictError, NotFoundError) as e:
            return GcDecision(ref.name, ref.hash, status, age, keep_days, "kept", f"changed meanwhile: {e}")
        except ServiceUnavailableError as e:  # one busy answer keeps one branch until the next run
            return GcDecision(ref.name, ref.hash, status, age, keep_days, "kept", f"catalog unavailable: {e}")
        return GcDecision(ref.name, ref.hash, status, age, keep_days, "deleted", "expired")

    candidates = [
        ref
        for ref in catalog.list_refs(settings.branch_prefix)
        if ref.kind is RefKind.BRANCH and ref.name != settings.main_branch
    ]
    # Each branch is judged on its own: a remote catalog answers several at once.
    workers = GC_WORKERS if catalog.capabilities.concurrent_calls else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        decisions = list(pool.map(decide, candidates))
    if not dry_run:
        decisions += [
            GcDecision(ref.name, ref.hash, "leftover", 0.0, None, "deleted", "staging ref of an interrupted command")
            for ref in catalog.sweep_leftovers(now)
        ]
    return decisions
