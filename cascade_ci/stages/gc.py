"""GC stage: delete pipeline branches past their retention; with `--files`, storage past retention too.

Only branches under the configured prefix, and pull request branches `pr/N`, that carry cascade-ci's creation
marker are candidates.
Passed and promoted runs are kept `BRANCH_RETENTION_DAYS`, failed or never-validated runs
`BRANCH_RETENTION_DAYS_FAILED`, counted from the branch's last commit. Deletes are compare-and-swap
on the head that was judged: a branch written to meanwhile is kept.

`collect_storage` then applies the retention of main's history and of `prod-*` tags (`stages.retention`)
and sweeps the warehouse (`catalog.sweep`): a file stays if a retained commit of any ref needs it, or if
it is younger than `GC_GRACE_HOURS`, or than the start of a write in progress (a pipeline run GitHub says
is running, a staging branch). What each ref retains: main its retained history; a tag its commit; any
other branch its own commits down to where it forked from main (the base its gates judge against).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cascade_ci.branch_state import RUN_ID, read_branch
from cascade_ci.catalog.base import RefKind
from cascade_ci.catalog.sweep import IN_PROGRESS_MARGIN, Chain, chain_until, sweep
from cascade_ci.errors import CascadeError, ConflictError, NotFoundError, ServiceUnavailableError
from cascade_ci.naming import PR_PREFIX, TAG_PREFIX, is_pr_branch
from cascade_ci.stages.retention import expire_tag, judge_tags, retained_history, rollback_targets, tag_time

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog, Ref
    from cascade_ci.catalog.sweep import SweepReport
    from cascade_ci.config import Settings
    from cascade_ci.github_api import RunStatus
    from cascade_ci.stages.retention import TagDecision


@dataclass(frozen=True)
class GcDecision:
    branch: str
    hash: str
    status: str  # promoted | passed | failed | unvalidated | running | unknown | foreign | leftover
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
    report: Callable[[GcDecision], None] | None = None,
) -> list[GcDecision]:
    """Judge every branch under the prefix; delete the expired ones unless `dry_run`.

    `runs` looks up a run id's workflow run (GitHub API): a run still in progress keeps its branch
    whatever its age, and a finished run's conclusion decides retention when no verdict was stored. A
    lookup that fails keeps that branch (status `unknown`, the reason says why) and the others go on.
    `report` receives each decision as it is made, so a deletion is told even if a later one fails.
    """
    main = catalog.get_ref(settings.main_branch)
    # Main moves only by fast-forwards and appended commits, so a promoted branch's head is on main's
    # first-parent history: read it once, not once per branch.
    published = {commit.hash for commit in catalog.log(main.hash)}

    def decide(ref: Ref) -> GcDecision:
        decision = judge(ref)
        if report is not None:
            report(decision)
        return decision

    def judge(ref: Ref) -> GcDecision:
        state = read_branch(catalog, ref.name)
        age = (now - state.last_activity).total_seconds() / 86400
        if not state.ours:
            return GcDecision(ref.name, ref.hash, "foreign", age, None, "skipped", "not created by cascade-ci")
        run_id = state.created.properties.get(RUN_ID) if state.created else None
        try:  # a pull request branch's id is the PR number, not a workflow run's
            run = runs(run_id) if runs and run_id and not is_pr_branch(ref.name) else None
        except CascadeError as e:  # GitHub could not say whether the run still writes: keep its branch
            reason = f"its workflow run could not be looked up, kept until GitHub answers: {e}"
            return GcDecision(ref.name, ref.hash, "unknown", age, None, "kept", reason)
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

    prefixes = dict.fromkeys([settings.branch_prefix, PR_PREFIX])  # pull request branches a closed PR left behind
    candidates = [
        ref
        for prefix in prefixes
        for ref in catalog.list_refs(prefix)
        if ref.kind is RefKind.BRANCH
        and ref.name != settings.main_branch
        and (prefix == settings.branch_prefix or is_pr_branch(ref.name))
    ]
    # Each branch is judged on its own: a remote catalog answers several at once.
    workers = GC_WORKERS if catalog.capabilities.concurrent_calls else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        decisions = list(pool.map(decide, candidates))
    if not dry_run:
        for ref in catalog.sweep_leftovers(now):
            leftover = GcDecision(
                ref.name, ref.hash, "leftover", 0.0, None, "deleted", "staging ref of an interrupted command"
            )
            decisions.append(leftover)
            if report is not None:
                report(leftover)
    return decisions


@dataclass(frozen=True)
class StorageResult:
    """What `collect_storage` kept and freed: main's retained history, each tag, the warehouse sweep."""

    history_kept: int
    oldest_kept: str
    oldest_kept_time: datetime
    tags: list[TagDecision]
    files: SweepReport

    def to_dict(self) -> dict[str, Any]:
        return {
            "history": {
                "kept_commits": self.history_kept,
                "oldest_kept": self.oldest_kept,
                "oldest_kept_time": self.oldest_kept_time.isoformat(),
                "expired_commits": self.files.expired_commits,
            },
            "tags": [tag.to_dict() for tag in self.tags],
            "files": self.files.to_dict(),
        }

    def outputs(self) -> dict[str, str]:
        """Step outputs: files and bytes freed (or, in a dry run, freeable), tags deleted."""
        tags = sum(tag.action in ("deleted", "would-delete") for tag in self.tags)
        return {
            "files-freed": str(self.files.freed_files),
            "bytes-freed": str(self.files.freed_bytes),
            "tags-deleted": str(tags),
            "commits-expired": str(self.files.expired_commits),
        }

    def summary(self) -> str:
        files, verb = self.files, "would be " if self.files.dry_run else ""
        text = (
            f"{files.freed_files} files ({_mib(files.freed_bytes)}) {verb}freed of {files.scanned_files} "
            f"({_mib(files.scanned_bytes)}); live {files.live_files} ({_mib(files.live_bytes)}), "
            f"younger than the cutoff {files.young_files} ({_mib(files.young_bytes)}), in {files.seconds:.1f} s"
        )
        return text + (f"; {len(files.failed)} could not be deleted" if files.failed else "")

    def lines(self) -> list[str]:
        """The tags, main's history and the sweep, a line each."""
        files = self.files
        found = [f"{tag.action:12} {tag.tag}  {tag.age_days:.1f} d old: {tag.reason}" for tag in self.tags]
        expired = "would expire" if files.dry_run else "expired"
        found.append(
            f"history      main keeps {self.history_kept} commit(s), back to {self.oldest_kept[:12]} "
            f"({self.oldest_kept_time:%Y-%m-%d %H:%M}); {files.expired_commits} commit(s) {expired}"
        )
        found += [f"in progress  {what}" for what in files.in_progress]
        found.append(f"files        cutoff {files.cutoff.isoformat()}: {self.summary()}")
        found += [f"missing      {path}" for path in files.missing]
        found += [f"failed       {path}" for path in files.failed]
        return found


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _writes_in_progress(catalog: BranchCatalog, branches: Sequence[GcDecision]) -> list[tuple[str, datetime]]:
    """Pipeline runs GitHub says are running, with the time their branch was made (their writes came after)."""
    found = []
    for decision in branches:
        if decision.status == "running":
            state = read_branch(catalog, decision.branch)
            since = (state.created or state.head).time
            found.append((f"{decision.branch}'s workflow run", since))
    return found


