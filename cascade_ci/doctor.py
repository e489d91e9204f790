"""`cascade doctor`: connect to the configured catalog, engine and storage, and report what answers.

Each thing looked at gives one Finding: ok, warn (works, but at a risk: a version store that loses
everything on restart, a version this release is not tested with) or error (cascade cannot work with it:
no answer, a server error, a missing bucket or branch, an unwritable folder). `cascade doctor` exits 2
when any finding is an error, else 0; warnings are listed and never change the exit code.

Nessie 0.99 does not say which version store it runs on: not in `/api/v2/config`, not in the health
checks or metrics of its management port (there is no `/q/info`). So the store is judged from the server
configuration the user names (an application.properties, or a docker-compose.yml with a Nessie service,
or the type alone), and from one observation when the management port is reachable: a repository created
before the running process started has outlived a restart, so its store is persistent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit
from urllib.request import Request, urlopen

from cascade_ci.catalog.nessie_auth import NessieAuth
from cascade_ci.errors import ConfigError, safe_url

if TYPE_CHECKING:
    from cascade_ci.config import Settings

# The versions this release is tested against: services/versions.env (tests/unit/test_doctor.py keeps them equal).
TESTED_VERSIONS = {"nessie": "0.99.0", "trino": "476"}
TIMEOUT_S = 10.0  # the longest doctor waits for one answer

# Nessie 0.99's version store types (servers/quarkus-config .../VersionStoreConfig.java) and its defaults.
STORE_TYPE = "nessie.version.store.type"
ROCKS_PATH = "nessie.version.store.persist.rocks.database-path"
JDBC_DATASOURCE = "nessie.version.store.persist.jdbc.datasource"
DEFAULT_STORE = "IN_MEMORY"
DEFAULT_ROCKS_PATH = "/tmp/nessie-rocksdb-store"  # noqa: S108 (Nessie's default, named to warn about it)
IN_MEMORY_STORES = {"IN_MEMORY", "INMEMORY"}
PERSISTENT_STORES = {"ROCKSDB", "JDBC2", "JDBC", "MONGODB2", "MONGODB", "CASSANDRA2", "CASSANDRA"}
PERSISTENT_STORES |= {"DYNAMODB2", "DYNAMODB", "BIGTABLE"}
DEPRECATED_STORES = {"JDBC": "JDBC2", "MONGODB": "MONGODB2", "CASSANDRA": "CASSANDRA2", "DYNAMODB": "DYNAMODB2"}


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    """What one check found."""

    component: str  # catalog | engine | storage
    check: str
    status: Status
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "check": self.check,
            "status": str(self.status),
            "message": self.message,
            "details": self.details,
        }


@dataclass
class Report:
    catalog: str
    engine: str
    findings: list[Finding] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(f.status is status for f in self.findings)

    @property
    def exit_code(self) -> int:
        return 2 if self.count(Status.ERROR) else 0

    def summary(self) -> str:
        errors, warnings = self.count(Status.ERROR), self.count(Status.WARN)
        return f"{errors} error(s), {warnings} warning(s): exit {self.exit_code}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "catalog": self.catalog,
            "engine": self.engine,
            "exit_code": self.exit_code,
            "errors": self.count(Status.ERROR),
            "warnings": self.count(Status.WARN),
            "findings": [f.to_dict() for f in self.findings],
        }

    def text(self) -> str:
        width = max((len(f.check) for f in self.findings), default=0)
        lines = [f"{f.status:5} {f.component:8} {f.check:{width}}  {f.message}" for f in self.findings]
        return "\n".join(lines)


# -- HTTP ----------------------------------------------------------------------------------------------


class Unreachable(Exception):
    """A service did not answer, or answered with an error status."""


def fetch(
    url: str, timeout: float = TIMEOUT_S, accept: str = "application/json", auth: NessieAuth | None = None
) -> bytes:
    """The body of GET `url` (with Nessie's credentials, if given); Unreachable otherwise. No retries."""
    from cascade_ci.errors import CascadeError

    try:
        request = Request(url, headers={"Accept": accept})  # noqa: S310
        with urlopen(auth.sign(request) if auth else request, timeout=timeout) as response:  # noqa: S310
            return response.read()
    except CascadeError as e:  # the token could not be had, or may not travel there
        raise Unreachable(str(e)) from e
    except HTTPError as e:
        raise Unreachable(f"{safe_url(url)} answered HTTP {e.code} {e.reason}") from e
    except (URLError, TimeoutError, ConnectionError) as e:
        raise Unreachable(f"{safe_url(url)} did not answer: {getattr(e, 'reason', e)}") from e


def fetch_json(url: str, timeout: float = TIMEOUT_S, auth: NessieAuth | None = None) -> Any:
    body = fetch(url, timeout, auth=auth)
    try:
        return json.loads(body)
    except ValueError as e:
        raise Unreachable(f"{safe_url(url)} did not answer JSON: {body[:80]!r}") from e


# -- the Nessie server's declared configuration ---------------------------------------------------------


def _key(name: str) -> str:
    """A property name in the form its environment variable has (how Quarkus matches the two)."""
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


@dataclass(frozen=True)
class ServerConfig:
    """A Nessie server's settings as deployed: an application.properties or a compose service's environment."""

    source: str
    properties: dict[str, str]  # as written: property names or environment-variable names
    mounts: tuple[str, ...] = ()  # container paths with a volume mounted (compose only)
    container: bool = False  # the server runs in a container (a compose service)
    jvm_options: str = ""  # JAVA_OPTS_APPEND of a compose service

    def get(self, name: str) -> str | None:
        """The value of property `name`, however it was spelled."""
        wanted = _key(name)
        for key, value in self.properties.items():
            if _key(key) == wanted:
                return value
        return None

    def volume_for(self, path: str) -> str | None:
        """The mount (container path) holding `path`, if any."""
        target = PurePosixPath(path)
        for mount in self.mounts:
            if target == PurePosixPath(mount) or PurePosixPath(mount) in target.parents:
                return mount
        return None


_PROPERTY = re.compile(r"([^=:\s]+)\s*[=:]?\s*(.*)")


def _properties(text: str) -> dict[str, str]:
    """`key=value` (or `key: value`) lines of a Java properties file; comments and blank lines skipped."""
    found = {}
    for raw in re.sub(r"\\\n[ \t]*", "", text).splitlines():  # a continued line's indent is dropped
        line = raw.strip()
        if line and line[0] not in "#!":
            key, value = _PROPERTY.fullmatch(line).groups()  # type: ignore[union-attr] (any line matches)
            found[key] = value
    return found


def compose_service(data: Mapping[str, Any], source: str) -> tuple[str, dict[str, Any]]:
    """The Nessie server of a parsed compose file: a service running projectnessie's image as it is (not
    with its entrypoint replaced, as a one-shot helper does), else the service named `nessie`."""
    services = data.get("services") or {}
    images = [name for name, service in services.items() if "projectnessie/nessie" in str((service or {}).get("image"))]
    servers = [name for name in images if "entrypoint" not in services[name]]
    name = next(iter(servers or images), "nessie" if "nessie" in services else None)
    if name is None:
        raise ConfigError(f"{source}: no Nessie service (an image ghcr.io/projectnessie/nessie, or one named nessie)")
    return name, services[name] or {}


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (str(item).split("=", 1) for item in env)
        return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _mount_targets(service: Mapping[str, Any]) -> tuple[str, ...]:
    targets = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, Mapping):
            targets.append(str(volume.get("target", "")))
        else:
            parts = str(volume).split(":")
            targets.append(parts[1] if len(parts) > 1 else parts[0])
    return tuple(target for target in targets if target)


