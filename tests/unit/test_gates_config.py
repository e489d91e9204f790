"""The gates judge what the project's cascade.toml declares: tables, schemas, unique keys, freshness, gates."""

from __future__ import annotations

import json
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandera.polars as pa_pl
import polars as pl
import pyarrow as pa
import pytest

from cascade_ci.branch_state import DBT_FRESHNESS, DBT_TESTS, KIND, MetaKind, read_branch
from cascade_ci.config import CheckConfig, Settings, load_settings
from cascade_ci.errors import ServiceUnavailableError
from cascade_ci.gates import Gate, GateContext, dbt_gate, freshness_gate, pandera_gate, run_gate, sql_gate
from cascade_ci.gates.pandera_schemas import read_yaml_schema
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.verdict import Level, Status
from tests.conftest import readings, write_rows

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

# What `orders_schema().to_yaml()` writes (pandera 0.35), plus the one line pandera cannot write: `metadata`.
ORDERS_YAML = """\
schema_type: polars_dataframe
api: polars
columns:
  id:
    dtype: Int64
    unique: true
    greater_than_or_equal_to: 0
  status:
    dtype: String
    nullable: true
    metadata: {severity: warning}
    isin:
    - open
    - closed
  amount:
    dtype: Float64
    in_range:
      min_value: 0
      max_value: 1000
      include_min: true
      include_max: true
  placed_at:
    dtype: Datetime(time_unit='us', time_zone='UTC')
    greater_than_or_equal_to: 2020-01-01 00:00:00+00:00
"""


def orders_schema() -> pa_pl.DataFrameSchema:
    """The schema ORDERS_YAML describes, built when compared: pandera's checks compare their functions, which
    change once the polars backend registers (a check built before the first validation equals none after)."""
    return pa_pl.DataFrameSchema(
        {
            "id": pa_pl.Column(pl.Int64, unique=True, checks=[pa_pl.Check.ge(0)]),
            "status": pa_pl.Column(
                pl.String,
                nullable=True,
                checks=[pa_pl.Check.isin(["open", "closed"])],
                metadata={"severity": "warning"},
            ),
            "amount": pa_pl.Column(pl.Float64, checks=[pa_pl.Check.in_range(0, 1000)]),
            "placed_at": pa_pl.Column(
                pl.Datetime("us", "UTC"), checks=[pa_pl.Check.ge(datetime(2020, 1, 1, tzinfo=UTC))]
            ),
        }
    )


def orders(ids: list[int], status: list[str | None] | None = None) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "status": pa.array(status or ["open"] * len(ids), pa.string()),
            "amount": pa.array([10.0] * len(ids), pa.float64()),
            "placed_at": pa.array([datetime(2026, 3, 1, tzinfo=UTC)] * len(ids), pa.timestamp("us", "UTC")),
        }
    )


def project(tmp_path: Path, toml: str, files: dict[str, str] | None = None, **overrides: object) -> Settings:
    """A project folder with `cascade.toml` (and other files), its settings loaded as the CLI would."""
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    (tmp_path / "cascade.toml").write_text(textwrap.dedent(toml), encoding="utf-8")
    return load_settings(tmp_path / "cascade.toml", **overrides)


def branch(settings: Settings, catalog, run_id: str = "r1") -> str:
    return create_run_branch(settings, catalog, run_id).branch


def context(settings: Settings, catalog, name: str, now: datetime = NOW, full: bool = False) -> GateContext:
    """The context `validate` builds for the branch head."""
    state = read_branch(catalog, name)
    head, base = state.ref.hash, state.base_hash
    changes = tuple(catalog.diff(base, head))
    return GateContext(settings, catalog, name, head, base, changes, state, full=full, now=now)


def failing(result) -> dict[tuple[str, str], Level]:
    return {(check.table, check.name): check.severity for check in result.checks if not check.passed}


