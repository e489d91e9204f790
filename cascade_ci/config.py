"""The project config: one pydantic model, resolved once and passed explicitly.

A project declares itself in `cascade.toml` (or `[tool.cascade]` in `pyproject.toml`), found from the
working directory upward or named with `--config` / `CASCADE_CONFIG`. Values are resolved in this order,
first wins: command-line flags, environment variables (the flat names users already set in their
workflows, e.g. `BRANCH_RETENTION_DAYS`), a `.env` file, the config file, the defaults below. Strings in
the file may use `${VAR}` or `${VAR:-default}` to read secrets from the environment. Relative paths in the
file are relative to the file's folder. This module is the only place defaults live.
"""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from cascade_ci.errors import ConfigError, InvalidNameError, redact_urls
from cascade_ci.naming import DEFAULT_BRANCH_PREFIX, main_collision, validate_prefix, validate_ref_name

CONFIG_FILE = "cascade.toml"
PYPROJECT = "pyproject.toml"
BUILTIN_GATES = ("rejects", "schema", "pandera", "dbt", "freshness", "sql")
DEFAULT_ENGINES = {"local": "duckdb", "nessie": "trino"}


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class _Section(BaseModel):
    """A table of the config file: unknown keys are refused, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Section):
    """One named source. Exactly one of `python`, `dlt`, `files` or `type` says what reads it."""

    python: str | None = Field(None, description="`module:function` returning tables (Arrow, batches or dicts).")
    dlt: str | None = Field(
        None, description="`module:attr`, a dlt source or resource (pip install 'cascade-ci[dlt]')."
    )
    files: str | None = Field(None, description="A glob of CSV, Parquet or JSON-lines files.")
    type: str | None = Field(
        None, description="Another source kind: an entry point of `cascade_ci.sources` or `module:attr`."
    )
    namespace: str = Field("raw", description="The namespace its tables are written to.")
    keys: dict[str, list[str]] = Field(
        default_factory=dict, description="Natural key per table; ingest upserts on it (else the table's `unique`)."
    )
    table: str | None = Field(None, description="files: one table for every matched file (default: each file's stem).")
    format: Literal["csv", "parquet", "jsonl"] | None = Field(
        None, description="files: the format (default: by suffix)."
    )
    types: dict[str, str] = Field(
        default_factory=dict,
        description="files: column types (int64, double, bool, date32, timestamp[us, tz=UTC], ...) of CSV and "
        "JSON lines; a record whose value does not fit is rejected.",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Passed to the source as `ctx.options`.")
    default: bool = Field(True, description="Read by `cascade ingest` when no --source is given.")
    rejects_max_share: float | None = Field(
        None, ge=0, le=1, description="The share of its records a table from this source may reject (0 to 1)."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> SourceConfig:
        given = [kind for kind in ("python", "dlt", "files", "type") if getattr(self, kind)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of python, dlt, files or type (got {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> str:
        """The entry-point name of the source kind (`python`, `dlt`, `files`) or the `type` given."""
        return self.type or next(kind for kind in ("python", "dlt", "files") if getattr(self, kind))

    @property
    def target(self) -> str | None:
        """What the built-in kinds read: the `module:attr` or the glob."""
        return self.python or self.dlt or self.files


class TransformConfig(_Section):
    """The user's dbt project, run on the branch by `cascade transform`."""

    project_dir: Path = Field(Path("dbt"), description="The dbt project folder (holds dbt_project.yml).")
    profile: str | None = Field(None, description="The profile name cascade writes (default: dbt_project.yml's).")
    schema_: str = Field("main", alias="schema", description="The target schema for models without `+schema`.")
    select: list[str] = Field(default_factory=list, description="dbt --select.")
    exclude: list[str] = Field(default_factory=list, description="dbt --exclude.")
    vars: dict[str, Any] = Field(default_factory=dict, description="dbt --vars.")
    threads: int = Field(2, ge=1, le=64)


