"""The embedded engine on a real embedded catalog: lazy views over a branch, incremental publishing, read-only SQL."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pytest
from pyiceberg.manifest import FileFormat
from pyiceberg.types import LongType, StringType

import cascade_ci.engine.duckdb as engine_module
from cascade_ci.catalog.writes import replace_table
from cascade_ci.engine.base import DbtTarget, Engine, Model
from cascade_ci.engine.duckdb import BASE_SCHEMA, DuckDbEngine, quoted
from cascade_ci.errors import ConfigError
from tests.conftest import read_rows, readings, write_rows

BRANCH = "pipeline/run-1"
START = datetime(2026, 1, 1)


@pytest.fixture
def engine(catalog, settings):
    catalog.create_ref(BRANCH, "main")
    return DuckDbEngine.from_settings(settings, catalog)


def events(first: int, count: int) -> pa.Table:
    """Time-ordered rows: one per minute from START + `first` minutes."""
    ids = list(range(first, first + count))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "ts": pa.array([START + timedelta(minutes=i) for i in ids], pa.timestamp("us")),
            "value": pa.array([float(i) for i in ids], pa.float64()),
        }
    )


def relations(engine: DuckDbEngine) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(views, tables) of the engine's DuckDB file, as (schema, name)."""
    con = duckdb.connect(str(engine.path), read_only=True)
    try:
        views = set(con.execute("SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal").fetchall())
        tables = set(con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall())
    finally:
        con.close()
    return views, tables


def sql(engine: DuckDbEngine, statement: str, params: list | None = None) -> list[tuple]:
    """Run SQL on the DuckDB file, as dbt would between prepare and publish."""
    con = duckdb.connect(str(engine.path))
    try:
        return con.execute(statement, params or []).fetchall()
    finally:
        con.close()


def by_id(rows: pa.Table) -> list[dict]:
    return sorted(rows.to_pylist(), key=lambda row: row["id"])


# --- prepare: lazy views ----------------------------------------------------------------------------


def test_the_engine_is_an_engine_made_from_settings(engine, settings):
    assert isinstance(engine, Engine)
    assert engine.threads == 2
    assert engine.path == settings.path(settings.home) / "dbt" / "cascade.duckdb"


def test_prepare_exposes_every_namespace_as_views_without_copying(engine, catalog):
    write_rows(catalog, BRANCH, "raw.readings", readings(1, 2, 3))
    write_rows(catalog, BRANCH, "staging.events", events(0, 5))
    write_rows(catalog, BRANCH, "marts.totals", readings(7))
    target = engine.prepare(BRANCH)
    assert isinstance(target, DbtTarget) and target.output["path"] == str(engine.path)
    views, tables = relations(engine)
    assert {("raw", "readings"), ("staging", "events"), ("marts", "totals")} <= views
    assert not {("raw", "readings"), ("staging", "events"), ("marts", "totals")} & tables, "nothing is copied"
    assert sorted(sql(engine, 'SELECT id, sgv FROM "raw"."readings"')) == [(1, 101), (2, 102), (3, 103)]
    assert sql(engine, "SELECT max(ts) FROM staging.events") == [(START + timedelta(minutes=4),)]


def test_a_view_reads_only_the_row_groups_its_filter_needs(engine, catalog):
    for day in range(6):  # six appends: six files, one row group each, in time order
        write_rows(catalog, BRANCH, "raw.events", events(day * 1440, 1440))
    engine.prepare(BRANCH)
    con = duckdb.connect(str(engine.path), read_only=True)
    try:
        day = START + timedelta(days=3)
        query = "SELECT count(*), sum(value) FROM raw.events WHERE ts >= ? AND ts < ?"
        assert con.execute(query, [day, day + timedelta(days=1)]).fetchall() == [
            (1440, float(sum(range(3 * 1440, 4 * 1440))))
        ]
        plan = con.execute("EXPLAIN ANALYZE " + query, [day, day + timedelta(days=1)]).fetchall()[0][1]
    finally:
        con.close()
    assert "READ_PARQUET" in plan
    scanned = re.search(r"Row Groups Scanned: (\d+) / (\d+)", plan)
    assert scanned is not None, plan
    assert (int(scanned.group(1)), int(scanned.group(2))) == (1, 6), plan