@pytest.fixture
def isolated_imports(monkeypatch, tmp_path):
    """The project's modules importable (as `module:attr` makes them); sys.path and the modules undone after."""
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    yield
    for name in [name for name in sys.modules if name.startswith("gates_cfg_")]:
        del sys.modules[name]


# --- pandera: declared tables only --------------------------------------------------------------------


def test_declared_unique_key_with_a_duplicate_blocks(tmp_path, catalog):
    settings = project(tmp_path, '[tables."raw.orders"]\nunique = ["id"]\n')
    name = branch(settings, catalog)
    write_rows(catalog, name, "raw.orders", orders([1, 2, 2]))
    result = pandera_gate.run(context(settings, catalog, name))
    assert failing(result) == {("raw.orders", "id:unique"): Level.ERROR}
    assert result.status is Status.FAIL
    assert [c.name for c in result.checks] == ["id:unique", "id:present"]  # no dtype rule for an untyped key


@pytest.mark.parametrize(("keys", "check"), [(["id"], "id:unique"), (["id", "sgv"], "unique:id,sgv")])
def test_appended_row_colliding_with_an_old_one_blocks(tmp_path, catalog, keys, check):
    settings = project(tmp_path, f'[tables."raw.readings"]\nunique = {json.dumps(keys)}\n')
    write_rows(catalog, "main", "raw.readings", readings(1, 2, 3))
    name = branch(settings, catalog)
    write_rows(catalog, name, "raw.readings", readings(3, 4))
    result = pandera_gate.run(context(settings, catalog, name))
    [found] = [c for c in result.checks if c.name == check]
    assert not found.passed and found.severity is Level.ERROR
    assert "2 added rows" in found.message  # judged incrementally, yet the old row is seen
    assert result.status is Status.FAIL


def test_null_keys_are_not_duplicates_of_each_other(tmp_path, catalog):
    settings = project(tmp_path, '[tables."raw.pairs"]\nunique = ["a", "b"]\n')
    name = branch(settings, catalog)
    rows = pa.table({"a": pa.array([None, None, 1, 1], pa.int64()), "b": pa.array([5, 5, 6, 6], pa.int64())})
    write_rows(catalog, name, "raw.pairs", rows)
    [check] = pandera_gate.run(context(settings, catalog, name)).checks
    assert check.name == "unique:a,b" and not check.passed
    assert check.observed == 2  # the two (1, 6) rows; the (null, 5) rows are not duplicates


def test_undeclared_tables_are_not_judged_and_absent_ones_not_reported(tmp_path, catalog):
    settings = project(tmp_path, '[tables."raw.elsewhere"]\nunique = ["id"]\n')
    name = branch(settings, catalog)
    write_rows(catalog, name, "raw.orders", orders([1, 1]))  # duplicates, but nobody declared raw.orders
    result = pandera_gate.run(context(settings, catalog, name))
    assert result.checks == () and result.status is Status.PASS


def test_yaml_as_pandera_writes_it_round_trips_with_metadata():
    written = orders_schema().to_yaml()
    assert written == ORDERS_YAML.replace("    metadata: {severity: warning}\n", "")  # pandera writes no metadata
    assert read_yaml_schema(ORDERS_YAML) == orders_schema()
    assert read_yaml_schema(written) != orders_schema()  # ...so the metadata line is what carries the severity
    assert read_yaml_schema(ORDERS_YAML).to_yaml() == written
    changed = ORDERS_YAML.replace("max_value: 1000", "max_value: 999")
    assert read_yaml_schema(changed) != orders_schema()


def test_yaml_checks_list_and_typos():
    listed = read_yaml_schema(
        "columns:\n  amount:\n    dtype: Float64\n    checks:\n"
        "    - {min_value: 0, max_value: 1000, options: {check_name: in_range}}\n"
    )
    assert listed.columns["amount"].checks == orders_schema().columns["amount"].checks
    with pytest.raises(ValueError, match="unknown key 'isIn'"):
        read_yaml_schema("columns:\n  a:\n    dtype: Int64\n    isIn: [1]\n")


