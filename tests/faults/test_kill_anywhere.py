"""`cascade ingest`, `validate` and `rollback` killed (SIGKILL) at each of their writes, on both backends: the
state after the kill is the old one or the new one, never a mix; the same command rerun converges; and
`cascade branch --recreate` then always recovers the run's branch. (`branch` is in test_kill_branch.py,
`promote` and `gc` in test_kill9.py; the cases of every command serve test_nessie_crash.py too.)

A point is `method:N:when` (tests/faults/killpoint.py): a catalog method, or a table write of the ref's
pyiceberg catalog (`commit_table`). Each command's list names every write it makes, in order; adding a
point adds a test.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cascade_ci.branch_state import KIND, MetaKind, read_branch
from cascade_ci.catalog import BranchCatalog, open_catalog
from cascade_ci.catalog.base import RefKind
from cascade_ci.config import load_settings
from cascade_ci.errors import NotFoundError
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.stages.ingest import ingest
from cascade_ci.stages.validate import validate
from tests.faults.nessie_support import ids_at
from tests.faults.support import assert_catalog_sound, cascade, cascade_killed_at

KILLED = -signal.SIGKILL
RUN = "6161"
BRANCH = f"pipeline/run-{RUN}"
PROJECT = """
[sources.orders]
files = "orders/*.csv"
table = "orders"
keys = { orders = ["id"] }