def test_added_columns_read_null_in_older_files(engine, catalog):
    write_rows(catalog, BRANCH, "raw.readings", readings(1, 2))
    tables = catalog.tables(BRANCH)
    with tables.load_table("raw.readings").update_schema() as update:
        update.add_column("device", StringType())
        update.update_column("sgv", field_type=LongType())  # a type promotion: still a view
    newer = pa.table({"id": pa.array([3], pa.int64()), "sgv": pa.array([5], pa.int64()), "device": pa.array(["pump"])})
    tables.load_table("raw.readings").append(newer)
    write_rows(catalog, BRANCH, "raw.later", readings(1))
    with catalog.tables(BRANCH).load_table("raw.later").update_schema() as update:
        update.add_column("note", StringType())  # in no data file yet
    engine.prepare(BRANCH)
    views, tables_ = relations(engine)
    assert {("raw", "readings"), ("raw", "later")} <= views
    assert not {("raw", "readings"), ("raw", "later")} & tables_
    assert sql(engine, "SELECT id, sgv, device FROM raw.readings ORDER BY id") == [
        (1, 101, None),
        (2, 102, None),
        (3, 5, "pump"),
    ]
    columns = "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'readings'"
    assert sql(engine, columns)[1] == ("sgv", "BIGINT")
    assert sql(engine, "SELECT * FROM raw.later") == [(1, 101, None)]


def test_a_renamed_column_falls_back_to_a_copy_that_reads_right(engine, catalog):
    write_rows(catalog, BRANCH, "raw.readings", readings(1, 2))
    tables = catalog.tables(BRANCH)
    with tables.load_table("raw.readings").update_schema() as update:
        update.rename_column("sgv", "glucose")
    tables.load_table("raw.readings").append(
        pa.table({"id": pa.array([3], pa.int64()), "glucose": pa.array([9], pa.int32())})
    )
    engine.prepare(BRANCH)
    views, tables_ = relations(engine)
    assert ("raw", "readings") in tables_ and ("raw", "readings") not in views
    assert sql(engine, "SELECT id, glucose FROM raw.readings ORDER BY id") == [(1, 101), (2, 102), (3, 9)]


def test_a_name_reused_for_a_new_column_falls_back(engine, catalog):
    write_rows(catalog, BRANCH, "raw.readings", readings(1))
    tables = catalog.tables(BRANCH)
    with tables.load_table("raw.readings").update_schema(allow_incompatible_changes=True) as update:
        update.delete_column("sgv")
    with tables.load_table("raw.readings").update_schema() as update:
        update.add_column("sgv", StringType())  # same name, new field id: old files' sgv is not this one
    engine.prepare(BRANCH)
    _, tables_ = relations(engine)
    assert ("raw", "readings") in tables_
    assert sql(engine, "SELECT id, sgv FROM raw.readings") == [(1, None)]


def test_a_retyped_column_no_file_holds_any_more_stays_a_view(engine, catalog):
    replace_table(catalog.tables(BRANCH), "marts.daily", readings(1, 2))
    retyped = pa.table({"id": pa.array([3], pa.int64()), "sgv": pa.array(["high"])})
    replace_table(catalog.tables(BRANCH), "marts.daily", retyped)  # sgv: int -> string, no Iceberg promotion
    metadata = catalog.tables(BRANCH).load_table("marts.daily").metadata
    assert not engine_module.names_compatible(metadata), metadata.schemas
    engine.prepare(BRANCH)
    views, _ = relations(engine)
    assert ("marts", "daily") in views, "every file of the snapshot holds sgv as the current schema has it"
    assert sql(engine, "SELECT id, sgv FROM marts.daily") == [(3, "high")]


