"""cascade_ci.config: defaults, the project config file, environment, `.env`, flags, and the errors they raise.

Precedence, first wins: flags (keyword overrides) > environment > `.env` > the config file (cascade.toml, or
`[tool.cascade]` in pyproject.toml, found from the working directory upward) > defaults.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from cascade_ci.cli import cli
from cascade_ci.config import Settings, Severity, env_name, find_config, interpolate, load_settings
from cascade_ci.errors import ConfigError


@pytest.fixture(autouse=True)
def workdir(clean_env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting comes from the caller's environment or a stray `.env`; HOME is set as on every real machine.

    `clean_env` (tests/conftest.py) scrubbed every setting's variable and set CASCADE_HOME/CASCADE_REPORTS_DIR;
    these tests see the real defaults, so those two go as well.
    """
    monkeypatch.delenv("CASCADE_HOME", raising=False)
    monkeypatch.delenv("CASCADE_REPORTS_DIR", raising=False)
    # Every real shell and every GitHub runner sets HOME; it must not leak into CASCADE_HOME.
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def check(config: Path, *args: str, env: dict[str, str] | None = None):
    """`cascade --config CONFIG config check ARGS`."""
    return CliRunner().invoke(cli, ["--config", str(config), "config", "check", *args], env=env)


@pytest.fixture
def module_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """A module name no other test uses (imports are cached per process); sys.path is restored afterwards."""
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))
    return f"settings_src_{uuid.uuid4().hex[:10]}"


# --- defaults ----------------------------------------------------------------------------------

DEFAULTS: list[tuple[str, Any]] = [
    ("branch_retention_days", 7),
    ("branch_retention_days_failed", 14),
    ("auto_promote_enabled", True),
    ("freshness_blocks_promotion", False),
    ("pandera_critical_level", Severity.ERROR),
    ("validation_retry_enabled", True),
    ("validation_retry_max_attempts", 3),
    ("validation_retry_delay_seconds", 300.0),
    ("ingest_hours", 48.0),
    ("main_branch", "main"),
    ("catalog", "local"),
    ("engine", None),
    ("home", Path(".cascade")),
    ("branch_prefix", "pipeline/run-"),
    ("reports_dir", Path("reports")),
    ("gates", None),
    ("required_gates", None),
    ("nessie_uri", "http://localhost:19120"),
    ("nessie_timeout", 30.0),
    ("github_api_url", "https://api.github.com"),
    ("github_token", None),
    ("s3_access_key_id", None),
    ("s3_secret_access_key", None),
    ("sources", {}),
    ("transform", None),
    ("tables", {}),
    ("checks", []),
    ("gate_options", {}),
    ("config_file", None),
]


@pytest.mark.parametrize(("attr", "expected"), DEFAULTS, ids=[attr for attr, _ in DEFAULTS])
def test_default(attr: str, expected: Any) -> None:
    settings = load_settings()
    value = getattr(settings, attr)
    assert value == expected
    assert type(value) is type(expected)


def test_defaults_without_a_config_file(workdir: Path) -> None:
    settings = load_settings()
    assert settings.pandera_critical_level == "error"
    assert settings.root == workdir
    assert settings.engine_name == "duckdb"
    # Without a [transform] there are no dbt results to judge: the dbt gate is not a default.
    assert settings.gate_names == ["rejects", "schema", "pandera", "freshness", "sql"]
    assert settings.promotion_gates == ["rejects", "schema", "pandera", "freshness", "sql"]
    assert settings.rejects_max_share == 0.0  # any rejected record blocks until someone decides otherwise


def test_derived_settings_follow_what_is_configured(workdir: Path) -> None:
    write(workdir / "cascade.toml", 'catalog = "nessie"\n[transform]\nproject_dir = "models"\n')
    settings = load_settings()
    assert settings.gate_names == ["rejects", "schema", "pandera", "dbt", "freshness", "sql"]
    assert settings.engine_name == "trino"
    assert load_settings(engine="duckdb").engine_name == "duckdb"
    gated = load_settings(gates="schema,dbt")
    assert (gated.gate_names, gated.promotion_gates) == (["schema", "dbt"], ["schema", "dbt"])
    required = load_settings(gates="schema", required_gates="schema,pandera")
    assert (required.gate_names, required.promotion_gates) == (["schema"], ["schema", "pandera"])


def test_home_environment_variable_does_not_become_cascade_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    assert load_settings().home == Path(".cascade")


