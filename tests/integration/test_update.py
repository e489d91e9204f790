"""`cascade update` and `cascade promote --update`: runs that overlap all land, main stays one line.

Two runs fork from the same main and append to the same raw table; the first promotes, the second is
re-based onto it (its data files appended again onto main's version, not rewritten), judged again and
promoted. A table replaced on main is a conflict that names it; a write racing the update, on the run's
branch or on main, is caught by a compare-and-swap. These tests run on the embedded catalog here and on
Nessie in tests/integration/nessie/test_update_nessie.py (which imports `__all__`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from cascade_ci.branch_state import read_branch
from cascade_ci.catalog import open_catalog
from cascade_ci.catalog.base import SCRATCH_PREFIX, scratch_name
from cascade_ci.cli import cli
from cascade_ci.errors import NotFoundError
from cascade_ci.naming import TAG_PREFIX
from cascade_ci.stages import ingest as ingest_stage
from cascade_ci.stages import promote as promote_stage
from cascade_ci.stages import update as update_stage
from cascade_ci.stages import validate as validate_stage
from cascade_ci.stages.branch import create_run_branch
from tests.conftest import read_rows, readings, write_rows

__all__ = [
    "backend",
    "test_a_branch_that_merged_main_is_refused_and_update_keeps_main_linear",
    "test_a_run_whose_main_moved_meanwhile_lands_through_an_update",
    "test_a_table_replaced_on_main_is_a_named_conflict",
    "test_a_write_on_main_racing_the_promotion_is_retried",
    "test_a_write_racing_update_is_caught_by_compare_and_swap",
    "test_an_update_stopped_before_its_verdict_is_finished_by_the_next_promote",
    "test_main_moving_on_every_try_is_refused_after_bounded_tries",
    "test_two_runs_appending_to_one_table_both_land",
    "test_update_judges_replayed_keys_against_mains_new_rows",
]

TABLE = "raw.readings"


@pytest.fixture(autouse=True)
def backend(monkeypatch) -> str:
    """The embedded catalog; flows write tables by hand and never run dbt: schema gate only."""
    monkeypatch.setenv("CASCADE_GATES", "schema")
    return "local"


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def ok(*args: str) -> dict:
    result = cascade(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def branch(run_id: str) -> str:
    result = cascade("branch", "--run-id", run_id)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def ids(ref: str) -> list[int]:
    return sorted(read_rows(open_catalog(), ref, TABLE)["id"].to_pylist())


def data_files(ref: str) -> set[str]:
    return {task.file.file_path for task in open_catalog().tables(ref).load_table(TABLE).scan().plan_files()}


def assert_main_linear() -> None:
    """Main's first-parent history has no merge commit, and every prod-* tag is on it."""
    catalog = open_catalog()
    history = catalog.log("main")
    assert [c.hash for c in history if len(c.parents) > 1] == []
    on_main = {commit.hash for commit in history}
    assert {t.name for t in catalog.list_refs(TAG_PREFIX) if t.hash not in on_main} == set()


def two_validated_runs(
    a_rows: tuple[int, ...], b_rows: tuple[int, ...], b_also: tuple[str, pa.Table] | None = None
) -> tuple[str, str]:
    """Main holds row 0; runs `a` and `b` fork from it, append their rows and pass validation."""
    catalog = open_catalog()
    write_rows(catalog, "main", TABLE, readings(0))
    a, b = branch("a"), branch("b")
    write_rows(catalog, a, TABLE, readings(*a_rows))
    write_rows(catalog, b, TABLE, readings(*b_rows))
    if b_also:
        write_rows(catalog, b, *b_also)
    for run in ("a", "b"):
        assert ok("validate", "--run-id", run)["outcome"] == "passed"
    return a, b


