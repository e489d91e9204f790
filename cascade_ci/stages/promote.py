"""Promote stage: fast-forward main to a validated branch head and tag it. Never a reset.

Promotion is allowed only for a branch cascade-ci created whose newest verdict passed, ran every required
gate, and judged exactly the data at the head. "Exactly" is checked by content, not by commit labels:
every table at the head must be the one at the validated hash (same metadata location, so the same
snapshot and schema; a table added or removed is a change), so only commits that change no table may
follow the verdict. The same holds when the head is already part of main: a tag never lands on data no
verdict judged. Main must not have moved since the fork: main's
head must be on the branch's first-parent line with no merge commit above it (so main stays one line:
every earlier promotion and its tag stay on main's first-parent history), and the fast-forward is a
compare-and-swap on main's head, so of several concurrent promotions exactly one lands and the others
are refused with main untouched.

The promotion record is committed on a private scratch branch at the head, main is fast-forwarded to it,
and only then does the run's branch follow (a compare-and-swap): a refused promotion writes nothing. The
`prod-*` tag is named from the record's commit time and looked up by name, so promote reads only the
refs it needs (never the list of every ref), and a rerun finds the tag an interrupted run created.

With `update`, a promotion refused because main moved brings the branch up to date instead
(`stages.update`: re-based onto main's head, transform re-run, validated again) and tries again, a
bounded number of times with jittered backoff, then refuses saying why.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from cascade_ci.approval import require_approval
from cascade_ci.branch_state import FIRST_PAGE, HISTORY_LIMIT, KIND, RUN_ID, BranchState, MetaKind, read_branch
from cascade_ci.catalog.base import RefKind, scratch_branch
from cascade_ci.errors import AlreadyExistsError, ConflictError, NotFoundError, RefusedError
from cascade_ci.naming import PR_PREFIX, branch_name, is_pr_branch, promotion_tag

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


def _promotion_of(catalog: BranchCatalog, run_id: str, head: str, main_hash: str) -> Commit | None:
    """Run `run_id`'s promotion record on top of `head`, on main's first-parent history (down to `head`)."""
    for limit in (FIRST_PAGE, HISTORY_LIMIT):
        history = catalog.log(main_hash, limit=limit)
        for commit in history:
            if commit.hash == head:
                return None
            props = commit.properties
            if props.get(KIND) == MetaKind.PROMOTION and props.get(RUN_ID) == run_id and commit.parent == head:
                return commit
        if len(history) < limit:
            return None
    return None


def _tag(catalog: BranchCatalog, commit: Commit) -> str:
    """The `prod-*` tag of `commit`: named from its commit time, `-2`, `-3`... past names other commits hold.

    A tag of that name already at `commit` (an interrupted promotion made it) is the answer; only the
    candidate names are read, never the list of refs.
    """
    held: dict[str, str] = {}

    def taken(candidate: str) -> bool:
        try:
            held[candidate] = catalog.get_ref(candidate).hash
        except NotFoundError:
            return False
        return held[candidate] != commit.hash

    for _ in range(100):
        name = promotion_tag(commit.time, taken)
        if held.get(name) == commit.hash:
            return name
        try:
            catalog.create_ref(name, commit.hash, RefKind.TAG)
            return name
        except AlreadyExistsError:
            continue  # taken concurrently: look again
    raise ConflictError("could not find a free promotion tag name")


def _judged(settings: Settings, catalog: BranchCatalog, state: BranchState, run_id: str) -> Verdict:
    """The verdict that allows promoting `state`'s head, or RefusedError saying why there is none."""
    name, head = state.ref.name, state.ref.hash
    if not state.ours:
        raise RefusedError(f"{name!r} was not created by cascade-ci; only pipeline branches are promoted")
    verdict, commit = state.verdict, state.verdict_commit
    if verdict is None or commit is None:
        raise RefusedError(f"{name} has no verdict; run `cascade validate --run-id {run_id}` first")
    if verdict.validated_hash != commit.parent:
        raise RefusedError(f"{name}'s newest verdict does not name the commit it judged; validate again")
    changed = catalog.diff(verdict.validated_hash, head)
    if changed:
        tables = ", ".join(change.table for change in changed)
        raise RefusedError(
            f"{name} changed after its verdict (validated {verdict.validated_hash[:12]}, head {head[:12]}; "
            f"changed: {tables}); validate again"
        )
    if verdict.blocked:
        raise RefusedError(f"{name} is blocked by its verdict ({verdict.errors} errors); see reports/summary.md")
    judged = {gate.gate for gate in verdict.gates}
    missing = [gate for gate in settings.promotion_gates if gate not in judged]
    if missing:
        raise RefusedError(
            f"{name}'s verdict did not run the gate(s) promotion requires: {', '.join(missing)}; "
            f"run `cascade validate --run-id {run_id}` with every required gate"
        )
    return verdict


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
    *,
    update: bool = False,
    attempts: int = UPDATE_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    run_url: str | None = None,
    report: Callable[[Verdict], None] | None = None,
    allow_empty: bool = False,
) -> PromotionResult:
    """Publish run `run_id`'s validated data to main, or raise RefusedError saying why not.

    A branch whose last ingest failed or landed nothing is refused unless `allow_empty`. With `approvers` in
    the config, `provenance` must carry an approval (`approval.require_approval`).

    `update`: when main moved, bring the branch up to date and validate it again (`report` gets each new
    verdict), then promote; at most `attempts` tries.
    """
    if is_pr_branch(branch_name(run_id, settings.branch_prefix)):
        raise RefusedError(f"pull request branches ({PR_PREFIX}N) are never promoted; merge the pull request instead")
    if not dry_run:
        require_approval(settings.approvers, provenance)
    if not allow_empty:
        read_branch(catalog, branch_name(run_id, settings.branch_prefix)).require_ingest("promote")
    if not update:
        try:
            return _promote_once(settings, catalog, run_id, dry_run, provenance)
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
            return replace(_promote_once(settings, catalog, run_id, dry_run, provenance), updates=updates)
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
) -> PromotionResult:
    """One promotion try; _MainMoved when main is not (or no longer) where the branch forked."""
    name = branch_name(run_id, settings.branch_prefix)
    main_name = settings.main_branch
    state = read_branch(catalog, name)
    main = catalog.get_ref(main_name)
    head = state.ref.hash

    verdict = _judged(settings, catalog, state, run_id)
    # main strictly below the head on its line: not promoted yet (asked first: it needs no ancestry query)
    ahead = main.hash != head and _linear_onto(catalog, main.hash, head)
    if not ahead and catalog.is_ancestor(head, main.hash):
        return _already_promoted(catalog, state, run_id, main.hash, main_name, dry_run)
    if not ahead:
        raise _MainMoved(
            f"{main_name} moved since {name} forked ({main_name} head {main.hash[:12]} is not on the branch's "
            f"first-parent history, or a merge commit is): run `cascade promote --update --run-id {run_id}` "
            "to bring the branch up to date, validate it again and promote it"
        )
    if dry_run:
        return PromotionResult("would-promote", name, main.hash, head, None, f"{name} can be promoted to {main_name}")

    record = {"run_id": run_id, "validated_hash": verdict.validated_hash, "main_before": main.hash}
    record.update(provenance or {})
    with scratch_branch(catalog, head, name) as scratch:
        promoted = catalog.commit_meta(
            scratch,
            f"promote run {run_id} to {main_name}",
            {KIND: MetaKind.PROMOTION, RUN_ID: run_id, PROMOTION: json.dumps(record, sort_keys=True)},
            expected_hash=head,
        )
        try:
            catalog.fast_forward(main_name, promoted.hash, expected_target_hash=main.hash)
        except ConflictError as e:
            raise _MainMoved(f"{main_name} moved while promoting {name}; nothing was changed: {e}") from e
    _follow(catalog, name, head, promoted.hash)
    tag = _tag(catalog, catalog.log(promoted.hash, limit=1)[0])
    return PromotionResult("promoted", name, main.hash, promoted.hash, tag, f"{main_name} now at {name}, tagged {tag}")


def _follow(catalog: BranchCatalog, name: str, head: str, promoted: str) -> None:
    """Move the run's branch from `head` to its promotion record on main; a branch written meanwhile keeps its head."""
    with suppress(ConflictError):
        catalog.assign(name, promoted, expected_hash=head)


def _already_promoted(
    catalog: BranchCatalog, state: BranchState, run_id: str, main_hash: str, main_name: str, dry_run: bool
) -> PromotionResult:
    """The judged head is on main: finish what an interrupted promotion left (the branch's move, the tag)."""
    name, head = state.ref.name, state.ref.hash
    record = None
    if state.head.properties.get(KIND) != MetaKind.PROMOTION:
        record = _promotion_of(catalog, run_id, head, main_hash)
    target = record or state.head
    tag = None
    if not dry_run:
        if record is not None:
            _follow(catalog, name, head, record.hash)
        tag = _tag(catalog, target)
    message = f"{name} is already part of {main_name}; nothing to do"
    return PromotionResult("already-promoted", name, main_hash, main_hash, tag, message)
