"""Promote stage: fast-forward main to a validated branch head and tag it. Never a reset.

Promotion is allowed only when the newest verdict on the branch passed and judged exactly the data
at the head (only cascade metadata commits after it). Main must not have moved since the fork: main's
head must be on the branch's first-parent line with no merge commit above it (so main stays one line:
every earlier promotion and its tag stay on main's first-parent history), and the fast-forward is a
compare-and-swap on main's head, so of several concurrent promotions exactly one lands and the others
are refused with main untouched.

With `update`, a promotion refused because main moved brings the branch up to date instead
(`stages.update`: re-based onto main's head, transform re-run, validated again) and tries again, a
bounded number of times with jittered backoff, then refuses saying why.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cascade_ci.branch_state import FIRST_PAGE, HISTORY_LIMIT, KIND, RUN_ID, MetaKind, read_branch
from cascade_ci.catalog.base import RefKind
from cascade_ci.errors import ConflictError, RefusedError
from cascade_ci.naming import PR_PREFIX, TAG_PREFIX, branch_name, is_pr_branch, promotion_tag

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog, Commit
    from cascade_ci.config import Settings
    from cascade_ci.verdict import Verdict

PROMOTION = "cascade.promotion"
UPDATE_ATTEMPTS = 5  # promotion tries with --update; an update happens before each but the first
BACKOFF_S = 0.5  # the first wait after main moved again; doubled each time, jittered, capped
BACKOFF_CAP_S = 8.0


class _MainMoved(Exception):  # a signal inside this module; callers get a RefusedError
    """Main is no longer where the branch forked, or moved while promoting: `update` brings the branch up to date."""


@dataclass(frozen=True)
class PromotionResult:
    action: str  # promoted | already-promoted | would-promote | would-update
    branch: str
    main_before: str
    main_after: str
    tag: str | None
    message: str
    updates: int = 0  # times the branch was brought up to date (and validated again) before it landed

    def outputs(self) -> dict[str, str]:
        return {key: "" if value is None else str(value) for key, value in asdict(self).items()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _records_promotion_onto(commit: Commit, main_hash: str) -> bool:
    """True if `commit` is a promotion record written for main's current head."""
    if commit.properties.get(KIND) != MetaKind.PROMOTION:
        return False
    return json.loads(commit.properties.get(PROMOTION, "{}")).get("main_before") == main_hash


def _tag_for(catalog: BranchCatalog, commit_hash: str) -> str | None:
    return next((ref.name for ref in catalog.list_refs(TAG_PREFIX) if ref.hash == commit_hash), None)


def _tag(catalog: BranchCatalog, commit_hash: str, now: datetime) -> str:
    """Tag `commit_hash` with a fresh `prod-*` name, retrying on a name taken concurrently."""
    taken = {ref.name for ref in catalog.list_refs(TAG_PREFIX)}
    from cascade_ci.errors import AlreadyExistsError

    for _ in range(100):
        name = promotion_tag(now, lambda candidate: candidate in taken)
        try:
            catalog.create_ref(name, commit_hash, RefKind.TAG)
            return name
        except AlreadyExistsError:
            taken.add(name)
    raise ConflictError("could not find a free promotion tag name")


def _linear_onto(catalog: BranchCatalog, main_hash: str, head: str) -> bool:
    """True if `main_hash` is on `head`'s first-parent line and no commit above it is a merge."""
    for limit in (FIRST_PAGE, HISTORY_LIMIT):
        history = catalog.log(head, limit=limit)
        for commit in history:
            if commit.hash == main_hash:
                return True
            if len(commit.parents) > 1:
                return False
            if commit.parents and commit.parents[0] == main_hash:  # main at a root no log lists (a new Nessie)
                return True
        if len(history) < limit:
            return False
    return False


def _backoff(retry: int) -> float:
    """Seconds to wait before the `retry`-th update after main moved again: exponential, capped, jittered."""
    return min(BACKOFF_CAP_S, BACKOFF_S * 2 ** (retry - 1)) * (0.5 + random.random())  # noqa: S311 (not crypto)


