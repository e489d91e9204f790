"""`cascade init`: a starting cascade.toml that names what the project already has, or a copy of an example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cascade_ci.cli import cli
from cascade_ci.config import load_settings
from tests.conftest import EXAMPLES


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args))


def config_check(config: Path) -> dict:
    """`cascade --config CONFIG config check --json`, which must accept it; the resolved config."""
    result = cascade("--config", str(config), "config", "check", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == f"{config}: ok\n"
    return json.loads(result.stdout)


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_init_names_the_data_files_and_the_dbt_project_it_finds(tmp_path):
    project = tmp_path / "shop"
    (project / "data").mkdir(parents=True)
    (project / "data" / "orders.csv").write_text("order_id,amount\n1,2.5\n")
    (project / "warehouse").mkdir()
    (project / "warehouse" / "dbt_project.yml").write_text("name: shop\nprofile: shop\n")

    result = cascade("init", str(project), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [str(project / "cascade.toml")]
    assert result.stderr == f"wrote 1 file(s) in {project}\n"
    resolved = config_check(project / "cascade.toml")
    assert resolved["sources"] == {
        "files": {
            "default": True,
            "dlt": None,
            "files": "data/*.csv",
            "format": None,
            "keys": {},
            "namespace": "raw",
            "options": {},
            "python": None,
            "rejects_max_share": None,
            "table": None,
            "type": None,
            "types": {},
        }
    }
    assert resolved["transform"]["project_dir"] == "warehouse"
    assert (resolved["tables"], resolved["checks"], resolved["gates"]) == ({}, [], None)


def test_init_finds_a_dbt_project_at_the_root_and_parquet_data(tmp_path, monkeypatch):
    (tmp_path / "dbt_project.yml").write_text("name: root_project\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "events.parquet").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    result = cascade("init")  # DIRECTORY defaults to the working directory
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / 'cascade.toml'}\n"
    settings = load_settings()
    assert settings.sources["files"].files == "data/*.parquet"
    assert settings.transform is not None and settings.transform.project_dir == Path(".")
    assert settings.path(settings.transform.project_dir) == tmp_path


def test_init_in_an_empty_folder_writes_a_template_to_edit(tmp_path):
    result = cascade("init", str(tmp_path))
    assert result.exit_code == 0, result.output
    settings = load_settings(tmp_path / "cascade.toml")
    assert settings.transform is None
    assert list(settings.sources) == ["main"]
    assert settings.sources["main"].python == "my_pipeline.sources:read"
    # Until the placeholder names the project's own code, `config check` says exactly what to edit.
    checked = cascade("--config", str(tmp_path / "cascade.toml"), "config", "check")
    assert checked.exit_code == 2
    assert checked.stderr == (
        f"cascade: 1 problem(s):\n  {tmp_path / 'cascade.toml'}: sources.main: 'my_pipeline.sources:read': "
        "cannot import 'my_pipeline.sources': No module named 'my_pipeline'\n"
    )


def test_init_refuses_to_overwrite_without_force(tmp_path):
    config = tmp_path / "cascade.toml"
    config.write_text("ingest_hours = 6\n")
    refused = cascade("init", str(tmp_path))
    assert refused.exit_code == 2
    assert refused.stderr == f"cascade: {config} exists; pass --force to overwrite\n"
    assert config.read_text() == "ingest_hours = 6\n"
    forced = cascade("init", str(tmp_path), "--force")
    assert forced.exit_code == 0, forced.output
    assert "[sources.main]" in config.read_text()


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ("minimal", [".gitignore", "README.md", "cascade.toml", "data/orders.csv"]),
        (
            "glucose-github",
            [
                ".gitignore",
                "cascade.toml",
                "dbt/dbt_project.yml",
                "dbt/macros/portable.sql",
                "dbt/macros/schema_names.sql",
                "dbt/models/marts/fct_daily_glucose_metrics.sql",
                "dbt/models/marts/fct_github_repo_stats.sql",
                "dbt/models/marts/fct_github_user_events.sql",
                "dbt/models/marts/fct_glucose_readings.sql",
                "dbt/models/marts/schema.yml",
                "dbt/models/staging/sources.yml",
                "dbt/models/staging/stg_github_repo_stats.sql",
                "dbt/models/staging/stg_github_user_events.sql",
                "dbt/models/staging/stg_glucose_entries.sql",
                "dbt/tests/generic/unique_combination.sql",
                "dbt/tests/generic/value_between.sql",
                "glucose_github/__init__.py",
                "glucose_github/github_source.py",
                "glucose_github/nightscout.py",
                "glucose_github/raw.py",
                "glucose_github/sample.py",
                "glucose_github/schemas.py",
                "glucose_github/sources.py",
            ],
        ),
    ],
)
def test_init_copies_an_example(tmp_path, example, expected):
    target = tmp_path / example
    result = cascade("init", str(target), "--example", example, "--json")
    assert result.exit_code == 0, result.output
    assert files_under(target) == expected  # no __pycache__, .cascade, reports or dbt target of the original
    assert json.loads(result.stdout) == [str(target / name) for name in expected]
    for name in expected:
        assert (target / name).read_bytes() == (EXAMPLES / example / name).read_bytes(), name
    resolved = config_check(target / "cascade.toml")
    assert resolved["root"] == str(target)


def test_init_example_does_not_overwrite_without_force(tmp_path):
    assert cascade("init", str(tmp_path), "--example", "minimal").exit_code == 0
    (tmp_path / "data" / "orders.csv").write_text("order_id,customer,amount,ordered_at\n")
    refused = cascade("init", str(tmp_path), "--example", "minimal")
    assert refused.exit_code == 2
    clashes = [f"cascade: {tmp_path / name} exists; pass --force to overwrite\n" for name in files_under(tmp_path)]
    assert refused.stderr in clashes
    assert (tmp_path / "data" / "orders.csv").read_text() == "order_id,customer,amount,ordered_at\n"
    forced = cascade("init", str(tmp_path), "--example", "minimal", "--force")
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "data" / "orders.csv").read_bytes() == (
        EXAMPLES / "minimal" / "data" / "orders.csv"
    ).read_bytes()


def test_init_unknown_example_lists_the_examples(tmp_path):
    result = cascade("init", str(tmp_path), "--example", "nope")
    assert result.exit_code == 2
    assert result.stderr == "cascade: no example 'nope'; available: glucose-github, minimal\n"
    assert not (tmp_path / "cascade.toml").exists()