def test_two_runs_appending_to_one_table_both_land(backend):
    _, b = two_validated_runs((1, 2, 3), (4, 5), b_also=("extra.notes", readings(7)))  # in a new namespace
    b_files = data_files(b) - data_files("main")
    assert ok("update", "--run-id", "a")["action"] == "up-to-date"  # main has not moved: nothing to do
    first = ok("promote", "--run-id", "a")
    assert ok("update", "--run-id", "a")["action"] == "already-promoted"

    refused = cascade("promote", "--run-id", "b", "--json")
    assert refused.exit_code == 1, refused.output
    assert "--update" in json.loads(refused.stdout)["message"]

    assert ok("promote", "--run-id", "b", "--update", "--dry-run")["action"] == "would-update"
    landed = ok("promote", "--run-id", "b", "--update")
    assert (landed["action"], landed["updates"], landed["main_before"]) == ("promoted", 1, first["main_after"])
    assert ids("main") == [0, 1, 2, 3, 4, 5]
    assert b_files <= data_files("main")  # b's files appended again as they are: no rewrite, no copy
    catalog = open_catalog()
    state = read_branch(catalog, b)
    assert state.ours and state.base_hash == first["main_after"]  # re-based: forked from a's promotion
    assert (state.verdict.base_hash, state.verdict.validated_hash) == (first["main_after"], state.verdict_commit.parent)
    changes = {change.table: change for change in state.verdict.changes}
    assert sorted(changes) == ["extra.notes", TABLE]  # what b adds to main: its new table, the replayed rows
    change = changes[TABLE]
    assert change.rows_after == 6
    if backend == "local":  # Nessie serves no snapshot lineage, so no rows-added count (validate reads it there)
        assert (change.rows_added, change.rows_deleted) == (2, 0)  # judged: the replayed rows, against main's
    replayed = catalog.tables("main").load_table(TABLE).current_snapshot().summary
    assert replayed.operation.value == "append" and replayed.additional_properties["added-records"] == "2"
    assert replayed.additional_properties["cascade.updated-from"].startswith(b + "@")
    assert read_rows(catalog, "main", "extra.notes")["id"].to_pylist() == [7]  # carried over, namespace too
    assert_main_linear()
    assert len(catalog.list_refs(TAG_PREFIX)) == 2


def test_update_judges_replayed_keys_against_mains_new_rows(tmp_path, monkeypatch):
    (tmp_path / "cascade.toml").write_text(f'[tables."{TABLE}"]\nunique = ["id"]\n')
    monkeypatch.setenv("CASCADE_GATES", "schema,pandera")
    two_validated_runs((1, 2, 3), (3, 4))  # each run's keys are new to the main it forked from
    promoted = ok("promote", "--run-id", "a")["main_after"]

    updated = cascade("update", "--run-id", "b", "--json")
    assert updated.exit_code == 1, updated.output  # exit 1: the new verdict blocks
    result = json.loads(updated.stdout)
    assert (result["action"], result["verdict"], result["replayed"]) == ("updated", "blocked", {TABLE: 2})
    verdict = json.loads((tmp_path / "reports" / "verdict.json").read_text())
    failed = [c for g in verdict["gates"] for c in g["checks"] if not c["passed"]]
    assert [(c["gate"], c["table"]) for c in failed] == [("pandera", TABLE)] and "3" in failed[0]["message"]

    refused = cascade("promote", "--run-id", "b", "--update", "--json")
    assert refused.exit_code == 1 and "blocked" in json.loads(refused.stdout)["message"]
    assert open_catalog().get_ref("main").hash == promoted and ids("main") == [0, 1, 2, 3]


def pandera_checks(verdict: dict) -> list[tuple[str, bool, str]]:
    checks = [c for gate in verdict["gates"] if gate["gate"] == "pandera" for c in gate["checks"]]
    return [(c["name"], c["passed"], c["message"]) for c in checks]


