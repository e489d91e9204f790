"""Pandera and SQL checks point into the user's repository: the schema YAML at the column's line, else the
config file at the table's section or the check's `name` (paths relative to the project root)."""

from __future__ import annotations

from pathlib import Path

from cascade_ci.config import load_settings
from cascade_ci.gates import pandera_gate, run_gate, sql_gate
from tests.conftest import write_rows
from tests.unit.test_gates_config import (
    CHECKS_TOML,
    FAKE_ENGINE,
    ORDERS_YAML,
    branch,
    context,
    isolated_imports,  # noqa: F401 (a fixture)
    orders,
    project,
)

USER_PROJECT = Path(__file__).parents[1] / "fixtures" / "user_project"


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


def test_yaml_schema_checks_point_at_their_column(tmp_path, catalog):
    settings = project(tmp_path, '[tables."raw.orders"]\nschema = "schemas/orders.yaml"\nunique = ["id"]\n')
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "orders.yaml").write_text(ORDERS_YAML, encoding="utf-8")
    name = branch(settings, catalog)
    write_rows(catalog, name, "raw.orders", orders([1, 2], status=["open", "lost"]))
    result = pandera_gate.run(context(settings, catalog, name))
    where = {check.name: (check.file, check.line) for check in result.checks}
    yaml_file = tmp_path / "schemas" / "orders.yaml"
    assert where["status:isin"] == ("schemas/orders.yaml", line_of(yaml_file, "  status:"))
    assert where["amount:dtype"] == ("schemas/orders.yaml", line_of(yaml_file, "  amount:"))
    assert all(file == "schemas/orders.yaml" for file, _ in where.values())


def test_module_schema_and_unique_only_tables_point_at_the_config(tmp_path, catalog, isolated_imports):  # noqa: F811
    module = "import pandera.polars as pa\nimport polars as pl\n\nclass Orders(pa.DataFrameModel):\n    id: pl.Int64\n"
    toml = (
        "# the project\n\n"
        '[tables."raw.orders"]\nschema = "gates_loc_schemas:Orders"\n\n'
        "[tables.'raw.other']\nunique = [\"id\"]\n"
    )
    settings = project(tmp_path, toml, {"gates_loc_schemas.py": module})
    name = branch(settings, catalog)
    write_rows(catalog, name, "raw.orders", orders([1, 2]))
    write_rows(catalog, name, "raw.other", orders([1, 1]))
    result = pandera_gate.run(context(settings, catalog, name))
    where = {(check.table, check.file, check.line) for check in result.checks}
    assert where == {("raw.orders", "cascade.toml", 3), ("raw.other", "cascade.toml", 6)}


def test_sql_checks_point_at_their_name_in_the_config(tmp_path, catalog, isolated_imports):  # noqa: F811
    settings = project(tmp_path, CHECKS_TOML, {"gates_cfg_engine.py": FAKE_ENGINE})
    with context(settings, catalog, branch(settings, catalog)) as ctx:
        result = run_gate("sql", ctx)
    config = tmp_path / "cascade.toml"
    where = {check.name: (check.file, check.line) for check in result.checks}
    assert where == {
        name: ("cascade.toml", line_of(config, f'name = "{name}"')) for name in ("zero", "two", "broken", "nothing")
    }


def test_the_user_project_fixture_locations():
    settings = load_settings(USER_PROJECT / "project.toml")
    tables = settings.tables
    schema = pandera_gate.source_of("main.customer_revenue", tables["main.customer_revenue"], settings)
    assert schema.file == "schemas/customer_revenue.yaml"
    assert schema.at("segment")["line"] == line_of(USER_PROJECT / "schemas" / "customer_revenue.yaml", "  segment:")
    config = USER_PROJECT / "project.toml"
    unique = pandera_gate.source_of("raw.orders", tables["raw.orders"], settings)
    assert unique.at("order_id") == {"file": "project.toml", "line": line_of(config, '[tables."raw.orders"]')}
    found = sql_gate.located(settings, r'^name = "no_negative_amounts"', sql_gate.CHECKS)
    assert found == ("project.toml", line_of(config, 'name = "no_negative_amounts"'))


def test_no_config_file_no_location(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.config_file is None
    assert sql_gate.located(settings, "anything") == (None, None)


def test_a_name_outside_a_checks_section_is_not_taken(tmp_path):
    pyproject = '[project]\nname = "zero"\n\n[tool.cascade]\n\n[[tool.cascade.checks]]\nname = "zero"\nsql = "0"\n'
    (tmp_path / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    settings = load_settings(tmp_path / "pyproject.toml")
    assert sql_gate.located(settings, r'^\s*name\s*=\s*"zero"', sql_gate.CHECKS) == ("pyproject.toml", 7)
