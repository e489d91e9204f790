"""The ingest stage on the embedded catalog: which sources it reads, the key each table is upserted on, the row
shapes a source may return, and that nothing is written when a source or a write fails.

Each test is a small project of its own: a cascade.toml and a module of source functions beside it.
"""

from __future__ import annotations

import json
import sys
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from cascade_ci.catalog import open_catalog
from cascade_ci.cli import cli
from cascade_ci.config import load_settings
from cascade_ci.errors import ConfigError, SourceError
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.stages.ingest import ingest, read_sources, selected

SOURCES = '''
import pyarrow as pa

from cascade_ci.errors import SourceError


def orders(ctx):
    amount = float(ctx.options.get("amount", 10))
    return {"orders": pa.table({"order_id": pa.array([1, 2], pa.int64()), "amount": [amount, amount]})}


def more_orders(ctx):
    return {"orders": pa.table({"order_id": pa.array([3, 4], pa.int64()), "amount": [1.0, 2.0]})}


def dicts(ctx):
    return {"events": [{"event_id": "a", "n": 1}, {"event_id": "b", "n": 2}, {"event_id": "c", "n": 3}]}


SCHEMA = pa.schema([("metric", pa.string()), ("value", pa.float64())])


def batches(ctx):
    return {
        "metrics": [
            pa.record_batch([["x"], [1.0]], schema=SCHEMA),
            pa.record_batch([["y", "z"], [2.0, 3.0]], schema=SCHEMA),
        ]
    }


def reader(ctx):
    batch = pa.record_batch([["r"], [9.0]], schema=SCHEMA)
    return {"gauges": pa.RecordBatchReader.from_batches(SCHEMA, [batch]), "single": batch}


def qualified(ctx):
    return {"audit.log": [{"line": "started"}], "plain": [{"line": "here"}]}


def context(ctx):
    row = {"name": ctx.name, "run_id": ctx.run_id, "since": ctx.since, "until": ctx.until, "root": str(ctx.root)}
    row.update({f"option_{key}": str(value) for key, value in sorted(ctx.options.items())})
    return {"seen": [row]}


def two_tables(ctx):
    value = "not a number" if ctx.options.get("break") else 1
    return {"a_first": [{"id": 1, "v": 1}], "b_second": [{"id": 1, "v": value}]}


def broken(ctx):
    raise SourceError("the API said no")


def not_tabular(ctx):
    return {"t": [(1, "a"), (2, "b")]}  # tuples, not dicts


def not_a_mapping(ctx):
    return [{"id": 1}]


NOT_CALLABLE = 5


class Keyed:
    """A source kind (`type = "module:Keyed"`) that knows its tables' keys, as a plugin may."""

    def __init__(self, config, settings):
        self.options = config.options

    def read(self, ctx):
        qty = int(ctx.options.get("qty", 1))
        return {"items": [{"sku": "a", "qty": qty}, {"sku": "b", "qty": qty}]}

    def keys(self, table):
        return ["sku"] if table == "items" else []
'''

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


class Project:
    """A project folder: cascade.toml naming functions of a module written beside it."""

    def __init__(self, root: Path, module: str, stack: ExitStack) -> None:
        self.root, self.module, self._stack = root, module, stack

    def configure(self, toml: str):
        """Write cascade.toml (`MOD` stands for the module's name); return (settings, catalog)."""
        (self.root / "cascade.toml").write_text(toml.replace("MOD", self.module), encoding="utf-8")
        settings = load_settings()
        catalog = self._stack.enter_context(open_catalog(settings))
        create_run_branch(settings, catalog, "1")
        return settings, catalog


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "project"
    root.mkdir()
    module = f"ingest_sources_{uuid.uuid4().hex[:10]}"  # imports are cached per process: a name per test
    (root / f"{module}.py").write_text(SOURCES, encoding="utf-8")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(root)
    with ExitStack() as stack:
        yield Project(root, module, stack)


def assert_failed_and_unchanged(catalog, head: str, ref: str = "pipeline/run-1") -> None:
    """Since `head`, the branch holds only the failed ingest's record: no table changed."""
    after = catalog.get_ref(ref).hash
    assert catalog.diff(head, after) == []
    record = catalog.log(after, limit=1)[0]
    assert (record.parents[0], record.properties["cascade.kind"]) == (head, "ingest")
    assert json.loads(record.properties["cascade.ingest"])["outcome"] == "failed"