def test_after_an_update_only_the_keys_are_judged_again_and_pandera_does_not_load(tmp_path, monkeypatch):
    """Embedded only (Nessie serves no snapshot lineage: there the gate validates whole tables, pandera loads).

    b's appended rows passed its own verdict; replayed as the same files onto a's promotion, its row rules
    stand and its keys are checked against main's new rows, in a process that never imports pandera, and here
    (the files' key bounds do not overlap) reads no data file: pyarrow's dataset layer and pandas stay unloaded."""
    (tmp_path / "cascade.toml").write_text(f'[tables."{TABLE}"]\nunique = ["id"]\n')
    monkeypatch.setenv("CASCADE_GATES", "schema,pandera")
    two_validated_runs((1, 2, 3), (4, 5))
    before = pandera_checks(json.loads((tmp_path / "reports" / "verdict.json").read_text()))  # b's, validated last
    before_update = read_branch(open_catalog(), "pipeline/run-b").verdict.validated_hash
    ok("promote", "--run-id", "a")

    script = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from cascade_ci.cli import cli\n"
        "out = CliRunner().invoke(cli, ['promote', '--run-id', 'b', '--update', '--json'], catch_exceptions=False)\n"
        "print(json.dumps({'exit': out.exit_code, 'out': out.stdout, 'loaded': sorted(\n"
        "    name for name in ('pandera', 'polars', 'pandas', 'pyarrow.dataset') if name in sys.modules)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["exit"] == 0, result["out"]
    # the rows were judged before the update: no pandera; the keys' ranges miss a's file: no data file is read
    assert result["loaded"] == []
    landed = json.loads(result["out"])
    assert (landed["action"], landed["updates"]) == ("promoted", 1) and ids("main") == [0, 1, 2, 3, 4, 5]
    after = pandera_checks(json.loads((tmp_path / "reports" / "verdict.json").read_text()))
    two_rows = "passed on 2 added rows"
    assert after == before == [("id:unique", True, two_rows), ("id:present", True, two_rows)]
    verdict = read_branch(open_catalog(), "pipeline/run-b").verdict  # judged the updated head, on a's promotion
    assert verdict.base_hash == landed["main_before"] and verdict.validated_hash != before_update


ROWS_SOURCE = """
import pyarrow as pa


def rows(ctx):
    ids = [int(i) for i in ctx.options["ids"].split(",")]
    sgv = pa.array([100 + i for i in ids], pa.int32())
    return {"readings": pa.table({"id": pa.array(ids, pa.int64()), "sgv": sgv})}
"""


