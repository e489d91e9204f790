"""kill -9 at every step of promote and gc, then the real command again: the state converges. On both backends.

The killed process is the real CLI with a catalog method wrapped to SIGKILL the process (tests/faults/killpoint.py);
no product code is changed. A kill `inside` a call dies in its atomic unit before it is published: the embedded
catalog's open SQLite transaction, or the private `cascade-scratch/<time>-<uuid>` branch a Nessie write is staged
on (left behind: invisible to every cascade command, it changes no result; gc sweeps it once it is an hour old).

After the kill: main is either where it was or exactly at the promoted head, never anything in between; the SQLite
file is sound; Nessie holds no scratch branch but the one an `inside` kill reported. After a normal rerun: promoted
exactly once, one prod tag at main's head; gc deleted the rest of the expired branches and touched nothing else
(not a running run's branch, not one written to meanwhile). Nessie stamps commit times itself, so gc judges ages
with `--now` 10 days on (on both backends). Nessie gc deletes on several threads, so a kill at the N-th delete may
find other threads' deletes landed too.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner

from cascade_ci.branch_state import KIND, RUN_ID, MetaKind
from cascade_ci.catalog import BranchCatalog, open_catalog
from cascade_ci.catalog.base import RefKind
from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.catalog.nessie import SCRATCH_PREFIX, NessieBranchCatalog
from cascade_ci.cli import cli
from cascade_ci.config import load_settings
from cascade_ci.naming import TAG_PREFIX
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.stages.validate import validate
from tests.fakes.http import FakeServer
from tests.faults.nessie_support import all_refs, ids_at, open_nessie, scratch_branches
from tests.faults.support import Done, assert_catalog_sound, cascade, cascade_killed_at

KILLED = -signal.SIGKILL
TABLE = "faults.readings"
RUN = "4242"


def on(kills: dict[str, list[str]]) -> list[Any]:
    """(backend, kill point) parameters from each backend's list of kill points."""
    return [pytest.param(backend, at, id=f"{backend}-{at}") for backend, points in kills.items() for at in points]


def store() -> closing[BranchCatalog]:
    """The catalog the `cascade` CLI opens with the test's environment."""
    return closing(open_catalog(load_settings()))


def leftovers(backend: str) -> dict[str, str]:
    """What killed commands left outside `list_refs`: Nessie's scratch branches, name -> head.

    The embedded catalog leaves nothing once its SQLite file is sound (checked here): a killed transaction rolls back.
    """
    if backend == "local":
        assert_catalog_sound(load_settings().home)
        return {}
    with open_nessie() as catalog:
        return scratch_branches(catalog)


def left_scratch(killed: Done) -> str | None:
    """The scratch branch an `inside` kill on Nessie reports it left behind."""
    found = re.search(r"\(left (cascade-scratch/[0-9a-f-]+)\)", killed.stderr)
    return found.group(1) if found else None


def rows(*ids: int) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64())})


def promotion_records(catalog: BranchCatalog, ref: str, run_id: str) -> list[str]:
    return [
        c.hash
        for c in catalog.log(ref)
        if c.properties.get(KIND) == MetaKind.PROMOTION and c.properties.get(RUN_ID) == run_id
    ]


@pytest.fixture
def validated_run(backend: str) -> dict[str, str]:
    """main holds rows 1, 2; run RUN's branch adds 3, 4 and carries a passing verdict."""
    settings = load_settings()
    with store() as catalog:
        tables = catalog.tables("main")
        tables.create_namespace("faults")
        tables.create_table(TABLE, rows(0).schema).append(rows(1, 2))
        branch = create_run_branch(settings, catalog, RUN).branch
        catalog.tables(branch).load_table(TABLE).append(rows(3, 4))
        verdict = validate(settings, catalog, RUN, gates=["schema"])
        assert not verdict.blocked
        return {
            "main_before": catalog.get_ref("main").hash,
            "branch": branch,
            "validated": verdict.validated_hash,
            "head": catalog.get_ref(branch).hash,
        }