def test_failures_no_rule_names_still_block(tmp_path, catalog):
    strict = "strict: true\nchecks:\n- value: 0\n  options: {check_name: greater_than_or_equal_to}\n"
    schema = "columns:\n  id: {dtype: Int64}\n  amount: {dtype: Float64}\n" + strict
    settings = project(tmp_path, '[tables."raw.orders"]\nschema = "orders.yml"\n', {"orders.yml": schema})
    name = branch(settings, catalog)
    write_rows(catalog, name, "raw.orders", orders([1, -2]).select(["id", "amount", "status"]))
    result = pandera_gate.run(context(settings, catalog, name))
    assert failing(result) == {
        ("raw.orders", "greater_than_or_equal_to"): Level.ERROR,
        ("raw.orders", "schema"): Level.ERROR,
    }
    [other] = [c for c in result.checks if c.name == "schema"]
    assert "column_in_schema" in other.message  # `status` is not in a strict schema


def test_yaml_date_bounds_compare_as_dates():
    schema = read_yaml_schema("columns:\n  d:\n    dtype: Date\n    greater_than_or_equal_to: '2020-01-02'\n")
    frame = pl.DataFrame({"d": [date(2020, 1, 1), date(2020, 1, 2)]})
    failures = pandera_gate._failures(schema, frame)
    assert failures is not None and failures["failure_case"].to_list() == ["2020-01-01"]


@pytest.mark.parametrize(("critical", "level"), [("error", Level.WARN), ("warning", Level.ERROR)])
def test_yaml_schema_warning_column_warns(tmp_path, catalog, critical, level):
    settings = project(
        tmp_path,
        '[tables."raw.orders"]\nschema = "schemas/orders.yaml"\n',
        pandera_critical_level=critical,
    )
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "orders.yaml").write_text(ORDERS_YAML, encoding="utf-8")
    name = branch(settings, catalog)
    write_rows(catalog, name, "raw.orders", orders([1, 2], status=["open", "lost"]))
    result = pandera_gate.run(context(settings, catalog, name))
    assert failing(result) == {("raw.orders", "status:isin"): level}
    assert result.status is (Status.PASS if level is Level.WARN else Status.FAIL)


def test_module_schema_with_unique_key_from_config(tmp_path, catalog, isolated_imports):
    module = """\
        import pandera.polars as pa
        import polars as pl

        class Orders(pa.DataFrameModel):
            id: pl.Int64 = pa.Field(ge=0)
            amount: pl.Float64 = pa.Field(le=100)
    """
    toml = '[tables."raw.orders"]\nschema = "gates_cfg_schemas:Orders"\nunique = ["id", "amount"]\n'
    settings = project(tmp_path, toml, {"gates_cfg_schemas.py": module})
    name = branch(settings, catalog)
    write_rows(catalog, name, "raw.orders", orders([1, 1, 2]))  # amount 10.0 each: (1, 10.0) twice
    result = pandera_gate.run(context(settings, catalog, name))
    assert failing(result) == {("raw.orders", "unique:id,amount"): Level.ERROR}
    assert ("raw.orders", "amount:less_than_or_equal_to") in {(c.table, c.name) for c in result.checks}


@pytest.mark.parametrize(
    ("spec", "files"),
    [
        ("no_such_module_here:Schema", {}),
        ("schemas/missing.yaml", {}),
        ("bad_severity.yaml", {"bad_severity.yaml": "columns:\n  id:\n    metadata: {severity: eror}\n"}),
    ],
)
def test_schema_that_cannot_load_is_a_gate_error_naming_table_and_spec(tmp_path, catalog, spec, files):
    settings = project(tmp_path, f'[tables."raw.orders"]\nschema = "{spec}"\n', files)
    name = branch(settings, catalog)
    result = run_gate("pandera", context(settings, catalog, name), sleep=lambda _: None)
    assert result.status is Status.ERROR
    assert "raw.orders" in result.error and spec in result.error