def promote(
    settings: Settings,
    catalog: BranchCatalog,
    run_id: str,
    dry_run: bool = False,
    provenance: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    *,
    update: bool = False,
    attempts: int = UPDATE_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    run_url: str | None = None,
    report: Callable[[Verdict], None] | None = None,
    allow_empty: bool = False,
) -> PromotionResult:
    """Publish run `run_id`'s validated data to main, or raise RefusedError saying why not.

    A branch whose last ingest failed or landed nothing is refused unless `allow_empty`.

    `update`: when main moved, bring the branch up to date and validate it again (`report` gets each new
    verdict), then promote; at most `attempts` tries.
    """
    if is_pr_branch(branch_name(run_id, settings.branch_prefix)):
        raise RefusedError(f"pull request branches ({PR_PREFIX}N) are never promoted; merge the pull request instead")
    if not allow_empty:
        read_branch(catalog, branch_name(run_id, settings.branch_prefix)).require_ingest("promote")
    if not update:
        try:
            return _promote_once(settings, catalog, run_id, dry_run, provenance, clock)
        except _MainMoved as moved:
            raise RefusedError(str(moved)) from moved.__cause__
    from cascade_ci.stages.update import UPDATED_FROM
    from cascade_ci.stages.update import update as update_branch

    updates = 0
    state = read_branch(catalog, branch_name(run_id, settings.branch_prefix))
    interrupted = state.created and UPDATED_FROM in state.created.properties and not state.verdict_is_current
    if interrupted and not dry_run:
        # an update stopped before its verdict (killed, or the gates could not run): finish it first
        update_branch(settings, catalog, run_id, run_url=run_url, report=report)
        updates += 1
    while True:
        try:
            return replace(_promote_once(settings, catalog, run_id, dry_run, provenance, clock), updates=updates)
        except _MainMoved as moved:
            if dry_run:
                main = catalog.get_ref(settings.main_branch).hash
                name = branch_name(run_id, settings.branch_prefix)
                text = f"{moved}; --update would bring {name} up to date, validate it again and promote it"
                return PromotionResult("would-update", name, main, main, None, text)
            if updates + 1 >= attempts:
                raise RefusedError(
                    f"{settings.main_branch} kept moving: the branch of run {run_id} was brought up to date "
                    f"{updates} time(s) and each time {settings.main_branch} moved again before it could land "
                    f"({attempts} tries; last: {moved}); nothing more was changed: "
                    f"run `cascade promote --update --run-id {run_id}` again"
                ) from moved
            if updates:
                sleep(_backoff(updates))
            update_branch(settings, catalog, run_id, run_url=run_url, report=report)
            updates += 1


def _promote_once(
    settings: Settings,
    catalog: BranchCatalog,
    run_id: str,
    dry_run: bool,
    provenance: Mapping[str, str] | None,
    clock: Callable[[], datetime],
) -> PromotionResult:
    """One promotion try; _MainMoved when main is not (or no longer) where the branch forked."""
    name = branch_name(run_id, settings.branch_prefix)
    main_name = settings.main_branch
    state = read_branch(catalog, name)
    main = catalog.get_ref(main_name)
    head = state.ref.hash

    if catalog.is_ancestor(head, main.hash):
        tag = _tag_for(catalog, head)
        if tag is None and not dry_run:
            tag = _tag(catalog, head, clock())  # a promotion interrupted before its tag: finish it
        return PromotionResult(
            "already-promoted", name, main.hash, main.hash, tag, f"{name} is already part of {main_name}; nothing to do"
        )
    if state.verdict is None or state.verdict_commit is None:
        raise RefusedError(f"{name} has no verdict; run `cascade validate --run-id {run_id}` first")
    if not state.verdict_is_current:
        raise RefusedError(
            f"{name} changed after its verdict (validated {state.verdict.validated_hash[:12]}, head {head[:12]}); "
            "validate again"
        )
    if state.verdict.blocked:
        raise RefusedError(f"{name} is blocked by its verdict ({state.verdict.errors} errors); see reports/summary.md")
    judged = {gate.gate for gate in state.verdict.gates}
    missing = [gate for gate in settings.promotion_gates if gate not in judged]
    if missing:
        raise RefusedError(
            f"{name}'s verdict did not run the gate(s) promotion requires: {', '.join(missing)}; "
            f"run `cascade validate --run-id {run_id}` with every required gate"
        )
    if not _linear_onto(catalog, main.hash, head):
        raise _MainMoved(
            f"{main_name} moved since {name} forked ({main_name} head {main.hash[:12]} is not on the branch's "
            f"first-parent history, or a merge commit is): run `cascade promote --update --run-id {run_id}` "
            "to bring the branch up to date, validate it again and promote it"
        )
    if dry_run:
        return PromotionResult("would-promote", name, main.hash, head, None, f"{name} can be promoted to {main_name}")

    if _records_promotion_onto(state.head, main.hash):
        promoted = state.ref  # an earlier attempt wrote this record and stopped before the fast-forward
    else:
        record = {"run_id": run_id, "validated_hash": state.verdict.validated_hash, "main_before": main.hash}
        record.update(provenance or {})
        promoted = catalog.commit_meta(
            name,
            f"promote run {run_id} to {main_name}",
            {KIND: MetaKind.PROMOTION, RUN_ID: run_id, PROMOTION: json.dumps(record, sort_keys=True)},
            expected_hash=head,
        )
    try:
        catalog.fast_forward(main_name, promoted.hash, expected_target_hash=main.hash)
    except ConflictError as e:
        raise _MainMoved(f"{main_name} moved while promoting {name}; {main_name} was not changed: {e}") from e
    tag = _tag(catalog, promoted.hash, clock())
    return PromotionResult("promoted", name, main.hash, promoted.hash, tag, f"{main_name} now at {name}, tagged {tag}")