def read_server_config(path: Path, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """The Nessie settings in `path`: a compose file (.yml/.yaml; `${VAR:-default}` filled from `environ`)
    or a Java properties file (anything else)."""
    from cascade_ci.config import interpolate

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror or e}") from e
    if Path(path).suffix.lower() not in (".yml", ".yaml"):
        return ServerConfig(str(path), _properties(text))
    import os

    import yaml

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    name, service = compose_service(data, str(path))
    env = dict(os.environ if environ is None else environ)
    resolved = interpolate(_environment(service), f"{path}: services.{name}.environment", env)
    return ServerConfig(
        f"{path} (service {name})",
        {key: value for key, value in resolved.items() if key != "JAVA_OPTS_APPEND"},
        mounts=_mount_targets(service),
        container=True,
        jvm_options=resolved.get("JAVA_OPTS_APPEND", ""),
    )


# -- judging the version store --------------------------------------------------------------------------


@dataclass(frozen=True)
class NessieServer:
    """What the user tells about the Nessie server: its configuration file, its store type, its management port."""

    config: ServerConfig | None = None
    store_type: str | None = None
    management_uri: str | None = None


@dataclass(frozen=True)
class Observation:
    """What the management port tells about the running process."""

    process_started: datetime | None = None
    error: str | None = None