def collect_storage(
    settings: Settings,
    catalog: BranchCatalog,
    now: datetime,
    dry_run: bool = False,
    branches: Sequence[GcDecision] = (),
    *,
    wall: datetime | None = None,
    roots: Collection[str] | None = None,
    tag_prefix: str = TAG_PREFIX,
    margin: timedelta = IN_PROGRESS_MARGIN,
) -> StorageResult:
    """Expire tags and main's history past retention, then sweep warehouse files no retained commit needs.

    `now` judges retention; files are judged by the wall clock (`wall`, default: now), never later:
    `--now` in the future expires refs and history, not files a write may be about to commit. `branches`
    are the decisions `collect_garbage` just made: running runs hold the cutoff back, and in a dry run
    the branches it would delete count as gone. `roots` limit the sweep to parts of the warehouse.
    """
    main = catalog.get_ref(settings.main_branch)
    history = catalog.log(main.hash)
    kept = retained_history(history, now, settings.main_retention_days, settings.main_retention_promotions)
    tags = [(ref, tag_time(catalog, ref)) for ref in catalog.list_refs(tag_prefix) if ref.kind is RefKind.TAG]
    judged = judge_tags(tags, now, settings.tag_retention_days, settings.tag_retention_count, rollback_targets(kept))
    decided = [expire_tag(catalog, decision, dry_run) for decision in judged]
    gone = {d.tag for d in decided if d.action != "kept"} | {b.branch for b in branches if b.action == "would-delete"}
    on_main = {commit.hash for commit in history}
    chains = [Chain(main.name, tuple(commit.hash for commit in kept))]
    for ref in catalog.list_refs():
        if ref.name == main.name or ref.name in gone:
            continue
        chains.append(
            Chain(ref.name, (ref.hash,))
            if ref.kind is RefKind.TAG
            else chain_until(catalog, ref.name, ref.hash, on_main)
        )
    clock = min(now, wall or datetime.now(UTC))
    report = sweep(
        catalog,
        chains,
        clock - timedelta(hours=settings.gc_grace_hours),
        dry_run=dry_run,
        roots=roots,
        exclude=gone if dry_run else (),
        writes_since=_writes_in_progress(catalog, branches),
        margin=margin,
    )
    return StorageResult(len(kept), kept[-1].hash, kept[-1].time, decided, report)
