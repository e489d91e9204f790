"""kill -9 at every step of promote and gc, then the real command again: the state converges.

The killed process is the real CLI with a `LocalBranchCatalog` method wrapped to SIGKILL the process
(tests/faults/killpoint.py); no product code is changed. After the kill: main is either where it was
or exactly at the promoted head, the SQLite file is sound, no ref points at a missing commit. After a
normal rerun: promoted exactly once, one prod tag at main's head; gc deleted the rest of the expired
branches and touched nothing else (not a running run's branch, not one written to meanwhile).
"""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from cascade_ci.catalog.base import RefKind
from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.naming import TAG_PREFIX
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.stages.meta import KIND, RUN_ID, MetaKind
from cascade_ci.stages.validate import validate
from tests.fakes.http import FakeServer
from tests.faults.support import assert_catalog_sound, cascade, cascade_killed_at

KILLED = -signal.SIGKILL
TABLE = "faults.readings"
RUN = "4242"


def rows(*ids: int) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64())})


def ids_at(catalog: LocalBranchCatalog, ref: str) -> list[int]:
    tables = catalog.tables(ref)
    if not tables.table_exists(TABLE):
        return []
    return sorted(tables.load_table(TABLE).scan().to_arrow()["id"].to_pylist())


def promotion_records(catalog: LocalBranchCatalog, ref: str, run_id: str) -> list[str]:
    return [
        c.hash
        for c in catalog.log(ref)
        if c.properties.get(KIND) == MetaKind.PROMOTION and c.properties.get(RUN_ID) == run_id
    ]


@pytest.fixture
def validated_run(settings, monkeypatch):
    """main holds rows 1, 2; run RUN's branch adds 3, 4 and carries a passing verdict."""
    monkeypatch.setenv("CASCADE_GATES", "schema")
    with LocalBranchCatalog(settings.home) as catalog:
        tables = catalog.tables("main")
        tables.create_namespace("faults")
        tables.create_table(TABLE, rows(0).schema).append(rows(1, 2))
        branch = create_run_branch(settings, catalog, RUN).branch
        catalog.tables(branch).load_table(TABLE).append(rows(3, 4))
        verdict = validate(settings, catalog, RUN, gates=["schema"])
        assert not verdict.blocked
        return {"main_before": catalog.get_ref("main").hash, "branch": branch, "validated": verdict.validated_hash}


# Every step of `cascade promote` that changes the catalog, killed before, inside (open transaction) and after.
PROMOTE_KILLS = [
    "commit_meta:1:before",  # nothing written yet
    "commit_meta:1:precommit",  # the promotion record's transaction dies uncommitted
    "commit_meta:1:after",  # the promotion record is on the branch; main not moved
    "fast_forward:1:precommit",  # main's update dies uncommitted
    "fast_forward:1:after",  # main moved; no tag yet
    "create_ref:1:precommit",  # the tag's transaction dies uncommitted
    "create_ref:1:after",  # tagged; the process died before answering
]


@pytest.mark.parametrize("kill_at", PROMOTE_KILLS)
def test_promote_killed_then_rerun_converges(settings, validated_run, kill_at):
    killed = cascade_killed_at(kill_at, "promote", "--run-id", RUN, "--json")
    assert killed.returncode == KILLED, f"the kill point was not reached: {killed}"
    assert f"SIGKILL at {kill_at}" in killed.stderr

    assert_catalog_sound(settings.home)
    with LocalBranchCatalog(settings.home) as catalog:
        main = catalog.get_ref("main").hash
        branch_head = catalog.get_ref(validated_run["branch"]).hash
        # Never half-updated: main is where it was, or at the branch's (fully written) head.
        assert main in (validated_run["main_before"], branch_head)
        assert ids_at(catalog, "main") == ([1, 2] if main == validated_run["main_before"] else [1, 2, 3, 4])
        tags = catalog.list_refs(TAG_PREFIX)
        assert all(tag.hash == main for tag in tags) and len(tags) <= 1

    rerun = cascade("promote", "--run-id", RUN, "--json")
    assert rerun.returncode == 0, str(rerun)
    result = rerun.json()
    assert result["action"] in ("promoted", "already-promoted")

    again = cascade("promote", "--run-id", RUN, "--json")  # converged: a further run changes nothing
    assert again.returncode == 0 and again.json()["action"] == "already-promoted", str(again)
    assert again.json()["tag"] == result["tag"]

    assert_catalog_sound(settings.home)
    with LocalBranchCatalog(settings.home) as catalog:
        main = catalog.get_ref("main").hash
        assert main == catalog.get_ref(validated_run["branch"]).hash == result["main_after"]
        assert ids_at(catalog, "main") == [1, 2, 3, 4]
        tags = catalog.list_refs(TAG_PREFIX)
        assert [(t.name, t.hash) for t in tags] == [(result["tag"], main)], "exactly one prod tag, at main's head"
        # main moved by one fast-forward: the old head and the validated data are both in its history.
        assert catalog.is_ancestor(validated_run["main_before"], main)
        assert catalog.is_ancestor(validated_run["validated"], main)
        records = promotion_records(catalog, "main", RUN)
        assert records and records[0] == main
        # A promotion record committed before a kill that stopped the fast-forward is reused by the rerun:
        # promoted once, recorded once, whatever the kill point.
        assert len(records) == 1, records
        record = json.loads(catalog.log(main, limit=1)[0].properties["cascade.promotion"])
        assert record["validated_hash"] == validated_run["validated"]


