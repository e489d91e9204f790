"""Update stage: bring a run's branch up to date with main after main moved, and judge it again.

The branch is re-based, never merged: its new history starts at main's head, so promoting it stays a
fast-forward and main's history stays one line. The new state is built on a private scratch branch forked
at main's head, in this order:
1. a creation marker of the run's branch naming main's head as its base (and the head it had before), so
   the branch reads as forked from there and `validate` judges only what the branch adds to main;
2. one commit carrying over the tables only the branch changed (a `restore` of just those tables);
3. for every table both sides changed by appends only, one fast append of the branch's appended data
   files onto main's version of the table (the same files: nothing rewritten, nothing copied).
Then the run's branch is moved there by a compare-and-swap on the head that was read (a write racing the
update makes it fail, changing nothing) and the scratch branch is dropped.

A table changed on both sides in any other way is a MergeConflictError naming the table and what each side
did, unless the project has a transform: then the table takes main's version, and the transform, re-run
on the updated branch, must rebuild it. Last, the gates judge the updated head: tables the branch only
appended to incrementally (the replayed rows, their keys against main's rows), whole tables where a gate
reads them. What `promote` then publishes is exactly what this verdict judged. The rows the branch appended
were judged by its verdict before the update, and are the same data files: where every check of a table
passed then, those checks are handed to the gates (`GateContext.judged`), and only what depends on main's
new rows (the keys) is judged again; pandera does not load for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from cascade_ci.branch_state import (
    ATTEMPT,
    BASE_HASH,
    BRANCH,
    CREATED_BY,
    CREATOR,
    INGEST,
    KIND,
    RUN_ID,
    MetaKind,
)
from cascade_ci.catalog.base import ChangeKind, scratch_name
from cascade_ci.errors import CatalogError, ConflictError, MergeConflictError, RefusedError
from cascade_ci.naming import branch_name

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

    from cascade_ci.branch_state import BranchState
    from cascade_ci.catalog.base import BranchCatalog, Ref, TableChange
    from cascade_ci.catalog.replay import Conflict, Replay
    from cascade_ci.config import Settings
    from cascade_ci.gates.base import Judged
    from cascade_ci.verdict import Check, Verdict

UPDATED_FROM = "cascade.updated-from"  # on the marker and each replayed snapshot: the branch head before
UPDATE = "cascade.update"  # on the marker: what the update did, as JSON


@dataclass(frozen=True)
class UpdatePlan:
    """What becomes of each table changed since the fork when the branch moves onto main's head."""

    carried: tuple[str, ...] = ()  # changed only on the branch: the branch's version
    replayed: Mapping[str, Replay] = field(default_factory=dict)  # appended on both sides
    rebuilt: Mapping[str, Conflict] = field(default_factory=dict)  # changed on both sides, left to the transform
    conflicts: Mapping[str, Conflict] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "carried": list(self.carried),
            "replayed": {table: replay.rows for table, replay in self.replayed.items()},
            "rebuilt": list(self.rebuilt),
        }