def test_an_empty_table_is_an_empty_typed_table(engine, catalog):
    tables = catalog.tables(BRANCH)
    tables.create_namespace("raw")
    tables.create_table("raw.empty", events(0, 1).schema)
    engine.prepare(BRANCH)
    assert sql(engine, "SELECT count(*) FROM raw.empty") == [(0,)]
    columns = sql(engine, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'empty'")
    assert columns == [("id", "BIGINT"), ("ts", "TIMESTAMP"), ("value", "DOUBLE")]


def test_files_a_view_cannot_read_right_are_refused(catalog):
    write_rows(catalog, "main", "raw.readings", readings(1))
    table = catalog.tables("main").load_table("raw.readings")

    def task(path: str, deletes: tuple = (), file_format: FileFormat = FileFormat.PARQUET) -> SimpleNamespace:
        return SimpleNamespace(file=SimpleNamespace(file_path=path, file_format=file_format), delete_files=deletes)

    files = engine_module._local_parquet_files
    assert files(table, [task("file:///w/a.parquet"), task("/w/b.parquet")]) == ["/w/a.parquet", "/w/b.parquet"]
    assert files(table, [task("file:///w/a.parquet", deletes=("d",))]) is None
    assert files(table, [task("s3://bucket/w/a.parquet")]) is None
    assert files(table, [task("file:///w/a*.parquet")]) is None
    assert files(table, [task("file:///w/a.orc", file_format=FileFormat.ORC)]) is None


def test_quoted_refuses_names_that_are_not_plain():
    assert quoted("raw.orders") == '"raw"."orders"'
    for bad in ('raw."x', "raw", "a.b.c", "raw.or ders", "raw.x;drop"):
        with pytest.raises(ValueError):
            quoted(bad)


# --- publish -------------------------------------------------------------------------------------------


@pytest.fixture
def spies(monkeypatch) -> list[str]:
    """Which write each publish used: the real writes, recorded."""
    calls: list[str] = []
    for name in ("replace_table", "upsert", "append_rows"):
        real = getattr(engine_module, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(engine_module, name, spy)
    return calls


def test_a_table_model_replaces_the_table(engine, catalog, spies):
    replace_table(catalog.tables(BRANCH), "marts.daily", readings(1, 2, 3))
    engine.prepare(BRANCH)
    sql(engine, "DROP VIEW marts.daily")  # dbt's table build: the view of the old table goes, a table comes
    sql(engine, "CREATE TABLE marts.daily AS SELECT 9::BIGINT AS id, 'x' AS label")
    rows = engine.publish(BRANCH, [Model("marts.daily", "table")])
    assert rows == {"marts.daily": 1}
    assert read_rows(catalog, BRANCH, "marts.daily").to_pylist() == [{"id": 9, "label": "x"}]
    assert spies == ["replace_table"]


def test_incremental_append_only_is_an_iceberg_append(engine, catalog, spies):
    replace_table(catalog.tables(BRANCH), "marts.events", events(0, 100))
    engine.prepare(BRANCH, ["marts.events", "marts.not_yet_built"])
    views, tables = relations(engine)
    assert ("marts", "events") in tables, "dbt appends into it: a real table"
    assert (BASE_SCHEMA, "marts__events") in views, "its original content stays visible, lazily"
    before = catalog.tables(BRANCH).load_table("marts.events").current_snapshot().snapshot_id
    new_rows = "SELECT id + 100, ts + INTERVAL 100 MINUTE, value + 100 FROM marts.events WHERE id < 7"
    sql(engine, f"INSERT INTO marts.events {new_rows}")  # dbt's incremental insert

    rows = engine.publish(BRANCH, [Model("marts.events", "incremental")])

    assert rows == {"marts.events": 107}
    table = catalog.tables(BRANCH).load_table("marts.events")
    snapshot = table.current_snapshot()
    assert snapshot.summary.operation.value == "append"
    assert snapshot.parent_snapshot_id == before
    assert snapshot.summary["added-records"] == "7"
    assert by_id(table.scan().to_arrow()) == by_id(events(0, 107))
    assert spies == ["append_rows"]


def test_incremental_with_nothing_new_writes_nothing(engine, catalog, spies):
    replace_table(catalog.tables(BRANCH), "marts.events", events(0, 10))
    head = catalog.get_ref(BRANCH).hash
    engine.prepare(BRANCH, ["marts.events"])
    assert engine.publish(BRANCH, [Model("marts.events", "incremental")]) == {"marts.events": 10}
    assert catalog.get_ref(BRANCH).hash == head


def test_incremental_merge_on_unique_key_is_an_upsert(engine, catalog, spies):
    replace_table(catalog.tables(BRANCH), "marts.events", events(0, 10))
    engine.prepare(BRANCH, ["marts.events"])
    sql(engine, "UPDATE marts.events SET value = -1 WHERE id IN (3, 4)")  # dbt's merge: two rows changed ...
    sql(engine, "INSERT INTO marts.events SELECT * FROM marts.events WHERE id = 9")  # ... and one new row
    sql(engine, "UPDATE marts.events SET id = 10 WHERE rowid = (SELECT max(rowid) FROM marts.events)")

    rows = engine.publish(BRANCH, [Model("marts.events", "incremental", unique_key=("id",))])

    assert rows == {"marts.events": 11}
    expected = events(0, 10).to_pylist()
    expected[3]["value"] = expected[4]["value"] = -1.0
    expected.append({**expected[9], "id": 10})
    assert by_id(read_rows(catalog, BRANCH, "marts.events")) == expected
    assert spies == ["upsert"]


def test_incremental_removing_rows_replaces(engine, catalog, spies):
    replace_table(catalog.tables(BRANCH), "marts.events", events(0, 10))
    engine.prepare(BRANCH, ["marts.events"])
    sql(engine, "DELETE FROM marts.events WHERE id = 2")  # a removed key no added row carries
    rows = engine.publish(BRANCH, [Model("marts.events", "incremental", unique_key=("id",))])
    assert rows == {"marts.events": 9}
    assert [row["id"] for row in by_id(read_rows(catalog, BRANCH, "marts.events"))] == [0, 1, *range(3, 10)]
    assert spies == ["replace_table"]


def test_incremental_built_the_first_time_replaces(engine, catalog, spies):
    engine.prepare(BRANCH, ["marts.events"])
    sql(engine, "CREATE SCHEMA IF NOT EXISTS marts")
    sql(engine, "CREATE TABLE marts.events AS SELECT range AS id FROM range(3)")
    assert engine.publish(BRANCH, [Model("marts.events", "incremental")]) == {"marts.events": 3}
    assert sorted(read_rows(catalog, BRANCH, "marts.events")["id"].to_pylist()) == [0, 1, 2]
    assert spies == ["replace_table"]


def test_incremental_on_a_table_that_moved_since_prepare_replaces(engine, catalog, spies):
    replace_table(catalog.tables(BRANCH), "marts.events", events(0, 5))
    engine.prepare(BRANCH, ["marts.events"])
    catalog.tables(BRANCH).load_table("marts.events").append(events(50, 1))  # someone else wrote meanwhile
    sql(engine, "INSERT INTO marts.events SELECT * FROM marts.events WHERE id = 4")
    engine.publish(BRANCH, [Model("marts.events", "incremental")])
    assert read_rows(catalog, BRANCH, "marts.events").num_rows == 6, "the model is the truth, not base + new rows"
    assert spies == ["replace_table"]


# --- query ---------------------------------------------------------------------------------------------


def test_query_reads_a_branch_and_a_commit(engine, catalog):
    write_rows(catalog, BRANCH, "raw.readings", readings(1, 2))
    write_rows(catalog, BRANCH, "staging.events", events(0, 3))
    old = catalog.get_ref(BRANCH).hash
    write_rows(catalog, BRANCH, "raw.readings", readings(3))
    joined = "SELECT count(*) FROM raw.readings r JOIN staging.events e ON r.id = e.id"
    assert engine.query(BRANCH, joined) == [(2,)]
    assert engine.query(old, "SELECT count(*) FROM raw.readings") == [(2,)]
    assert engine.query(BRANCH, "WITH r AS (SELECT * FROM raw.readings) SELECT max(id) FROM r;") == [(3,)]


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE x AS SELECT 1",
        "COPY (SELECT 1) TO 'out.csv'",
        "COPY raw.readings TO 'out.parquet'",
        "ATTACH 'other.duckdb'",
        "SELECT 1; SELECT 2",
        "INSERT INTO raw.readings VALUES (9, 9)",
        "SET enable_external_access = true",
        "PRAGMA database_list",
        "",
    ],
)
def test_query_refuses_anything_but_one_select(engine, catalog, tmp_path, statement):
    write_rows(catalog, BRANCH, "raw.readings", readings(1))
    head = catalog.get_ref(BRANCH).hash
    with pytest.raises(ConfigError, match="only one SELECT"):
        engine.query(BRANCH, statement)
    assert not list(tmp_path.glob("out.*")) and not (tmp_path / "other.duckdb").exists()
    assert catalog.get_ref(BRANCH).hash == head


