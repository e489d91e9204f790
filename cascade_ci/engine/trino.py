"""The production engine: dbt-trino on one dynamic Trino catalog per branch, pointed at Nessie.

Trino has no session property for a Nessie ref, so `prepare` creates a catalog (`CREATE CATALOG
... USING iceberg`) whose Iceberg REST prefix is the branch; dbt-trino then reads the branch's tables
and writes the models straight into it through that catalog (each table write is a Nessie commit on
the branch, incremental models included). `close` drops the catalog. `query` runs one SELECT with a
branch's catalog as the session catalog. Identifiers are sanitised, literals quoted, and the statement
carrying S3 keys never logged.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from cascade_ci.catalog.base import RefKind
from cascade_ci.engine.base import DbtTarget
from cascade_ci.errors import ConfigError, NotFoundError, ServiceUnavailableError, safe_url

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog
    from cascade_ci.config import Settings
    from cascade_ci.engine.base import Model

logging.getLogger("trino").setLevel(logging.WARNING)  # its keyring notice is noise in a pipeline log

_UNSAFE = re.compile(r"[^a-z0-9_]+")
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
_HASH = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_COMMENT = re.compile(r"\s*(?:--[^\n]*(?:\n|$)|/\*.*?\*/)", re.DOTALL)


def catalog_name(branch: str) -> str:
    """A Trino catalog name for a branch: readable, a valid identifier, and unique (hash suffix)."""
    readable = _UNSAFE.sub("_", branch.lower()).strip("_")[:40]
    return f"cascade_{readable}_{hashlib.sha256(branch.encode()).hexdigest()[:8]}"


def literal(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def identifier(name: str) -> str:
    """A plain lower-case identifier, refused otherwise (it reaches SQL unquoted)."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


def read_only_sql(sql: str) -> str:
    """`sql` if it is one SELECT (or WITH ... SELECT) statement; ConfigError otherwise.

    A lexical check on the first keyword, not a parse (acceptable here: Trino's grammar lets no
    statement that starts with SELECT or WITH write, and the catalog is dropped afterwards): leading
    comments are skipped, trailing `;` dropped (Trino refuses them), and any other `;` is refused, even
    one inside a string literal (a false refusal, never a false pass).
    """
    text = sql.strip()
    while (comment := _COMMENT.match(text)) is not None and comment.end() > 0:
        text = text[comment.end() :].lstrip()
    body = text.rstrip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    if not body:
        raise ConfigError("only one SELECT can run here; the SQL is empty")
    first = re.match(r"[A-Za-z]+", body)
    keyword = first.group(0).upper() if first else body[:20]
    if keyword not in ("SELECT", "WITH"):
        raise ConfigError(f"only one SELECT can run here; the SQL starts with {keyword!r}")
    if ";" in body:
        raise ConfigError("only one SELECT can run here; the SQL holds more than one statement")
    return body


def ref_prefix(branch: str) -> str:
    """Nessie's Iceberg REST prefix for a ref, as Trino must send it: `/` travels as U+001F, URL-encoded."""
    return quote(branch.replace("/", "\x1f"), safe="")