# --- the registry ------------------------------------------------------------------------------------


def test_built_in_gates_are_gates():
    from cascade_ci.gates import schema_gate

    for module in (schema_gate, pandera_gate, dbt_gate, freshness_gate, sql_gate):
        assert isinstance(module, Gate)


def test_unknown_gate_is_a_gate_error(tmp_path, catalog):
    settings = project(tmp_path, "")
    result = run_gate("no-such-gate", context(settings, catalog, branch(settings, catalog)))
    assert result.status is Status.ERROR and result.gate == "no-such-gate"
    assert "no-such-gate" in result.error and "pandera" in result.error  # lists what is installed


def test_third_party_gate_by_module_attr(tmp_path, catalog, isolated_imports):
    gate = """\
        from cascade_ci.verdict import Check, GateResult, Level

        class RowCount:
            name = "rows"

            def run(self, ctx):
                table = ctx.catalog.tables(ctx.head_hash).load_table("raw.orders")
                rows = len(table.scan().to_arrow())
                return GateResult(self.name, (Check(self.name, "raw.orders", "some", Level.ERROR, rows > 2),))

        not_a_gate = 42
    """
    settings = project(tmp_path, "", {"gates_cfg_plugin.py": gate})
    name = branch(settings, catalog)
    write_rows(catalog, name, "raw.orders", orders([1, 2]))
    ctx = context(settings, catalog, name)
    result = run_gate("gates_cfg_plugin:RowCount", ctx)
    assert result.gate == "rows" and result.status is Status.FAIL
    assert "not a gate" in run_gate("gates_cfg_plugin:not_a_gate", ctx).error


# --- freshness ---------------------------------------------------------------------------------------


def events(*hours_ago: float) -> pa.Table:
    stamps = [NOW - timedelta(hours=h) for h in hours_ago]
    return pa.table({"id": pa.array(range(len(stamps)), pa.int64()), "at": pa.array(stamps, pa.timestamp("us", "UTC"))})


FRESH_TOML = '[tables."raw.events"]\nfreshness = { column = "at", warn_after_hours = 24, error_after_hours = 48 }\n'


@pytest.mark.parametrize(
    ("age", "blocks", "expected"),
    [(30, False, Level.WARN), (30, True, Level.ERROR), (50, False, Level.ERROR), (2, False, None)],
)
def test_freshness_from_config(tmp_path, catalog, age, blocks, expected):
    settings = project(tmp_path, FRESH_TOML, freshness_blocks_promotion=blocks)
    name = branch(settings, catalog)
    write_rows(catalog, name, "raw.events", events(age, age + 5))
    [check] = freshness_gate.run(context(settings, catalog, name)).checks
    assert (check.table, check.name) == ("raw.events", "fresh")
    assert check.passed is (expected is None)
    if expected is not None:
        assert check.severity is expected
    assert f"{age:.1f} h old" in check.message and "warn after 24 h, error after 48 h" in check.message
    assert "last written" in check.message


def test_freshness_of_a_date_column_counts_to_the_end_of_its_day(tmp_path, catalog):
    toml = '[tables."raw.days"]\nfreshness = { column = "day", warn_after_hours = 24 }\n'
    settings = project(tmp_path, toml)
    name = branch(settings, catalog)
    write_rows(catalog, name, "raw.days", pa.table({"day": pa.array([date(2026, 3, 9), date(2026, 3, 10)])}))
    [check] = freshness_gate.run(context(settings, catalog, name)).checks
    assert check.passed  # today, 12:00: today's date is fresh until midnight
    [late] = freshness_gate.run(context(settings, catalog, name, now=NOW + timedelta(days=2))).checks
    assert not late.passed and late.severity is Level.WARN and "36.0 h old" in late.message