# Every step of `cascade promote` that changes the catalog, killed before, inside and after: the private scratch
# branch at the head (create_ref 1), the promotion record on it (commit_meta 1), main's fast-forward to the record
# (fast_forward 1), the scratch branch dropped (delete_ref 1), the run's branch moved to the record (assign 1),
# the tag (create_ref 2).
PROMOTE_KILLS = {
    "local": [
        "create_ref:1:after",  # a scratch branch at the head; nothing else
        "commit_meta:1:before",
        "commit_meta:1:inside",  # the record's transaction dies uncommitted
        "commit_meta:1:after",  # the record is on the scratch branch only; main not moved
        "fast_forward:1:before",
        "fast_forward:1:inside",  # main's update dies uncommitted
        "fast_forward:1:after",  # main at the record; the run's branch not moved yet; no tag
        "delete_ref:1:before",
        "assign:1:before",
        "assign:1:inside",
        "assign:1:after",  # the run's branch at the record; no tag yet
        "create_ref:2:before",  # the tag is never created
        "create_ref:2:inside",  # the tag's transaction dies uncommitted
        "create_ref:2:after",  # tagged; the process died before answering
    ],
    "nessie": [
        "create_ref:1:after",  # the scratch branch at the head (the record is committed on it directly)
        "commit_meta:1:before",
        "commit_meta:1:after",
        "fast_forward:1:before",
        "fast_forward:1:after",
        "delete_ref:1:before",
        "assign:1:before",
        "assign:1:after",
        "create_ref:2:before",
        "create_ref:2:after",
    ],
}


@pytest.mark.parametrize(("backend", "kill_at"), on(PROMOTE_KILLS), indirect=["backend"])
def test_promote_killed_then_rerun_converges(backend: str, validated_run: dict[str, str], kill_at: str) -> None:
    killed = cascade_killed_at(kill_at, "promote", "--run-id", RUN, "--json")
    assert killed.returncode == KILLED, f"the kill point was not reached: {killed}"
    assert f"SIGKILL at {kill_at}" in killed.stderr

    left = leftovers(backend)
    with store() as catalog:
        main = catalog.get_ref("main").hash
        branch_head = catalog.get_ref(validated_run["branch"]).hash
        # Never half-updated: main is where it was, or at the promotion record on top of the validated head.
        if main != validated_run["main_before"]:
            record = catalog.log(main, limit=1)[0]
            assert record.properties.get(KIND) == MetaKind.PROMOTION and record.parent == validated_run["head"]
            assert branch_head in (validated_run["head"], main)
        else:
            assert branch_head == validated_run["head"], "the run's branch moved before main did"
        assert ids_at(catalog, "main", TABLE) == ([1, 2] if main == validated_run["main_before"] else [1, 2, 3, 4])
        tags = catalog.list_refs(TAG_PREFIX)
        assert all(tag.hash == main for tag in tags) and len(tags) <= 1
        # What a kill may leave on Nessie: scratch branches only, hidden from list_refs, published nowhere.
        assert not any(ref.name.startswith(SCRATCH_PREFIX) for ref in catalog.list_refs())
        assert all(name.startswith(SCRATCH_PREFIX) for name in left)
        if backend == "nessie" and kill_at.endswith(":inside"):
            assert left_scratch(killed) in left, (left, killed.stderr)

    rerun = cascade("promote", "--run-id", RUN, "--json")
    assert rerun.returncode == 0, str(rerun)
    result = rerun.json()
    assert result["action"] in ("promoted", "already-promoted")

    again = cascade("promote", "--run-id", RUN, "--json")  # converged: a further run changes nothing
    assert again.returncode == 0 and again.json()["action"] == "already-promoted", str(again)
    assert again.json()["tag"] == result["tag"]

    # The reruns left nothing of their own; the kill's leftover (if any) is still there.
    assert leftovers(backend) == left
    with store() as catalog:
        main = catalog.get_ref("main").hash
        assert main == catalog.get_ref(validated_run["branch"]).hash == result["main_after"]
        assert ids_at(catalog, "main", TABLE) == [1, 2, 3, 4]
        tags = catalog.list_refs(TAG_PREFIX)
        assert [(t.name, t.hash) for t in tags] == [(result["tag"], main)], "exactly one prod tag, at main's head"
        assert catalog.get_ref(result["tag"]).kind is RefKind.TAG
        # main moved by one fast-forward: the old head and the validated data are both in its history.
        assert catalog.is_ancestor(validated_run["main_before"], main)
        assert catalog.is_ancestor(validated_run["validated"], main)
        records = promotion_records(catalog, "main", RUN)
        # A record published before the kill is reused by the rerun; one that died uncommitted or only staged on
        # a scratch branch is not seen: promoted once, recorded once, whatever the kill point.
        assert records and records[0] == main and len(records) == 1, records
        record = json.loads(catalog.log(main, limit=1)[0].properties["cascade.promotion"])
        assert record["validated_hash"] == validated_run["validated"]
        assert record["main_before"] == validated_run["main_before"]