def test_a_select_cannot_read_other_files(engine, catalog, tmp_path):
    write_rows(catalog, BRANCH, "raw.readings", readings(1))
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    with pytest.raises(ConfigError, match="disabled by configuration"):
        engine.query(BRANCH, f"SELECT * FROM read_csv('{secret}')")


def test_sql_errors_are_config_errors(engine, catalog):
    write_rows(catalog, BRANCH, "raw.readings", readings(1))
    with pytest.raises(ConfigError, match="nope"):
        engine.query(BRANCH, "SELECT nope FROM raw.readings")
    with pytest.raises(ConfigError, match="does not parse"):
        engine.query(BRANCH, "SELEC 1")


# --- with dbt ------------------------------------------------------------------------------------------

INCREMENTAL_MODEL = """\
{{ config(materialized='incremental', unique_key='id', incremental_strategy='delete+insert') }}
select id, sgv from {{ source('raw', 'readings') }}
{% if is_incremental() %} where id >= (select max(id) from {{ this }}) {% endif %}
"""


def dbt_run(engine: DuckDbEngine, project, target: DbtTarget) -> None:
    """`dbt run` in-process on the engine's target, as the transform stage runs it."""
    import json

    from dbt.cli.main import dbtRunner

    profiles = engine.work_dir / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    output = {**target.output, "schema": "marts"}
    (profiles / "profiles.yml").write_text(json.dumps({"cascade": {"target": "b", "outputs": {"b": output}}}))
    paths = ["--target-path", str(engine.work_dir / "target"), "--log-path", str(engine.work_dir / "logs")]
    result = dbtRunner().invoke(
        ["run", "--project-dir", str(project), "--profiles-dir", str(profiles), "--log-level", "none", *paths]
    )
    assert result.success, result.exception or result.result


