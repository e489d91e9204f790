"""`cascade gc --files` on the embedded catalog: retention of main's history and tags, mark and sweep.

The safety property (hypothesis): after random histories of branches, appends, rebuilds, promotions,
rollbacks, tags and deletions, a gc that expires and sweeps leaves every remaining ref's every table
reading back as before, every remaining commit readable, nothing unreferenced older than its cutoff,
and a write in progress during the gc commits and reads back whole. The world below is shared with the
Nessie test (tests/integration/nessie/test_storage_gc_nessie.py).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cascade_ci.branch_state import KIND, MetaKind
from cascade_ci.catalog.base import RefKind
from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.catalog.sweep import backend_for, key
from cascade_ci.cli import cli
from cascade_ci.config import load_settings
from cascade_ci.errors import AccessDeniedError, NotFastForwardError, NotFoundError
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.stages.gc import GcDecision, collect_storage
from cascade_ci.stages.retention import judge_tags, retained_history
from cascade_ci.stages.rollback import rollback

# Weighted by repetition: most steps write, promote or let time pass.
STEPS = ("branch", "append", "append", "rebuild", "promote", "promote", "rollback", "tag", "delete", "wait", "wait")
RETENTION = {
    "main_retention_days": 2,
    "main_retention_promotions": 1,
    "tag_retention_days": 2,
    "tag_retention_count": 1,
    "gc_grace_hours": 0,
}
histories = st.lists(st.tuples(st.sampled_from(STEPS), st.integers(0, 7)), min_size=1, max_size=20)


@dataclass
class World:
    """A catalog and the refs a random history made on it (its own names: a Nessie server is shared)."""

    catalog: Any
    settings: Any
    prefix: str  # of every ref and namespace this world makes
    wait: Callable[[], None] = lambda: None  # let time pass (a catalog with its own clock)
    sync: Callable[[], None] = lambda: None  # bring that clock back to the wall clock
    branches: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    made: int = 0

    @property
    def main(self) -> str:
        return self.settings.main_branch

    @property
    def raw(self) -> str:
        return f"{self.prefix.replace('/', '_')}raw.readings"

    @property
    def mart(self) -> str:
        return f"{self.prefix.replace('/', '_')}marts.daily"

    @property
    def tag_prefix(self) -> str:
        return f"{self.prefix}prod-"

    def name(self, what: str) -> str:
        self.made += 1
        return f"{self.prefix}{what}{self.made}"

    def _write(self, ref: str, table: str, rows: pa.Table, replace: bool = False) -> None:
        tables = self.catalog.tables(ref)
        namespace = table.rsplit(".", 1)[0]
        if not tables.namespace_exists(namespace):
            tables.create_namespace(namespace)
        if not tables.table_exists(table):
            tables.create_table(table, rows.schema)
        if replace:
            tables.load_table(table).overwrite(rows)
        else:
            tables.load_table(table).append(rows)

    def step(self, kind: str, pick: int) -> None:
        """One step of a history; a step that makes no sense here (nothing to pick) does nothing."""
        if kind == "branch" or (not self.branches and kind not in ("wait", "rollback")):
            self.branches.append(self.catalog.create_ref(self.name("b"), self.main).name)
        branch = self.branches[pick % len(self.branches)] if self.branches else ""
        if kind == "wait":
            self.wait()
        elif kind == "append":
            first = self.made * 10
            self.made += 1
            self._write(branch, self.raw, pa.table({"id": pa.array(range(first, first + 1 + pick % 3), pa.int64())}))
        elif kind == "rebuild" and self.catalog.tables(branch).table_exists(self.raw):
            ids = self.catalog.tables(branch).load_table(self.raw).scan().to_arrow()["id"].to_pylist()
            self._write(branch, self.mart, pa.table({"rows": [len(ids)], "total": [sum(ids)]}), replace=True)
        elif kind == "promote":
            head = self.catalog.get_ref(branch)
            promoted = self.catalog.commit_meta(branch, "promote", {KIND: MetaKind.PROMOTION}, head.hash)
            try:
                self.catalog.fast_forward(self.main, promoted.hash, self.catalog.get_ref(self.main).hash)
            except NotFastForwardError:
                return  # main moved since the fork
            self.tags.append(self.catalog.create_ref(self.name("prod-"), promoted.hash, RefKind.TAG).name)
        elif kind == "rollback" and (promotions := [t for t in self.tags if t.startswith("prod-")]):
            tag = promotions[pick % len(promotions)]  # rollback restores promotion tags only
            if self.exists(tag):
                rollback(self.settings, self.catalog, tag)
        elif kind == "tag":
            self.tags.append(self.catalog.create_ref(self.name("keep"), branch, RefKind.TAG).name)
        elif kind == "delete" and branch:
            self.catalog.delete_ref(branch, self.catalog.get_ref(branch).hash)
            self.branches.remove(branch)

    def exists(self, ref: str) -> bool:
        try:
            self.catalog.get_ref(ref)
        except NotFoundError:
            return False
        return True

    def refs(self) -> list[str]:
        return [ref for ref in [self.main, *self.branches, *self.tags] if self.exists(ref)]

    def read(self, ref: str) -> dict[str, list[tuple]]:
        """Every table of the world at `ref` (a name or a commit hash), rows sorted."""
        tables = self.catalog.tables(ref)
        found = {}
        for table in (self.raw, self.mart):
            if tables.table_exists(table):
                rows = tables.load_table(table).scan().to_arrow().to_pylist()
                found[table] = sorted(tuple(sorted(row.items())) for row in rows)
        return found

    def referenced(self, commit: str) -> set[str]:
        """Every file a commit's tables need, found through pyiceberg's scan planning (not the sweep's reader)."""
        tables = self.catalog.tables(commit)
        found = set()
        for name in (self.raw, self.mart):
            if not tables.table_exists(name):
                continue
            table = tables.load_table(name)
            found.add(key(table.metadata_location))
            snapshot = table.current_snapshot()
            if snapshot is None:
                continue
            found.add(key(snapshot.manifest_list))
            found.update(key(m.manifest_path) for m in snapshot.manifests(table.io))
            for task in table.scan().plan_files():
                found.add(key(task.file.file_path))
                found.update(key(d.file_path) for d in task.delete_files)
        return found


@dataclass
class InFlight:
    """A write begun before the gc and committed after it."""

    branch: str
    table: Any
    rows: pa.Table
    transaction: Any

    @classmethod
    def begin(cls, world: World) -> InFlight:
        """A run's branch (its creation marker says when it began), then an append written but not committed."""
        world.sync()
        made = create_run_branch(world.settings, world.catalog, f"inflight{world.made}")
        world.branches.append(made.branch)
        world._write(made.branch, world.raw, pa.table({"id": pa.array([-1], pa.int64())}))
        table = world.catalog.tables(made.branch).load_table(world.raw)
        rows = pa.table({"id": pa.array([-2, -3], pa.int64())})
        transaction = table.transaction()
        transaction.append(rows)
        return cls(made.branch, table, rows, transaction)

    def decision(self, world: World) -> GcDecision:
        head = world.catalog.get_ref(self.branch).hash
        return GcDecision(self.branch, head, "running", 0.0, None, "kept", "its workflow run is in progress")

    def finish(self, world: World) -> None:
        self.transaction.commit_transaction()
        ids = sorted(world.catalog.tables(self.branch).load_table(world.raw).scan().to_arrow()["id"].to_pylist())
        assert ids[:3] == [-3, -2, -1], ids


def check_gc(world: World, history: list[tuple[str, int]], in_flight: bool, **gc: Any) -> Any:
    """Play `history`, gc with files, and check the safety property. Returns the gc's result."""
    for kind, pick in history:
        world.step(kind, pick)
    flight = InFlight.begin(world) if in_flight else None
    refs = world.refs()
    before = {ref: world.read(ref) for ref in refs}
    decisions = [flight.decision(world)] if flight else []
    result = collect_storage(world.settings, world.catalog, datetime.now(UTC), branches=decisions, **gc)
    deleted = {t.tag for t in result.tags if t.action == "deleted"}
    assert deleted <= {tag for tag in world.tags if tag.startswith(world.tag_prefix)}
    for ref in refs:
        if ref in deleted:
            assert not world.exists(ref)
        else:
            assert world.read(ref) == before[ref], ref
    live = set().union(*(world.referenced(commit) for commit in retained_commits(world, result)))
    report = result.files
    storage = backend_for(world.catalog).storage(gc.get("roots"))
    stale = {f.key for f in storage.files() if f.mtime < report.cutoff and f.key not in live}
    assert not stale, f"unreferenced files older than the cutoff remain: {sorted(stale)[:5]}"
    roots = tuple(gc.get("roots") or ("",))  # on a shared server, other tests' tables are not ours to judge
    assert report.failed == [] and [path for path in report.missing if path.startswith(roots)] == []
    if flight:
        flight.finish(world)
    event(f"freed files: {'some' if report.freed_files else 'none'}")
    event(f"expired commits: {'some' if report.expired_commits else 'none'}")
    event(f"deleted tags: {'some' if deleted else 'none'}")
    return result


def retained_commits(world: World, result: Any) -> set[str]:
    """Commits the gc promised to keep readable: main's retained history, each ref's head, branches to the fork."""
    catalog = world.catalog
    main_log = catalog.log(world.main)
    commits = {commit.hash for commit in main_log[: result.history_kept]}
    on_main = {commit.hash for commit in main_log}
    for ref in world.refs():
        for commit in catalog.log(ref, limit=None if ref not in world.tags else 1):
            commits.add(commit.hash)
            if commit.hash in on_main:
                break
    return commits


def local_world(home: Path, retention: dict[str, Any] = RETENTION) -> World:
    """An embedded catalog whose clock starts 40 days ago; `wait` moves it a day on."""
    moment = [datetime.now(UTC) - timedelta(days=40)]
    catalog = LocalBranchCatalog(home, clock=lambda: moment[0])
    world = World(catalog, load_settings(home=str(home), **retention), prefix="")
    world.wait = lambda: moment.__setitem__(0, moment[0] + timedelta(days=1))
    world.sync = lambda: moment.__setitem__(0, datetime.now(UTC))
    return world


def stored_commits(catalog: LocalBranchCatalog) -> list[str]:
    with sqlite3.connect(catalog.path) as db:
        return [row[0] for row in db.execute("SELECT hash FROM cascade_commits")]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories, in_flight=st.booleans())
