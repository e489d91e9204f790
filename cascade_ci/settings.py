"""Settings: one pydantic model, resolved once (flags, then environment, then `.env`), passed explicitly.

Environment names are the flat names users already set in their workflows (`BRANCH_RETENTION_DAYS`);
cascade-ci's own knobs carry a `CASCADE_` prefix. This module is the only place defaults live.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cascade_ci.errors import ConfigError, InvalidNameError
from cascade_ci.naming import DEFAULT_BRANCH_PREFIX, validate_prefix, validate_ref_name


class CatalogKind(StrEnum):
    LOCAL = "local"
    NESSIE = "nessie"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class Settings(BaseSettings):
    """Every setting of cascade-ci, with its default."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    # Where state lives and how things are named.
    catalog: CatalogKind = Field(CatalogKind.LOCAL, validation_alias="CASCADE_CATALOG")
    home: Path = Field(Path(".cascade"), validation_alias="CASCADE_HOME")
    branch_prefix: str = Field(DEFAULT_BRANCH_PREFIX, validation_alias="CASCADE_BRANCH_PREFIX")
    reports_dir: Path = Field(Path("reports"), validation_alias="CASCADE_REPORTS_DIR")
    gates: str = Field("schema,pandera,dbt,freshness", validation_alias="CASCADE_GATES")
    main_branch: str = Field("main", validation_alias="ICEBERG_NESSIE_REF")

    # Retention of pipeline branches.
    branch_retention_days: int = Field(7, ge=0)
    branch_retention_days_failed: int = Field(14, ge=0)

    # Gates and promotion.
    auto_promote_enabled: bool = True
    freshness_blocks_promotion: bool = False
    pandera_critical_level: Severity = Severity.ERROR
    validation_retry_enabled: bool = True
    validation_retry_max_attempts: int = Field(3, ge=1, le=20)
    validation_retry_delay_seconds: float = Field(300, ge=0)
    glucose_freshness_hours: float = Field(24, gt=0)
    github_events_freshness_hours: float = Field(24, gt=0)
    github_stats_freshness_hours: float = Field(48, gt=0)

    # Ingestion: the window each run reads, and where the sources are.
    ingest_hours: float = Field(48, gt=0, validation_alias="CASCADE_INGEST_HOURS")
    sample_seed: int = Field(7, validation_alias="CASCADE_SAMPLE_SEED")
    sample_defects: str = Field("", validation_alias="CASCADE_SAMPLE_DEFECTS")
    nightscout_url: str | None = None
    nightscout_api_secret: SecretStr | None = None
    github_users: str = Field("octocat", validation_alias="CASCADE_GITHUB_USERS")
    github_repos: str = Field("octocat/Hello-World", validation_alias="CASCADE_GITHUB_REPOS")
    github_api_url: str = Field("https://api.github.com", validation_alias="GITHUB_API_URL")

    # Production catalog (Nessie); used when CASCADE_CATALOG=nessie.
    nessie_uri: str = "http://localhost:19120"
    nessie_warehouse: str = "warehouse"
    nessie_timeout: float = Field(30, gt=0, validation_alias="NESSIE_TIMEOUT")
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = Field(None, validation_alias="AWS_ACCESS_KEY_ID")
    s3_secret_access_key: SecretStr | None = Field(None, validation_alias="AWS_SECRET_ACCESS_KEY")

    # Production engine (Trino), used with CASCADE_CATALOG=nessie.
    trino_uri: str = "http://localhost:8080"
    trino_user: str = "cascade"
    trino_password: SecretStr | None = None

    # GitHub (tokens are secrets and never printed).
    github_token: SecretStr | None = None

    @field_validator("branch_prefix", "main_branch")
    @classmethod
    def _names_are_safe(cls, value: str, info: ValidationInfo) -> str:
        check = validate_prefix if info.field_name == "branch_prefix" else validate_ref_name
        try:
            return check(value)
        except InvalidNameError as e:
            raise ValueError(str(e)) from e

    @field_validator("gates")
    @classmethod
    def _gates_are_known(cls, value: str) -> str:
        parse_gates(value)
        return value

    @property
    def gate_names(self) -> list[str]:
        return parse_gates(self.gates)


GATE_NAMES = ("schema", "pandera", "dbt", "freshness")


def parse_gates(spec: str) -> list[str]:
    """`"schema,dbt"` -> `["schema", "dbt"]`; unknown names are refused."""
    names = [part.strip() for part in spec.split(",") if part.strip()]
    unknown = [name for name in names if name not in GATE_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown gate(s) {unknown or spec!r}; choose from {', '.join(GATE_NAMES)}")
    return names


_ENV_NAMES = {
    name: field.validation_alias if isinstance(field.validation_alias, str) else name.upper()
    for name, field in Settings.model_fields.items()
}


def load_settings(**overrides: Any) -> Settings:
    """Resolve settings; `overrides` (from CLI flags) win. A bad value raises ConfigError naming the variable."""
    given = {_ENV_NAMES.get(key, key): value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            name = _ENV_NAMES.get(field, field)
            problems.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from e
