"""Only what cascade validated reaches main or a `prod-*` tag, judged by content, on both backends.

Each case is one a careless or hostile writer builds with nothing but catalog calls: a branch made by hand
at a commit where a table existed before its rows, a cascade branch fast-forwarded into main unvalidated, a
data change committed after the verdict under a metadata label. Also: a refused promotion writes nothing,
promote reads no list of refs, a validate that loses a race exits 2, ingest writes only a pipeline branch.
"""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner

from cascade_ci.branch_state import ATTEMPT, KIND, RUN_ID, MetaKind
from cascade_ci.catalog import BranchCatalog, open_catalog
from cascade_ci.catalog.base import SCRATCH_PREFIX
from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.catalog.nessie import NessieBranchCatalog
from cascade_ci.cli import cli
from cascade_ci.config import load_settings
from cascade_ci.naming import TAG_PREFIX
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.stages.validate import validate

TABLE = "raw.readings"


pytestmark = pytest.mark.parametrize("backend", ["local", "nessie"], indirect=True)  # tests/conftest.py


def store() -> closing[BranchCatalog]:
    return closing(open_catalog(load_settings()))


def rows(*ids: int) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64())})


def cascade(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def tags(catalog: BranchCatalog) -> list[str]:
    return [ref.name for ref in catalog.list_refs(TAG_PREFIX)]


def every_ref(catalog: BranchCatalog) -> dict[str, str]:
    """Every ref, scratch branches too (list_refs hides them)."""
    if isinstance(catalog, NessieBranchCatalog):
        return {ref["name"]: ref["hash"] for ref in catalog._pages("/trees", "references")}
    assert isinstance(catalog, LocalBranchCatalog)
    with catalog._reading():
        return dict(catalog._db.execute("SELECT name, hash FROM cascade_refs").fetchall())


def table_on_main(catalog: BranchCatalog, *ids: int) -> str:
    """main holds TABLE, created and then filled with `ids`; the hash where it existed without rows."""
    tables = catalog.tables("main")
    tables.create_namespace("raw")
    tables.create_table(TABLE, rows(0).schema)
    empty = catalog.get_ref("main").hash
    tables.load_table(TABLE).append(rows(*ids))
    return empty


def validated_run(catalog: BranchCatalog, run_id: str) -> str:
    """main holds rows 1, 2; run `run_id` adds 3 and carries a passing verdict; the branch name."""
    settings = load_settings()
    table_on_main(catalog, 1, 2)
    branch = create_run_branch(settings, catalog, run_id).branch
    catalog.tables(branch).load_table(TABLE).append(rows(3))
    assert not validate(settings, catalog, run_id, gates=["schema"]).blocked
    return branch


def test_a_hand_made_branch_at_unwritten_rows_on_main_is_neither_promoted_nor_tagged(backend: str) -> None:
    with store() as catalog:
        empty = table_on_main(catalog, 1, 2)
        catalog.create_ref("pipeline/run-77", empty)  # on main's history, no marker, no verdict
        main = catalog.get_ref("main").hash
    result = cascade("promote", "--run-id", "77")
    assert result.exit_code == 1, result.output
    assert "not created by cascade-ci" in result.stderr
    with store() as catalog:
        assert tags(catalog) == [] and catalog.get_ref("main").hash == main


def test_a_cascade_branch_fast_forwarded_into_main_without_a_verdict_is_not_tagged(backend: str) -> None:
    with store() as catalog:
        table_on_main(catalog)  # the table exists; its rows come later
        made = create_run_branch(load_settings(), catalog, "78")
        catalog.fast_forward("main", made.head_hash, catalog.get_ref("main").hash)
        catalog.tables("main").load_table(TABLE).append(rows(1, 2))
        main = catalog.get_ref("main").hash
        assert catalog.is_ancestor(made.head_hash, main)
    result = cascade("promote", "--run-id", "78")
    assert result.exit_code == 1, result.output
    assert "has no verdict" in result.stderr
    with store() as catalog:
        assert tags(catalog) == [] and catalog.get_ref("main").hash == main


def test_a_data_change_labelled_as_an_attempt_after_the_verdict_is_refused(backend: str) -> None:
    with store() as catalog:
        branch = validated_run(catalog, "79")
        head = catalog.get_ref(branch).hash
        # The forged change: 9999 written beside the branch, then restored onto it under an `attempt` label.
        catalog.create_ref("side", head)
        catalog.tables("side").load_table(TABLE).append(rows(9999))
        forged = {KIND: MetaKind.ATTEMPT, RUN_ID: "79", ATTEMPT: "2"}
        catalog.restore(branch, catalog.get_ref("side").hash, head, "attempt 2 of run 79", forged, tables=[TABLE])
        main = catalog.get_ref("main").hash
    result = cascade("promote", "--run-id", "79")
    assert result.exit_code == 1, result.output
    assert "changed after its verdict" in result.stderr and TABLE in result.stderr
    with store() as catalog:
        assert catalog.get_ref("main").hash == main and tags(catalog) == []


def test_metadata_commits_after_the_verdict_still_promote(backend: str) -> None:
    with store() as catalog:
        validated_run(catalog, "80")
    assert cascade("branch", "--run-id", "80", "--attempt", "2").exit_code == 0  # an attempt marker: no table
    result = cascade("promote", "--run-id", "80", "--json")
    assert result.exit_code == 0, result.output
    again = cascade("promote", "--run-id", "80", "--json")
    assert again.exit_code == 0 and '"already-promoted"' in again.stdout, again.output
    with store() as catalog:
        (tag,) = tags(catalog)
        assert catalog.get_ref(tag).hash == catalog.get_ref("main").hash == catalog.get_ref("pipeline/run-80").hash


def test_a_refused_promotion_writes_nothing(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Main moves between promote's checks and its fast-forward (another run landed): refused, no ref changed."""
    with store() as catalog:
        branch = validated_run(catalog, "81")
    moved: dict[str, str] = {}

    def fast_forward_after_another_landing(self: BranchCatalog, *args: Any, **kwargs: Any) -> Any:
        with store() as other:
            other.tables("main").load_table(TABLE).append(rows(5))
            moved.update(every_ref(other))
        return original(self, *args, **kwargs)

    kind = NessieBranchCatalog if backend == "nessie" else LocalBranchCatalog
    original = kind.fast_forward
    monkeypatch.setattr(kind, "fast_forward", fast_forward_after_another_landing)
    result = cascade("promote", "--run-id", "81")
    assert result.exit_code == 1 and "nothing was changed" in result.stderr, result.output
    assert moved, "promote never tried to fast-forward"
    with store() as catalog:
        after = every_ref(catalog)
        assert after == {name: head for name, head in moved.items() if not name.startswith(SCRATCH_PREFIX)}
        assert catalog.log(branch, limit=1)[0].properties.get(KIND) == MetaKind.VERDICT, "a record was written"
        assert tags(catalog) == []


def test_promote_reads_no_list_of_refs(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with store() as catalog:
        validated_run(catalog, "82")

    def listed(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("promote listed refs")

    for kind in (LocalBranchCatalog, NessieBranchCatalog):
        monkeypatch.setattr(kind, "list_refs", listed)
    first = cascade("promote", "--run-id", "82", "--json")
    assert first.exit_code == 0, first.output
    again = cascade("promote", "--run-id", "82", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["action"] == "already-promoted"
    assert json.loads(again.stdout)["tag"] == json.loads(first.stdout)["tag"]


def test_a_validate_that_loses_a_race_exits_2_saying_to_validate_again(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings()
    with store() as catalog:
        table_on_main(catalog, 1)
        branch = create_run_branch(settings, catalog, "83").branch
    from cascade_ci.stages import validate as validate_stage

    judge = validate_stage.run_gate

    def judged_while_written(gate: str, ctx: Any) -> Any:
        result = judge(gate, ctx)
        with store() as other:  # another writer lands on the branch while the gates run
            other.tables(branch).load_table(TABLE).append(rows(7))
        return result

    monkeypatch.setattr(validate_stage, "run_gate", judged_while_written)
    result = cascade("validate", "--run-id", "83")
    assert result.exit_code == 2, result.output
    assert "the branch moved while validating; run validate again" in result.stderr
    with store() as catalog:
        assert catalog.log(branch, limit=1)[0].properties.get(KIND) != MetaKind.VERDICT


def test_ingest_refuses_a_branch_that_is_not_a_pipeline_branch(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with store() as catalog:
        table_on_main(catalog, 1)
        catalog.create_ref("pipeline/run-84", "main")  # made by hand: no creation marker
        main = catalog.get_ref("main").hash
    Path("cascade.toml").write_text('[sources.s]\nfiles = "*.csv"\n')
    refused = cascade("ingest", "--run-id", "84")
    assert refused.exit_code == 1 and "not a pipeline branch" in refused.stderr, refused.output
    monkeypatch.setenv("CASCADE_BRANCH_PREFIX", "mai")  # a prefix that, with run id `n`, names main itself
    refused = cascade("ingest", "--run-id", "n")  # the config is refused before any stage runs
    assert refused.exit_code == 2 and "'main' could be named as the branch of run 'n'" in refused.stderr, refused.output
    monkeypatch.delenv("CASCADE_BRANCH_PREFIX")
    with store() as catalog:
        assert catalog.get_ref("main").hash == main