class TrinoEngine:
    """dbt-trino against a per-branch dynamic catalog."""

    name = "trino"

    def __init__(self, settings: Settings, catalog: BranchCatalog) -> None:
        self.settings = settings
        self.catalog = catalog
        url = urlsplit(settings.trino_uri)
        self.scheme, self.host, self.port = url.scheme or "http", url.hostname or "localhost", url.port or 8080
        self._created: set[str] = set()

    def _connect(self, catalog: str | None = None) -> Any:
        import trino

        auth = None
        if self.settings.trino_password is not None:
            auth = trino.auth.BasicAuthentication(
                self.settings.trino_user, self.settings.trino_password.get_secret_value()
            )
        return trino.dbapi.connect(
            host=self.host,
            port=self.port,
            user=self.settings.trino_user,
            http_scheme=self.scheme,
            auth=auth,
            catalog=catalog,
        )

    def execute(self, sql: str, catalog: str | None = None) -> list[Any]:
        """Run one statement (in `catalog`, if given); connection faults and 5xx become ServiceUnavailableError."""
        from trino.exceptions import HttpError, OperationalError

        try:
            with self._connect(catalog) as connection:
                cursor = connection.cursor()
                cursor.execute(sql)
                return cursor.fetchall()
        except (OSError, OperationalError, HttpError) as e:
            raise ServiceUnavailableError(f"Trino at {safe_url(self.settings.trino_uri)} did not answer: {e}") from e

    def _secret(self, variable: str, value: str) -> str:
        """A secret as a catalog property: `${ENV:VARIABLE}` (resolved by Trino) or, inline, the value."""
        return f"${{ENV:{variable}}}" if self.settings.trino_catalog_secrets == "env" else value

    def _nessie_auth_properties(self) -> dict[str, str]:
        """How Trino authenticates to Nessie: the same token or client credentials as cascade."""
        s = self.settings
        if s.nessie_auth == "bearer" and s.nessie_token:
            token = self._secret("NESSIE_TOKEN", s.nessie_token.get_secret_value())
            return {"iceberg.rest-catalog.security": "OAUTH2", "iceberg.rest-catalog.oauth2.token": token}
        if s.nessie_auth == "oauth2" and s.nessie_oauth2_client_secret and s.nessie_oauth2_token_url:
            client = self._secret("NESSIE_OAUTH2_CLIENT_ID", str(s.nessie_oauth2_client_id))
            secret = self._secret("NESSIE_OAUTH2_CLIENT_SECRET", s.nessie_oauth2_client_secret.get_secret_value())
            return {
                "iceberg.rest-catalog.security": "OAUTH2",
                "iceberg.rest-catalog.oauth2.server-uri": s.nessie_oauth2_token_url,
                "iceberg.rest-catalog.oauth2.credential": f"{client}:{secret}",
                # Trino asks for scope `catalog` unless told otherwise, which issuers such as Keycloak refuse.
                "iceberg.rest-catalog.oauth2.scope": s.nessie_oauth2_scope or "openid",
            }
        return {}

    def catalog_properties(self, branch: str, read_only: bool = False) -> dict[str, str]:
        """The Iceberg connector's properties for a REST catalog on Nessie at `branch` (read-only, if asked)."""
        s = self.settings
        properties = {
            "iceberg.catalog.type": "rest",
            "iceberg.rest-catalog.uri": f"{s.nessie_uri.rstrip('/')}/iceberg/",
            "iceberg.rest-catalog.prefix": ref_prefix(branch),
            "iceberg.rest-catalog.warehouse": s.nessie_warehouse,
            "fs.native-s3.enabled": "true",
            "s3.region": s.s3_region,
            "s3.path-style-access": "true",
        }
        if s.s3_endpoint:
            properties["s3.endpoint"] = s.s3_endpoint
        if s.s3_access_key_id and s.s3_secret_access_key:
            properties["s3.aws-access-key"] = self._secret("AWS_ACCESS_KEY_ID", s.s3_access_key_id.get_secret_value())
            properties["s3.aws-secret-key"] = self._secret(
                "AWS_SECRET_ACCESS_KEY", s.s3_secret_access_key.get_secret_value()
            )
        properties.update(self._nessie_auth_properties())
        if read_only:
            properties["iceberg.security"] = "read_only"
        return properties

    def _create_statement(self, name: str, branch: str, read_only: bool = False) -> str:
        properties = self.catalog_properties(branch, read_only)
        pairs = ", ".join(f'"{key}" = {literal(value)}' for key, value in properties.items())
        return f"CREATE CATALOG {identifier(name)} USING iceberg WITH ({pairs})"

    def create_catalog(self, branch: str) -> str:
        """(Re)create the dynamic catalog of `branch`; returns its name."""
        name = identifier(catalog_name(branch))
        self.execute(f"DROP CATALOG IF EXISTS {name}")
        self.execute(self._create_statement(name, branch))
        self._created.add(name)
        return name

    def drop_catalog(self, name: str) -> None:
        self.execute(f"DROP CATALOG IF EXISTS {identifier(name)}")
        self._created.discard(name)

    def ensure_main_catalog(self) -> str:
        """The catalog consumers query, named after the published branch (`main`); created once, kept.

        It is read-only (`iceberg.security=read_only`): main changes only by promotion, never through SQL.
        """
        name = identifier(_UNSAFE.sub("_", self.settings.main_branch.lower()))
        if [name] not in self.execute("SHOW CATALOGS"):
            self.execute(self._create_statement(name, self.settings.main_branch, read_only=True))
        return name

    def prepare(self, branch: str, incremental: list[str] | None = None) -> DbtTarget:
        """Create the branch's catalog, which holds every table of the branch; make sure main's exists.

        dbt-trino appends or merges incremental models in place, so `incremental` needs nothing more.
        """
        self.ensure_main_catalog()
        name = self.create_catalog(branch)
        output: dict[str, Any] = {
            "type": "trino",
            "method": "ldap" if self.settings.trino_password else "none",
            "user": self.settings.trino_user,
            "host": self.host,
            "port": self.port,
            "http_scheme": self.scheme,
            "database": name,
            "threads": 2,
        }
        env = {}
        if self.settings.trino_password is not None:
            output["password"] = "{{ env_var('CASCADE_TRINO_PASSWORD') }}"  # noqa: S105 (a reference)
            env["CASCADE_TRINO_PASSWORD"] = self.settings.trino_password.get_secret_value()
        return DbtTarget(output=output, env=env)

    def publish(self, branch: str, models: list[Model]) -> dict[str, int]:
        """dbt-trino already wrote the models into the branch (incremental ones included); count their rows."""
        name = identifier(catalog_name(branch))
        counts = {}
        for model in models:
            schema, table = (identifier(part) for part in model.table.split("."))
            counts[model.table] = int(self.execute(f"SELECT count(*) FROM {name}.{schema}.{table}")[0][0])  # noqa: S608
        return counts

    def query(self, ref: str, sql: str) -> list[tuple[Any, ...]]:
        """Run one SELECT on branch or commit `ref` (tables named `schema.table`); ConfigError for other SQL.

        The catalog of a ref has the ref as its Iceberg REST prefix: a branch name, or `@<hash>`, which
        Nessie serves read-only at that commit. The SQL is checked lexically (`read_only_sql`). The
        catalog is the session catalog while the query runs, and is dropped afterwards unless this
        engine had already made it (for dbt).
        """
        from trino.exceptions import TrinoUserError

        statement = read_only_sql(sql)
        spec = f"@{ref}" if _HASH.fullmatch(ref) else ref
        if spec == ref:
            try:
                found = self.catalog.get_ref(ref)
            except NotFoundError as e:
                raise ConfigError(f"no branch named {ref!r} to query") from e
            if found.kind != RefKind.BRANCH:
                raise ConfigError(f"queries on Trino run on a branch or a commit hash; {ref!r} is a {found.kind}")
        name = identifier(catalog_name(spec))
        owned = name not in self._created
        if owned:
            self.create_catalog(spec)
        try:
            return [tuple(row) for row in self.execute(statement, catalog=name)]
        except TrinoUserError as e:
            raise ConfigError(f"SQL on {ref!r} failed: {e.error_name}: {e.message}") from e
        finally:
            if owned:
                self.drop_catalog(name)

    def close(self) -> None:
        """Drop the catalogs this engine created: a branch's catalog lives only while dbt runs."""
        for name in sorted(self._created):
            self.drop_catalog(name)
