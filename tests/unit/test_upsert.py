"""cascade's upsert on the embedded catalog (`cascade_ci.catalog.writes`).

Replaced rows are replaced, new rows added, nothing duplicated, for single and compound keys spread over
many files in no particular order; null keys are always appended; only the files holding a replaced key
are rewritten, in the same commit as the append; a table with no such key gets a plain append. Streams
are written chunk by chunk and are still one upsert; one that fails midway in the ingest stage leaves the
branch as it was. The Nessie + S3 twin of these tests is tests/integration/nessie/test_upsert_nessie.py.
"""

from __future__ import annotations

import random
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.types import LongType

from cascade_ci.catalog import writes
from cascade_ci.catalog.keys import old_key_scan
from cascade_ci.catalog.writes import append_rows, upsert

TABLE = "raw.items"


def items(keys: list, version: int, key_type: pa.DataType | None = None, name: str = "k") -> pa.Table:
    return pa.table({name: pa.array(keys, key_type or pa.string()), "v": pa.array([version] * len(keys), pa.int64())})


def pairs(keys: list[tuple], version: int) -> pa.Table:
    return pa.table(
        {
            "k": pa.array([k for k, _ in keys], pa.string()),
            "n": pa.array([n for _, n in keys], pa.int32()),
            "v": pa.array([version] * len(keys), pa.int64()),
        }
    )


def content(tables, table: str = TABLE) -> list[tuple]:
    """The table's rows as sorted tuples (None sorts first)."""
    rows = tables.load_table(table).scan().to_arrow()
    return sorted((tuple(row.values()) for row in rows.to_pylist()), key=lambda row: [(v is not None, v) for v in row])


def expected(*batches: pa.Table, keys: tuple[str, ...]) -> list[tuple]:
    """What upserting `batches` one after the other must leave: the last row per key, every row with a null key."""
    latest: dict[tuple, list[tuple]] = {}
    nulls: list[tuple] = []
    for batch in batches:
        fresh: dict[tuple, list[tuple]] = {}
        for row in batch.to_pylist():
            key = tuple(row[k] for k in keys)
            values = tuple(row.values())
            (nulls.append(values) if None in key else fresh.setdefault(key, []).append(values))
        latest.update(fresh)
    rows = nulls + [row for group in latest.values() for row in group]
    return sorted(rows, key=lambda row: [(v is not None, v) for v in row])


def last_summary(tables, table: str = TABLE):
    """The summary of the table's current snapshot (Nessie keeps no other: no lineage to walk)."""
    return tables.load_table(table).current_snapshot().summary


def head(tables, table: str = TABLE) -> int | None:
    snapshot = tables.load_table(table).current_snapshot()
    return snapshot.snapshot_id if snapshot else None


def files_of(tables, table: str = TABLE) -> set[str]:
    return {task.file.file_path for task in tables.load_table(table).scan().plan_files()}


@pytest.fixture
def tables(catalog):
    return catalog.tables("main")


# --- what an upsert leaves ----------------------------------------------------------------------------


def test_replaced_rows_are_replaced_and_new_rows_added(catalog, tables):
    assert upsert(tables, TABLE, items(["a", "b", "c"], 1), ("k",)) == 3
    commits = len(catalog.log("main"))
    assert upsert(tables, TABLE, items(["b", "d"], 2), ("k",)) == 2
    assert content(tables) == [("a", 1), ("b", 2), ("c", 1), ("d", 2)]
    assert len(catalog.log("main")) == commits + 1  # one commit: the append and the rewrite
    rewrite = last_summary(tables)  # staged after the append: the file holding "b" copied without it
    assert rewrite.operation.value == "overwrite"
    assert (rewrite["deleted-data-files"], rewrite["deleted-records"], rewrite["added-records"]) == ("1", "3", "2")
    assert rewrite["total-records"] == "4"


def test_no_existing_key_is_a_plain_append(tables):
    upsert(tables, TABLE, items(["a", "b"], 1), ("k",))
    before = head(tables)
    upsert(tables, TABLE, items(["c", "d"], 1), ("k",))
    only = last_summary(tables)
    assert only.operation.value == "append" and "deleted-data-files" not in only.additional_properties
    assert head(tables) != before
    assert content(tables) == [("a", 1), ("b", 1), ("c", 1), ("d", 1)]


def test_compound_keys_replace_only_the_same_combination(tables):
    keys = ("k", "n")
    first = pairs([("a", 1), ("a", 2), ("b", 1)], 1)
    second = pairs([("a", 2), ("b", 2), ("a", 3)], 2)
    upsert(tables, TABLE, first, keys)
    upsert(tables, TABLE, second, keys)
    assert content(tables) == [("a", 1, 1), ("a", 2, 2), ("a", 3, 2), ("b", 1, 1), ("b", 2, 2)]


