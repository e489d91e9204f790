"""Trino's catalogs on Nessie: the consumers' catalog is read-only, secrets can stay out of catalog files,
and Trino authenticates to an auth-enabled Nessie with the same OAuth2 client credentials as cascade."""

from __future__ import annotations

import uuid
from contextlib import suppress

import pytest
from trino.exceptions import TrinoUserError

from cascade_ci.catalog.nessie import NessieBranchCatalog
from cascade_ci.catalog.nessie_auth import NessieAuth
from cascade_ci.config import load_settings
from cascade_ci.engine.trino import TrinoEngine
from cascade_ci.errors import NotFoundError
from tests.security.conftest import AuthStack

SECRETS = {"AWS_ACCESS_KEY_ID": "AKIA-probe", "AWS_SECRET_ACCESS_KEY": "s3-secret-probe"}


def engine_for(**overrides: str) -> TrinoEngine:
    return TrinoEngine(load_settings(**overrides), catalog=None)  # type: ignore[arg-type]


def test_with_env_secrets_no_secret_value_reaches_a_catalog_property(monkeypatch):
    for key, value in {**SECRETS, "NESSIE_OAUTH2_CLIENT_SECRET": "nessie-secret-probe"}.items():
        monkeypatch.setenv(key, value)
    engine = engine_for(
        nessie_auth="oauth2",
        nessie_oauth2_token_url="https://issuer.example.com/token",
        nessie_oauth2_client_id="cascade-writer",
        trino_catalog_secrets="env",
    )
    properties = engine.catalog_properties("pipeline/run-1")
    text = engine._create_statement("c", "pipeline/run-1")
    assert not any(secret in text for secret in ("AKIA-probe", "s3-secret-probe", "nessie-secret-probe"))
    assert properties["s3.aws-secret-key"] == "${ENV:AWS_SECRET_ACCESS_KEY}"
    assert properties["iceberg.rest-catalog.oauth2.credential"] == (
        "${ENV:NESSIE_OAUTH2_CLIENT_ID}:${ENV:NESSIE_OAUTH2_CLIENT_SECRET}"
    )
    assert properties["iceberg.rest-catalog.security"] == "OAUTH2"


def test_only_the_consumers_catalog_is_read_only():
    engine = engine_for()
    assert engine.catalog_properties("main", read_only=True)["iceberg.security"] == "read_only"
    assert "iceberg.security" not in engine.catalog_properties("pipeline/run-1")


@pytest.fixture
def trino_on_auth_nessie(auth_stack: AuthStack, stack: dict[str, str]):
    """The session's Trino, with a consumers' catalog on a writer's branch of the auth-enabled Nessie."""
    writer = {
        "nessie_auth": "oauth2",
        "nessie_oauth2_token_url": auth_stack["NESSIE_OAUTH2_TOKEN_URL"],
        "nessie_oauth2_client_id": "cascade-writer",
        "nessie_oauth2_client_secret": auth_stack.secret("cascade-writer"),
    }
    branch = f"pipeline/consumer-{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        nessie_uri=auth_stack["NESSIE_URI"],
        trino_uri=stack["TRINO_URI"],
        s3_endpoint=stack["S3_ENDPOINT"],
        main_branch=branch,
        **writer,
    )
    nessie = NessieBranchCatalog(auth_stack["NESSIE_URI"], auth=NessieAuth.from_settings(settings))
    nessie.create_ref(branch, "main")
    engine = TrinoEngine(settings, nessie)
    name = engine.ensure_main_catalog()
    try:
        yield engine, name
    finally:
        engine.drop_catalog(name)


def test_the_consumers_catalog_refuses_writes_even_for_a_writer(trino_on_auth_nessie):
    engine, name = trino_on_auth_nessie
    assert ["information_schema"] in engine.execute(f"SHOW SCHEMAS FROM {name}")  # Trino got in with OAuth2
    with pytest.raises(TrinoUserError, match="Access Denied"):
        engine.execute(f"CREATE SCHEMA {name}.consumer_write")
    assert ["consumer_write"] not in engine.execute(f"SHOW SCHEMAS FROM {name}")


def test_file_stored_catalogs_hold_no_key_and_still_read(file_store_trino, stack: dict[str, str]):
    """The consumers' catalog as docker-compose.yml stores it: a file naming ${ENV:...}, which Trino resolves."""
    import pyarrow as pa

    uri, folder = file_store_trino
    branch = f"consumers-{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        nessie_uri=stack["NESSIE_URI"],
        trino_uri=uri,
        s3_endpoint=stack["S3_ENDPOINT"],
        s3_access_key_id=stack["AWS_ACCESS_KEY_ID"],
        s3_secret_access_key=stack["AWS_SECRET_ACCESS_KEY"],
        main_branch=branch,
        trino_catalog_secrets="env",
    )
    nessie = NessieBranchCatalog.from_settings(settings)
    root = nessie._call("GET", "/config")["noAncestorHash"]
    nessie.create_ref(branch, root)
    tables = nessie.tables(branch)
    tables.create_namespace("shop")
    rows = pa.table({"id": pa.array([1, 2, 3], pa.int64())})
    tables.create_table("shop.orders", rows.schema).append(rows)
    engine = TrinoEngine(settings, nessie)
    name = engine.ensure_main_catalog()
    try:
        assert engine.execute(f"SELECT count(*) FROM {name}.shop.orders") == [[3]]  # the keys came from ${ENV:...}
        with pytest.raises(TrinoUserError, match="Access Denied"):
            engine.execute(f"INSERT INTO {name}.shop.orders VALUES (4)")
        files = list(folder.glob("*.properties"))
        text = "\n".join(path.read_text() for path in files)
        assert files and "iceberg.security=read_only" in text
        assert stack["AWS_SECRET_ACCESS_KEY"] not in text and stack["AWS_ACCESS_KEY_ID"] not in text
    finally:
        engine.drop_catalog(name)
        with suppress(NotFoundError):  # the shared Nessie's other tests may have swept it already
            trunk = NessieBranchCatalog(stack["NESSIE_URI"])  # one whose default branch is main, not `branch`
            trunk.delete_ref(branch, trunk.get_ref(branch).hash)