def observe(management_uri: str, timeout: float = TIMEOUT_S) -> Observation:
    """The Nessie process's start time, from `process_start_time_seconds` on its management port."""
    try:
        text = fetch(f"{management_uri.rstrip('/')}/q/metrics", timeout, accept="text/plain").decode("utf-8", "replace")
    except Unreachable as e:
        return Observation(error=str(e))
    match = re.search(r"^process_start_time_seconds(?:\{[^}]*\})?\s+([0-9.eE+]+)", text, re.MULTILINE)
    if match is None:
        return Observation(error=f"{safe_url(management_uri)}/q/metrics has no process_start_time_seconds")
    return Observation(process_started=datetime.fromtimestamp(float(match.group(1)), UTC))


def _declared_store(config: ServerConfig | None, store_type: str | None) -> tuple[str | None, str]:
    """The declared store type (None: nothing declared) and where it was declared."""
    if store_type:
        return store_type.strip().upper(), "--nessie-store / NESSIE_VERSION_STORE_TYPE"
    if config is not None:
        return (config.get(STORE_TYPE) or DEFAULT_STORE).strip().upper(), config.source
    return None, ""


def _store_risk(kind: str, config: ServerConfig | None) -> str | None:
    """Why a declared store may lose data, or None."""
    if kind in IN_MEMORY_STORES:
        return "not persistent: a restart of Nessie loses every ref, tag and branch (the data stays in S3, unreachable)"
    if kind not in PERSISTENT_STORES:
        return f"not a version store type Nessie 0.99 knows ({', '.join(sorted(PERSISTENT_STORES | {DEFAULT_STORE}))})"
    if config is None:
        return None
    if kind == "ROCKSDB":
        path = config.get(ROCKS_PATH) or DEFAULT_ROCKS_PATH
        if config.container and config.volume_for(path) is None:
            return f"RocksDB at {path} is on the container's own filesystem: lost when the container is recreated"
        if not config.container and PurePosixPath(path).is_relative_to("/tmp"):  # noqa: S108 (a warning about it)
            return f"RocksDB at {path}: /tmp may be emptied on reboot"
    if kind in ("JDBC", "JDBC2"):
        source = config.get(JDBC_DATASOURCE) or "default"
        url_key = "quarkus.datasource.jdbc.url" if source == "default" else f"quarkus.datasource.{source}.jdbc.url"
        url = config.get(url_key)
        if source == "h2" and (url is None or url.startswith("jdbc:h2:mem:")):
            return "H2 in memory: not persistent"
        if url is None:
            return f"no {url_key}: Nessie cannot reach its database"
    return None