[sources.items]
files = "items/*.csv"
table = "items"
keys = { items = ["id"] }
"""


def store() -> closing[BranchCatalog]:
    return closing(open_catalog(load_settings()))


def rows(*ids: int) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64())})


def tables_at(catalog: BranchCatalog, ref: str) -> dict[str, list[int]]:
    return {table: ids_at(catalog, ref, table) for table in ("raw.orders", "raw.items")}


@dataclass(frozen=True)
class Case:
    """A command, the catalog it starts from, and what its end state is (before: None; after: a value)."""

    args: tuple[str, ...]
    prepare: Callable[[BranchCatalog], Any]
    observe: Callable[[BranchCatalog, Any], Any]  # the state the kill may leave: one of two values
    done: Callable[[BranchCatalog, Any], bool]  # true once the command's effect is complete


# -- ingest: two tables from two sources, on a branch that holds older rows of one -----------------------------


def prepare_ingest(catalog: BranchCatalog) -> Any:
    Path("cascade.toml").write_text(PROJECT)
    for folder, ids in (("orders", "1\n2\n"), ("items", "10\n")):
        Path(folder).mkdir()
        Path(folder, f"{folder}.csv").write_text("id\n" + ids)
    create_run_branch(load_settings(), catalog, RUN)
    return catalog.get_ref(BRANCH).hash


def observe_ingest(catalog: BranchCatalog, start: str) -> Any:
    return tables_at(catalog, BRANCH)


INGESTED = {"raw.orders": [1, 2], "raw.items": [10]}
NOTHING = {"raw.orders": [], "raw.items": []}


# -- validate: a branch with rows, judged by the schema gate ------------------------------------------------------


def prepare_validate(catalog: BranchCatalog) -> Any:
    tables = catalog.tables("main")
    tables.create_namespace("raw")
    tables.create_table("raw.orders", rows(0).schema).append(rows(1))
    create_run_branch(load_settings(), catalog, RUN)
    catalog.tables(BRANCH).load_table("raw.orders").append(rows(2))
    return catalog.get_ref(BRANCH).hash


def observe_validate(catalog: BranchCatalog, start: str) -> Any:
    """`judged` once the newest verdict judged the data at `start` (a rerun judges it again, one commit later)."""
    state = read_branch(catalog, BRANCH)
    judged = state.verdict is not None and catalog.diff(state.verdict.validated_hash, start) == []
    return "judged" if judged else "unjudged"


# -- rollback: main promoted twice, rolled back to the first tag --------------------------------------------------


def prepare_rollback(catalog: BranchCatalog) -> Any:
    settings = load_settings()
    tables = catalog.tables("main")
    tables.create_namespace("raw")
    tables.create_table("raw.orders", rows(0).schema).append(rows(1))
    promoted = catalog.commit_meta("main", "promote", {KIND: MetaKind.PROMOTION}, catalog.get_ref("main").hash)
    catalog.create_ref("prod-20200101-000000", promoted.hash, RefKind.TAG)  # rollback goes to promotions only
    create_run_branch(settings, catalog, "6160")
    catalog.tables("pipeline/run-6160").load_table("raw.orders").append(rows(2))
    assert not validate(settings, catalog, "6160", gates=["schema"]).blocked
    main = catalog.get_ref("main").hash
    catalog.fast_forward("main", catalog.get_ref("pipeline/run-6160").hash, main)
    create_run_branch(settings, catalog, RUN)  # the run whose branch --recreate must still work afterwards
    return catalog.get_ref("main").hash


def observe_rollback(catalog: BranchCatalog, before: str) -> Any:
    return ids_at(catalog, "main", "raw.orders")


# -- promote, branch, gc: the Nessie crash test (test_nessie_crash.py) runs them too ------------------------------


def prepare_promote(catalog: BranchCatalog) -> Any:
    settings = load_settings()
    prepare_validate(catalog)
    assert not validate(settings, catalog, RUN, gates=["schema"]).blocked
    return catalog.get_ref("main").hash


def observe_promote(catalog: BranchCatalog, start: str) -> Any:
    return ids_at(catalog, "main", "raw.orders")


def observe_branch(catalog: BranchCatalog, start: Any) -> Any:
    try:
        return "ours" if read_branch(catalog, BRANCH).ours else "foreign"
    except NotFoundError:
        return "absent"


EXPIRED = "6162"
GC_NOW = (datetime.now(UTC) + timedelta(days=10)).isoformat()  # Nessie stamps commit times: judge ages later on


def prepare_gc(catalog: BranchCatalog) -> Any:
    settings = load_settings()
    create_run_branch(settings, catalog, EXPIRED)  # validated, so kept 7 days: expired 10 days on
    assert not validate(settings, catalog, EXPIRED, gates=["schema"]).blocked
    create_run_branch(settings, catalog, RUN)  # never validated: kept 14 days
    return None


def observe_gc(catalog: BranchCatalog, start: Any) -> Any:
    return sorted(ref.name for ref in catalog.list_refs("pipeline/"))


CASES = {
    "ingest": Case(
        ("ingest", "--run-id", RUN), prepare_ingest, observe_ingest, lambda c, s: observe_ingest(c, s) == INGESTED
    ),
    "validate": Case(
        ("validate", "--run-id", RUN),
        prepare_validate,
        observe_validate,
        lambda c, s: observe_validate(c, s) == "judged",
    ),
    "rollback": Case(
        ("rollback", "--to", "prod-20200101-000000"),
        prepare_rollback,
        observe_rollback,
        lambda c, s: observe_rollback(c, s) == [1],
    ),
    "promote": Case(
        ("promote", "--run-id", RUN), prepare_promote, observe_promote, lambda c, s: observe_promote(c, s) == [1, 2]
    ),
    "branch": Case(
        ("branch", "--run-id", RUN), lambda c: None, observe_branch, lambda c, s: observe_branch(c, s) == "ours"
    ),
    "gc": Case(("gc", "--now", GC_NOW), prepare_gc, observe_gc, lambda c, s: observe_gc(c, s) == [BRANCH]),
}
# What each command may leave at a kill: the state before, or the state after.
OUTCOMES = {
    "ingest": (NOTHING, INGESTED),
    "validate": ("unjudged", "judged"),
    "rollback": ([1, 2], [1]),
    "promote": ([1], [1, 2]),
    "branch": ("absent", "ours"),
    "gc": (sorted([f"pipeline/run-{EXPIRED}", BRANCH]), [BRANCH]),
}

# Every write, in order. ingest: the scratch branch (create_ref 1), its tables (create_namespace, create_table,
# commit_table per table), the run branch moved to it (assign 1), the scratch branch dropped (delete_ref 1).
# validate: the verdict (commit_meta 1). rollback: the restoring commit on main (restore 1).
KILLS = {
    "ingest": [
        "create_ref:1:before",
        "create_ref:1:after",
        "create_namespace:1:after",
        "commit_table:1:after",
        "commit_table:2:before",
        "commit_table:2:after",
        "assign:1:before",
        "assign:1:inside",
        "assign:1:after",
        "delete_ref:1:before",
        "delete_ref:1:after",
    ],
    "validate": ["commit_meta:1:before", "commit_meta:1:inside", "commit_meta:1:after"],
    "rollback": ["restore:1:before", "restore:1:inside", "restore:1:after"],
}
# Nessie's `assign` is one REST call with no scratch branch of its own: no `inside` point.
NESSIE_SKIPS = {"assign:1:inside"}


def converges(case: Case, start: Any) -> None:
    """The command rerun completes its effect, and `branch --recreate` then recovers the run's branch."""
    rerun = cascade(*case.args)
    assert rerun.returncode == 0, str(rerun)
    with store() as catalog:
        assert case.done(catalog, start), case.observe(catalog, start)
    recreated = cascade("branch", "--run-id", RUN, "--recreate", "--json")
    assert recreated.returncode == 0, str(recreated)
    with store() as catalog:
        assert read_branch(catalog, BRANCH).ours


def params() -> list[Any]:
    return [
        pytest.param(backend, command, at, id=f"{backend}-{command}-{at}")
        for backend in ("local", "nessie")
        for command, points in KILLS.items()
        for at in points
        if not (backend == "nessie" and at in NESSIE_SKIPS)
    ]


@pytest.mark.parametrize(("backend", "command", "kill_at"), params(), indirect=["backend"])
def test_killed_at_a_write_then_rerun_converges(backend: str, command: str, kill_at: str) -> None:
    case = CASES[command]
    with store() as catalog:
        start = case.prepare(catalog)
    killed = cascade_killed_at(kill_at, *case.args)
    assert killed.returncode == KILLED, f"the kill point was not reached: {killed}"
    if backend == "local":
        assert_catalog_sound(load_settings().home)
    with store() as catalog:
        assert case.observe(catalog, start) in OUTCOMES[command], "the kill left a state between before and after"

    converges(case, start)


def test_ingest_rerun_after_a_completed_kill_adds_no_duplicates() -> None:
    """The rerun upserts: a kill after the branch moved, then the rerun, still holds each row once."""
    with store() as catalog:
        prepare_ingest(catalog)
        settings = load_settings()
        ingest(settings, catalog, RUN)
        ingest(settings, catalog, RUN)
        assert tables_at(catalog, BRANCH) == INGESTED