def rows(catalog, table: str, ref: str = "pipeline/run-1") -> list[dict]:
    return catalog.tables(ref).load_table(table).scan().to_arrow().to_pylist()


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# --- which sources are read ----------------------------------------------------------------------

SELECTION = """
[sources.second]
python = "MOD:more_orders"

[sources.first]
python = "MOD:orders"

[sources.optional]
python = "MOD:dicts"
default = false
"""


def test_selected_sources(project):
    settings, _ = project.configure(SELECTION)
    assert list(selected(settings)) == ["second", "first"]  # every default source, in the config's order
    assert list(selected(settings, [])) == ["second", "first"]
    assert list(selected(settings, ["all"])) == ["second", "first", "optional"]
    assert list(selected(settings, ["optional", "first"])) == ["optional", "first"]  # as named
    assert list(selected(settings, ["", "first"])) == ["first"]
    with pytest.raises(ConfigError) as caught:
        selected(settings, ["first", "nope", "nada"])
    assert str(caught.value) == "unknown source(s) ['nope', 'nada']; declared: second, first, optional"


def test_no_sources_declared(project, tmp_path, monkeypatch):
    settings, _ = project.configure('ingest_hours = 1\n[transform]\nproject_dir = "dbt"\n')
    with pytest.raises(ConfigError) as caught:
        selected(settings)
    assert str(caught.value) == (
        f"no sources are declared in {project.root / 'cascade.toml'}: add a [sources.NAME] table"
    )
    elsewhere = tmp_path / "no-config"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ConfigError) as caught:
        selected(load_settings())
    assert str(caught.value) == "no sources are declared in cascade.toml (none found): add a [sources.NAME] table"


def test_cli_reads_sources_named_repeatedly_or_comma_separated(project):
    project.configure(SELECTION)
    result = cascade("ingest", "--run-id", "1", "--source", "optional,first", "--source", "second", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["sources"] == ["optional", "first", "second"]
    assert payload["rows"] == {"raw.events": 3, "raw.orders": 4}
    default = cascade("ingest", "--run-id", "1", "--json")
    assert json.loads(default.stdout)["sources"] == ["second", "first"]
    unknown = cascade("ingest", "--run-id", "1", "--source", "nope")
    assert unknown.exit_code == 2
    assert "unknown source(s) ['nope']; declared: second, first, optional" in unknown.stderr
    not_a_pair = cascade("ingest", "--run-id", "1", "-o", "amount")
    assert not_a_pair.exit_code == 2
    assert "'amount' is not KEY=VALUE" in not_a_pair.stderr


# --- the key each table is upserted on ---------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "keys"),
    [
        ('[sources.s]\npython = "MOD:orders"\nkeys = { orders = ["order_id"] }\n', ("order_id",)),
        ('[sources.s]\npython = "MOD:orders"\nkeys = { "raw.orders" = ["order_id", "amount"] }\n',
         ("order_id", "amount")),
        ('[sources.s]\npython = "MOD:orders"\n[tables."raw.orders"]\nunique = ["order_id"]\n', ("order_id",)),
        ('[sources.s]\npython = "MOD:orders"\nkeys = { orders = ["amount"] }\n[tables."raw.orders"]\n'
         'unique = ["order_id"]\n', ("amount",)),
        ('[sources.s]\npython = "MOD:orders"\nkeys = { other = ["x"] }\n', ()),
        ('[sources.s]\npython = "MOD:orders"\n', ()),
        ('[sources.s]\ntype = "MOD:Keyed"\n', ("sku",)),
        ('[sources.s]\ntype = "MOD:Keyed"\nkeys = { items = ["qty"] }\n', ("qty",)),
    ],
    ids=["source-key", "source-key-qualified", "table-unique", "source-key-wins", "key-of-another-table",
         "no-key", "source-kind-own-keys", "declared-beats-own"],
)  # fmt: skip
def test_key_of_each_table(project, toml, keys):
    settings, _ = project.configure(toml)
    (write,) = read_sources(settings, "1", now=NOW)
    assert write.keys == keys


def test_rerun_upserts_on_the_key(project):
    settings, catalog = project.configure('[sources.s]\npython = "MOD:orders"\nkeys = { orders = ["order_id"] }\n')
    ingest(settings, catalog, "1", now=NOW)
    ingest(settings, catalog, "1", options={"amount": "99"}, now=NOW)
    assert sorted((r["order_id"], r["amount"]) for r in rows(catalog, "raw.orders")) == [(1, 99.0), (2, 99.0)]