def test_a_run_whose_main_moved_meanwhile_lands_through_an_update(tmp_path, monkeypatch):
    """`cascade run`: another run lands while this one ingests; its promote stage updates, judges and promotes."""
    (tmp_path / "run_rows.py").write_text(ROWS_SOURCE)
    (tmp_path / "cascade.toml").write_text('[sources.rows]\npython = "run_rows:rows"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    write_rows(open_catalog(), "main", TABLE, readings(0))
    landed_meanwhile = []
    ingest = ingest_stage.ingest

    def ingest_while_another_run_lands(settings, catalog, *args, **kwargs):
        written = ingest(settings, catalog, *args, **kwargs)
        a = create_run_branch(settings, catalog, "a").branch
        write_rows(catalog, a, TABLE, readings(1, 2))
        assert validate_stage.validate(settings, catalog, "a").outcome == "passed"
        landed_meanwhile.append(promote_stage.promote(settings, catalog, "a").main_after)
        return written

    monkeypatch.setattr(ingest_stage, "ingest", ingest_while_another_run_lands)
    result = cascade("run", "--run-id", "r", "-o", "ids=3,4", "--json")
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert (run["outcome"], run["updates"]) == ("promoted", 1) and landed_meanwhile
    assert ids("main") == [0, 1, 2, 3, 4]
    state = read_branch(open_catalog(), "pipeline/run-r")
    assert state.base_hash == landed_meanwhile[0] and run["verdict"]["base_hash"] == landed_meanwhile[0]
    verdict = json.loads((tmp_path / "reports" / "verdict.json").read_text())  # the reports: the new verdict's
    assert verdict["validated_hash"] == state.verdict.validated_hash and verdict["base_hash"] == landed_meanwhile[0]
    assert_main_linear()


def test_a_table_replaced_on_main_is_a_named_conflict():
    _, b = two_validated_runs((1,), (2, 3))
    catalog = open_catalog()
    before = catalog.get_ref(b).hash
    tables = catalog.tables("main")
    tables.drop_table(TABLE)
    tables.create_table(TABLE, readings(7).schema).append(readings(7))

    for args in (("update", "--run-id", "b"), ("promote", "--run-id", "b", "--update")):
        result = cascade(*args, "--json")
        assert result.exit_code == 1, result.output
        error = json.loads(result.stdout)
        assert error["type"] == "MergeConflictError"
        assert f"{TABLE}: the branch appended 2 rows, main replaced the table" in error["message"]
        assert "--recreate" in error["message"]
    assert catalog.get_ref(b).hash == before  # nothing changed


def test_a_write_racing_update_is_caught_by_compare_and_swap(monkeypatch):
    _, b = two_validated_runs((1,), (2,))
    ok("promote", "--run-id", "a")
    catalog = open_catalog()
    assign = type(catalog).assign

    def racing_assign(self, name, to_hash, expected_hash):
        if name == b:  # another writer appends to the run's branch while it is being re-based
            write_rows(open_catalog(), b, TABLE, readings(9))
        return assign(self, name, to_hash, expected_hash)

    scratches = []
    monkeypatch.setattr(type(catalog), "assign", racing_assign)
    made = lambda *owner: scratches.append(scratch_name(*owner)) or scratches[-1]  # noqa: E731
    monkeypatch.setattr(update_stage, "scratch_name", made)
    result = cascade("update", "--run-id", "b", "--json")
    assert result.exit_code == 1, result.output
    assert "written to while it was being updated" in json.loads(result.stdout)["message"]
    assert ids(b) == [0, 2, 9]  # the racing write stands; the branch was not moved under it
    assert read_branch(catalog, b).base_hash != catalog.get_ref("main").hash
    (scratch,) = scratches
    with pytest.raises(NotFoundError):  # the update dropped the scratch branch it staged on
        catalog.get_ref(scratch)


def test_a_write_on_main_racing_the_promotion_is_retried(monkeypatch):
    two_validated_runs((1,), (2,))
    ok("promote", "--run-id", "a")
    catalog = open_catalog()
    fast_forward = type(catalog).fast_forward
    raced = []

    def racing_fast_forward(self, target, source_hash, expected_target_hash):
        if not raced:  # the first fast-forward after b's update finds main moved again
            raced.append(source_hash)
            write_rows(open_catalog(), "main", TABLE, readings(8))
        return fast_forward(self, target, source_hash, expected_target_hash)

    monkeypatch.setattr(type(catalog), "fast_forward", racing_fast_forward)
    landed = ok("promote", "--run-id", "b", "--update")
    assert (landed["action"], landed["updates"]) == ("promoted", 2)
    assert raced and catalog.get_ref("main").hash == landed["main_after"] != raced[0]
    assert ids("main") == [0, 1, 2, 8]
    assert_main_linear()


def test_main_moving_on_every_try_is_refused_after_bounded_tries(monkeypatch):
    two_validated_runs((1,), (2,))
    ok("promote", "--run-id", "a")
    catalog = open_catalog()
    fast_forward = type(catalog).fast_forward
    rows = iter(range(100, 200))

    def always_raced(self, target, source_hash, expected_target_hash):
        write_rows(open_catalog(), "main", TABLE, readings(next(rows)))
        return fast_forward(self, target, source_hash, expected_target_hash)

    monkeypatch.setattr(type(catalog), "fast_forward", always_raced)
    monkeypatch.setattr(promote_stage, "BACKOFF_S", 0.0)
    refused = cascade("promote", "--run-id", "b", "--update", "--json")
    assert refused.exit_code == 1, refused.output
    error = json.loads(refused.stdout)
    assert error["type"] == "RefusedError" and "main kept moving" in error["message"]
    tries = promote_stage.UPDATE_ATTEMPTS
    # the first try is refused before it writes (main moved since the fork); each later one raced at its fast-forward
    assert f"brought up to date {tries - 1} time(s)" in error["message"] and next(rows) == 100 + tries - 1
    assert 2 not in ids("main")
    assert_main_linear()


def test_an_update_stopped_before_its_verdict_is_finished_by_the_next_promote(monkeypatch):
    _, b = two_validated_runs((1,), (2,))
    ok("promote", "--run-id", "a")
    with monkeypatch.context() as patch:  # the update moves the branch, then stops before the gates judge it
        patch.setattr(validate_stage, "validate", lambda *args, **kwargs: sys.exit(9))
        assert cascade("update", "--run-id", "b").exit_code == 9
    state = read_branch(open_catalog(), b)
    assert state.base_hash == open_catalog().get_ref("main").hash and state.verdict is None

    landed = ok("promote", "--run-id", "b", "--update")
    assert (landed["action"], landed["updates"]) == ("promoted", 1) and ids("main") == [0, 1, 2]
    assert_main_linear()


def test_a_branch_that_merged_main_is_refused_and_update_keeps_main_linear():
    """A merge of main into the branch must not reach main: main's earlier promotion (and tag) would leave
    main's first-parent history, and main would hold a merge commit."""
    catalog = open_catalog()
    write_rows(catalog, "main", TABLE, readings(0))
    a, b = branch("a"), branch("b")
    write_rows(catalog, a, TABLE, readings(1))
    write_rows(catalog, b, "raw.other", readings(2))
    for run in ("a", "b"):
        ok("validate", "--run-id", run)
    first = ok("promote", "--run-id", "a")
    catalog.merge("main", b, catalog.get_ref(b).hash, "merge main into the branch")
    assert ids(b) == [0, 1]
    ok("validate", "--run-id", "b")

    refused = cascade("promote", "--run-id", "b", "--json")
    assert refused.exit_code == 1, refused.output
    assert "merge commit" in json.loads(refused.stdout)["message"]
    assert catalog.get_ref("main").hash == first["main_after"]

    landed = ok("promote", "--run-id", "b", "--update")
    assert landed["action"] == "promoted" and ids("main") == [0, 1]  # a's rows once: already main's
    assert sorted(read_rows(catalog, "main", "raw.other")["id"].to_pylist()) == [2]
    assert_main_linear()


def test_a_scratch_branch_an_interrupted_update_left_is_hidden_then_swept():
    """Embedded only (on Nessie the same sweep is tested with its other scratch branches)."""
    catalog = open_catalog()
    main = catalog.get_ref("main").hash
    fresh, old = scratch_name(), f"{SCRATCH_PREFIX}1000000000-{uuid.uuid4().hex}"  # old: made in 2001
    for name in (fresh, old):
        catalog.create_ref(name, main)
    assert [ref.name for ref in catalog.list_refs()] == ["main"]
    assert [ref.name for ref in catalog.sweep_leftovers(datetime.now(UTC))] == [old]
    assert catalog.get_ref(fresh).hash == main
    with pytest.raises(NotFoundError):
        catalog.get_ref(old)


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "user_project"


def test_tables_built_by_the_transform_are_rebuilt_on_the_updated_branch(tmp_path, monkeypatch):
    """A user's dbt project: both runs rebuild the marts; the second's are rebuilt again after its update."""
    project = tmp_path / "shop"
    shutil.copytree(FIXTURE, project, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "cascade.toml").write_text((project / "project.toml").read_text())
    (project / "customers.json").write_text(json.dumps([{"customer_id": 1, "name": "ada", "segment": "retail"}]))
    (project / "data").mkdir()
    monkeypatch.chdir(project)
    monkeypatch.delenv("CASCADE_GATES")
    now = datetime.now(UTC).replace(microsecond=0)

    def orders(*numbers: int) -> None:
        lines = [f"{n},1,{n}.5,{now - timedelta(minutes=60 - n):%Y-%m-%dT%H:%M:%SZ}" for n in numbers]
        (project / "data" / "orders.csv").write_text("order_id,customer_id,amount,ordered_at\n" + "\n".join(lines))

    orders(1, 2)
    assert ok("run", "--run-id", "seed")["outcome"] == "promoted"
    for run, numbers in (("a", (3, 4)), ("b", (5,))):
        branch(run)
        orders(*numbers)
        ok("ingest", "--run-id", run, "--source", "orders")
        ok("transform", "--run-id", run)
        assert ok("validate", "--run-id", run)["outcome"] == "passed"
    ok("promote", "--run-id", "a")

    landed = ok("promote", "--run-id", "b", "--update")
    assert (landed["action"], landed["updates"]) == ("promoted", 1)
    catalog = open_catalog()
    state = read_branch(catalog, "pipeline/run-b")
    update = json.loads(state.created.properties["cascade.update"])
    # raw.orders and the incremental model's table were appended to on both sides: replayed; the table
    # models were replaced on both sides: left to the transform, which rebuilt them from all the rows
    assert update["replayed"] == {"raw.orders": 1, "main.order_log": 1}
    assert sorted(update["rebuilt"]) == ["main.customer_revenue", "main.daily_orders"]
    assert sorted(read_rows(catalog, "main", "main.order_log")["order_id"].to_pylist()) == [1, 2, 3, 4, 5]
    revenue = read_rows(catalog, "main", "main.customer_revenue").to_pylist()
    assert [(r["orders"], r["revenue"]) for r in revenue] == [(5, 1.5 + 2.5 + 3.5 + 4.5 + 5.5)]
    assert sorted(read_rows(catalog, "main", "raw.orders")["order_id"].to_pylist()) == [1, 2, 3, 4, 5]
    assert_main_linear()