def _outlived(created: datetime | None, observation: Observation | None, details: dict[str, Any]) -> str:
    """Why the store is persistent, if the repository is older than the running process; else ""."""
    if observation is None:
        return ""
    started = observation.process_started
    details.update(process_started=started and started.isoformat(), observation_error=observation.error)
    if started is None or created is None:
        return ""
    details["outlived_a_restart"] = created < started
    if created >= started:
        return ""
    return (
        f"the repository (created {created:%Y-%m-%d %H:%M:%S}) is older than the running process "
        f"(started {started:%Y-%m-%d %H:%M:%S}): it survived a restart"
    )


def judge_store(
    config: ServerConfig | None,
    store_type: str | None,
    repository_created: datetime | None,
    observation: Observation | None,
) -> Finding:
    """One finding on the version store: declared (server config or type), observed (management port), both."""
    kind, source = _declared_store(config, store_type)
    details: dict[str, Any] = {"declared": kind, "declared_in": source or None}
    seen = _outlived(repository_created, observation, details)

    def found(status: Status, message: str, persistent: bool | None) -> Finding:
        details["persistent"] = persistent
        return Finding("catalog", "version store", status, message, details)

    if kind is None:
        if seen:
            return found(Status.OK, f"persistent (observed: {seen})", True)
        if details.get("outlived_a_restart") is False:
            why = "the repository is no older than the running process: an in-memory store, or a new one; "
        elif observation is not None and observation.error:
            why = f"{observation.error}; "
        else:
            why = "Nessie does not report its version store; "
        return found(
            Status.WARN,
            f"unknown: {why}name the server's configuration (--nessie-config application.properties or "
            "docker-compose.yml, or --nessie-store TYPE) or its management port (--nessie-management URL)",
            None,
        )
    if kind == "ROCKSDB" and config is not None:
        details["database_path"] = path = config.get(ROCKS_PATH) or DEFAULT_ROCKS_PATH
        details["volume"] = config.volume_for(path)
    declared = f"{kind} (declared in {source})"
    observed = f"; observed: {seen}" if seen else ""
    risk = _store_risk(kind, config)
    if risk is not None:
        in_memory = kind in IN_MEMORY_STORES and not seen
        return found(Status.WARN, f"{declared}: {risk}{observed}", False if in_memory else None)
    if kind in DEPRECATED_STORES:
        migrate = f"migrate to {DEPRECATED_STORES[kind]} with the Nessie Server Admin Tool (export, then import)"
        return found(Status.WARN, f"{declared}: persistent but deprecated, {migrate}{observed}", True)
    return found(Status.OK, f"{declared}: persistent{observed}", True)


# -- the checks -----------------------------------------------------------------------------------------


def _version_finding(component: str, name: str, version: str | None, where: str) -> Finding:
    tested = TESTED_VERSIONS[name]
    details = {"version": version, "tested": tested}
    if version is None:
        return Finding(
            component,
            f"{name} version",
            Status.WARN,
            f"unknown ({where} did not say); this release is tested with {tested}",
            details,
        )
    if version != tested:
        return Finding(
            component, f"{name} version", Status.WARN, f"{version}: this release is tested with {tested}", details
        )
    return Finding(component, f"{name} version", Status.OK, f"{version}, as tested", details)