def test_tables_unique_is_the_key_when_the_source_names_none(project):
    settings, catalog = project.configure(
        '[sources.s]\npython = "MOD:orders"\n[tables."raw.orders"]\nunique = ["order_id"]\n'
    )
    ingest(settings, catalog, "1", now=NOW)
    ingest(settings, catalog, "1", options={"amount": "5"}, now=NOW)
    assert sorted((r["order_id"], r["amount"]) for r in rows(catalog, "raw.orders")) == [(1, 5.0), (2, 5.0)]


def test_a_source_kinds_own_keys_are_the_last_fallback(project):
    settings, catalog = project.configure('[sources.s]\ntype = "MOD:Keyed"\n')
    ingest(settings, catalog, "1", now=NOW)
    ingest(settings, catalog, "1", options={"qty": "7"}, now=NOW)
    assert sorted((r["sku"], r["qty"]) for r in rows(catalog, "raw.items")) == [("a", 7), ("b", 7)]


def test_table_without_a_key_is_appended_to(project):
    settings, catalog = project.configure('[sources.s]\npython = "MOD:orders"\n')
    ingest(settings, catalog, "1", now=NOW)
    ingest(settings, catalog, "1", options={"amount": "99"}, now=NOW)
    assert sorted((r["order_id"], r["amount"]) for r in rows(catalog, "raw.orders")) == [
        (1, 10.0), (1, 99.0), (2, 10.0), (2, 99.0)
    ]  # fmt: skip


# --- what a source may return, and where it lands ----------------------------------------------


def test_dicts_record_batches_and_readers_are_tables(project):
    settings, catalog = project.configure(
        '[sources.d]\npython = "MOD:dicts"\n[sources.b]\npython = "MOD:batches"\n[sources.r]\npython = "MOD:reader"\n'
    )
    result = ingest(settings, catalog, "1", now=NOW)
    assert result.sources == ["d", "b", "r"]
    assert result.rows == {"raw.events": 3, "raw.gauges": 1, "raw.metrics": 3, "raw.single": 1}
    assert result.outputs()["rows"] == "8"
    assert result.head_hash == catalog.get_ref("pipeline/run-1").hash
    assert sorted((r["event_id"], r["n"]) for r in rows(catalog, "raw.events")) == [("a", 1), ("b", 2), ("c", 3)]
    assert sorted((r["metric"], r["value"]) for r in rows(catalog, "raw.metrics")) == [
        ("x", 1.0), ("y", 2.0), ("z", 3.0)
    ]  # fmt: skip
    assert rows(catalog, "raw.gauges") == [{"metric": "r", "value": 9.0}]
    assert rows(catalog, "raw.single") == [{"metric": "r", "value": 9.0}]


def test_namespace_and_qualified_table_names(project):
    settings, catalog = project.configure('[sources.q]\npython = "MOD:qualified"\nnamespace = "landing"\n')
    result = ingest(settings, catalog, "1", now=NOW)
    assert result.rows == {"audit.log": 1, "landing.plain": 1}
    assert rows(catalog, "audit.log") == [{"line": "started"}]
    assert not catalog.tables("pipeline/run-1").table_exists("raw.plain")


def test_two_sources_writing_one_table_are_concatenated(project):
    settings, catalog = project.configure(
        '[sources.a]\npython = "MOD:orders"\n[sources.b]\npython = "MOD:more_orders"\n'
        '[tables."raw.orders"]\nunique = ["order_id"]\n'
    )
    result = ingest(settings, catalog, "1", now=NOW)
    assert result.rows == {"raw.orders": 4}
    assert sorted(r["order_id"] for r in rows(catalog, "raw.orders")) == [1, 2, 3, 4]


def test_a_source_is_told_its_window_options_and_root(project):
    settings, catalog = project.configure(
        'ingest_hours = 6\n[sources.ctx]\npython = "MOD:context"\noptions = { mode = "full", limit = 10 }\n'
    )
    ingest(settings, catalog, "1", options={"limit": "3", "extra": "yes"}, now=NOW)
    assert rows(catalog, "raw.seen") == [
        {
            "name": "ctx",
            "run_id": "1",
            "since": NOW - timedelta(hours=6),
            "until": NOW,
            "root": str(project.root),
            "option_extra": "yes",
            "option_limit": "3",  # -o wins over the config's options
            "option_mode": "full",
        }
    ]


# --- failures write nothing ----------------------------------------------------------------------


