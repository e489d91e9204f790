"""cascade_ci.config: defaults, environment, `.env`, keyword overrides and ConfigError messages."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices, ValidationError

from cascade_ci.errors import ConfigError
from cascade_ci.config import (
    GATE_NAMES,
    CatalogKind,
    Settings,
    Severity,
    load_settings,
    parse_gates,
)


def _setting_env_names() -> set[str]:
    """Every name pydantic-settings may read for a field: the field name and each alias choice (lowercased)."""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        names.add(name.lower())
        if isinstance(field.validation_alias, AliasChoices):
            names.update(str(choice).lower() for choice in field.validation_alias.choices)
    return names


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting comes from the caller's environment or a stray `.env`; HOME is set as on every real machine."""
    names = _setting_env_names()
    for key in list(os.environ):
        if key.lower() in names:
            monkeypatch.delenv(key)
    # Every real shell and every GitHub runner sets HOME; it must not leak into CASCADE_HOME.
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


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
    ("glucose_freshness_hours", 24.0),
    ("github_events_freshness_hours", 24.0),
    ("github_stats_freshness_hours", 48.0),
    ("main_branch", "main"),
    ("catalog", CatalogKind.LOCAL),
    ("home", Path(".cascade")),
    ("branch_prefix", "pipeline/run-"),
    ("reports_dir", Path("reports")),
    ("gates", "schema,pandera,dbt,freshness"),
    ("github_token", None),
    ("s3_access_key_id", None),
    ("s3_secret_access_key", None),
]


@pytest.mark.parametrize(("attr", "expected"), DEFAULTS, ids=[attr for attr, _ in DEFAULTS])
def test_default(attr: str, expected: Any) -> None:
    settings = load_settings()
    value = getattr(settings, attr)
    assert value == expected
    assert type(value) is type(expected)


def test_default_string_forms() -> None:
    settings = load_settings()
    assert settings.pandera_critical_level == "error"
    assert settings.catalog == "local"
    assert settings.gate_names == ["schema", "pandera", "dbt", "freshness"]


def test_home_environment_variable_does_not_become_cascade_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    assert load_settings().home == Path(".cascade")