def keys_by_file(tables) -> dict[str, set]:
    """Each data file of the table and the values of `k` it holds."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan

    table = tables.load_table(TABLE)
    scan = table.scan(selected_fields=("k",))
    reader = ArrowScan(table.metadata, table.io, scan.projection(), AlwaysTrue())
    return {task.file.file_path: set(reader.to_table([task]).column("k").to_pylist()) for task in scan.plan_files()}


@pytest.mark.parametrize("keys", [("k",), ("k", "n")], ids=["single", "compound"])
def test_keys_spread_over_many_files_in_no_particular_order(tables, keys):
    shuffle = random.Random(18)
    numbers = list(range(2_000))
    shuffle.shuffle(numbers)

    def rows(ns: list[int], version: int) -> pa.Table:
        return pairs([(f"key-{n:05d}", n % 7) for n in ns], version)

    for start in range(0, 2_000, 100):  # 20 files, each spanning most of the key range
        append_rows(tables, TABLE, rows(numbers[start : start + 100], 0))
    replaced = shuffle.sample(numbers[:1_500], 300)  # keys of the first 15 files only
    incoming = rows(replaced + list(range(2_000, 2_100)), 1)
    incoming = incoming.take(pa.array(shuffle.sample(range(incoming.num_rows), incoming.num_rows)))
    held = keys_by_file(tables)
    untouched = {path for path, held_keys in held.items() if not held_keys & set(incoming.column("k").to_pylist())}
    assert len(held) == 20 and len(untouched) >= 5
    upsert(tables, TABLE, incoming, keys)
    assert content(tables) == expected(rows(numbers, 0), incoming, keys=keys)
    assert len(content(tables)) == 2_100  # nothing duplicated
    rewrite = last_summary(tables)
    assert int(rewrite["deleted-data-files"]) == 20 - len(untouched)  # only the files holding a replaced key
    assert untouched <= set(keys_by_file(tables))


def test_keys_interleaved_with_the_old_ones_replace_only_their_own(tables):
    upsert(tables, TABLE, items(["a", "c", "e"], 1), ("k",))
    upsert(tables, TABLE, items(["b", "c", "d", "f"], 2), ("k",))  # as many keys in c..e as old rows: c, d
    assert content(tables) == [("a", 1), ("b", 2), ("c", 2), ("d", 2), ("e", 1), ("f", 2)]


def test_time_ordered_keys_read_and_rewrite_only_the_newest_file(tables):
    for day in range(10):  # a file per day, keys ordered like ObjectIds
        append_rows(tables, TABLE, items([f"{day:02d}-{i:04d}" for i in range(100)], 0))
    table = tables.load_table(TABLE)
    window = items([f"09-{i:04d}" for i in range(50, 100)] + [f"10-{i:04d}" for i in range(50)], 1)
    assert len(list(old_key_scan(table, head(tables), window.select(["k"]), ("k",)).plan_files())) == 1
    upsert(tables, TABLE, window, ("k",))
    rewrite = last_summary(tables)
    assert (rewrite["deleted-data-files"], rewrite["deleted-records"], rewrite["added-records"]) == ("1", "100", "50")
    assert len(content(tables)) == 1_050


def test_null_keys_are_always_appended_and_never_replace(tables):
    upsert(tables, TABLE, items(["a", None], 1), ("k",))
    upsert(tables, TABLE, items(["a", None, None], 2), ("k",))
    assert content(tables) == [(None, 1), (None, 2), (None, 2), ("a", 2)]
    keys = ("k", "n")
    upsert(tables, "raw.pairs", pairs([("a", 1), ("a", None), (None, 1)], 1), keys)
    upsert(tables, "raw.pairs", pairs([("a", 1), ("a", None), (None, 1)], 2), keys)
    assert content(tables, "raw.pairs") == [
        (None, 1, 1), (None, 1, 2), ("a", None, 1), ("a", None, 2), ("a", 1, 2)
    ]  # fmt: skip


def test_a_key_repeated_within_one_input_is_kept_as_it_comes(tables):
    """As today: the input is not deduplicated; it replaces every older row with its keys."""
    batch = items(["a", "a", "b"], 1)
    upsert(tables, TABLE, batch, ("k",))
    upsert(tables, TABLE, batch, ("k",))
    assert content(tables) == [("a", 1), ("a", 1), ("b", 1)]


@pytest.mark.parametrize("keys", [("k",), ("k", "n")], ids=["single", "compound"])
def test_the_same_upsert_twice_leaves_the_same_rows(tables, keys):
    upsert(tables, TABLE, pairs([("a", 1), ("b", 2)], 0), keys)
    batch = pairs([("b", 2), ("c", 3)], 1)
    upsert(tables, TABLE, batch, keys)
    once = content(tables)
    upsert(tables, TABLE, batch, keys)
    assert content(tables) == once == [("a", 1, 0), ("b", 2, 1), ("c", 3, 1)]


def test_a_renamed_and_widened_key_column_is_followed(tables):
    upsert(tables, TABLE, items([1, 2, 3], 1, pa.int32()), ("k",))
    table = tables.load_table(TABLE)
    with table.update_schema() as update:
        update.update_column("k", field_type=LongType())
        update.rename_column("k", "id")
    upsert(tables, TABLE, items([3, 2**40], 2, pa.int64(), name="id"), ("id",))
    assert content(tables) == [(1, 1), (2, 1), (3, 2), (2**40, 2)]


def test_the_copy_of_a_file_keeps_every_column_as_it_was(tables):
    """The key is read once, the other columns (nested ones too, before and after it) when a file is copied."""

    def rows(keys: list[str], version: int) -> pa.Table:
        return pa.table(
            {
                "tags": pa.array([[k, "x"] for k in keys], pa.list_(pa.string())),
                "k": pa.array(keys),
                "point": pa.array([{"x": version, "label": k} for k in keys]),
                "v": pa.array([version] * len(keys), pa.int64()),
            }
        )

    upsert(tables, TABLE, rows(["a", "b", "c"], 1), ("k",))
    upsert(tables, TABLE, rows(["b"], 2), ("k",))
    assert [field.name for field in tables.load_table(TABLE).schema().fields] == ["tags", "k", "point", "v"]
    assert sorted(tables.load_table(TABLE).scan().to_arrow().to_pylist(), key=lambda row: row["k"]) == [
        {"tags": ["a", "x"], "k": "a", "point": {"x": 1, "label": "a"}, "v": 1},
        {"tags": ["b", "x"], "k": "b", "point": {"x": 2, "label": "b"}, "v": 2},
        {"tags": ["c", "x"], "k": "c", "point": {"x": 1, "label": "c"}, "v": 1},
    ]


@pytest.mark.parametrize("where", ["copy", "stage"])
def test_an_upsert_is_all_or_nothing(tables, monkeypatch, where):
    """A failure while the copy of a file is written, or once the append is staged: no commit at all."""
    import pyiceberg.io.pyarrow as pyiceberg_arrow

    upsert(tables, TABLE, items(["a", "b"], 1), ("k",))
    before, rows = head(tables), content(tables)
    write = pyiceberg_arrow._dataframe_to_data_files

    def fail_on_the_copy(table_metadata, df, *args, **kwargs):
        if "a" in df.column("k").to_pylist():  # the copy of the file holding "a" and "b", without "b"
            raise RuntimeError("disk full")
        return write(table_metadata, df, *args, **kwargs)

    def fail_once_staged(tx, *args):
        assert [u.action for u in tx._updates].count("add-snapshot") == 1  # the append's
        raise RuntimeError("disk full")

    if where == "copy":
        monkeypatch.setattr(pyiceberg_arrow, "_dataframe_to_data_files", fail_on_the_copy)
    else:
        monkeypatch.setattr(writes, "_stage_rewrite", fail_once_staged)
    with pytest.raises(RuntimeError, match="disk full"):
        upsert(tables, TABLE, items(["b", "c"], 2), ("k",))
    assert (head(tables), content(tables)) == (before, rows)


# --- streams --------------------------------------------------------------------------------------------


def batches_of(table: pa.Table, size: int) -> Iterator[pa.RecordBatch]:
    yield from table.to_batches(max_chunksize=size)


def test_a_stream_is_written_in_chunks_as_one_upsert(catalog, tables):
    old = items([f"k{i:03d}" for i in range(0, 100)], 0)
    stream = items([f"k{i:03d}" for i in range(50, 150)] + ["k120", "k060"], 1)  # keys repeated across chunks
    for table in (TABLE, "raw.whole"):
        upsert(tables, table, old, ("k",))
    commits = len(catalog.log("main"))
    assert upsert(tables, TABLE, batches_of(stream, 10), ("k",), chunk_bytes=1) == 102
    assert len(catalog.log("main")) == commits + 11  # a commit per chunk
    upsert(tables, "raw.whole", stream, ("k",))
    assert content(tables) == content(tables, "raw.whole") == expected(old, stream, keys=("k",))
    assert len(content(tables)) == 152


def test_a_reader_is_appended_in_chunks(tables):
    rows = items([f"k{i}" for i in range(30)], 1)
    reader = pa.RecordBatchReader.from_batches(rows.schema, rows.to_batches(max_chunksize=7))
    assert append_rows(tables, TABLE, reader, chunk_bytes=1) == 30
    assert len(files_of(tables)) == 5
    assert append_rows(tables, TABLE, iter([])) == 0
    assert content(tables) == sorted((f"k{i}", 1) for i in range(30))


# --- a stream failing midway in the ingest stage --------------------------------------------------------

STREAMING_SOURCE = """
import pyarrow as pa