@pytest.mark.parametrize(
    ("field", "variable"),
    [
        ("branch_retention_days", "BRANCH_RETENTION_DAYS"),
        ("auto_promote_enabled", "AUTO_PROMOTE_ENABLED"),
        ("catalog", "CASCADE_CATALOG"),
        ("home", "CASCADE_HOME"),
        ("gates", "CASCADE_GATES"),
        ("required_gates", "CASCADE_REQUIRED_GATES"),
        ("ingest_hours", "CASCADE_INGEST_HOURS"),
        ("main_branch", "ICEBERG_NESSIE_REF"),
        ("s3_access_key_id", "AWS_ACCESS_KEY_ID"),
        ("s3_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
        ("github_token", "GITHUB_TOKEN"),
        ("nessie_uri", "NESSIE_URI"),
    ],
)
def test_env_name(field: str, variable: str) -> None:
    assert env_name(field) == variable


@pytest.mark.parametrize(
    ("env", "value", "attr"),
    [
        ("CATALOG", "nessie", "catalog"),
        ("GATES", "dbt", "gates"),
        ("REPORTS_DIR", "/elsewhere", "reports_dir"),
        ("MAIN_BRANCH", "develop", "main_branch"),
        ("BRANCH_PREFIX", "other/", "branch_prefix"),
        ("INGEST_HOURS", "3", "ingest_hours"),
        ("SOURCES", '{"a": {"files": "x.csv"}}', "sources"),
    ],
)
def test_unprefixed_generic_names_are_not_read(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, attr: str
) -> None:
    """Only the documented names (CASCADE_*, ICEBERG_NESSIE_REF) set these; a stray generic variable must not."""
    default = getattr(load_settings(), attr)
    monkeypatch.setenv(env, value)
    assert getattr(load_settings(), attr) == default


# --- environment -------------------------------------------------------------------------------

ENV_OVERRIDES: list[tuple[str, str, str, Any]] = [
    ("BRANCH_RETENTION_DAYS", "3", "branch_retention_days", 3),
    ("BRANCH_RETENTION_DAYS", "0", "branch_retention_days", 0),
    ("BRANCH_RETENTION_DAYS_FAILED", "30", "branch_retention_days_failed", 30),
    ("AUTO_PROMOTE_ENABLED", "false", "auto_promote_enabled", False),
    ("AUTO_PROMOTE_ENABLED", "0", "auto_promote_enabled", False),
    ("FRESHNESS_BLOCKS_PROMOTION", "true", "freshness_blocks_promotion", True),
    ("PANDERA_CRITICAL_LEVEL", "warning", "pandera_critical_level", Severity.WARNING),
    ("VALIDATION_RETRY_ENABLED", "false", "validation_retry_enabled", False),
    ("VALIDATION_RETRY_MAX_ATTEMPTS", "5", "validation_retry_max_attempts", 5),
    ("VALIDATION_RETRY_DELAY_SECONDS", "0.5", "validation_retry_delay_seconds", 0.5),
    ("ICEBERG_NESSIE_REF", "develop", "main_branch", "develop"),
    ("CASCADE_CATALOG", "nessie", "catalog", "nessie"),
    ("CASCADE_CATALOG", "my_catalogs:open", "catalog", "my_catalogs:open"),
    ("CASCADE_ENGINE", "trino", "engine", "trino"),
    ("CASCADE_HOME", "/var/cascade", "home", Path("/var/cascade")),
    ("CASCADE_BRANCH_PREFIX", "wap/run-", "branch_prefix", "wap/run-"),
    ("CASCADE_REPORTS_DIR", "out/reports", "reports_dir", Path("out/reports")),
    ("CASCADE_GATES", "schema,dbt", "gates", ["schema", "dbt"]),
    ("CASCADE_REQUIRED_GATES", "schema", "required_gates", ["schema"]),
    ("CASCADE_INGEST_HOURS", "6.5", "ingest_hours", 6.5),
    ("NESSIE_URI", "http://nessie:19120/api/v2", "nessie_uri", "http://nessie:19120/api/v2"),
    ("NESSIE_TIMEOUT", "5", "nessie_timeout", 5.0),
    ("S3_ENDPOINT", "http://minio:9000", "s3_endpoint", "http://minio:9000"),
    ("GITHUB_API_URL", "https://ghe.example.org/api/v3", "github_api_url", "https://ghe.example.org/api/v3"),
]


@pytest.mark.parametrize(
    ("env", "raw", "attr", "expected"), ENV_OVERRIDES, ids=[f"{env}={raw}" for env, raw, _, _ in ENV_OVERRIDES]
)
def test_environment_overrides_default(
    monkeypatch: pytest.MonkeyPatch, env: str, raw: str, attr: str, expected: Any
) -> None:
    monkeypatch.setenv(env, raw)
    assert getattr(load_settings(), attr) == expected


def test_gate_names_are_parsed_from_cascade_gates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_GATES", " schema , dbt ,, freshness")
    assert load_settings().gate_names == ["schema", "dbt", "freshness"]


def test_secrets_come_from_aws_and_github_variables_and_are_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-access-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "super-secret-key")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_token_value")
    settings = load_settings()
    assert settings.s3_access_key_id is not None
    assert settings.s3_access_key_id.get_secret_value() == "AKIA-access-id"
    assert settings.s3_secret_access_key is not None
    assert settings.s3_secret_access_key.get_secret_value() == "super-secret-key"
    assert settings.github_token is not None
    assert settings.github_token.get_secret_value() == "ghp_token_value"
    for text in (str(settings), repr(settings)):
        assert "super-secret-key" not in text
        assert "ghp_token_value" not in text