class FreshnessConfig(_Section):
    """How old the newest value of `column` may be."""

    column: str
    warn_after_hours: float | None = Field(None, gt=0)
    error_after_hours: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _a_limit(self) -> FreshnessConfig:
        if self.warn_after_hours is None and self.error_after_hours is None:
            raise ValueError("give warn_after_hours, error_after_hours or both")
        return self


class TableConfig(_Section):
    """What the gates know about one table (`namespace.table`)."""

    schema_: str | None = Field(
        None, alias="schema", description="Pandera schema: `module:attr` (a DataFrameModel or schema) or a YAML file."
    )
    unique: list[str] = Field(default_factory=list, description="Columns that together are unique.")
    freshness: FreshnessConfig | None = None
    sensitive: list[str] = Field(
        default_factory=list,
        description="Columns whose values stay out of every report: failures show counts and row keys only.",
    )
    rejects_max_share: float | None = Field(
        None, ge=0, le=1, description="The share of its records ingest may reject before the verdict blocks."
    )


class CheckConfig(_Section):
    """A custom SQL check run by the engine on the branch: the first value of the first row must equal `expect`."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    sql: str
    expect: int | float | bool | str = 0
    severity: Literal["error", "warn"] = "error"
    table: str | None = Field(None, description="The table it is reported under (default: `sql`).")
    description: str = ""


class Settings(BaseSettings):
    """Every setting of cascade-ci, with its default.

    The flat fields can be set in the environment (their names are given by `env_name`); the project's
    sources, transform, tables and checks come from the config file.
    """

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    # Where state lives and how things are named.
    catalog: str = Field("local", validation_alias="CASCADE_CATALOG")
    engine: str | None = Field(None, validation_alias="CASCADE_ENGINE")
    home: Path = Field(Path(".cascade"), validation_alias="CASCADE_HOME")
    branch_prefix: str = Field(DEFAULT_BRANCH_PREFIX, validation_alias="CASCADE_BRANCH_PREFIX")
    reports_dir: Path = Field(Path("reports"), validation_alias="CASCADE_REPORTS_DIR")
    main_branch: str = Field("main", validation_alias="ICEBERG_NESSIE_REF")

    # Gates and promotion.
    gates: Annotated[list[str] | None, NoDecode] = Field(None, validation_alias="CASCADE_GATES")
    required_gates: Annotated[list[str] | None, NoDecode] = Field(None, validation_alias="CASCADE_REQUIRED_GATES")
    auto_promote_enabled: bool = True
    # Logins whose `/cascade promote <run id>` PR comment approves a promotion (`cascade approve`).
    approvers: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias="CASCADE_APPROVERS")
    freshness_blocks_promotion: bool = False
    pandera_critical_level: Severity = Severity.ERROR
    validation_retry_enabled: bool = True
    validation_retry_max_attempts: int = Field(3, ge=1, le=20)
    validation_retry_delay_seconds: float = Field(300, ge=0)

    # Retention of pipeline branches.
    branch_retention_days: int = Field(7, ge=0)
    branch_retention_days_failed: int = Field(14, ge=0)

    # Retention of main's history, promotion tags and warehouse files (`cascade gc --files`).
    main_retention_days: int = Field(
        30, ge=0, description="Main's history is kept this many days, or back to its Nth newest promotion."
    )
    main_retention_promotions: int = Field(
        10, ge=0, description="N for main's history: whichever of the two keeps more commits wins."
    )
    tag_retention_days: int = Field(
        90, ge=0, description="prod-* tags are kept this many days, or while among the newest N."
    )
    tag_retention_count: int = Field(
        20, ge=0, description="N for tags; the newest tag and a tag a rollback names are never deleted."
    )
    gc_grace_hours: float = Field(
        24, ge=0, description="Unreferenced warehouse files younger than this, or than a write in progress, stay."
    )

    # Ingestion: the window each run reads.
    ingest_hours: float = Field(48, gt=0, validation_alias="CASCADE_INGEST_HOURS")
    # The share of a table's records the last ingest may reject (0 to 1); a table's or source's own wins.
    # 0: any rejected record blocks promotion (the good rows still land on the branch, the rejects beside
    # them), so nothing a source could not read is published until someone decides it may be.
    rejects_max_share: float = Field(0.0, ge=0, le=1, validation_alias="CASCADE_REJECTS_MAX_SHARE")

    # Production catalog (Nessie).
    nessie_uri: str = "http://localhost:19120"
    nessie_warehouse: str = "warehouse"
    nessie_timeout: float = Field(30, gt=0, validation_alias="NESSIE_TIMEOUT")
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = Field(None, validation_alias="AWS_ACCESS_KEY_ID")
    s3_secret_access_key: SecretStr | None = Field(None, validation_alias="AWS_SECRET_ACCESS_KEY")

    # Nessie's authentication (secrets from the environment; sent only over https or to localhost).
    nessie_auth: Literal["none", "bearer", "oauth2"] = Field(
        "none", description="none, bearer (NESSIE_TOKEN) or oauth2 (client credentials, NESSIE_OAUTH2_*)."
    )
    nessie_token: SecretStr | None = None
    nessie_oauth2_token_url: str | None = Field(None, description="The issuer's token endpoint.")
    nessie_oauth2_client_id: str | None = None
    nessie_oauth2_client_secret: SecretStr | None = None
    nessie_oauth2_scope: str | None = Field(None, description="Scopes to ask for, space-separated (default: none).")

    # Production engine (Trino).
    trino_uri: str = "http://localhost:8080"
    trino_user: str = "cascade"
    trino_password: SecretStr | None = None
    trino_catalog_secrets: Literal["inline", "env"] = Field(
        "inline",
        description="env: catalogs name the keys as ${ENV:AWS_SECRET_ACCESS_KEY}... (Trino's own environment holds "
        "them; nothing secret reaches a catalog file); inline: the values themselves.",
    )

    # GitHub (tokens are secrets and never printed).
    github_token: SecretStr | None = None
    github_api_url: str = Field("https://api.github.com", validation_alias="GITHUB_API_URL")

    # The project: what it reads, builds and checks (from the config file).
    sources: dict[str, SourceConfig] = Field(default_factory=dict, validation_alias="CASCADE_SOURCES")
    transform: TransformConfig | None = Field(None, validation_alias="CASCADE_TRANSFORM")
    tables: dict[str, TableConfig] = Field(default_factory=dict, validation_alias="CASCADE_TABLES")
    checks: list[CheckConfig] = Field(default_factory=list, validation_alias="CASCADE_CHECKS")
    gate_options: dict[str, dict[str, Any]] = Field(default_factory=dict, validation_alias="CASCADE_GATE_OPTIONS")

    # Where the config came from: its folder roots relative paths and `module:attr` imports.
    config_file: Path | None = Field(None, validation_alias="CASCADE_CONFIG")
    root: Path = Field(Path("."), validation_alias="CASCADE_ROOT")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, dotenv_settings, _FileSource(settings_cls)

    @field_validator("branch_prefix", "main_branch")
    @classmethod
    def _names_are_safe(cls, value: str, info: ValidationInfo) -> str:
        check = validate_prefix if info.field_name == "branch_prefix" else validate_ref_name
        try:
            check(value)
        except InvalidNameError as e:
            raise ValueError(str(e)) from e
        other = main_collision(value, info.data.get("branch_prefix", DEFAULT_BRANCH_PREFIX))
        if info.field_name == "main_branch" and other is not None:  # branch_prefix is validated first
            raise ValueError(
                f"main branch {value!r} could be named as {other}; stages would write it directly: "
                "choose a branch_prefix (or main branch) that cannot produce it"
            )
        return value

    @field_validator("gates", "required_gates", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            names = [part.strip() for part in value.split(",") if part.strip()]
            if not names:
                raise ValueError("name at least one gate")
            return names
        return value

    @field_validator(
        "s3_access_key_id", "s3_secret_access_key", "nessie_token", "nessie_oauth2_client_secret",
        "trino_password", "github_token", mode="before",
    )  # fmt: skip
    @classmethod
    def _blank_secret_is_unset(cls, value: Any) -> Any:
        """An empty secret is none: a workflow maps every secret it declares, set or not (unset ones as "")."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("approvers", mode="before")
    @classmethod
    def _logins(cls, value: Any) -> Any:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("tables")
    @classmethod
    def _qualified_tables(cls, value: dict[str, TableConfig]) -> dict[str, TableConfig]:
        for name in value:
            if name.count(".") != 1:
                raise ValueError(f"table {name!r} must be named namespace.table")
        return value

    @property
    def gate_names(self) -> list[str]:
        """The gates `validate` runs: as configured, else every built-in that has something to judge here."""
        if self.gates is not None:
            return list(self.gates)
        return [gate for gate in BUILTIN_GATES if gate != "dbt" or self.transform is not None]

    @property
    def promotion_gates(self) -> list[str]:
        """The gates a verdict must hold (and pass) before `promote` moves main."""
        return list(self.required_gates) if self.required_gates is not None else self.gate_names

    def rejects_limit(self, table: str, sources: list[str] | tuple[str, ...] = ()) -> float:
        """The share of `table`'s records ingest may reject: the table's, else the strictest of its sources', else
        `rejects_max_share`."""
        configured = self.tables.get(table)
        if configured is not None and configured.rejects_max_share is not None:
            return configured.rejects_max_share
        own = [
            self.sources[name].rejects_max_share
            for name in sources
            if name in self.sources and self.sources[name].rejects_max_share is not None
        ]
        return min(own) if own else self.rejects_max_share  # type: ignore[type-var]

    @property
    def engine_name(self) -> str:
        """The SQL engine: as configured, else the one that goes with the catalog."""
        return self.engine or DEFAULT_ENGINES.get(self.catalog, "duckdb")

    def path(self, value: Path | str) -> Path:
        """`value` resolved against the project root (the config file's folder)."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.root / path).resolve()


# --- the config file -------------------------------------------------------------------------------

_FILE_KEYS = {name for name in Settings.model_fields if name not in ("config_file", "root")}
_PATH_KEYS = ("home", "reports_dir")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SECRET_KEY = re.compile(r"secret|token|password|passwd|credential|access_key|api_key|private_key", re.IGNORECASE)


def env_name(field: str) -> str:
    """The environment variable that sets a flat field (`branch_retention_days` -> BRANCH_RETENTION_DAYS)."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else field.upper()