# -- gc --------------------------------------------------------------------------------------------

REPO = "octo-org/octo-repo"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "github"
EXPIRED = ("7001", "7002", "7004", "7005", "7006")  # validated (passed): kept 7 days, judged 10 days on
RECENT = ("7010", "7011")  # never validated: kept 14 days, so still within retention 10 days on
RUNNING = "7003"  # validated and 10 days old, but its workflow run is in progress
REATTEMPTED = "7006"  # expired, but its workflow is rerun after the kill (in progress again, writes an attempt)
NOW = (datetime.now(UTC) + timedelta(days=10)).isoformat()  # Nessie stamps commits itself: judge ages later on


def branch_of(run_id: str) -> str:
    return f"pipeline/run-{run_id}"


@pytest.fixture
def github_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """A fake GitHub API: run RUNNING (and any run passed to `.running()`) is in progress; others are 404."""
    with FakeServer() as server:
        template = json.loads(
            (FIXTURES / "workflow_run.json").read_text().replace("https://api.github.com", server.url)
        )

        def running(run_id: str) -> None:
            payload = {**template, "id": int(run_id), "status": "in_progress", "conclusion": None}
            server.route("GET", f"/repos/{REPO}/actions/runs/{run_id}", lambda req: (200, {}, payload))

        server.running = running  # type: ignore[attr-defined]
        running(RUNNING)
        monkeypatch.setenv("GITHUB_TOKEN", "ghs_faulttesttoken0123456789")
        monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
        monkeypatch.setenv("GITHUB_API_URL", server.url)
        yield server


@pytest.fixture
def gc_branches(backend: str) -> dict[str, str]:
    """The run branches above, a foreign branch and an old tag: every ref, name -> head."""
    settings = load_settings()
    with store() as catalog:
        for run_id in (*EXPIRED, RUNNING):
            create_run_branch(settings, catalog, run_id)
            assert not validate(settings, catalog, run_id, gates=["schema"]).blocked
        for run_id in RECENT:
            create_run_branch(settings, catalog, run_id)
        catalog.create_ref("pipeline/run-foreign", "main")  # not cascade-ci's: never touched
        catalog.create_ref("prod-20200101-000000", "main", kind=RefKind.TAG)
        return {ref.name: ref.hash for ref in catalog.list_refs()}


GC_KILLS = {
    "local": ["delete_ref:1:before", "delete_ref:1:after", "delete_ref:2:inside"],
    "nessie": ["delete_ref:1:before", "delete_ref:1:after", "delete_ref:2:before"],
}


