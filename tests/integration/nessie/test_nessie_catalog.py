"""The BranchCatalog contract on a real Nessie with moto as S3: the embedded catalog's behaviour, mirrored.

Every test runs on its own trunk branch (`catalog.default_branch`, standing in for main) of one Nessie
server shared by the session; see conftest.py.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from datetime import timedelta

import pyarrow as pa
import pytest
from pyiceberg.exceptions import NoSuchTableError

from cascade_ci.catalog.base import BranchCatalog, ChangeKind, RefKind
from cascade_ci.catalog.nessie import SCRATCH_PREFIX, NessieBranchCatalog
from cascade_ci.config import load_settings
from cascade_ci.errors import (
    AlreadyExistsError,
    CatalogError,
    ConflictError,
    InvalidNameError,
    MergeConflictError,
    NotFastForwardError,
    NotFoundError,
    ReadOnlyRefError,
    ServiceUnavailableError,
)
from tests.conftest import read_rows, readings, write_rows
from tests.fakes.http import FakeServer, unused_port


def ids(catalog: NessieBranchCatalog, ref: str, table: str = "raw.t") -> list[int]:
    return sorted(read_rows(catalog, ref, table)["id"].to_pylist())


def no_scratch_left(catalog: NessieBranchCatalog) -> bool:
    return not [r for r in catalog._pages("/trees", "references") if r["name"].startswith(SCRATCH_PREFIX)]


# -- branches with "/" and tables through Nessie's Iceberg REST endpoint ---------------------------


def test_write_on_slash_branch_is_isolated_then_fast_forwarded(catalog):
    main = catalog.default_branch
    assert isinstance(catalog, BranchCatalog)
    name = "pipeline/run-101"
    with contextlib.suppress(NotFoundError):  # the server may be a long-lived one given by NESSIE_URI
        catalog.delete_ref(name, catalog.get_ref(name).hash)
    branch = catalog.create_ref(name, main)
    assert branch.kind is RefKind.BRANCH and branch.hash == catalog.get_ref(main).hash
    assert name in [r.name for r in catalog.list_refs("pipeline/")]

    rows = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "sgv": pa.array([101, 102, 103], pa.int32())})
    write_rows(catalog, name, "raw.readings", rows)
    assert read_rows(catalog, name, "raw.readings").sort_by("id").equals(rows)
    assert not catalog.tables(main).table_exists("raw.readings")
    assert "%1F" in catalog.tables(name).properties["prefix"]  # "/" travels as U+001F in the Iceberg prefix
    assert [(c.table, c.kind) for c in catalog.diff(main, name)] == [("raw.readings", ChangeKind.ADDED)]
    commit = catalog._call("GET", f"/trees/{name}@/contents/raw.readings")  # REST v2: a "/" name ends with "@"
    assert commit["content"]["metadataLocation"].startswith("s3://")

    head = catalog.get_ref(name).hash
    moved = catalog.fast_forward(main, head, branch.hash)
    assert moved.hash == head == catalog.get_ref(main).hash
    assert read_rows(catalog, main, "raw.readings").num_rows == 3
    catalog.delete_ref(name, head)


def test_every_table_change_is_a_commit(catalog):
    main = catalog.default_branch
    catalog.create_ref(f"{main}-dev", main)
    dev = f"{main}-dev"
    head = catalog.get_ref(dev).hash
    write_rows(catalog, dev, "raw.readings", readings(1))
    assert len(catalog.log(dev)) >= 3
    assert catalog.is_ancestor(head, dev)
    assert not catalog.is_ancestor(catalog.get_ref(dev).hash, main)


# -- compare-and-swap ---------------------------------------------------------------------------


def test_fast_forward_moves_target_only_when_ancestor(catalog):
    main = catalog.default_branch
    before = catalog.get_ref(main)
    a, b = catalog.create_ref(f"{main}/a", main).name, catalog.create_ref(f"{main}/b", main).name
    write_rows(catalog, a, "raw.t", readings(1))
    write_rows(catalog, b, "raw.t", readings(2))
    a_head = catalog.get_ref(a).hash
    assert catalog.fast_forward(main, a_head, before.hash).hash == a_head
    with pytest.raises(ConflictError) as stale:  # stale expected hash
        catalog.fast_forward(main, catalog.get_ref(b).hash, before.hash)
    assert not isinstance(stale.value, NotFastForwardError)
    with pytest.raises(NotFastForwardError):  # current hash, but history diverged
        catalog.fast_forward(main, catalog.get_ref(b).hash, a_head)
    with pytest.raises(NotFastForwardError):  # never backwards
        catalog.fast_forward(main, before.hash, a_head)
    assert catalog.get_ref(main).hash == a_head
    assert ids(catalog, main) == [1]
    assert catalog.fast_forward(main, a, a_head).hash == a_head  # already there: a no-op


def test_commit_meta_assign_and_delete_need_expected_hash(catalog):
    main = catalog.default_branch
    x = f"{main}-x"
    ref = catalog.create_ref(x, main)
    write_rows(catalog, x, "raw.t", readings(1))
    current = catalog.get_ref(x).hash
    with pytest.raises(ConflictError):
        catalog.commit_meta(x, "verdict", {"k": "v"}, ref.hash)
    with pytest.raises(ConflictError):
        catalog.delete_ref(x, ref.hash)
    with pytest.raises(ConflictError):
        catalog.assign(x, ref.hash, ref.hash)
    assert catalog.get_ref(x).hash == current
    assert catalog.assign(x, ref.hash, current).hash == ref.hash
    catalog.delete_ref(x, ref.hash)
    with pytest.raises(NotFoundError):
        catalog.get_ref(x)
    with pytest.raises(CatalogError):
        catalog.delete_ref(main, catalog.get_ref(main).hash)
    assert no_scratch_left(catalog)


def test_create_ref_refuses_duplicates_bad_names_and_unknown_sources(catalog):
    main = catalog.default_branch
    catalog.create_ref(f"{main}-x", main)
    with pytest.raises(AlreadyExistsError):
        catalog.create_ref(f"{main}-x", main)
    for bad in ("a..b", "-x", "x/", "a;rm -rf", "x@y", ""):
        with pytest.raises(InvalidNameError):
            catalog.create_ref(bad, main)
    with pytest.raises(NotFoundError):
        catalog.create_ref(f"{main}-y", "no-such-ref")
    with pytest.raises(NotFoundError):
        catalog.create_ref(f"{main}-y", "ab" * 32)
    at_hash = catalog.create_ref(f"{main}-z", catalog.get_ref(main).hash)  # from a commit hash
    assert at_hash.hash == catalog.get_ref(main).hash


# -- tags and hashes ------------------------------------------------------------------------------


def test_tags_and_hashes_are_read_only(catalog):
    main = catalog.default_branch
    write_rows(catalog, main, "raw.t", readings(1))
    tag = catalog.create_ref(f"{main}-prod-20260101-000000", main, RefKind.TAG)
    assert tag.kind is RefKind.TAG and catalog.get_ref(tag.name).kind is RefKind.TAG
    assert catalog.tables(tag.name).load_table("raw.t").scan().to_arrow().num_rows == 1
    assert catalog.tables(tag.hash).load_table("raw.t").scan().to_arrow().num_rows == 1
    with pytest.raises(ReadOnlyRefError):
        catalog.tables(tag.name).create_namespace("x")
    with pytest.raises(ReadOnlyRefError):
        catalog.tables(tag.hash).load_table("raw.t").append(readings(2))
    pinned = catalog.tables(f"{main}@{tag.hash}")  # `ref@hash` is a read-only view too
    assert pinned.load_table("raw.t").scan().to_arrow().num_rows == 1
    with pytest.raises(ReadOnlyRefError):
        pinned.drop_table("raw.t")
    with pytest.raises(ReadOnlyRefError):
        catalog.commit_meta(tag.name, "meta", {}, tag.hash)
    with pytest.raises(ReadOnlyRefError):  # and Nessie's own refusal maps to the same error
        catalog._call(
            "POST",
            f"/trees/{tag.name}@{tag.hash}/history/commit",
            {"commitMeta": {"message": "m"}, "operations": [{"type": "UNCHANGED", "key": {"elements": ["x"]}}]},
        )
    write_rows(catalog, main, "raw.t", readings(2))
    assert ids(catalog, tag.name) == [1] and ids(catalog, main) == [1, 2]


# -- merge ---------------------------------------------------------------------------------------


def test_merge_brings_moved_main_into_branch(catalog):
    main = catalog.default_branch
    feature = catalog.create_ref(f"{main}-feature", main).name
    write_rows(catalog, main, "raw.other", readings(9))
    write_rows(catalog, feature, "raw.t", readings(1))
    head = catalog.get_ref(feature).hash
    merged = catalog.merge(main, feature, head, "merge main")
    tables = catalog.tables(merged.hash)
    assert tables.table_exists("raw.other") and tables.table_exists("raw.t")
    top = catalog.log(feature, limit=1)[0]
    assert top.parents == (head, catalog.get_ref(main).hash) and top.message == "merge main"
    assert top.properties["cascade.merged-from"] == main
    assert catalog.is_ancestor(catalog.get_ref(main).hash, feature)
    # a second merge of the same main is a no-op
    assert catalog.merge(main, feature, merged.hash, "again").hash == merged.hash
    # now main can fast-forward to the feature branch: Nessie's merge parent counts as ancestry
    assert catalog.fast_forward(main, merged.hash, catalog.get_ref(main).hash).hash == merged.hash
    assert ids(catalog, main, "raw.other") == [9] and ids(catalog, main) == [1]
    assert no_scratch_left(catalog)


def test_merge_conflict_when_both_sides_change_a_table(catalog):
    main = catalog.default_branch
    write_rows(catalog, main, "raw.t", readings(1))
    feature = catalog.create_ref(f"{main}-feature", main).name
    write_rows(catalog, main, "raw.t", readings(2))
    write_rows(catalog, feature, "raw.t", readings(3))
    head = catalog.get_ref(feature).hash
    with pytest.raises(MergeConflictError) as info:
        catalog.merge(main, feature, head, "merge main")
    assert info.value.tables == ["raw.t"]
    assert catalog.get_ref(feature).hash == head
    with pytest.raises(ConflictError):
        catalog.merge(main, feature, catalog.get_ref(main).hash, "stale target hash")
    assert no_scratch_left(catalog)


# -- restore, diff, log ---------------------------------------------------------------------------


def test_restore_appends_commit_and_keeps_history(catalog):
    main = catalog.default_branch
    write_rows(catalog, main, "raw.t", readings(1))
    write_rows(catalog, main, "raw.gone", readings(5))
    old = catalog.get_ref(main).hash
    write_rows(catalog, main, "raw.t", readings(2))
    write_rows(catalog, main, "raw.new", readings(7))
    catalog.tables(main).drop_table("raw.gone")
    head = catalog.get_ref(main).hash

    restored = catalog.restore(main, old, head, "rollback", {"why": "test"})
    top = catalog.log(main, limit=1)[0]
    assert top.parents == (head,) and top.message == "rollback" and top.properties == {"why": "test"}
    assert ids(catalog, main) == [1] and ids(catalog, main, "raw.gone") == [5]
    assert not catalog.tables(main).table_exists("raw.new")
    assert catalog.diff(old, main) == []
    assert catalog.is_ancestor(head, restored.hash)
    with pytest.raises(ConflictError):
        catalog.restore(main, old, head, "stale", {})


def test_diff_reports_added_removed_modified(catalog):
    main = catalog.default_branch
    for table in ("raw.keep", "raw.change", "raw.drop"):
        write_rows(catalog, main, table, readings(1))
    b = catalog.create_ref(f"{main}-b", main).name
    write_rows(catalog, b, "raw.change", readings(2))
    write_rows(catalog, b, "raw.new", readings(3))
    catalog.tables(b).drop_table("raw.drop")
    changes = {c.table: c for c in catalog.diff(main, b)}
    assert {t: c.kind for t, c in changes.items()} == {
        "raw.change": ChangeKind.MODIFIED,
        "raw.new": ChangeKind.ADDED,
        "raw.drop": ChangeKind.REMOVED,
    }
    assert changes["raw.new"].from_location is None and changes["raw.new"].to_location.endswith(".metadata.json")
    assert changes["raw.drop"].to_location is None and changes["raw.drop"].from_location.startswith("s3://")
    assert changes["raw.change"].from_location != changes["raw.change"].to_location
    assert catalog.diff(main, catalog.get_ref(main).hash) == []
    with pytest.raises(NoSuchTableError):
        catalog.tables(b).load_table("raw.drop")
    assert read_rows(catalog, main, "raw.drop").num_rows == 1


def test_log_is_first_parent_newest_first_with_properties(catalog):
    main = catalog.default_branch
    write_rows(catalog, main, "raw.t", readings(1))
    head = catalog.get_ref(main).hash
    props = {"cascade.verdict": "passed", "cascade.validated-hash": head, "cascade.run-url": "https://x/1"}
    meta = catalog.commit_meta(main, "verdict for run 1", props, head)
    log = catalog.log(main)
    assert log[0].hash == meta.hash and log[0].parents == (head,)
    assert log[0].message == "verdict for run 1" and dict(log[0].properties) == props
    assert log[0].time.utcoffset() == timedelta(0)
    assert [c.hash for c in catalog.log(main, limit=2)] == [meta.hash, head]
    assert catalog.log(head)[0].hash == head
    assert catalog.diff(head, main) == []  # a metadata commit changes no table
    assert all(a.time >= b.time for a, b in itertools.pairwise(log))


# -- concurrency ------------------------------------------------------------------------------------


def test_eight_threads_fast_forward_eight_branches_at_once(catalog):
    main = catalog.default_branch
    write_rows(catalog, main, "raw.t", readings(0))
    base = catalog.get_ref(main).hash
    branches = [catalog.create_ref(f"{main}-run-{i}", main).name for i in range(8)]
    for i, name in enumerate(branches):
        write_rows(catalog, name, "raw.t", readings(100 + i))
    heads = {name: catalog.get_ref(name).hash for name in branches}
    barrier = threading.Barrier(len(branches))
    outcomes: dict[str, object] = {}

    def promote(name: str) -> None:
        barrier.wait()
        try:
            outcomes[name] = catalog.fast_forward(main, heads[name], base)
        except Exception as e:
            outcomes[name] = e

    threads = [threading.Thread(target=promote, args=(name,)) for name in branches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    winners = [name for name, result in outcomes.items() if not isinstance(result, Exception)]
    assert len(winners) == 1, outcomes
    losers = [result for name, result in outcomes.items() if name not in winners]
    assert all(isinstance(e, ConflictError) and not isinstance(e, NotFastForwardError) for e in losers), losers
    winner = winners[0]
    assert catalog.get_ref(main).hash == heads[winner]
    history = [c.hash for c in catalog.log(main)]
    assert history[: history.index(base) + 1] == [c.hash for c in catalog.log(winner)][: history.index(base) + 1]
    assert catalog.is_ancestor(base, main)
    assert ids(catalog, main) == [0, 100 + branches.index(winner)]
    assert no_scratch_left(catalog)


# -- wiring and transport ---------------------------------------------------------------------------


def test_from_settings_reads_the_documented_variables(stack, monkeypatch):
    for key, value in stack.items():
        monkeypatch.setenv(key, value)
    store = NessieBranchCatalog.from_settings(load_settings())
    assert store.uri == stack["NESSIE_URI"].rstrip("/")
    assert store.get_ref(store.default_branch).kind is RefKind.BRANCH
    assert store.s3_options["s3.access-key-id"] == stack["AWS_ACCESS_KEY_ID"]


def test_connection_refused_is_service_unavailable_naming_nessie():
    url = f"http://127.0.0.1:{unused_port()}"
    store = NessieBranchCatalog(url, retries=1, backoff=0)
    with pytest.raises(ServiceUnavailableError) as info:
        store.get_ref("main")
    assert "Nessie" in str(info.value) and url in str(info.value)


def test_http_errors_map_per_call_and_only_transient_faults_retry():
    with FakeServer() as fake:
        store = NessieBranchCatalog(fake.url, retries=2, backoff=0)
        main = {"reference": {"type": "BRANCH", "name": "main", "hash": "a" * 64}}
        fake.fail_then("GET", "/api/v2/trees/main", 2, (200, {}, main), status=503)
        assert store.get_ref("main").hash == "a" * 64
        assert len(fake.requests_to("/api/v2/trees/main")) == 3
        fake.reply("GET", "/api/v2/trees/down", {"message": "boom"}, status=500)
        with pytest.raises(ServiceUnavailableError, match="Nessie"):
            store.get_ref("down")
        assert len(fake.requests_to("/api/v2/trees/down")) == 1  # 500 is not retried, 502-504 are
        fake.reply("GET", "/api/v2/trees/@" + "a" * 64 + "/history", {"logEntries": [], "hasMore": False})
        conflict = {"status": 409, "message": "moved", "errorCode": "REFERENCE_CONFLICT"}
        fake.reply("PUT", f"/api/v2/trees/x@{'b' * 64}", conflict, status=409)
        with pytest.raises(ConflictError):
            store.assign("x", "a" * 64, "b" * 64)
        assert len(fake.requests_to(f"/api/v2/trees/x@{'b' * 64}")) == 1  # never retried
        exists = {"status": 409, "message": "exists", "errorCode": "REFERENCE_ALREADY_EXISTS"}
        fake.reply("POST", "/api/v2/trees", exists, status=409)
        with pytest.raises(AlreadyExistsError):
            store.create_ref("y", "a" * 64)
        with pytest.raises(NotFoundError):
            store.get_ref("nope")


def test_sweep_drops_only_stale_scratch_branches(catalog: NessieBranchCatalog, trunk_name: str):
    from datetime import UTC, datetime

    head = catalog.get_ref(trunk_name).hash
    now = datetime.now(UTC)
    stale = f"{SCRATCH_PREFIX}{int(now.timestamp()) - 7200}-{'a' * 32}"
    fresh = f"{SCRATCH_PREFIX}{int(now.timestamp()) - 60}-{'b' * 32}"
    stale_pr = f"{SCRATCH_PREFIX}pr-{int(now.timestamp()) - 7200}-{'d' * 32}"  # a pull request's
    legacy = f"{SCRATCH_PREFIX}{'c' * 32}"  # a name without a time: its age is unknown, so it stays
    for name in (stale, fresh, legacy, stale_pr):
        catalog._call("POST", "/trees", {"type": "DETACHED", "hash": head}, query={"name": name, "type": "BRANCH"})
    swept = catalog.sweep_leftovers(now)
    assert sorted(ref.name for ref in swept) == sorted([stale, stale_pr])
    left = {data["name"] for data in catalog._pages("/trees", "references")}
    assert fresh in left and legacy in left and stale not in left and stale_pr not in left
    for name in (fresh, legacy):
        catalog._call("DELETE", f"/trees/{name}@{head}")