def _input_key(field: str) -> str:
    """The key the model takes a field's value under: its alias, else its name."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else field


def find_config(start: Path | None = None) -> Path | None:
    """The nearest `cascade.toml`, or `pyproject.toml` with a `[tool.cascade]` table, from `start` upward."""
    folder = (start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / CONFIG_FILE).is_file():
            return candidate / CONFIG_FILE
        pyproject = candidate / PYPROJECT
        if pyproject.is_file() and "cascade" in _read_toml(pyproject).get("tool", {}):
            return pyproject
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e


def interpolate(value: Any, where: str, environ: dict[str, str] | None = None) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of `value`; an unset VAR without default is an error."""
    env = os.environ if environ is None else environ
    if isinstance(value, dict):
        return {key: interpolate(item, f"{where}.{key}" if where else key, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, f"{where}[{i}]", env) for i, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if default is not None:  # as in the shell: `:-` applies to a variable unset or empty
            return env.get(name) or default
        if name in env:
            return env[name]
        raise ConfigError(f"{where}: ${{{name}}} is not set (write ${{{name}:-default}} to make it optional)")

    return _VARIABLE.sub(substitute, value)


def read_config(path: Path) -> dict[str, Any]:
    """The cascade table of `path` (the whole of a cascade.toml, `[tool.cascade]` of a pyproject.toml)."""
    data = _read_toml(path)
    if path.name == PYPROJECT:
        data = data.get("tool", {}).get("cascade", {})
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: [tool.cascade] must be a table")
    return data


class _FileSource(PydanticBaseSettingsSource):
    """The config file as a settings source, below flags, environment and .env."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.path = _LOADING.get()

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False  # __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = interpolate(read_config(self.path), "")
        except ConfigError as e:
            raise ConfigError(f"{self.path}: {e}") from e
        unknown = sorted(set(data) - _FILE_KEYS)
        if unknown:
            raise ConfigError(
                f"{self.path}: unknown key {unknown[0]!r}; see `cascade config check --help` for the keys"
            )
        root = self.path.parent
        for key in _PATH_KEYS:
            if key in data and isinstance(data[key], str):
                data[key] = str((root / Path(data[key]).expanduser()).resolve())
        return {_input_key(key): value for key, value in data.items()}


_LOADING: ContextVar[Path | None] = ContextVar("cascade_config_file", default=None)


def _describe(err: Any, from_file: set[str], path: Path | None) -> str:
    loc = [str(part) for part in err["loc"]]
    field = next((name for name in Settings.model_fields if loc and _input_key(name) == loc[0]), loc[0] if loc else "?")
    rest = ".".join(loc[1:])
    if path is not None and field in from_file:
        key = field + (f".{rest}" if rest else "")
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        return f"{path}: {key}: {message}"
    shown = "<secret>" if SECRET_KEY.search(field) else repr(err.get("input"))
    return f"{env_name(field)}{'.' + rest if rest else ''}: {err['msg']} (got {shown})"


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Resolve settings from flags (`overrides`), environment, .env and the config file.

    `config` names the file; else CASCADE_CONFIG, else the nearest one from the working directory up.
    Raises ConfigError naming the file, the key and the problem, or the variable and its value.
    """
    named = config or os.environ.get("CASCADE_CONFIG")
    path = Path(named).expanduser().resolve() if named else find_config()
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    given = {_input_key(key): value for key, value in overrides.items() if value is not None}
    if path is not None:
        given.update(CASCADE_CONFIG=str(path), CASCADE_ROOT=str(path.parent))
    else:
        given.update(CASCADE_ROOT=str(Path.cwd()))
    environment = {name.upper() for name in os.environ}
    from_file = {
        key
        for key in (read_config(path) if path else {})
        if key in _FILE_KEYS and key not in overrides and env_name(key).upper() not in environment
    }
    token = _LOADING.set(path)
    try:
        return Settings(**given)
    except ValidationError as e:
        raise ConfigError(
            "invalid settings: " + "; ".join(_describe(err, from_file, path) for err in e.errors())
        ) from e
    finally:
        _LOADING.reset(token)


def masked(settings: Settings) -> dict[str, Any]:
    """The resolved settings as plain data, every secret replaced by `***`."""

    def hide(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: hide(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [hide(v, key) for v in value]
        if value not in (None, "") and SECRET_KEY.search(key):
            return "***"
        if isinstance(value, str):  # a secret from the environment inside a longer string ("Bearer ${TOKEN}")
            for secret in secrets:
                value = value.replace(secret, "***")
            value = redact_urls(value)  # `https://user:password@host`
        return value

    secrets = sorted(
        (value for name, value in os.environ.items() if SECRET_KEY.search(name) and len(value) >= 4),
        key=len,
        reverse=True,
    )
    data = settings.model_dump(mode="json", by_alias=True)
    for name, field in Settings.model_fields.items():
        if field.annotation is not None and "SecretStr" in str(field.annotation) and data.get(name):
            data[name] = "***"
    return hide(data)