def test_a_failing_source_writes_nothing(project):
    settings, catalog = project.configure(
        '[sources.good]\npython = "MOD:orders"\n[sources.bad]\npython = "MOD:broken"\n'
    )
    head = catalog.get_ref("pipeline/run-1").hash
    with pytest.raises(SourceError, match=r"^the API said no$"):
        ingest(settings, catalog, "1", now=NOW)
    assert_failed_and_unchanged(catalog, head)
    assert not catalog.tables("pipeline/run-1").table_exists("raw.orders")  # read first, written never

    head = catalog.get_ref("pipeline/run-1").hash
    result = cascade("ingest", "--run-id", "1", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {"type": "SourceError", "message": "the API said no"}
    assert_failed_and_unchanged(catalog, head)


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("not_tabular", "source 'bad' returned rows for raw.t that are not tabular: "),
        ("not_a_mapping", "MOD:not_a_mapping returned list, not a mapping of table name to rows"),
        ("NOT_CALLABLE", "MOD:NOT_CALLABLE is not callable"),
    ],
)
def test_what_is_not_rows_is_a_source_error(project, function, message):
    settings, catalog = project.configure(f'[sources.bad]\npython = "MOD:{function}"\n')
    head = catalog.get_ref("pipeline/run-1").hash
    with pytest.raises(SourceError) as caught:
        ingest(settings, catalog, "1", now=NOW)
    assert str(caught.value).startswith(message.replace("MOD", project.module))
    assert_failed_and_unchanged(catalog, head)


def test_a_failed_write_leaves_the_branch_where_it_was(project):
    settings, catalog = project.configure('[sources.s]\npython = "MOD:two_tables"\nkeys = { a_first = ["id"] }\n')
    ingest(settings, catalog, "1", now=NOW)
    before = catalog.get_ref("pipeline/run-1").hash
    # raw.a_first is written (upserted) first, then raw.b_second's text does not fit its integer column.
    with pytest.raises(Exception) as caught:  # whatever the table library raises
        ingest(settings, catalog, "1", options={"break": "1"}, now=NOW)
    assert not isinstance(caught.value, AssertionError)
    after = catalog.get_ref("pipeline/run-1").hash
    assert [c.message for c in catalog.log("pipeline/run-1", limit=1)] == ["ingest failed: 0 rows"]
    assert catalog.diff(before, after) == []  # nothing landed: only the failure's record, not even an undo
    assert rows(catalog, "raw.a_first") == [{"id": 1, "v": 1}]
    assert rows(catalog, "raw.b_second") == [{"id": 1, "v": 1}]


def _another_writer_after_the_first_table(catalog, monkeypatch):
    """Make a concurrent writer add other.t to the run's branch once ingest has written its first table."""
    from cascade_ci.stages import ingest as stage

    upsert, calls = stage.upsert, []

    def upsert_then_someone_writes(*args, **kwargs):
        written = upsert(*args, **kwargs)
        if not calls:
            calls.append(1)
            other = catalog.tables("pipeline/run-1")
            other.create_namespace("other")
            other.create_table("other.t", pa.schema([("id", pa.int64())]))
        return written

    monkeypatch.setattr(stage, "upsert", upsert_then_someone_writes)


def test_a_failed_ingest_never_reverts_another_writers_commit(project, monkeypatch):
    settings, catalog = project.configure('[sources.s]\npython = "MOD:two_tables"\nkeys = { a_first = ["id"] }\n')
    _another_writer_after_the_first_table(catalog, monkeypatch)
    with pytest.raises(Exception) as caught:
        ingest(settings, catalog, "1", options={"break": "1"}, now=NOW)
    assert not isinstance(caught.value, AssertionError)
    tables = catalog.tables("pipeline/run-1")
    assert tables.table_exists("other.t"), "the failed ingest reverted another writer's table"
    assert not tables.table_exists("raw.a_first"), "part of a failed ingest landed"


def test_an_ingest_whose_branch_moved_lands_nothing_and_exits_2(project, monkeypatch):
    _, catalog = project.configure('[sources.s]\npython = "MOD:two_tables"\nkeys = { a_first = ["id"] }\n')
    _another_writer_after_the_first_table(catalog, monkeypatch)
    result = cascade("ingest", "--run-id", "1")
    assert result.exit_code == 2 and "moved while ingesting" in result.stderr, result.output
    tables = catalog.tables("pipeline/run-1")
    assert tables.table_exists("other.t") and not tables.table_exists("raw.a_first")