@pytest.mark.parametrize(
    ("env", "value", "attr"),
    [
        ("CATALOG", "nessie", "catalog"),
        ("GATES", "dbt", "gates"),
        ("REPORTS_DIR", "/elsewhere", "reports_dir"),
        ("MAIN_BRANCH", "develop", "main_branch"),
        ("BRANCH_PREFIX", "other/", "branch_prefix"),
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
    ("GLUCOSE_FRESHNESS_HOURS", "6", "glucose_freshness_hours", 6),
    ("GITHUB_EVENTS_FRESHNESS_HOURS", "12.5", "github_events_freshness_hours", 12.5),
    ("GITHUB_STATS_FRESHNESS_HOURS", "72", "github_stats_freshness_hours", 72),
    ("ICEBERG_NESSIE_REF", "develop", "main_branch", "develop"),
    ("CASCADE_CATALOG", "nessie", "catalog", CatalogKind.NESSIE),
    ("CASCADE_HOME", "/var/cascade", "home", Path("/var/cascade")),
    ("CASCADE_BRANCH_PREFIX", "wap/run-", "branch_prefix", "wap/run-"),
    ("CASCADE_REPORTS_DIR", "out/reports", "reports_dir", Path("out/reports")),
    ("CASCADE_GATES", "schema,dbt", "gates", "schema,dbt"),
    ("NESSIE_URI", "http://nessie:19120/api/v2", "nessie_uri", "http://nessie:19120/api/v2"),
    ("S3_ENDPOINT", "http://minio:9000", "s3_endpoint", "http://minio:9000"),
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


# --- .env --------------------------------------------------------------------------------------


def test_dotenv_in_cwd_is_read(clean_env: Path) -> None:
    (clean_env / ".env").write_text(
        "BRANCH_RETENTION_DAYS=11\nCASCADE_CATALOG=nessie\nAUTO_PROMOTE_ENABLED=false\nCASCADE_GATES=schema,pandera\n",
        encoding="utf-8",
    )
    settings = load_settings()
    assert settings.branch_retention_days == 11
    assert settings.catalog is CatalogKind.NESSIE
    assert settings.auto_promote_enabled is False
    assert settings.gate_names == ["schema", "pandera"]


def test_dotenv_elsewhere_is_not_read(clean_env: Path, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BRANCH_RETENTION_DAYS=11\n", encoding="utf-8")
    assert load_settings().branch_retention_days == 7


def test_environment_beats_dotenv(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text("BRANCH_RETENTION_DAYS=11\nCASCADE_HOME=/from/dotenv\n", encoding="utf-8")
    monkeypatch.setenv("BRANCH_RETENTION_DAYS", "12")
    monkeypatch.setenv("CASCADE_HOME", "/from/env")
    settings = load_settings()
    assert settings.branch_retention_days == 12
    assert settings.home == Path("/from/env")


def test_bad_value_in_dotenv_raises_config_error(clean_env: Path) -> None:
    (clean_env / ".env").write_text("BRANCH_RETENTION_DAYS=soon\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="BRANCH_RETENTION_DAYS"):
        load_settings()


# --- keyword overrides -------------------------------------------------------------------------


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
    assert settings.catalog is CatalogKind.LOCAL


def test_keyword_overrides_beat_dotenv(clean_env: Path) -> None:
    (clean_env / ".env").write_text("CASCADE_GATES=dbt\nVALIDATION_RETRY_MAX_ATTEMPTS=7\n", encoding="utf-8")
    settings = load_settings(gates="pandera", validation_retry_max_attempts=2)
    assert settings.gates == "pandera"
    assert settings.validation_retry_max_attempts == 2


def test_none_overrides_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_GATES", "dbt")
    monkeypatch.setenv("BRANCH_RETENTION_DAYS", "9")
    settings = load_settings(gates=None, reports_dir=None, branch_retention_days=None)
    assert settings.gates == "dbt"
    assert settings.reports_dir == Path("reports")
    assert settings.branch_retention_days == 9


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.branch_retention_days = 1  # type: ignore[misc]


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
    ("GLUCOSE_FRESHNESS_HOURS", "0"),
    ("GITHUB_STATS_FRESHNESS_HOURS", "later"),
    ("CASCADE_CATALOG", "postgres"),
    ("CASCADE_BRANCH_PREFIX", "../x"),
    ("CASCADE_BRANCH_PREFIX", "1run-"),
    ("CASCADE_BRANCH_PREFIX", "a//b"),
    ("CASCADE_GATES", "schema,bogus"),
    ("CASCADE_GATES", "great_expectations"),
    ("CASCADE_GATES", ","),
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


def test_unknown_gate_message_lists_the_known_gates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_GATES", "schema,bogus")
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert "CASCADE_GATES" in message
    assert "bogus" in message
    for name in GATE_NAMES:
        assert name in message


@pytest.mark.parametrize(
    ("overrides", "env"),
    [
        ({"branch_retention_days": -1}, "BRANCH_RETENTION_DAYS"),
        ({"catalog": "postgres"}, "CASCADE_CATALOG"),
        ({"gates": "nope"}, "CASCADE_GATES"),
        ({"branch_prefix": "../x"}, "CASCADE_BRANCH_PREFIX"),
        ({"main_branch": "a//b"}, "ICEBERG_NESSIE_REF"),
    ],
)
def test_bad_keyword_override_names_the_environment_variable(overrides: dict[str, Any], env: str) -> None:
    with pytest.raises(ConfigError, match=env):
        load_settings(**overrides)


def test_every_bad_setting_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRANCH_RETENTION_DAYS", "x")
    monkeypatch.setenv("CASCADE_CATALOG", "y")
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    assert "BRANCH_RETENTION_DAYS" in str(excinfo.value)
    assert "CASCADE_CATALOG" in str(excinfo.value)


# --- parse_gates -------------------------------------------------------------------------------


def test_parse_gates() -> None:
    assert parse_gates("schema") == ["schema"]
    assert parse_gates("schema, dbt") == ["schema", "dbt"]
    assert parse_gates("pandera,dbt,freshness,schema") == ["pandera", "dbt", "freshness", "schema"]


@pytest.mark.parametrize("spec", ["", " ", ",", "bogus", "schema,bogus", "Schema"])
def test_parse_gates_refuses_unknown_or_empty(spec: str) -> None:
    with pytest.raises(ValueError, match="choose from"):
        parse_gates(spec)


def test_urls_in_messages_carry_no_credentials():
    from cascade_ci.errors import safe_url

    assert safe_url("https://user:p%40ss@ns.example.org:8443/api/v1/entries.json?token=abc#x") == (
        "https://ns.example.org:8443/api/v1/entries.json"
    )
    assert safe_url("http://127.0.0.1:9000") == "http://127.0.0.1:9000"
