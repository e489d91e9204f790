"""What the pyiceberg catalog of a Nessie ref adapts: commit bodies, and the S3 settings the server advertises."""

from __future__ import annotations

import json

import pytest

from cascade_ci.catalog.nessie_tables import NessieRefCatalog, with_last_column_id
from tests.fakes.http import FakeServer


def commit(updates: list[dict], requirements: list[dict] | None = None) -> bytes:
    return json.dumps({"identifier": {"namespace": ["raw"], "name": "t"}, "requirements": requirements or [],
                       "updates": updates}).encode()  # fmt: skip


SCHEMA = {
    "type": "struct",
    "schema-id": 1,
    "fields": [
        {"id": 1, "name": "id", "type": "long", "required": False},
        {"id": 4, "name": "tags", "required": False, "type": {"type": "list", "element-id": 7, "element": "string",
                                                               "element-required": False}},
    ],
}  # fmt: skip


def test_adds_the_highest_of_assigned_and_schema_ids():
    body = commit(
        [{"action": "add-schema", "schema": SCHEMA}, {"action": "set-current-schema", "schema-id": -1}],
        [{"type": "assert-last-assigned-field-id", "last-assigned-field-id": 9}],
    )
    updates = json.loads(with_last_column_id(body))["updates"]
    assert updates[0]["last-column-id"] == 9
    assert "last-column-id" not in updates[1]


def test_nested_ids_count_when_no_requirement():
    updates = json.loads(with_last_column_id(commit([{"action": "add-schema", "schema": SCHEMA}])))["updates"]
    assert updates[0]["last-column-id"] == 7


def test_other_bodies_pass_unchanged():
    plain = commit([{"action": "set-properties", "updates": {"a": "b"}}])
    assert with_last_column_id(plain) is plain
    assert with_last_column_id(b"not json") == b"not json"
    kept = commit([{"action": "add-schema", "schema": SCHEMA, "last-column-id": 12}])
    assert json.loads(with_last_column_id(kept))["updates"][0]["last-column-id"] == 12


ADVERTISED = {"s3.endpoint": "http://minio:9000", "s3.session-token": "vended-session", "s3.region": "eu-west-1"}
USER_URL = {"s3.endpoint": "http://localhost:9000"}
USER_KEYS = {**USER_URL, "s3.access-key-id": "AKIAUSER", "s3.secret-access-key": "x"}


@pytest.mark.parametrize("given", [USER_KEYS, USER_URL, {}], ids=["keys", "url", "none"])
def test_the_users_s3_settings_win_over_the_advertised_ones(given):
    with FakeServer() as nessie:
        config = {"defaults": {}, "overrides": dict(ADVERTISED)}
        nessie.route("GET", "/iceberg/v1/config", lambda req: (200, {}, config))
        catalog = NessieRefCatalog(
            "main", read_only=False, client_io=given, uri=f"{nessie.url}/iceberg/", prefix="main%7Cwarehouse"
        )
        table_config = {"s3.endpoint": "http://minio:9000", "s3.session-token": "table-session"}
        io = catalog._load_file_io(table_config, "s3://warehouse/raw/t")
    assert io.properties["s3.endpoint"] == given.get("s3.endpoint", "http://minio:9000")
    assert io.properties["s3.region"] == "eu-west-1"  # what the user did not set comes from the server
    if "s3.access-key-id" in given:  # the user's keys, never with the server's session token
        assert io.properties["s3.access-key-id"] == "AKIAUSER" and "s3.session-token" not in io.properties
    else:
        assert io.properties["s3.session-token"] == "table-session"
