"""Promote stage: fast-forward main to a validated branch head and tag it. Never a reset.

Promotion is allowed only when the newest verdict on the branch passed and judged exactly the data
at the head (only cascade metadata commits after it). Main must not have moved since the fork: the
fast-forward is a compare-and-swap on main's head plus an ancestry check, so of several concurrent
promotions exactly one lands and the others are refused with main untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cascade_ci.branch_state import KIND, RUN_ID, MetaKind, read_branch
from cascade_ci.catalog.base import RefKind
from cascade_ci.errors import ConflictError, RefusedError
from cascade_ci.naming import TAG_PREFIX, branch_name, promotion_tag

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog, Commit
    from cascade_ci.config import Settings

PROMOTION = "cascade.promotion"


@dataclass(frozen=True)
class PromotionResult:
    action: str  # promoted | already-promoted | would-promote
    branch: str
    main_before: str
    main_after: str
    tag: str | None
    message: str

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


def promote(
    settings: Settings,
    catalog: BranchCatalog,
    run_id: str,
    dry_run: bool = False,
    provenance: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> PromotionResult:
    """Publish run `run_id`'s validated data to main, or raise RefusedError saying why not."""
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
    if not catalog.is_ancestor(main.hash, head):
        raise RefusedError(
            f"{main_name} moved since {name} forked (main head {main.hash[:12]} is not in the branch's history); "
            f"merge {main_name} into the branch and validate again"
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
        raise RefusedError(f"{main_name} moved while promoting {name}; nothing was changed: {e}") from e
    tag = _tag(catalog, promoted.hash, clock())
    return PromotionResult("promoted", name, main.hash, promoted.hash, tag, f"{main_name} now at {name}, tagged {tag}")