# -- gc --------------------------------------------------------------------------------------------

REPO = "octo-org/octo-repo"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "github"


@pytest.fixture
def github_runs(monkeypatch):
    """A fake GitHub API: run 7003 is still in progress; other run ids are unknown (404)."""
    with FakeServer() as server:
        payload = json.loads((FIXTURES / "workflow_run.json").read_text().replace("https://api.github.com", server.url))
        payload.update(id=7003, status="in_progress", conclusion=None)
        server.route("GET", f"/repos/{REPO}/actions/runs/7003", lambda req: (200, {}, payload))
        monkeypatch.setenv("GITHUB_TOKEN", "ghs_faulttesttoken0123456789")
        monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
        monkeypatch.setenv("GITHUB_API_URL", server.url)
        yield server


EXPIRED = ("7001", "7002", "7004", "7005", "7006")  # 30 days old, never validated: past 14 days
RECENT = ("7010", "7011")  # 1 day old
RUNNING = "7003"  # 30 days old, but its workflow run is in progress
REATTEMPTED = "7006"  # expired, but a rerun of it writes to the branch after the kill


@pytest.fixture
def gc_branches(settings):
    now = datetime.now(UTC)
    with LocalBranchCatalog(settings.home, clock=lambda: now - timedelta(days=30)) as old:
        for run_id in (*EXPIRED, RUNNING):
            create_run_branch(settings, old, run_id)
        old.create_ref("pipeline/run-foreign", "main")  # not cascade-ci's: never touched
        old.create_ref("prod-20200101-000000", "main", kind=RefKind.TAG)
    with LocalBranchCatalog(settings.home, clock=lambda: now - timedelta(days=1)) as recent:
        for run_id in RECENT:
            create_run_branch(settings, recent, run_id)
    with LocalBranchCatalog(settings.home) as catalog:
        return {ref.name: ref.hash for ref in catalog.list_refs()}


def branch_of(run_id: str) -> str:
    return f"pipeline/run-{run_id}"


@pytest.mark.parametrize("kill_at", ["delete_ref:1:before", "delete_ref:1:after", "delete_ref:2:precommit"])
def test_gc_killed_then_rerun_converges(settings, github_runs, gc_branches, kill_at):
    before = gc_branches
    killed = cascade_killed_at(kill_at, "gc", "--json")
    assert killed.returncode == KILLED, f"the kill point was not reached: {killed}"
    assert_catalog_sound(settings.home)

    with LocalBranchCatalog(settings.home) as catalog:
        after_kill = {ref.name: ref.hash for ref in catalog.list_refs()}
    gone = set(before) - set(after_kill)
    assert len(gone) == (0 if kill_at.endswith(":1:before") else 1), gone  # only committed deletes are gone
    assert gone <= {branch_of(r) for r in EXPIRED}
    assert all(after_kill[name] == before[name] for name in after_kill), "a surviving ref moved"

    # Meanwhile a rerun of an expired run writes to its branch (if gc has not deleted it yet).
    if branch_of(REATTEMPTED) in after_kill:
        reattempt = cascade("branch", "--run-id", REATTEMPTED, "--attempt", "2", "--json")
        assert reattempt.returncode == 0 and reattempt.json()["action"] == "reused", str(reattempt)

    rerun = cascade("gc", "--json")
    assert rerun.returncode == 0, str(rerun)
    decisions = {d["branch"]: d for d in rerun.json()}
    assert decisions[branch_of(RUNNING)]["action"] == "kept" and decisions[branch_of(RUNNING)]["status"] == "running"
    assert decisions["pipeline/run-foreign"]["action"] == "skipped"

    again = cascade("gc", "--json")  # converged: nothing more to delete
    assert again.returncode == 0, str(again)
    assert [d for d in again.json() if d["action"] == "deleted"] == []

    assert_catalog_sound(settings.home)
    with LocalBranchCatalog(settings.home) as catalog:
        final = {ref.name: ref.hash for ref in catalog.list_refs()}
    reattempted = branch_of(REATTEMPTED) in after_kill
    expected_gone = {branch_of(r) for r in EXPIRED if not (reattempted and r == REATTEMPTED)}
    assert set(before) - set(final) == expected_gone
    untouched = set(before) - expected_gone - ({branch_of(REATTEMPTED)} if reattempted else set())
    assert all(final[name] == before[name] for name in untouched), "gc touched a ref it had to keep"
    assert {branch_of(RUNNING), *(branch_of(r) for r in RECENT), "pipeline/run-foreign", "main"} <= set(final)
    assert "prod-20200101-000000" in final
