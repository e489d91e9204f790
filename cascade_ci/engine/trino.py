"""The production engine: dbt-trino on one dynamic Trino catalog per branch, pointed at Nessie.

Trino has no session property for a Nessie ref, so `prepare` creates a catalog (`CREATE CATALOG
... USING iceberg`) whose Iceberg REST prefix is the branch; dbt-trino then writes the marts straight
into the branch through it (each table write is a Nessie commit on the branch). `close` drops the
catalog. Identifiers are sanitised, literals quoted, and the statement carrying S3 keys never logged.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from cascade_ci.engine.base import DbtTarget
from cascade_ci.errors import ServiceUnavailableError, safe_url

if TYPE_CHECKING:
    import pyarrow as pa

    from cascade_ci.catalog.base import BranchCatalog
    from cascade_ci.config import Settings

logging.getLogger("trino").setLevel(logging.WARNING)  # its keyring notice is noise in a pipeline log

_UNSAFE = re.compile(r"[^a-z0-9_]+")
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


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

    def _connect(self) -> Any:
        import trino

        auth = None
        if self.settings.trino_password is not None:
            auth = trino.auth.BasicAuthentication(
                self.settings.trino_user, self.settings.trino_password.get_secret_value()
            )
        return trino.dbapi.connect(
            host=self.host, port=self.port, user=self.settings.trino_user, http_scheme=self.scheme, auth=auth
        )

    def execute(self, sql: str) -> list[Any]:
        """Run one statement; connection faults and 5xx become ServiceUnavailableError naming Trino."""
        from trino.exceptions import HttpError, OperationalError

        try:
            with self._connect() as connection:
                cursor = connection.cursor()
                cursor.execute(sql)
                return cursor.fetchall()
        except (OSError, OperationalError, HttpError) as e:
            raise ServiceUnavailableError(f"Trino at {safe_url(self.settings.trino_uri)} did not answer: {e}") from e

    def catalog_properties(self, branch: str) -> dict[str, str]:
        """The Iceberg connector's properties for a REST catalog on Nessie at `branch`."""
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
            properties["s3.aws-access-key"] = s.s3_access_key_id.get_secret_value()
            properties["s3.aws-secret-key"] = s.s3_secret_access_key.get_secret_value()
        return properties

    def _create_statement(self, name: str, branch: str) -> str:
        pairs = ", ".join(f'"{key}" = {literal(value)}' for key, value in self.catalog_properties(branch).items())
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
        """The catalog consumers query, named after the published branch (`main`); created once, kept."""
        name = identifier(_UNSAFE.sub("_", self.settings.main_branch.lower()))
        if [name] not in self.execute("SHOW CATALOGS"):
            self.execute(self._create_statement(name, self.settings.main_branch))
        return name

    def prepare(self, branch: str, sources: dict[str, pa.Schema]) -> DbtTarget:
        """Make sure every raw table exists on the branch (empty if never ingested); create its catalog."""
        tables = self.catalog.tables(branch)
        for table, schema in sources.items():
            namespace = table.split(".")[0]
            if not tables.namespace_exists(namespace):
                tables.create_namespace(namespace)
            if not tables.table_exists(table):
                tables.create_table(table, schema)
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
            "schema": "marts",
            "threads": 2,
        }
        env = {}
        if self.settings.trino_password is not None:
            output["password"] = "{{ env_var('CASCADE_TRINO_PASSWORD') }}"  # noqa: S105 (a reference)
            env["CASCADE_TRINO_PASSWORD"] = self.settings.trino_password.get_secret_value()
        return DbtTarget(output=output, env=env)

    def publish(self, branch: str, models: list[str]) -> dict[str, int]:
        """dbt-trino already wrote the marts into the branch; count their rows."""
        name = identifier(catalog_name(branch))
        counts = {}
        for model in models:
            schema, table = (identifier(part) for part in model.split("."))
            counts[model] = int(self.execute(f"SELECT count(*) FROM {name}.{schema}.{table}")[0][0])  # noqa: S608
        return counts

    def close(self) -> None:
        """Drop the catalogs this engine created: a branch's catalog lives only while dbt runs."""
        for name in sorted(self._created):
            self.drop_catalog(name)