@pytest.mark.parametrize(
    ("limits", "level"), [("warn_after_hours = 1", Level.WARN), ("error_after_hours = 1", Level.ERROR)]
)
def test_freshness_without_values_fails_at_the_highest_limit(tmp_path, catalog, limits, level):
    settings = project(tmp_path, f'[tables."raw.events"]\nfreshness = {{ column = "at", {limits} }}\n')
    name = branch(settings, catalog)
    write_rows(catalog, name, "raw.events", events())
    [check] = freshness_gate.run(context(settings, catalog, name)).checks
    assert not check.passed and check.severity is level and "no at values" in check.message


def test_freshness_from_dbt_sources_recorded_by_transform_and_config_wins(tmp_path, catalog):
    settings = project(tmp_path, '[tables."raw.orders"]\nfreshness = { column = "placed_at", error_after_hours = 1 }\n')
    name = branch(settings, catalog)
    write_rows(catalog, name, "raw.events", events(30))
    write_rows(catalog, name, "raw.orders", orders([1]))  # placed 9 days before NOW
    dbt = [
        {"table": "raw.events", "column": "at", "warn_after_hours": None, "error_after_hours": 12.0,
         "file": "dbt/models/sources.yml"},
        {"table": "raw.orders", "column": "placed_at", "warn_after_hours": 1000.0, "error_after_hours": None,
         "file": "dbt/models/sources.yml"},
        {"table": "raw.absent", "column": "at", "warn_after_hours": 1.0, "error_after_hours": None, "file": None},
    ]  # fmt: skip
    head = catalog.get_ref(name).hash
    properties = {KIND: MetaKind.TRANSFORM, DBT_FRESHNESS: json.dumps(dbt), DBT_TESTS: "[]"}
    catalog.commit_meta(name, "dbt: 0 tests", properties, expected_hash=head)
    checks = {check.table: check for check in freshness_gate.run(context(settings, catalog, name)).checks}
    assert set(checks) == {"raw.events", "raw.orders"}  # raw.absent is not on the branch
    events_check, orders_check = checks["raw.events"], checks["raw.orders"]
    assert not events_check.passed and events_check.severity is Level.ERROR
    assert events_check.file == "dbt/models/sources.yml" and "error after 12 h" in events_check.message
    assert not orders_check.passed and orders_check.file is None  # the config's 1 h, not dbt's 1000 h
    assert orders_check.expected == "<= 1 h"


# --- sql: comparisons, engine faults, the lazily opened engine -----------------------------------------


@pytest.mark.parametrize(
    ("observed", "expected", "equal"),
    [
        (0, 0, True),
        (0.0, 0, True),
        (Decimal("0.00"), 0, True),
        (Decimal("0.1"), 0.1, True),
        (1, 0, False),
        (None, 0, False),
        ("ok", "ok", True),
        (date(2026, 1, 2), "2026-01-02", True),
        (True, True, True),
        (float("nan"), 0, False),
    ],
)
def test_sql_values_compare_numerically_or_as_text(observed, expected, equal):
    assert sql_gate.matches(observed, expected) is equal


FAKE_ENGINE = """\
    from cascade_ci.errors import ConfigError, ServiceUnavailableError

    OPENED, CLOSED, FAULTS = [], [], []

    class Engine:
        name = "fake"

        def __init__(self, settings, catalog):
            OPENED.append(self)

        def query(self, ref, sql):
            if sql == "flaky":
                if FAULTS:
                    raise FAULTS.pop()
                return [(0,)]
            if sql.startswith("bad"):
                raise ConfigError("Parser Error: syntax error at or near 'bad'")
            return [] if sql == "none" else [(int(sql),)]

        def close(self):
            CLOSED.append(self)
"""

CHECKS_TOML = """\
engine = "gates_cfg_engine:Engine"
validation_retry_delay_seconds = 0

[[checks]]
name = "zero"
sql = "0"

[[checks]]
name = "two"
sql = "2"
table = "raw.orders"
severity = "warn"
description = "Orders without a customer."

[[checks]]
name = "broken"
sql = "bad sql"
severity = "warn"

[[checks]]
name = "nothing"
sql = "none"
"""


