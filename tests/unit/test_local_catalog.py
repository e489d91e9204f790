"""The embedded BranchCatalog: zero-copy branches, compare-and-swap, fast-forward, merge, tags."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError

from cascade_ci.catalog import open_catalog
from cascade_ci.catalog.base import ChangeKind, RefKind
from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.errors import (
    AlreadyExistsError,
    CatalogError,
    ConflictError,
    InvalidNameError,
    MergeConflictError,
    NotFastForwardError,
    NotFoundError,
    ReadOnlyRefError,
)
from tests.conftest import read_rows, readings, write_rows


def _files(catalog: LocalBranchCatalog) -> set[str]:
    return {str(p) for p in catalog.warehouse.rglob("*") if p.is_file()}


def test_new_catalog_has_main(catalog):
    main = catalog.get_ref("main")
    assert main.kind is RefKind.BRANCH
    assert [c.message for c in catalog.log("main")] == ["initialize catalog"]


def test_open_catalog_public_entry_point(settings):
    store = open_catalog(settings)
    store.create_ref("pipeline/run-101", "main")
    tables = store.tables("pipeline/run-101")
    tables.create_namespace("raw")
    assert tables.list_namespaces() == [("raw",)]
    assert open_catalog(settings).tables("main").list_namespaces() == []


def test_branch_is_zero_copy_and_isolated(catalog):
    write_rows(catalog, "main", "raw.readings", readings(1, 2, 3))
    before = _files(catalog)
    catalog.create_ref("pipeline/run-1", "main")
    assert _files(catalog) == before, "creating a branch must not copy files"
    write_rows(catalog, "pipeline/run-1", "raw.readings", readings(4))
    assert read_rows(catalog, "pipeline/run-1", "raw.readings").num_rows == 4
    assert read_rows(catalog, "main", "raw.readings").num_rows == 3


def test_every_table_change_is_a_commit(catalog):
    catalog.create_ref("dev", "main")
    head = catalog.get_ref("dev").hash
    write_rows(catalog, "dev", "raw.readings", readings(1))
    messages = [c.message for c in catalog.log("dev")]
    assert messages[:3] == ["update table raw.readings", "create table raw.readings", "create namespace raw"]
    assert catalog.is_ancestor(head, "dev")
    assert not catalog.is_ancestor(catalog.get_ref("dev").hash, "main")


def test_stale_table_commit_is_refused_then_retried_on_fresh_metadata(catalog, caplog):
    write_rows(catalog, "main", "raw.readings", readings(1))
    first = catalog.tables("main").load_table("raw.readings")
    second = catalog.tables("main").load_table("raw.readings")
    first.append(readings(2))
    second.append(readings(3))  # its pointer is stale: the swap fails, pyiceberg refreshes and retries
    assert "concurrent update" in caplog.text
    assert sorted(read_rows(catalog, "main", "raw.readings")["id"].to_pylist()) == [1, 2, 3]


def test_pointer_swap_is_compare_and_swap(catalog, settings, monkeypatch):
    """A writer that lands between our read and our swap makes our swap fail, not overwrite it."""
    write_rows(catalog, "main", "raw.readings", readings(1))
    tables = catalog.tables("main")
    original = type(tables)._update_and_stage_table
    raced = []

    def racing_stage(self, *args, **kwargs):
        staged = original(self, *args, **kwargs)
        if not raced:
            raced.append(True)
            other = LocalBranchCatalog(settings.home)
            other.tables("main").load_table("raw.readings").append(readings(2))
        return staged

    monkeypatch.setattr(type(tables), "_update_and_stage_table", racing_stage)
    table = tables.load_table("raw.readings")
    with pytest.raises(CommitFailedException):
        table.transaction().set_properties(owner="x").commit_transaction()
    assert sorted(read_rows(catalog, "main", "raw.readings")["id"].to_pylist()) == [1, 2]
    assert "owner" not in catalog.tables("main").load_table("raw.readings").properties


def test_fast_forward_moves_target_only_when_ancestor(catalog):
    main = catalog.get_ref("main")
    catalog.create_ref("a", "main")
    catalog.create_ref("b", "main")
    write_rows(catalog, "a", "raw.t", readings(1))
    write_rows(catalog, "b", "raw.t", readings(2))
    a_head = catalog.get_ref("a").hash
    moved = catalog.fast_forward("main", a_head, main.hash)
    assert moved.hash == a_head
    with pytest.raises(ConflictError):  # stale expected hash
        catalog.fast_forward("main", catalog.get_ref("b").hash, main.hash)
    with pytest.raises(NotFastForwardError):  # current hash, but history diverged
        catalog.fast_forward("main", catalog.get_ref("b").hash, a_head)
    assert catalog.get_ref("main").hash == a_head
    assert read_rows(catalog, "main", "raw.t")["id"].to_pylist() == [1]


def test_merge_brings_moved_main_into_branch(catalog):
    catalog.create_ref("feature", "main")
    write_rows(catalog, "main", "raw.other", readings(9))
    write_rows(catalog, "feature", "raw.t", readings(1))
    head = catalog.get_ref("feature").hash
    merged = catalog.merge("main", "feature", head, "merge main")
    assert set(catalog.read_contents(merged.hash).tables) == {"raw.other", "raw.t"}
    assert catalog.is_ancestor(catalog.get_ref("main").hash, "feature")
    assert catalog.log("feature", limit=1)[0].parents == (head, catalog.get_ref("main").hash)
    # now main can fast-forward to the feature branch
    catalog.fast_forward("main", merged.hash, catalog.get_ref("main").hash)


def test_merge_conflict_when_both_sides_change_a_table(catalog):
    write_rows(catalog, "main", "raw.t", readings(1))
    catalog.create_ref("feature", "main")
    write_rows(catalog, "main", "raw.t", readings(2))
    write_rows(catalog, "feature", "raw.t", readings(3))
    head = catalog.get_ref("feature").hash
    with pytest.raises(MergeConflictError) as info:
        catalog.merge("main", "feature", head, "merge main")
    assert info.value.tables == ["raw.t"]
    assert catalog.get_ref("feature").hash == head


def test_tags_and_hashes_are_read_only(catalog):
    write_rows(catalog, "main", "raw.t", readings(1))
    tag = catalog.create_ref("prod-20260101-000000", "main", RefKind.TAG)
    assert catalog.tables(tag.name).load_table("raw.t").scan().to_arrow().num_rows == 1
    with pytest.raises(ReadOnlyRefError):
        catalog.tables(tag.name).create_namespace("x")
    with pytest.raises(ReadOnlyRefError):
        catalog.tables(tag.hash).load_table("raw.t").append(readings(2))
    with pytest.raises(ReadOnlyRefError):
        catalog.commit_meta(tag.name, "meta", {}, tag.hash)


def test_delete_and_assign_need_expected_hash(catalog):
    ref = catalog.create_ref("x", "main")
    write_rows(catalog, "x", "raw.t", readings(1))
    with pytest.raises(ConflictError):
        catalog.delete_ref("x", ref.hash)
    with pytest.raises(ConflictError):
        catalog.assign("x", ref.hash, ref.hash)
    current = catalog.get_ref("x").hash
    assert catalog.assign("x", ref.hash, current).hash == ref.hash
    catalog.delete_ref("x", ref.hash)
    with pytest.raises(NotFoundError):
        catalog.get_ref("x")
    with pytest.raises(CatalogError):
        catalog.delete_ref("main", catalog.get_ref("main").hash)


def test_create_ref_refuses_duplicates_and_bad_names(catalog):
    catalog.create_ref("x", "main")
    with pytest.raises(AlreadyExistsError):
        catalog.create_ref("x", "main")
    for bad in ("a..b", "-x", "x/", "a;rm -rf", "x@y", ""):
        with pytest.raises(InvalidNameError):
            catalog.create_ref(bad, "main")
    with pytest.raises(NotFoundError):
        catalog.create_ref("y", "no-such-ref")


def test_diff_reports_added_removed_modified(catalog):
    write_rows(catalog, "main", "raw.keep", readings(1))
    write_rows(catalog, "main", "raw.change", readings(1))
    write_rows(catalog, "main", "raw.drop", readings(1))
    catalog.create_ref("b", "main")
    write_rows(catalog, "b", "raw.change", readings(2))
    write_rows(catalog, "b", "raw.new", readings(3))
    catalog.tables("b").drop_table("raw.drop")
    kinds = {c.table: c.kind for c in catalog.diff("main", "b")}
    assert kinds == {"raw.change": ChangeKind.MODIFIED, "raw.new": ChangeKind.ADDED, "raw.drop": ChangeKind.REMOVED}
    with pytest.raises(NoSuchTableError):
        catalog.tables("b").load_table("raw.drop")
    assert read_rows(catalog, "main", "raw.drop").num_rows == 1


def test_restore_appends_commit_and_keeps_history(catalog):
    write_rows(catalog, "main", "raw.t", readings(1))
    old = catalog.get_ref("main").hash
    write_rows(catalog, "main", "raw.t", readings(2))
    head = catalog.get_ref("main").hash
    restored = catalog.restore("main", old, head, "rollback", {"why": "test"})
    assert catalog.log("main", limit=1)[0].parents == (head,)
    assert read_rows(catalog, "main", "raw.t")["id"].to_pylist() == [1]
    assert catalog.is_ancestor(head, restored.hash)


def test_namespaces_and_rename(catalog):
    tables = catalog.tables("main")
    tables.create_namespace("raw", {"owner": "data"})
    tables.create_namespace("marts")
    assert tables.load_namespace_properties("raw")["owner"] == "data"
    summary = tables.update_namespace_properties("raw", removals={"owner", "nope"}, updates={"tier": "gold"})
    assert summary.removed == ["owner"] and summary.missing == ["nope"] and summary.updated == ["tier"]
    tables.create_table("raw.t", pa.schema([("id", pa.int64())]))
    tables.rename_table("raw.t", "marts.t")
    assert tables.list_tables("marts") == [("marts", "t")]
    assert tables.list_tables("raw") == []
    tables.drop_namespace("raw")
    assert tables.list_namespaces() == [("marts",)]


def test_state_is_shared_across_catalog_objects(settings):
    first = LocalBranchCatalog(settings.home)
    first.create_ref("pipeline/run-7", "main")
    write_rows(first, "pipeline/run-7", "raw.t", readings(1, 2))
    second = LocalBranchCatalog(settings.home)
    assert read_rows(second, "pipeline/run-7", "raw.t").num_rows == 2
    assert [r.name for r in second.list_refs("pipeline/")] == ["pipeline/run-7"]
