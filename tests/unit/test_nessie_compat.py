"""Table commits sent to Nessie carry `last-column-id` on add-schema updates (Nessie 0.99 requires it)."""

from __future__ import annotations

import json

from cascade_ci.catalog.nessie_tables import with_last_column_id


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
