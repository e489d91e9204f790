"""`cascade config get`: one setting as the workflows read it, with Python's reading of booleans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cascade_ci.cli import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(("value", "shown"), [("0", "false"), ("no", "false"), ("off", "false"), ("false", "false"),
                                              ("1", "true"), ("yes", "true"), ("on", "true")])  # fmt: skip
def test_auto_promote_reads_as_python_reads_it(value, shown, monkeypatch):
    monkeypatch.chdir(EXAMPLES / "minimal")
    done = CliRunner().invoke(cli, ["config", "get", "auto_promote_enabled"], env={"AUTO_PROMOTE_ENABLED": value})
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == shown


def test_tables_print_as_json_and_unset_as_an_empty_line(monkeypatch):
    monkeypatch.chdir(EXAMPLES / "glucose-github")
    done = CliRunner().invoke(cli, ["config", "get", "transform"])
    assert done.exit_code == 0 and json.loads(done.stdout)["project_dir"] == "dbt"
    monkeypatch.chdir(EXAMPLES / "minimal")
    done = CliRunner().invoke(cli, ["config", "get", "transform"])
    assert done.exit_code == 0 and done.stdout == "\n"


def test_an_unknown_key_is_a_configuration_error(monkeypatch):
    monkeypatch.chdir(EXAMPLES / "minimal")
    done = CliRunner().invoke(cli, ["config", "get", "no_such_key", "--json"])
    assert done.exit_code == 2 and "no top-level setting 'no_such_key'" in done.output