def test_dbt_incremental_runs_become_an_append_then_an_upsert(engine, catalog, tmp_path, monkeypatch, spies):
    from cascade_ci.catalog.writes import upsert

    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text('name: p\nversion: "1.0"\nconfig-version: 2\nprofile: cascade\n')
    (project / "models" / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: raw\n    schema: raw\n    tables:\n      - name: readings\n"
    )
    (project / "models" / "inc.sql").write_text(INCREMENTAL_MODEL)
    model = Model("marts.inc", "incremental", unique_key=("id",))

    def run() -> dict[str, int]:
        target = engine.prepare(BRANCH, ["marts.inc"])
        dbt_run(engine, project, target)
        return engine.publish(BRANCH, [model])

    write_rows(catalog, BRANCH, "raw.readings", readings(1, 2, 3))
    assert run() == {"marts.inc": 3}  # first build: the table is made
    write_rows(catalog, BRANCH, "raw.readings", readings(4, 5))
    assert run() == {"marts.inc": 5}  # new rows only: an Iceberg append
    assert catalog.tables(BRANCH).load_table("marts.inc").current_snapshot().summary.operation.value == "append"
    upsert(
        catalog.tables(BRANCH), "raw.readings", pa.table({"id": [5, 6], "sgv": pa.array([0, 6], pa.int32())}), ("id",)
    )
    assert run() == {"marts.inc": 6}  # row 5 changed, row 6 new: an upsert on the unique key
    assert spies == ["replace_table", "append_rows", "upsert"]
    rows = by_id(read_rows(catalog, BRANCH, "marts.inc"))
    assert [(row["id"], row["sgv"]) for row in rows] == [(1, 101), (2, 102), (3, 103), (4, 104), (5, 0), (6, 6)]


def test_only_iceberg_promotions_read_through_a_cast():
    promotes = engine_module._promotes
    assert promotes("INTEGER", "BIGINT") and promotes("FLOAT", "DOUBLE") and promotes("VARCHAR", "VARCHAR")
    assert promotes("DECIMAL(10,2)", "DECIMAL(12,2)")
    assert not promotes("DECIMAL(12,2)", "DECIMAL(10,2)") and not promotes("DECIMAL(10,2)", "DECIMAL(10,3)")
    assert not promotes("INTEGER", "VARCHAR") and not promotes("BIGINT", "INTEGER")


def test_files_of_a_type_no_promotion_reaches_do_not_match(catalog):
    write_rows(catalog, "main", "raw.readings", readings(1))
    tables = catalog.tables("main")
    with tables.load_table("raw.readings").update_schema(allow_incompatible_changes=True) as update:
        update.update_column("sgv", field_type=StringType())  # int -> string under the same field id
    table = tables.load_table("raw.readings")
    files = engine_module._local_parquet_files(table, list(table.scan().plan_files()))
    con = duckdb.connect()
    assert not engine_module.names_compatible(table.metadata)
    assert engine_module.files_match(con, files, table.schema()) is False, "the file holds sgv as INTEGER"
    write_rows(catalog, "main", "raw.fine", readings(1))
    fine = tables.load_table("raw.fine")
    fine_files = engine_module._local_parquet_files(fine, list(fine.scan().plan_files()))
    assert engine_module.files_match(con, fine_files, fine.schema()) is True