@dataclass(frozen=True)
class UpdateResult:
    action: str  # updated | validated | up-to-date | already-promoted
    branch: str
    base_before: str
    base_after: str
    head_before: str
    head_after: str
    carried: list[str] = field(default_factory=list)
    replayed: dict[str, int] = field(default_factory=dict)  # table -> rows replayed
    rebuilt: list[str] = field(default_factory=list)
    verdict: str | None = None  # passed | blocked, when the gates judged the updated head
    message: str = ""

    def outputs(self) -> dict[str, str]:
        def text(value: Any) -> str:
            return "" if value is None else value if isinstance(value, str) else json.dumps(value, sort_keys=True)

        return {key: text(value) for key, value in asdict(self).items()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _version(tables: Catalog, change: TableChange, absent: ChangeKind) -> Table | None:
    return None if change.kind is absent else tables.load_table(change.table)


def plan_update(catalog: BranchCatalog, base: str, head: str, onto: str, rebuildable: bool = False) -> UpdatePlan:
    """Decide, per table changed since `base`, how the branch at `head` lands on `onto` (main's head).

    `rebuildable`: the project's transform rebuilds its tables, so one changed on both sides is left to it.
    """
    from cascade_ci.catalog.replay import Replay, reconcile

    ours = {change.table: change for change in catalog.diff(base, head)}
    theirs = {change.table: change for change in catalog.diff(base, onto)}
    same = {table for table in ours.keys() & theirs.keys() if ours[table].to_location == theirs[table].to_location}
    both = sorted(ours.keys() & theirs.keys() - same)  # `same`: the branch already has main's version
    replayed: dict[str, Replay] = {}
    conflicts: dict[str, Conflict] = {}
    if both:
        at_base, at_head, at_main = catalog.tables(base), catalog.tables(head), catalog.tables(onto)
        for table in both:
            outcome = reconcile(
                _version(at_base, ours[table], ChangeKind.ADDED),
                _version(at_head, ours[table], ChangeKind.REMOVED),
                _version(at_main, theirs[table], ChangeKind.REMOVED),
            )
            if isinstance(outcome, Replay):
                replayed[table] = outcome
            else:
                conflicts[table] = outcome
    carried = tuple(sorted(ours.keys() - theirs.keys()))  # (what only main changed, the scratch has already)
    if rebuildable:  # main's version, rebuilt by the transform (which must build it: see `_rebuild`)
        return UpdatePlan(carried, replayed, rebuilt=conflicts)
    return UpdatePlan(carried, replayed, conflicts=conflicts)


def rebase(catalog: BranchCatalog, state: BranchState, onto: str, plan: UpdatePlan, marker: Mapping[str, str]) -> Ref:
    """Build the branch's new state on a scratch branch at `onto`, then move the branch there (compare-and-swap)."""
    from cascade_ci.catalog.replay import replay

    name, before = state.ref.name, state.ref.hash
    scratch = scratch_name(name)
    catalog.create_ref(scratch, onto)
    try:
        head = catalog.commit_meta(scratch, f"update {name} onto {onto[:12]}", marker, expected_hash=onto)
        if plan.carried:
            carried = f"carry {len(plan.carried)} table(s) changed only on {name}"
            head = catalog.restore(scratch, before, head.hash, carried, {UPDATED_FROM: before}, tables=plan.carried)
        if plan.replayed:
            tables = catalog.tables(scratch)
            for table, todo in plan.replayed.items():
                replay(tables.load_table(table), todo.files, {UPDATED_FROM: f"{name}@{before}"})
            head = catalog.get_ref(scratch)
        try:
            return catalog.assign(name, head.hash, expected_hash=before)
        except ConflictError as e:
            raise ConflictError(
                f"{name} was written to while it was being updated (head no longer {before[:12]}); "
                "nothing was changed: run the update again"
            ) from e
    finally:
        with suppress(CatalogError):  # a leftover is swept by `cascade gc` after an hour
            catalog.delete_ref(scratch, catalog.get_ref(scratch).hash)


def _conflict(
    name: str, main: str, run_id: str, conflicts: Mapping[str, Conflict], why: str = "not only by appends"
) -> MergeConflictError:
    found = "; ".join(f"{table}: the branch {c.branch}, {main} {c.main}" for table, c in sorted(conflicts.items()))
    return MergeConflictError(
        f"cannot update {name} onto {main}: changed on both sides since the fork, {why}: {found}. "
        f"Start the run afresh from {main} (`cascade branch --recreate --run-id {run_id}`) and run it again",
        sorted(conflicts),
    )


def _marker(state: BranchState, run_id: str, onto: str, plan: UpdatePlan) -> dict[str, str]:
    """The creation marker of the updated branch: the same branch and run, a new base."""
    created = state.created.properties if state.created else {}
    return {
        KIND: MetaKind.BRANCH,
        BRANCH: state.ref.name,
        RUN_ID: created.get(RUN_ID, run_id),
        ATTEMPT: str(state.attempt),
        BASE_HASH: onto,
        CREATED_BY: CREATOR,
        UPDATED_FROM: state.ref.hash,
        UPDATE: json.dumps({"base_before": state.base_hash, **plan.summary()}, sort_keys=True),
        **({INGEST: state.ingest.to_json()} if state.ingest else {}),  # the rejects gate still judges it
    }


def update(
    settings: Settings,
    catalog: BranchCatalog,
    run_id: str,
    *,
    run_url: str | None = None,
    report: Callable[[Verdict], None] | None = None,
) -> UpdateResult:
    """Re-base run `run_id`'s branch onto main's head, rebuild the transform's tables, and validate it again.

    A branch already on main's head is only validated, and only when its verdict is not current. `report`
    receives the new verdict (the CLI writes the reports with it).
    """
    from cascade_ci.branch_state import read_branch
    from cascade_ci.stages.validate import validate

    name = branch_name(run_id, settings.branch_prefix)
    main_name = settings.main_branch
    state = read_branch(catalog, name)
    if not state.ours or state.base_hash is None:
        raise RefusedError(f"branch {name!r} was not created by cascade-ci; update only moves pipeline branches")
    main, before, base = catalog.get_ref(main_name), state.ref.hash, state.base_hash
    unchanged = UpdateResult("up-to-date", name, base, base, before, before)
    if catalog.is_ancestor(before, main.hash):
        return replace(unchanged, action="already-promoted", message=f"{name} is already part of {main_name}")
    if main.hash == base and state.verdict_is_current:
        return replace(unchanged, message=f"{name} is up to date with {main_name} and its verdict is current")
    plan, judged = UpdatePlan(), {}
    if main.hash != base:
        plan = plan_update(catalog, base, before, main.hash, rebuildable=settings.transform is not None)
        if plan.conflicts:
            raise _conflict(name, main_name, run_id, plan.conflicts)
        rebased = rebase(catalog, state, main.hash, plan, _marker(state, run_id, main.hash, plan))
        if settings.transform is not None:
            _rebuild(settings, catalog, run_id, name, main_name, plan)
        judged = _judged(catalog, state, plan, rebased.hash)
    verdict = validate(settings, catalog, run_id, run_url=run_url, judged=judged)
    if report is not None:
        report(verdict)
    moved = main.hash != base
    summary = (
        f"{name} moved onto {main_name} at {main.hash[:12]}: {_described(plan)}; " if moved else f"{name}: "
    ) + f"verdict {verdict.outcome}"
    return UpdateResult(
        "updated" if moved else "validated",
        name,
        base,
        main.hash,
        before,
        catalog.get_ref(name).hash,
        list(plan.carried),
        {table: replay.rows for table, replay in plan.replayed.items()},
        list(plan.rebuilt),
        verdict.outcome,
        summary,
    )


def _judged(catalog: BranchCatalog, state: BranchState, plan: UpdatePlan, rebased: str) -> dict[str, Judged]:
    """What the branch's verdict from before the update found that may still hold after it, per table.

    Only a verdict that judged the old head against the old base counts. The rows the branch adds to a table it
    carried (main left it alone) or replayed (the same data files appended onto main's version) are the rows that
    verdict judged; a table the transform wrote after the re-base (`rebased`: the head before it ran) is not.
    """
    from cascade_ci.gates.base import Judged

    verdict = state.verdict
    if verdict is None or not state.verdict_is_current or verdict.base_hash != state.base_hash:
        return {}
    head = catalog.get_ref(state.ref.name).hash
    rewritten = {change.table for change in catalog.diff(rebased, head)} if head != rebased else set()
    rewritten |= set(plan.rebuilt)
    checks: dict[str, list[Check]] = {}
    for check in verdict.checks:
        checks.setdefault(check.table, []).append(check)
    return {
        table: Judged(tuple(found), verdict.validated_hash, verdict.base_hash, base_moved=table not in plan.carried)
        for table, found in checks.items()
        if table not in rewritten
    }


def _described(plan: UpdatePlan) -> str:
    parts = [f"replayed {replay.rows:,d} rows onto {table}" for table, replay in plan.replayed.items()]
    if plan.carried:
        parts.append(f"carried {', '.join(plan.carried)}")
    if plan.rebuilt:
        parts.append(f"rebuilt {', '.join(plan.rebuilt)}")
    return ", ".join(parts) or "nothing of the branch's to carry"


def _rebuild(settings: Settings, catalog: BranchCatalog, run_id: str, name: str, main: str, plan: UpdatePlan) -> None:
    """Re-run the transform on the updated branch; a table left to it that it did not build is a conflict."""
    from cascade_ci.stages.transform import transform

    built = transform(settings, catalog, run_id).rows
    missing = {table: conflict for table, conflict in plan.rebuilt.items() if table not in built}
    if missing:
        raise _conflict(name, main, run_id, missing, why="and the project's transform does not build them")