def test_gc_keeps_every_ref_readable_and_leaves_nothing_unreferenced(history, in_flight):
    with tempfile.TemporaryDirectory() as folder:
        world = local_world(Path(folder) / "home")
        check_gc(world, history, in_flight, margin=timedelta(0))
        for commit in stored_commits(world.catalog):  # expiry removed the rest: each one left reads whole
            world.read(commit)
        world.catalog.close()


def runs(world: World, count: int) -> None:
    """`count` promoted runs a day apart, each appending to the raw table and rebuilding the mart."""
    for _ in range(count):
        world.step("wait", 0)
        world.step("branch", 0)
        world.step("append", 0)
        world.step("rebuild", 0)
        world.step("promote", 0)
        world.step("delete", 0)


def warehouse_files(world: World) -> set[str]:
    return {f.key for f in backend_for(world.catalog).storage(None).files()}


def test_gc_files_frees_what_rebuilt_marts_and_expired_history_held(tmp_path, monkeypatch):
    """The issue's measurement: runs rebuild their marts, main's history and tags pile up; `gc --files` frees them."""
    world = local_world(tmp_path / "home")
    runs(world, 7)
    main_before, files_before = world.read("main"), warehouse_files(world)
    for name, value in RETENTION.items():
        monkeypatch.setenv(name.upper(), str(value))
    dry = CliRunner().invoke(cli, ["gc", "--files", "--dry-run", "--json"], catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    assert warehouse_files(world) == files_before and len(world.catalog.list_refs("prod-")) == 7
    done = CliRunner().invoke(cli, ["gc", "--files", "--json"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    would, did = json.loads(dry.stdout), json.loads(done.stdout)
    assert did["files"]["freed_files"] == would["files"]["freed_files"] > 0
    assert did["history"]["expired_commits"] == would["history"]["expired_commits"] > 0
    assert [t["action"] for t in did["tags"]].count("deleted") == 6  # all but the newest: none is 2 days old
    files_after = warehouse_files(world)
    assert len(files_after) == len(files_before) - did["files"]["freed_files"]
    assert world.read("main") == main_before
    log = CliRunner().invoke(cli, ["log", "-n", "1000", "--json"], catch_exceptions=False)
    history = json.loads(log.stdout)
    assert len(history) == did["history"]["kept_commits"] and history[-1]["parents"] == []
    again = CliRunner().invoke(cli, ["gc", "--files", "--json"], catch_exceptions=False)
    assert json.loads(again.stdout)["files"]["freed_files"] == 0


def test_gc_without_permission_to_delete_tags_keeps_them_and_goes_on(tmp_path, monkeypatch):
    """The nightly gc runs as the writer: a tag deletion it is denied keeps that tag, says so, and exits 0."""
    world = local_world(tmp_path / "home")
    runs(world, 4)
    for name, value in RETENTION.items():
        monkeypatch.setenv(name.upper(), str(value))
    delete_ref = LocalBranchCatalog.delete_ref

    def denied_for_tags(self: LocalBranchCatalog, name: str, expected_hash: str) -> None:
        if name.startswith("prod-"):
            raise AccessDeniedError(f"'DELETE_REFERENCE' is not allowed on reference '{name}'")
        delete_ref(self, name, expected_hash)

    monkeypatch.setattr(LocalBranchCatalog, "delete_ref", denied_for_tags)
    done = CliRunner().invoke(cli, ["gc", "--files", "--json"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    tags = {t["tag"]: t for t in json.loads(done.stdout)["tags"]}
    assert set(tags) == set(world.tags) and all(t["action"] == "kept" for t in tags.values())
    denied = [t for t in tags.values() if "no permission to delete tags" in t["reason"]]
    assert len(denied) == 3  # every expired tag was tried, not only the first
    assert all("run gc with the promoter identity" in t["reason"] for t in denied)
    assert len(world.catalog.list_refs("prod-")) == 4
    for tag in world.tags:  # what a kept tag points to is still readable
        assert world.catalog.tables(tag).table_exists(world.raw)


def test_a_tag_a_rollback_restored_is_kept_and_can_be_rolled_back_to_again(tmp_path):
    world = local_world(tmp_path / "home")
    runs(world, 4)
    oldest = world.tags[0]
    world.step("wait", 0)
    rollback(world.settings, world.catalog, oldest)
    rolled = world.read("main")
    result = collect_storage(world.settings, world.catalog, datetime.now(UTC))
    kept = {t.tag: t.reason for t in result.tags if t.action == "kept"}
    assert kept == {world.tags[3]: "the newest tag", oldest: "a rollback on main restored it"}
    runs(world, 1)
    assert world.read("main") != rolled
    rollback(world.settings, world.catalog, oldest)
    assert world.read("main") == rolled


def test_files_younger_than_the_grace_period_stay(tmp_path):
    """Unreferenced files are swept only once older than GC_GRACE_HOURS; age is the file's own time."""
    world = local_world(tmp_path / "home", {**RETENTION, "gc_grace_hours": 24})
    runs(world, 3)
    old = datetime.now(UTC) - timedelta(hours=30)
    for path in warehouse_files(world):
        os.utime(path, (old.timestamp(), old.timestamp()))
    flight = InFlight.begin(world)  # written now: younger than the grace period, and not committed
    result = collect_storage(world.settings, world.catalog, datetime.now(UTC))
    assert result.files.freed_files > 0 and result.files.young_files > 0
    flight.finish(world)


def test_a_write_in_progress_is_protected_by_its_run_and_lost_without_it(tmp_path):
    """With no grace period, only the running run holds the cutoff back: without it the write's files go."""
    for running in (True, False):
        world = local_world(tmp_path / f"home-{running}")
        runs(world, 2)
        flight = InFlight.begin(world)
        decisions = [flight.decision(world)] if running else []
        result = collect_storage(
            world.settings, world.catalog, datetime.now(UTC), branches=decisions, margin=timedelta(0)
        )
        assert result.files.freed_files > 0
        assert bool(result.files.in_progress) is running
        if running:
            flight.finish(world)
        else:
            with pytest.raises(FileNotFoundError):
                flight.finish(world)


def test_main_history_keeps_the_window_or_the_last_promotions_whichever_is_longer():
    from cascade_ci.catalog.base import Commit

    now = datetime(2026, 6, 1, tzinfo=UTC)

    def commit(days_ago: float, promotion: bool = False) -> Commit:
        properties = {KIND: MetaKind.PROMOTION} if promotion else {}
        return Commit(f"{days_ago}", (), now - timedelta(days=days_ago), "", properties)

    history = [commit(0.5), commit(1, True), commit(3), commit(4, True), commit(9, True), commit(20)]
    assert len(retained_history(history, now, days=2, promotions=1)) == 3  # the window and the state it opened on
    assert len(retained_history(history, now, days=2, promotions=2)) == 4
    assert len(retained_history(history, now, days=0, promotions=0)) == 1  # the head, always
    assert len(retained_history(history, now, days=2, promotions=4)) == 6  # fewer promotions than asked: all


def test_tags_keep_the_newest_the_restored_and_the_recent():
    from cascade_ci.catalog.base import Ref

    now = datetime(2026, 6, 1, tzinfo=UTC)
    tags = [(Ref(f"prod-{i}", RefKind.TAG, f"h{i}"), now - timedelta(days=10 * i)) for i in range(5)]
    judged = {d.tag: d.action for d in judge_tags(tags, now, days=15, count=0, protected={"h3"})}
    assert judged == {"prod-0": "kept", "prod-1": "kept", "prod-2": "expired", "prod-3": "kept", "prod-4": "expired"}
    judged = {d.tag: d.action for d in judge_tags(tags, now, days=0, count=3, protected=set())}
    assert [judged[f"prod-{i}"] for i in range(5)] == ["kept", "kept", "kept", "expired", "expired"]