def test_sql_checks_on_a_lazily_opened_engine(tmp_path, catalog, isolated_imports):
    settings = project(tmp_path, CHECKS_TOML, {"gates_cfg_engine.py": FAKE_ENGINE})
    import gates_cfg_engine as fake

    assert fake.OPENED == []
    with context(settings, catalog, branch(settings, catalog)) as ctx:
        result = run_gate("sql", ctx)
        run_gate("sql", ctx)
        assert len(fake.OPENED) == 1 and fake.CLOSED == []  # opened once, shared
    assert fake.CLOSED == fake.OPENED
    checks = {check.name: check for check in result.checks}
    assert checks["zero"].passed and checks["zero"].table == "sql"
    two = checks["two"]
    assert (two.passed, two.severity, two.table) == (False, Level.WARN, "raw.orders")
    assert two.message == "Orders without a customer.: returned 2, expected 0" and two.observed == 2
    broken = checks["broken"]
    assert (broken.passed, broken.severity) == (False, Level.ERROR) and "syntax error" in broken.message
    assert not checks["nothing"].passed and "returned None" in checks["nothing"].message
    assert result.status is Status.FAIL


def test_sql_infrastructure_fault_is_retried_and_a_bug_is_no_pass(tmp_path, catalog, isolated_imports):
    toml = CHECKS_TOML.split("[[checks]]")[0] + '[[checks]]\nname = "f"\nsql = "flaky"\n'
    settings = project(tmp_path, toml, {"gates_cfg_engine.py": FAKE_ENGINE})
    import gates_cfg_engine as fake

    fake.FAULTS.append(ServiceUnavailableError("engine down"))
    with context(settings, catalog, branch(settings, catalog)) as ctx:
        result = run_gate("sql", ctx, sleep=lambda _: None)
    assert result.status is Status.PASS and [c.passed for c in result.checks] == [True]
    assert len(result.retries) == 1 and "engine down" in result.retries[0]
    with pytest.raises(ValueError, match="invalid literal"):  # not a ConfigError: a fault, never a check
        sql_gate.judge(CheckConfig(name="x", sql="not a number"), fake.Engine(settings, catalog), "main")


def test_no_sql_checks_open_no_engine(tmp_path, catalog):
    settings = project(tmp_path, 'engine = "no_such_engine_module:Engine"\n')
    ctx = context(settings, catalog, branch(settings, catalog))
    result = run_gate("sql", ctx)
    assert result.status is Status.PASS and result.checks == ()
    ctx.close()


# --- dbt: outcomes point into the user's repository ---------------------------------------------------


def test_dbt_outcomes_point_into_the_users_repository(tmp_path):
    project_dir = tmp_path / "analytics" / "dbt"
    (project_dir / "models").mkdir(parents=True)
    (project_dir / "models" / "schema.yml").write_text(
        "models:\n  - name: orders\n    columns:\n      - name: id\n        tests: [unique]\n", encoding="utf-8"
    )
    manifest = {
        "nodes": {
            "test.p.unique_orders_id": {
                "resource_type": "test",
                "attached_node": "model.p.orders",
                "column_name": "id",
                "original_file_path": "models/schema.yml",
                "test_metadata": {"name": "unique"},
                "config": {"severity": "ERROR"},
            },
            "model.p.orders": {"resource_type": "model", "schema": "marts", "name": "orders"},
        }
    }
    run_results = {"results": [{"unique_id": "test.p.unique_orders_id", "status": "fail", "failures": 2}]}
    [outcome] = dbt_gate.outcomes_from(run_results, manifest, project_dir, tmp_path)
    assert (outcome["file"], outcome["line"]) == ("analytics/dbt/models/schema.yml", 4)
    assert outcome["model"] == "marts.orders" and outcome["name"] == "unique:id"