@pytest.mark.parametrize(
    "variable", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "NESSIE_TOKEN", "TRINO_PASSWORD", "GITHUB_TOKEN"]
)
def test_an_empty_secret_is_unset(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    """A workflow maps each secret it declares, unset ones as "": Trino must not get an empty password."""
    monkeypatch.setenv(variable, "")
    field = {"AWS_ACCESS_KEY_ID": "s3_access_key_id", "AWS_SECRET_ACCESS_KEY": "s3_secret_access_key"}
    assert getattr(load_settings(), field.get(variable, variable.lower())) is None


# --- .env --------------------------------------------------------------------------------------


def test_dotenv_in_cwd_is_read(workdir: Path) -> None:
    write(
        workdir / ".env",
        "BRANCH_RETENTION_DAYS=11\nCASCADE_CATALOG=nessie\nAUTO_PROMOTE_ENABLED=false\nCASCADE_GATES=schema,pandera\n",
    )
    settings = load_settings()
    assert settings.branch_retention_days == 11
    assert settings.catalog == "nessie"
    assert settings.auto_promote_enabled is False
    assert settings.gate_names == ["schema", "pandera"]


def test_dotenv_elsewhere_is_not_read(tmp_path: Path) -> None:
    write(tmp_path / ".env", "BRANCH_RETENTION_DAYS=11\n")
    assert load_settings().branch_retention_days == 7


def test_environment_beats_dotenv(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(workdir / ".env", "BRANCH_RETENTION_DAYS=11\nCASCADE_HOME=/from/dotenv\n")
    monkeypatch.setenv("BRANCH_RETENTION_DAYS", "12")
    monkeypatch.setenv("CASCADE_HOME", "/from/env")
    settings = load_settings()
    assert settings.branch_retention_days == 12
    assert settings.home == Path("/from/env")


def test_bad_value_in_dotenv_raises_config_error(workdir: Path) -> None:
    write(workdir / ".env", "BRANCH_RETENTION_DAYS=soon\n")
    with pytest.raises(ConfigError, match="BRANCH_RETENTION_DAYS"):
        load_settings()


# --- keyword overrides (the command line's flags) ----------------------------------------------


def test_keyword_overrides_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRANCH_RETENTION_DAYS", "9")
    monkeypatch.setenv("CASCADE_GATES", "dbt")
    monkeypatch.setenv("CASCADE_REPORTS_DIR", "/env/reports")
    monkeypatch.setenv("CASCADE_CATALOG", "nessie")
    settings = load_settings(
        branch_retention_days=2, gates="schema,freshness", reports_dir="/flag/reports", catalog="local"
    )
    assert settings.branch_retention_days == 2
    assert settings.gate_names == ["schema", "freshness"]
    assert settings.reports_dir == Path("/flag/reports")
    assert settings.catalog == "local"


def test_keyword_overrides_beat_dotenv(workdir: Path) -> None:
    write(workdir / ".env", "CASCADE_GATES=dbt\nVALIDATION_RETRY_MAX_ATTEMPTS=7\n")
    settings = load_settings(gates="pandera", validation_retry_max_attempts=2)
    assert settings.gates == ["pandera"]
    assert settings.validation_retry_max_attempts == 2


def test_none_overrides_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_GATES", "dbt")
    monkeypatch.setenv("BRANCH_RETENTION_DAYS", "9")
    settings = load_settings(gates=None, reports_dir=None, branch_retention_days=None)
    assert settings.gates == ["dbt"]
    assert settings.reports_dir == Path("reports")
    assert settings.branch_retention_days == 9


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.branch_retention_days = 1  # type: ignore[misc]


# --- the config file ---------------------------------------------------------------------------

FILE_VALUES: list[tuple[str, str, Any]] = [
    ('catalog = "nessie"', "catalog", "nessie"),
    ('engine = "trino"', "engine", "trino"),
    ("ingest_hours = 6", "ingest_hours", 6.0),
    ('gates = ["schema", "sql"]', "gates", ["schema", "sql"]),
    ('required_gates = ["schema"]', "required_gates", ["schema"]),
    ('main_branch = "develop"', "main_branch", "develop"),
    ('branch_prefix = "wap/run-"', "branch_prefix", "wap/run-"),
    ("nessie_timeout = 5", "nessie_timeout", 5.0),
    # Flat fields whose variable is their upper-cased name (BRANCH_RETENTION_DAYS ...).
    ("branch_retention_days = 3", "branch_retention_days", 3),
    ("branch_retention_days_failed = 30", "branch_retention_days_failed", 30),
    ("auto_promote_enabled = false", "auto_promote_enabled", False),
    ("freshness_blocks_promotion = true", "freshness_blocks_promotion", True),
    ('pandera_critical_level = "warning"', "pandera_critical_level", Severity.WARNING),
    ("validation_retry_enabled = false", "validation_retry_enabled", False),
    ("validation_retry_max_attempts = 5", "validation_retry_max_attempts", 5),
    ("validation_retry_delay_seconds = 0.5", "validation_retry_delay_seconds", 0.5),
    ('nessie_uri = "http://nessie:19120/api/v2"', "nessie_uri", "http://nessie:19120/api/v2"),
    ('s3_region = "eu-west-1"', "s3_region", "eu-west-1"),
    ('trino_user = "etl"', "trino_user", "etl"),
]


@pytest.mark.parametrize(("line", "attr", "expected"), FILE_VALUES, ids=[attr for _, attr, _ in FILE_VALUES])
def test_config_file_sets_every_flat_field(workdir: Path, line: str, attr: str, expected: Any) -> None:
    write(workdir / "cascade.toml", line + "\n")
    assert getattr(load_settings(), attr) == expected


def test_config_file_declares_the_project(workdir: Path) -> None:
    write(
        workdir / "cascade.toml",
        """
[sources.orders]
files = "data/*.csv"
table = "orders"
keys = { orders = ["order_id"] }

[sources.api]
python = "my_pipeline.sources:read"
namespace = "landing"
default = false
options = { page_size = 100, users = ["a", "b"] }

[transform]
project_dir = "warehouse"
select = ["marts"]
threads = 4

[tables."raw.orders"]
schema = "schemas/orders.yaml"
unique = ["order_id"]
freshness = { column = "ordered_at", warn_after_hours = 24, error_after_hours = 72 }

[[checks]]
name = "no_negative_amounts"
table = "raw.orders"
sql = "select count(*) from raw.orders where amount < 0"

[gate_options.sql]
timeout_seconds = 30
""",
    )
    settings = load_settings()
    assert list(settings.sources) == ["orders", "api"]
    orders, api = settings.sources["orders"], settings.sources["api"]
    assert (orders.kind, orders.target, orders.table, orders.keys, orders.namespace, orders.default) == (
        "files", "data/*.csv", "orders", {"orders": ["order_id"]}, "raw", True
    )  # fmt: skip
    assert (api.kind, api.target, api.namespace, api.default) == (
        "python",
        "my_pipeline.sources:read",
        "landing",
        False,
    )
    assert api.options == {"page_size": 100, "users": ["a", "b"]}
    assert settings.transform is not None
    assert (settings.transform.project_dir, settings.transform.select, settings.transform.threads) == (
        Path("warehouse"), ["marts"], 4
    )  # fmt: skip
    assert settings.path(settings.transform.project_dir) == workdir / "warehouse"
    table = settings.tables["raw.orders"]
    assert (table.schema_, table.unique) == ("schemas/orders.yaml", ["order_id"])
    assert table.freshness is not None
    assert (table.freshness.column, table.freshness.warn_after_hours, table.freshness.error_after_hours) == (
        "ordered_at", 24.0, 72.0
    )  # fmt: skip
    (only,) = settings.checks
    assert (only.name, only.table, only.expect, only.severity) == ("no_negative_amounts", "raw.orders", 0, "error")
    assert settings.gate_options == {"sql": {"timeout_seconds": 30}}
    assert settings.config_file == workdir / "cascade.toml"
    assert settings.root == workdir


@pytest.mark.parametrize(
    ("field", "variable", "file_value", "dotenv_value", "env_value", "flag_value", "default"),
    [
        ("ingest_hours", "CASCADE_INGEST_HOURS", 1.0, 2.0, 3.0, 4.0, 48.0),
        ("branch_retention_days", "BRANCH_RETENTION_DAYS", 1, 2, 3, 4, 7),
    ],
    ids=["ingest_hours", "branch_retention_days"],
)
def test_precedence_flags_env_dotenv_file_defaults(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, field, variable, file_value, dotenv_value, env_value, flag_value,
    default,
) -> None:  # fmt: skip
    config = write(workdir / "cascade.toml", f"{field} = {file_value}\n")
    write(workdir / ".env", f"{variable}={dotenv_value}\n")
    monkeypatch.setenv(variable, str(env_value))
    assert getattr(load_settings(**{field: flag_value}), field) == flag_value
    assert getattr(load_settings(), field) == env_value
    monkeypatch.delenv(variable)
    assert getattr(load_settings(), field) == dotenv_value
    (workdir / ".env").unlink()
    assert getattr(load_settings(), field) == file_value
    config.write_text("", encoding="utf-8")
    assert getattr(load_settings(), field) == default


def test_tool_cascade_in_pyproject(workdir: Path) -> None:
    pyproject = write(
        workdir / "pyproject.toml",
        '[project]\nname = "orders"\n\n[tool.cascade]\ningest_hours = 12\n\n'
        '[tool.cascade.sources.orders]\nfiles = "data/*.csv"\n',
    )
    settings = load_settings()
    assert settings.config_file == pyproject
    assert settings.root == workdir
    assert settings.ingest_hours == 12.0
    assert settings.sources["orders"].files == "data/*.csv"


def test_pyproject_without_tool_cascade_is_passed_over(workdir: Path) -> None:
    project = workdir / "project"
    config = write(project / "cascade.toml", "ingest_hours = 5\n")
    write(project / "sub" / "pyproject.toml", '[project]\nname = "sub"\n\n[tool.ruff]\nline-length = 100\n')
    assert find_config(project / "sub") == config


def test_cascade_toml_wins_over_pyproject_in_the_same_folder(workdir: Path) -> None:
    config = write(workdir / "cascade.toml", "ingest_hours = 5\n")
    write(workdir / "pyproject.toml", "[tool.cascade]\ningest_hours = 9\n")
    assert find_config() == config
    assert load_settings().ingest_hours == 5.0


def test_tool_cascade_must_be_a_table(workdir: Path) -> None:
    pyproject = write(workdir / "pyproject.toml", '[tool]\ncascade = "yes"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(pyproject)
    assert str(caught.value) == f"{pyproject}: [tool.cascade] must be a table"


def test_config_is_found_from_a_subfolder_upward(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(workdir / "cascade.toml", 'home = "state"\nreports_dir = "out/reports"\n')
    deep = workdir / "models" / "marts"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    settings = load_settings()
    assert settings.config_file == config
    assert settings.root == workdir
    # Relative paths in the file are relative to the file's folder, not to the working directory.
    assert settings.home == workdir / "state"
    assert settings.reports_dir == workdir / "out" / "reports"
    assert settings.path(settings.home) == workdir / "state"
    assert settings.path("data/x.csv") == workdir / "data" / "x.csv"
    assert settings.path("/abs/x.csv") == Path("/abs/x.csv")


def test_no_config_anywhere_up(workdir: Path) -> None:
    assert find_config() is None
    assert load_settings().config_file is None


def test_config_named_by_argument_or_cascade_config(workdir: Path, tmp_path: Path, monkeypatch) -> None:
    write(workdir / "cascade.toml", "ingest_hours = 1\n")
    elsewhere = write(tmp_path / "elsewhere" / "project.toml", "ingest_hours = 2\n")
    named = write(tmp_path / "named" / "cascade.toml", "ingest_hours = 3\n")
    assert load_settings().ingest_hours == 1.0
    monkeypatch.setenv("CASCADE_CONFIG", str(elsewhere))
    settings = load_settings()
    assert (settings.ingest_hours, settings.config_file, settings.root) == (2.0, elsewhere, elsewhere.parent)
    assert load_settings(named).ingest_hours == 3.0  # the argument (the --config flag) wins


def test_missing_config_file_is_a_config_error(workdir: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(workdir / "nope.toml")
    assert str(caught.value) == f"config file {workdir / 'nope.toml'} does not exist"
    assert caught.value.exit_code == 2


def test_invalid_toml_names_the_file(workdir: Path) -> None:
    config = write(workdir / "cascade.toml", "ingest_hours = \n")
    with pytest.raises(ConfigError, match=rf"^{config}: not valid TOML: "):
        load_settings()


# --- ${VAR} and ${VAR:-default} ------------------------------------------------------------------


def test_interpolation_reads_the_environment(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        workdir / "cascade.toml",
        """
ingest_hours = "${HOURS:-12}"

[sources.api]
python = "my_pipeline.sources:read"
options = { token = "${API_TOKEN}", url = "https://${API_HOST:-api.example.org}/v1", users = ["${FIRST}", "b"], n = 5 }

[tables."raw.events"]
freshness = { column = "at", warn_after_hours = "${EVENTS_FRESHNESS_HOURS:-24}" }
""",
    )
    monkeypatch.setenv("API_TOKEN", "tok-1")
    monkeypatch.setenv("FIRST", "a")
    settings = load_settings()
    assert settings.ingest_hours == 12.0
    assert settings.sources["api"].options == {
        "token": "tok-1",
        "url": "https://api.example.org/v1",
        "users": ["a", "b"],
        "n": 5,
    }
    freshness = settings.tables["raw.events"].freshness
    assert freshness is not None and freshness.warn_after_hours == 24.0

    monkeypatch.setenv("HOURS", "6")
    monkeypatch.setenv("API_HOST", "ghe.example.org")
    monkeypatch.setenv("EVENTS_FRESHNESS_HOURS", "2")
    settings = load_settings()
    assert settings.ingest_hours == 6.0
    assert settings.sources["api"].options["url"] == "https://ghe.example.org/v1"
    assert settings.tables["raw.events"].freshness.warn_after_hours == 2.0  # type: ignore[union-attr]


def test_unset_variable_without_default_is_a_config_error(workdir: Path) -> None:
    write(workdir / "cascade.toml", '[sources.api]\npython = "m:f"\noptions = { token = "${MY_TOKEN}" }\n')
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == (
        f"{workdir / 'cascade.toml'}: sources.api.options.token: ${{MY_TOKEN}} is not set "
        "(write ${MY_TOKEN:-default} to make it optional)"
    )
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        ("${A}", {"A": "1"}, "1"),
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": "1"}, "1"),
        ("${A:-}", {}, ""),
        ("${A}-${B:-b}/${A}", {"A": "a"}, "a-b/a"),
        ("$A ${ not a variable } $${A}", {"A": "1"}, "$A ${ not a variable } $1"),
        ("${A}", {"A": "${B}"}, "${B}"),  # a value is not interpolated again
        ("${A:-http://h:80/p}", {}, "http://h:80/p"),
    ],
)
def test_interpolate(value: str, environ: dict[str, str], expected: str) -> None:
    assert interpolate(value, "key", environ) == expected


def test_interpolate_walks_tables_and_arrays_and_leaves_other_values() -> None:
    data = {"a": ["${X}", 1, True], "b": {"c": "${Y:-y}", "d": 2.5, "e": None}}
    assert interpolate(data, "", {"X": "x"}) == {"a": ["x", 1, True], "b": {"c": "y", "d": 2.5, "e": None}}


def test_interpolate_names_the_key_of_an_unset_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        interpolate({"sources": {"s": {"options": {"users": ["ok", "${NOPE}"]}}}}, "", {})
    assert str(caught.value).startswith("sources.s.options.users[1]: ${NOPE} is not set")


def test_default_applies_to_a_variable_set_but_empty() -> None:
    """`${VAR:-default}` as in the shell: unset *or empty* takes the default. A workflow's
    `env: {USERS: ${{ vars.USERS }}}` sets USERS to "" when the repository variable does not exist."""
    assert interpolate("${USERS:-octocat}", "key", {"USERS": ""}) == "octocat"
    assert interpolate("${USERS}", "key", {"USERS": ""}) == ""


# --- bad values --------------------------------------------------------------------------------

BAD_ENV: list[tuple[str, str]] = [
    ("BRANCH_RETENTION_DAYS", "seven"),
    ("BRANCH_RETENTION_DAYS", "-1"),
    ("BRANCH_RETENTION_DAYS_FAILED", "-3"),
    ("AUTO_PROMOTE_ENABLED", "maybe"),
    ("PANDERA_CRITICAL_LEVEL", "fatal"),
    ("VALIDATION_RETRY_MAX_ATTEMPTS", "0"),
    ("VALIDATION_RETRY_MAX_ATTEMPTS", "21"),
    ("VALIDATION_RETRY_DELAY_SECONDS", "-1"),
    ("CASCADE_INGEST_HOURS", "0"),
    ("CASCADE_INGEST_HOURS", "soon"),
    ("NESSIE_TIMEOUT", "0"),
    ("CASCADE_BRANCH_PREFIX", "../x"),
    ("CASCADE_BRANCH_PREFIX", "1run-"),
    ("CASCADE_BRANCH_PREFIX", "a//b"),
    ("CASCADE_GATES", ","),
    ("CASCADE_REQUIRED_GATES", " , "),
    ("ICEBERG_NESSIE_REF", "a..b"),
    ("ICEBERG_NESSIE_REF", "main/"),
    ("ICEBERG_NESSIE_REF", "1main"),
]


@pytest.mark.parametrize(("env", "raw"), BAD_ENV, ids=[f"{env}={raw}" for env, raw in BAD_ENV])
def test_bad_environment_value_raises_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, raw: str
) -> None:
    monkeypatch.setenv(env, raw)
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert f"{env}:" in message
    assert repr(raw) in message
    assert excinfo.value.exit_code == 2


def test_secret_values_are_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(trino_password=24681357, branch_retention_days="13579-not-a-number")
    message = str(caught.value)
    assert "TRINO_PASSWORD: Input should be a valid string (got <secret>)" in message
    assert "24681357" not in message
    assert "'13579-not-a-number'" in message  # not a secret: shown


def test_bad_environment_value_is_blamed_on_the_variable_not_the_file(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file's value is fine; the variable that overrides it is not: the message names the variable."""
    config = write(workdir / "cascade.toml", "ingest_hours = 5\n")
    monkeypatch.setenv("CASCADE_INGEST_HOURS", "soon")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "CASCADE_INGEST_HOURS: Input should be a valid number" in message and "'soon'" in message
    assert str(config) not in message


@pytest.mark.parametrize(
    ("overrides", "env"),
    [
        ({"branch_retention_days": -1}, "BRANCH_RETENTION_DAYS"),
        ({"gates": ","}, "CASCADE_GATES"),
        ({"ingest_hours": 0}, "CASCADE_INGEST_HOURS"),
        ({"branch_prefix": "../x"}, "CASCADE_BRANCH_PREFIX"),
        ({"main_branch": "a//b"}, "ICEBERG_NESSIE_REF"),
    ],
)
def test_bad_keyword_override_names_the_environment_variable(overrides: dict[str, Any], env: str) -> None:
    with pytest.raises(ConfigError, match=env):
        load_settings(**overrides)


def test_every_bad_setting_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRANCH_RETENTION_DAYS", "x")
    monkeypatch.setenv("CASCADE_INGEST_HOURS", "y")
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    assert "BRANCH_RETENTION_DAYS" in str(excinfo.value)
    assert "CASCADE_INGEST_HOURS" in str(excinfo.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[sources.a]\npython = "m:f"\nfiles = "*.csv"\n', "sources.a: Value error, give exactly one of python, "
         "dlt, files or type (got python, files)"),
        ("[sources.a]\n", "sources.a: Value error, give exactly one of python, dlt, files or type (got none)"),
        ('[tables.orders]\nunique = ["id"]\n', "tables: Value error, table 'orders' must be named namespace.table"),
        ('[tables."raw.o"]\nfreshness = { column = "t" }\n',
         "tables.raw.o.freshness: Value error, give warn_after_hours, error_after_hours or both"),
        ('[[checks]]\nname = "bad name"\nsql = "select 1"\n', "checks.0.name: String should match pattern"),
        ('[[checks]]\nname = "c"\nsql = "select 1"\nseverity = "fatal"\n', "checks.0.severity: Input should be"),
        ('[transform]\nthreads = 0\n', "transform.threads: Input should be greater than or equal to 1"),
    ],
)  # fmt: skip
def test_bad_project_section_names_the_file_and_the_key(workdir: Path, text: str, problem: str) -> None:
    config = write(workdir / "cascade.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert f"{config}: {problem}" in str(caught.value)


# --- cascade config check ----------------------------------------------------------------------


def test_config_check_prints_the_resolved_config(workdir: Path) -> None:
    config = write(workdir / "cascade.toml", 'gates = ["schema"]\ningest_hours = 6\n[sources.csv]\nfiles = "d/*.csv"\n')
    result = check(config, "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == f"{config}: ok\n"
    resolved = json.loads(result.stdout)
    assert resolved["config_file"] == str(config)
    assert resolved["root"] == str(workdir)
    assert (resolved["gates"], resolved["ingest_hours"], resolved["catalog"]) == (["schema"], 6.0, "local")
    assert resolved["sources"]["csv"]["files"] == "d/*.csv"
    plain = check(config)
    assert plain.exit_code == 0 and json.loads(plain.stdout) == resolved


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("bogus_key = 1\n", "unknown key 'bogus_key'"),
        ('[sources.a]\nfiles = "*.csv"\nbogus = 1\n', "sources.a.bogus: unknown key"),
        ('[transform]\nproject_dir = "dbt"\nthreads = "x"\n', "transform.threads: Input should be a valid integer"),
        ('ingest_hours = "soon"\n', "ingest_hours: Input should be a valid number"),
        ('[tables."raw.t"]\nunique = "id"\n', "tables.raw.t.unique: Input should be a valid list"),
        ('branch_retention_days = "soon"\n', "branch_retention_days: Input should be a valid integer"),
        ('auto_promote_enabled = "perhaps"\n', "auto_promote_enabled: Input should be a valid boolean"),
    ],
    ids=["unknown-key", "unknown-nested-key", "threads", "ingest_hours", "unique", "retention", "auto_promote"],
)
def test_config_check_names_the_file_the_key_and_the_problem(workdir: Path, text: str, problem: str) -> None:
    config = write(workdir / "cascade.toml", text)
    result = check(config)
    assert result.exit_code == 2, result.output
    assert f"{config}: {problem}" in result.stderr
    assert result.stdout == ""


def test_config_flag_and_cascade_config_name_the_file_for_every_command(workdir: Path, tmp_path: Path) -> None:
    write(workdir / "cascade.toml", "ingest_hours = 1\n")
    other = write(tmp_path / "other" / "cascade.toml", "ingest_hours = 2\n")
    found = CliRunner().invoke(cli, ["config", "check", "--json"])
    assert json.loads(found.stdout)["ingest_hours"] == 1.0
    from_env = CliRunner().invoke(cli, ["config", "check", "--json"], env={"CASCADE_CONFIG": str(other)})
    assert from_env.exit_code == 0, from_env.output
    assert (json.loads(from_env.stdout)["ingest_hours"], json.loads(from_env.stdout)["root"]) == (
        2.0,
        str(other.parent),
    )
    flag = CliRunner().invoke(cli, ["--config", str(other), "config", "check", "--json"])
    assert json.loads(flag.stdout)["config_file"] == str(other)
    missing = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.toml"), "config", "check"])
    assert missing.exit_code == 2
    assert missing.stderr == f"cascade: config file {tmp_path / 'nope.toml'} does not exist\n"


def test_config_check_json_error_payload(workdir: Path) -> None:
    config = write(workdir / "cascade.toml", "bogus_key = 1\n")
    result = check(config, "--json")
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert payload["type"] == "ConfigError"
    assert payload["message"].startswith(f"{config}: unknown key 'bogus_key'")


def test_config_check_names_an_unimportable_module(workdir: Path, module_name: str) -> None:
    write(workdir / f"{module_name}.py", "def read(ctx):\n    return {}\n")
    config = write(
        workdir / "cascade.toml",
        '[sources.gone]\npython = "no_such_module_here:read"\n\n'
        f'[sources.typo]\npython = "{module_name}:reed"\n\n'
        f'[sources.fine]\npython = "{module_name}:read"\n',
    )
    result = check(config)
    assert result.exit_code == 2, result.output
    assert "2 problem(s):" in result.stderr
    assert (
        f"{config}: sources.gone: 'no_such_module_here:read': cannot import 'no_such_module_here': "
        "No module named 'no_such_module_here'"
    ) in result.stderr
    assert f"{config}: sources.typo: '{module_name}:reed': '{module_name}' has no attribute 'reed'" in result.stderr
    assert "sources.fine" not in result.stderr


def test_config_check_names_an_unimportable_schema(workdir: Path) -> None:
    config = write(workdir / "cascade.toml", '[tables."raw.orders"]\nschema = "no_such_schemas:Orders"\n')
    result = check(config)
    assert result.exit_code == 2, result.output
    assert f'{config}: tables."raw.orders": ' in result.stderr
    assert "schema 'no_such_schemas:Orders' cannot be loaded" in result.stderr
    assert "cannot import 'no_such_schemas': No module named 'no_such_schemas'" in result.stderr


def test_config_check_names_unknown_gates_catalogs_and_a_missing_dbt_project(workdir: Path) -> None:
    config = write(
        workdir / "cascade.toml",
        'catalog = "postgres"\ngates = ["schema", "bogus"]\n[transform]\nproject_dir = "dbt"\n',
    )
    result = check(config)
    assert result.exit_code == 2, result.output
    assert "3 problem(s):" in result.stderr
    assert (
        f"{config}: catalog: no catalog named 'postgres' (installed: local, nessie; or give module:attr)"
        in result.stderr
    )
    assert (
        f"{config}: gates: bogus: no gate named 'bogus' "
        "(installed: dbt, freshness, pandera, rejects, schema, sql; or give module:attr)" in result.stderr
    )
    assert f"{config}: transform.project_dir: " in result.stderr
    assert f"no dbt_project.yml in {workdir / 'dbt'}" in result.stderr


def test_config_check_masks_secrets(workdir: Path, module_name: str) -> None:
    write(workdir / f"{module_name}.py", "def read(ctx):\n    return {}\n")
    config = write(
        workdir / "cascade.toml",
        f'[sources.api]\npython = "{module_name}:read"\n'
        'options = { token = "${MY_TOKEN}", api_secret = "${MY_SECRET:-}", url = "https://api.example.org" }\n',
    )
    env = {
        "MY_TOKEN": "tok-0123456789",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-0123456789",
        "GITHUB_TOKEN": "ghp_0123456789",
        "TRINO_PASSWORD": "trino-pass-0123456789",
    }
    for args in (["--json"], []):
        result = check(config, *args, env=env)
        assert result.exit_code == 0, result.output
        for secret in env.values():
            assert secret not in result.stdout and secret not in result.stderr
        resolved = json.loads(result.stdout)
        assert resolved["sources"]["api"]["options"] == {
            "token": "***",
            "api_secret": "",  # empty: nothing to hide
            "url": "https://api.example.org",
        }
        for field in ("s3_access_key_id", "s3_secret_access_key", "github_token", "trino_password"):
            assert resolved[field] == "***", field


def test_settings_model_lists_every_documented_key() -> None:
    """`config check --help` lists the top-level keys; each of them is a field, and vice versa for flat fields."""
    result = CliRunner().invoke(cli, ["config", "check", "--help"])
    assert result.exit_code == 0
    project = {"sources", "transform", "tables", "checks", "gate_options", "config_file", "root"}
    secrets = {"s3_access_key_id", "s3_secret_access_key", "trino_password", "github_token", "github_api_url"}
    for name in set(Settings.model_fields) - project - secrets:
        assert name in result.stdout, name


def test_urls_in_messages_carry_no_credentials():
    from cascade_ci.errors import safe_url

    assert safe_url("https://user:p%40ss@ns.example.org:8443/api/v1/entries.json?token=abc#x") == (
        "https://ns.example.org:8443/api/v1/entries.json"
    )
    assert safe_url("http://127.0.0.1:9000") == "http://127.0.0.1:9000"