def events(ctx):
    version, fail = int(ctx.options.get("version", 0)), ctx.options.get("fail", "")

    def batches():
        for start in range(0, 40, 10):
            if start == 30 and fail == "raise":
                raise RuntimeError("the API broke mid-stream")
            if start == 30 and fail == "shape":
                yield pa.record_batch({"id": pa.array(["not a number"])})
            ids = pa.array(range(start, start + 10), pa.int64())
            yield pa.record_batch({"id": ids, "v": pa.array([version] * 10, pa.int64())})

    return {"events": batches(), "other": [{"id": 1, "v": version}]}
"""


def streaming_project(root: Path, monkeypatch: pytest.MonkeyPatch):
    """A project whose source streams `raw.events` (keyed on id); its run branch `pipeline/run-1` made."""
    from cascade_ci.catalog import open_catalog
    from cascade_ci.config import load_settings
    from cascade_ci.stages.branch import create_run_branch

    root.mkdir()
    module = f"streaming_{uuid.uuid4().hex[:10]}"
    (root / f"{module}.py").write_text(STREAMING_SOURCE, encoding="utf-8")
    (root / "cascade.toml").write_text(f'[sources.s]\npython = "{module}:events"\nkeys = {{ events = ["id"] }}\n')
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(root)
    settings = load_settings()
    catalog = open_catalog(settings)
    create_run_branch(settings, catalog, "1")
    return settings, catalog


def fail_midway(settings, catalog, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Ingest once, then again with a stream that fails after some of its chunks were committed."""
    from cascade_ci.errors import SourceError
    from cascade_ci.stages.ingest import ingest

    branch = "pipeline/run-1"
    assert ingest(settings, catalog, "1").rows == {"raw.events": 40, "raw.other": 1}
    before = catalog.get_ref(branch).hash
    monkeypatch.setattr(writes, "CHUNK_BYTES", 1)  # a commit per batch: some land before the failure
    error = RuntimeError if how == "raise" else SourceError
    with pytest.raises(error, match="mid-stream" if how == "raise" else "source 's' returned rows for raw.events"):
        ingest(settings, catalog, "1", options={"version": "1", "fail": how})
    after = catalog.get_ref(branch).hash  # the chunks landed on a scratch branch, never on this one
    newest = [commit.message for commit in catalog.log(branch, limit=1)]
    assert newest == ["ingest failed: 0 rows"]  # only the failure's record, no data and no undo
    assert catalog.diff(before, after) == []
    tables = catalog.tables(branch)
    assert content(tables, "raw.events") == [(i, 0) for i in range(40)]
    assert content(tables, "raw.other") == [(1, 0)]
    assert ingest(settings, catalog, "1", options={"version": "2"}).rows == {"raw.events": 40, "raw.other": 1}
    assert content(tables, "raw.events") == [(i, 2) for i in range(40)]


@pytest.mark.parametrize("how", ["raise", "shape"])
def test_a_stream_failing_midway_leaves_the_branch_unchanged(tmp_path, monkeypatch, how):
    settings, catalog = streaming_project(tmp_path / "project", monkeypatch)
    with catalog:
        fail_midway(settings, catalog, monkeypatch, how)


def test_a_source_that_grows_a_column_adds_it_and_keeps_the_old_rows(tables):
    upsert(tables, TABLE, items(["1", "2"], 1), ("k",))
    grown = items(["2", "3"], 2).append_column("note", pa.array(["two", "three"]))
    upsert(tables, TABLE, grown, ("k",))
    table = tables.load_table(TABLE)
    assert [field.name for field in table.schema().fields][-1] == "note"
    rows = sorted(table.scan().to_arrow().to_pylist(), key=lambda row: row["k"])
    assert [(row["k"], row["note"]) for row in rows] == [("1", None), ("2", "two"), ("3", "three")]