@pytest.mark.parametrize(("backend", "kill_at"), on(GC_KILLS), indirect=["backend"])
def test_gc_killed_then_rerun_converges(
    backend: str, github_runs: FakeServer, gc_branches: dict[str, str], kill_at: str
) -> None:
    before = gc_branches
    killed = cascade_killed_at(kill_at, "gc", "--now", NOW, "--json")
    assert killed.returncode == KILLED, f"the kill point was not reached: {killed}"

    assert leftovers(backend) == {}
    with store() as catalog:
        after_kill = {ref.name: ref.hash for ref in catalog.list_refs()}
        concurrent = catalog.capabilities.concurrent_calls
    gone = set(before) - set(after_kill)
    assert gone <= {branch_of(r) for r in EXPIRED}, gone
    if concurrent:
        # Deletes other threads had sent may or may not have landed; the killed call's own is gone after it.
        assert len(gone) >= (1 if kill_at.endswith(":after") else 0), gone
    else:  # one delete at a time: exactly the deletes committed before the kill are gone
        assert len(gone) == (0 if kill_at.endswith(":1:before") else 1), gone
    assert all(after_kill[name] == before[name] for name in after_kill), "a surviving ref moved"

    # Meanwhile the workflow of an expired run is rerun: in progress again, and it writes to its branch.
    reattempted = branch_of(REATTEMPTED) in after_kill
    if reattempted:
        github_runs.running(REATTEMPTED)  # type: ignore[attr-defined]
        reattempt = cascade("branch", "--run-id", REATTEMPTED, "--attempt", "2", "--json")
        assert reattempt.returncode == 0 and reattempt.json()["action"] == "reused", str(reattempt)

    rerun = cascade("gc", "--now", NOW, "--json")
    assert rerun.returncode == 0, str(rerun)
    decisions = {d["branch"]: d for d in rerun.json()}
    for run_id in (RUNNING, *((REATTEMPTED,) if reattempted else ())):
        assert decisions[branch_of(run_id)]["action"] == "kept", decisions[branch_of(run_id)]
        assert decisions[branch_of(run_id)]["status"] == "running"
    assert decisions["pipeline/run-foreign"]["action"] == "skipped"
    assert all(decisions[branch_of(r)]["action"] == "kept" for r in RECENT)

    again = cascade("gc", "--now", NOW, "--json")  # converged: nothing more to delete
    assert again.returncode == 0, str(again)
    assert [d for d in again.json() if d["action"] == "deleted"] == []

    assert leftovers(backend) == {}
    with store() as catalog:
        final = {ref.name: ref.hash for ref in catalog.list_refs()}
    expected_gone = {branch_of(r) for r in EXPIRED if not (reattempted and r == REATTEMPTED)}
    assert set(before) - set(final) == expected_gone
    untouched = set(before) - expected_gone - ({branch_of(REATTEMPTED)} if reattempted else set())
    assert all(final[name] == before[name] for name in untouched), "gc touched a ref it had to keep"
    assert {branch_of(RUNNING), *(branch_of(r) for r in RECENT), "pipeline/run-foreign", "main"} <= set(final)
    assert "prod-20200101-000000" in final


# -- races and leftovers ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["local", "nessie"], indirect=True)
def test_gc_keeps_a_branch_written_between_its_judgement_and_its_delete(
    backend: str, gc_branches: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete is a compare-and-swap on the judged head: a branch that moved meanwhile is kept."""
    settings = load_settings()
    catalog_class = NessieBranchCatalog if backend == "nessie" else LocalBranchCatalog
    original = catalog_class.delete_ref
    raced: list[str] = []

    def delete_after_a_concurrent_attempt(self: BranchCatalog, name: str, expected_hash: str) -> None:
        if name == branch_of(REATTEMPTED) and not raced:
            raced.append(create_run_branch(settings, self, REATTEMPTED, attempt=2).head_hash)
        return original(self, name, expected_hash)

    monkeypatch.setattr(catalog_class, "delete_ref", delete_after_a_concurrent_attempt)
    result = CliRunner().invoke(cli, ["gc", "--now", NOW, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    decisions = {d["branch"]: d for d in json.loads(result.stdout)}
    assert raced, "gc never tried to delete the expired branch"
    kept = decisions[branch_of(REATTEMPTED)]
    assert kept["action"] == "kept" and kept["reason"].startswith("changed meanwhile"), kept
    with store() as catalog:
        assert catalog.get_ref(branch_of(REATTEMPTED)).hash == raced[0]
        refs = {ref.name for ref in catalog.list_refs()}
    assert refs & {branch_of(r) for r in EXPIRED} == {branch_of(REATTEMPTED)}


@pytest.mark.parametrize("backend", ["nessie"], indirect=True)
def test_gc_deletes_scratch_branches_left_by_a_kill(backend: str, validated_run: dict[str, str]) -> None:
    killed = cascade_killed_at("fast_forward:1:before", "promote", "--run-id", RUN, "--json")
    assert killed.returncode == KILLED, str(killed)
    with open_nessie() as catalog:
        assert scratch_branches(catalog), "the killed promotion left no scratch branch"
    assert cascade("promote", "--run-id", RUN, "--json").returncode == 0
    gc = cascade("gc", "--now", NOW, "--json")
    assert gc.returncode == 0, str(gc)
    with open_nessie() as catalog:
        assert scratch_branches(catalog) == {}, "the scratch branch of the killed promotion is still there"
        assert all_refs(catalog)["main"] == catalog.get_ref("main").hash
