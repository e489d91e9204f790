"""Validate stage: run the gates on a branch head, store the verdict on the branch, write the reports."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cascade_ci import github
from cascade_ci.branch_state import KIND, VALIDATED_HASH, VERDICT, BranchState, MetaKind, read_branch
from cascade_ci.catalog.base import ChangeKind
from cascade_ci.errors import ConflictError, MovedError, RefusedError
from cascade_ci.gates import GateContext, run_gate
from cascade_ci.naming import branch_name
from cascade_ci.report import junit, markdown, outputs
from cascade_ci.verdict import TableDelta, Verdict

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from cascade_ci.catalog.base import BranchCatalog, TableChange
    from cascade_ci.config import Settings
    from cascade_ci.gates.base import Judged


def _rows(table: Table | None) -> int | None:
    if table is None:
        return None
    snapshot = table.current_snapshot()
    if snapshot is None:
        return 0
    total = snapshot.summary.additional_properties.get("total-records") if snapshot.summary else None
    return int(total) if total is not None else None


def table_deltas(catalog: BranchCatalog, base: str, head: str, changes: list[TableChange]) -> tuple[TableDelta, ...]:
    """Rows added/deleted and schema changes per changed table, from snapshot metadata (no data is read)."""
    from cascade_ci.catalog.lineage import lineage_since
    from cascade_ci.gates.schema_gate import compare_schemas

    before, after = catalog.tables(base), catalog.tables(head)
    deltas = []
    for change in changes:
        old = before.load_table(change.table) if change.kind is not ChangeKind.ADDED else None
        new = after.load_table(change.table) if change.kind is not ChangeKind.REMOVED else None
        schema = [c.text for c in compare_schemas(old.schema(), new.schema())] if old and new else []
        base_snapshot = old.current_snapshot() if old else None
        lineage = lineage_since(new, base_snapshot.snapshot_id if base_snapshot else None) if new else None
        deltas.append(
            TableDelta(
                table=change.table,
                change=str(change.kind),
                rows_before=_rows(old),
                rows_after=_rows(new),
                schema_changes=tuple(schema),
                rows_added=lineage.rows_added if lineage else None,
                rows_deleted=lineage.rows_deleted if lineage else None,
            )
        )
    return tuple(deltas)


def stage_states(state: BranchState, changes: list[TableChange], blocked: bool) -> dict[str, str]:
    """What the branch's history says about each stage, for the summary's diagram."""
    transform = (
        "done" if state.is_current(MetaKind.TRANSFORM)
        else "stale" if MetaKind.TRANSFORM in state.latest
        else "not run"
    )  # fmt: skip
    return {
        "branch": "done",
        "ingest": "done" if changes else "no change",
        "transform": transform,
        "validate": "blocked" if blocked else "passed",
        "promote": "blocked" if blocked else "ready",
    }


def validate(
    settings: Settings,
    catalog: BranchCatalog,
    run_id: str,
    gates: list[str] | None = None,
    run_url: str | None = None,
    full: bool = False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    allow_empty: bool = False,
    judged: Mapping[str, Judged] | None = None,
) -> Verdict:
    """Judge the branch head of run `run_id` and record the verdict as a commit on the branch.

    A branch whose last ingest failed or landed nothing is refused unless `allow_empty`.
    `judged`: what an earlier verdict found that still holds, per table (the update stage's; see `Judged`).
    """
    name = branch_name(run_id, settings.branch_prefix)
    state = read_branch(catalog, name)
    if not state.ours or state.base_hash is None:
        raise RefusedError(f"branch {name!r} was not created by cascade-ci; validate only judges pipeline branches")
    state.require_ingest("validate", allow_empty)
    started, t0 = clock(), time.perf_counter()
    head, base = state.ref.hash, state.base_hash
    changes = catalog.diff(base, head)
    with GateContext(settings, catalog, name, head, base, tuple(changes), state, full, started, judged or {}) as ctx:
        results = tuple(run_gate(gate, ctx) for gate in (gates or settings.gate_names))
    verdict = Verdict(
        run_id=run_id,
        attempt=state.attempt,
        branch=name,
        validated_hash=head,
        base_ref=settings.main_branch,
        base_hash=base,
        started_at=started.isoformat(),
        duration_s=round(time.perf_counter() - t0, 3),
        gates=results,
        changes=table_deltas(catalog, base, head, changes),
        run_url=run_url,
    )
    verdict = replace(verdict, stages=stage_states(state, changes, verdict.blocked))
    try:
        catalog.commit_meta(
            name,
            f"verdict {verdict.outcome}: {verdict.errors} errors, {verdict.warnings} warnings",
            {KIND: MetaKind.VERDICT, VERDICT: verdict.to_json(), VALIDATED_HASH: head},
            expected_hash=head,
        )
    except ConflictError as e:  # another writer moved the branch: this verdict judged data no longer at its head
        moved = f"the branch moved while validating; run validate again ({name} is no longer at {head[:12]})"
        raise MovedError(moved) from e
    return verdict


def publish(verdict: Verdict, reports_dir: Path, annotations: TextIO) -> dict[str, Path]:
    """Write junit.xml, summary.md (as posted), summary-full.md (every row) and verdict.json; feed the job
    summary, outputs and annotations."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    summary = markdown.render(verdict)
    paths = {
        "junit": reports_dir / "junit.xml",
        "summary": reports_dir / "summary.md",
        "summary_full": reports_dir / markdown.FULL_REPORT,
        "verdict": reports_dir / "verdict.json",
    }
    paths["junit"].write_text(junit.render(verdict), encoding="utf-8")
    paths["summary"].write_text(summary, encoding="utf-8")
    paths["summary_full"].write_text(markdown.render(verdict, full=True), encoding="utf-8")
    paths["verdict"].write_text(verdict.to_json(indent=2), encoding="utf-8")
    github.write_summary(summary)
    github.write_outputs({**outputs.render(verdict), **{f"{k}_path": str(p) for k, p in paths.items()}})
    annotate(verdict, annotations)
    return paths


Annotation = tuple[str, str, str, str | None, int | None]  # level, message, title, file, line


def _annotations(verdict: Verdict) -> list[Annotation]:
    """Gates that could not run (or none ran), then blocking checks, then warnings."""
    found: list[Annotation] = [
        ("error", gate.error or "", f"cascade {gate.gate} gate could not run", None, None)
        for gate in verdict.gates
        if gate.error is not None
    ]
    if not verdict.gates:
        found.append(("error", "no gate ran: a verdict without gates blocks", "cascade verdict", None, None))
    failing = sorted((c for c in verdict.checks if not c.passed), key=lambda c: not c.blocks)
    found += [
        ("error" if c.blocks else "warning", f"{c.table}: {c.message}", f"{c.gate}.{c.name}", c.file, c.line)
        for c in failing
    ]
    return found


def annotate(verdict: Verdict, stream: TextIO) -> None:
    """One `::error` per blocking check or gate that could not run, one `::warning` per warning, each level capped
    at GitHub's per-step display limit; then one `::notice` saying how many more there are."""
    if not github.RunContext.from_env().in_actions:
        return
    shown = {"error": 0, "warning": 0}
    left = {"error": 0, "warning": 0}
    for level, message, title, file, line in _annotations(verdict):
        if shown[level] < github.ANNOTATION_LIMIT:
            shown[level] += 1
            github.annotate(level, message, title=title, file=file, line=line, stream=stream)
        else:
            left[level] += 1
    if any(left.values()):
        more = " and ".join(f"{count:,d} more {level}s" for level, count in left.items() if count)
        github.annotate(
            "notice",
            f"... and {more}: GitHub shows {github.ANNOTATION_LIMIT} of each per step; see the job summary",
            title="cascade",
            stream=stream,
        )