def _nessie_version(uri: str, timeout: float, auth: NessieAuth) -> str | None:
    """The server's release, from its OpenAPI document (`info.version`): `/api/v2/config` does not carry it."""
    try:
        text = fetch(f"{uri}/nessie-openapi/openapi.yaml", timeout, "*/*", auth).decode("utf-8", "replace")
    except Unreachable:
        return None
    match = re.search(r"^info:.*?^  version:\s*['\"]?([^'\"\s]+)", text, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else None


def check_nessie(settings: Settings, server: NessieServer, timeout: float = TIMEOUT_S) -> list[Finding]:
    """Nessie answers REST v2, its version, the main branch, and its version store."""
    from cascade_ci.catalog.nessie import _parse_time, _ref_path

    uri = settings.nessie_uri.rstrip("/")
    auth = NessieAuth.from_settings(settings)
    try:
        config = fetch_json(f"{uri}/api/v2/config", timeout, auth)
    except Unreachable as e:
        down = Finding("catalog", "nessie", Status.ERROR, f"Nessie: {e}", {"uri": safe_url(uri)})
        declared = server.config is not None or server.store_type  # judged all the same: it needs no server
        return [down, judge_store(server.config, server.store_type, None, None)] if declared else [down]
    if not isinstance(config, dict) or "defaultBranch" not in config:
        return [
            Finding(
                "catalog",
                "nessie",
                Status.ERROR,
                f"{safe_url(uri)}/api/v2/config is not Nessie's REST API v2: {str(config)[:80]}",
            )
        ]
    version = _nessie_version(uri, timeout, auth)
    created = config.get("repositoryCreationTimestamp")
    created_at = _parse_time(created) if created else None
    details = {
        "uri": safe_url(uri),
        "version": version,
        "api": config.get("actualApiVersion"),
        "spec": config.get("specVersion"),
        "default_branch": config.get("defaultBranch"),
        "repository_created": created,
    }
    findings = []
    main = settings.main_branch
    try:
        ref = fetch_json(f"{uri}/api/v2/trees/{_ref_path(main)}", timeout, auth)
        head = str((ref.get("reference") or {}).get("hash", ""))
    except Unreachable as e:
        findings.append(Finding("catalog", "nessie", Status.ERROR, f"branch {main!r} cannot be read: {e}", details))
    else:
        details["main_hash"] = head
        findings.append(
            Finding(
                "catalog",
                "nessie",
                Status.OK,
                f"Nessie {version or '(version unknown)'} at {safe_url(uri)}: REST API "
                f"v{config.get('actualApiVersion')}, {main} at {head[:12]}",
                details,
            )
        )
    findings.append(_version_finding("catalog", "nessie", version, f"{safe_url(uri)}/nessie-openapi/openapi.yaml"))
    observation = observe(server.management_uri, timeout) if server.management_uri else None
    findings.append(judge_store(server.config, server.store_type, created_at, observation))
    return findings


def check_trino(settings: Settings, timeout: float = TIMEOUT_S) -> list[Finding]:
    """Trino's coordinator answers `/v1/info`, has started, and runs the tested release."""
    uri = settings.trino_uri.rstrip("/")
    try:
        info = fetch_json(f"{uri}/v1/info", timeout)
    except Unreachable as e:
        return [Finding("engine", "trino", Status.ERROR, f"Trino: {e}", {"uri": safe_url(uri)})]
    version = str((info.get("nodeVersion") or {}).get("version") or "") or None
    details = {
        "uri": safe_url(uri),
        "version": version,
        "starting": info.get("starting"),
        "coordinator": info.get("coordinator"),
        "environment": info.get("environment"),
    }
    if info.get("starting"):
        found = Finding("engine", "trino", Status.WARN, f"Trino at {safe_url(uri)} is still starting", details)
    else:
        found = Finding("engine", "trino", Status.OK, f"Trino {version} at {safe_url(uri)}: up", details)
    return [found, _version_finding("engine", "trino", version, f"{safe_url(uri)}/v1/info")]


def check_s3(settings: Settings, timeout: float = TIMEOUT_S) -> list[Finding]:
    """The bucket of Nessie's warehouse exists, at the endpoint cascade's clients use."""
    uri = settings.nessie_uri.rstrip("/")
    try:
        query = quote(settings.nessie_warehouse)
        config = fetch_json(f"{uri}/iceberg/v1/config?warehouse={query}", timeout, NessieAuth.from_settings(settings))
    except Unreachable as e:
        return [Finding("storage", "s3 bucket", Status.ERROR, f"the warehouse's location is unknown: {e}")]
    location = str((config.get("defaults") or {}).get("warehouse", ""))
    advertised = (config.get("overrides") or {}).get("s3.endpoint")
    endpoint = settings.s3_endpoint or advertised
    details = {"location": location, "endpoint": endpoint and safe_url(endpoint), "advertised_endpoint": advertised}
    if not location.startswith(("s3://", "s3a://")):
        return [Finding("storage", "s3 bucket", Status.OK, f"warehouse at {location!r}: not S3, not checked", details)]
    bucket = urlsplit(location).netloc
    details["bucket"] = bucket
    where = f"s3://{bucket} at {safe_url(endpoint) if endpoint else 'the AWS default endpoint'}"
    try:
        exists = _bucket_exists(settings, bucket, endpoint, timeout)
    except OSError as e:
        return [Finding("storage", "s3 bucket", Status.ERROR, f"{where}: {str(e)[:300]}", details)]
    if not exists:
        return [Finding("storage", "s3 bucket", Status.ERROR, f"{where}: no such bucket", details)]
    return [Finding("storage", "s3 bucket", Status.OK, f"{where}: reachable", details)]


def _bucket_exists(settings: Settings, bucket: str, endpoint: str | None, timeout: float) -> bool:
    from pyarrow import fs

    options: dict[str, Any] = {
        "region": settings.s3_region,
        "connect_timeout": timeout,
        "request_timeout": timeout,
        "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=1),
    }
    if endpoint:
        url = urlsplit(endpoint)
        options.update(endpoint_override=url.netloc, scheme=url.scheme or "https")
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        options.update(
            access_key=settings.s3_access_key_id.get_secret_value(),
            secret_key=settings.s3_secret_access_key.get_secret_value(),
        )
    return fs.S3FileSystem(**options).get_file_info(bucket).type == fs.FileType.Directory


def check_local(settings: Settings) -> list[Finding]:
    """The embedded catalog's folder: there (or creatable), writable, and what its catalog.db holds."""
    import os
    import sqlite3

    home = settings.path(settings.home).resolve()
    details: dict[str, Any] = {"home": str(home)}
    existing = next((p for p in (home, *home.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return [Finding("catalog", "embedded catalog", Status.ERROR, f"{home} cannot be created or written", details)]
    database = home / "catalog.db"
    if not database.exists():
        message = f"{home}: no catalog yet (the first command creates it)"
        return [Finding("catalog", "embedded catalog", Status.OK, message, details)]
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            refs = dict(db.execute("SELECT name, hash FROM cascade_refs").fetchall())
    except sqlite3.Error as e:
        return [Finding("catalog", "embedded catalog", Status.ERROR, f"{database} cannot be read: {e}", details)]
    main = refs.get(settings.main_branch)
    details.update(refs=len(refs), main_hash=main)
    if main is None:
        message = f"{database}: no branch {settings.main_branch!r}"
        return [Finding("catalog", "embedded catalog", Status.ERROR, message, details)]
    message = f"{database}: {len(refs)} ref(s), {settings.main_branch} at {main[:12]}"
    return [Finding("catalog", "embedded catalog", Status.OK, message, details)]


def check_duckdb() -> list[Finding]:
    import duckdb

    return [
        Finding(
            "engine", "duckdb", Status.OK, f"DuckDB {duckdb.__version__} (embedded)", {"version": duckdb.__version__}
        )
    ]


def diagnose(settings: Settings, server: NessieServer | None = None, timeout: float = TIMEOUT_S) -> Report:
    """Every check the settings call for: the catalog (and its storage), then the engine."""
    report = Report(settings.catalog, settings.engine_name)
    if settings.catalog == "nessie":
        report.findings += check_nessie(settings, server or NessieServer(), timeout)
        if report.findings[0].status is not Status.ERROR:
            report.findings += check_s3(settings, timeout)
    elif settings.catalog == "local":
        report.findings += check_local(settings)
    else:
        report.findings.append(Finding("catalog", settings.catalog, Status.OK, "a plugin catalog: not checked"))
    if settings.engine_name == "trino":
        report.findings += check_trino(settings, timeout)
    elif settings.engine_name == "duckdb":
        report.findings += check_duckdb()
    else:
        report.findings.append(Finding("engine", settings.engine_name, Status.OK, "a plugin engine: not checked"))
    return report
