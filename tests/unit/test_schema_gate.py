"""Schema compatibility rules: additive passes, breaking blocks."""

from __future__ import annotations

import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import (
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    StructType,
)

from cascade_ci.gates.schema_gate import compare_schemas


def schema(*fields: NestedField) -> Schema:
    return Schema(*fields)


BASE = schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "sgv", IntegerType(), required=False),
    NestedField(3, "ratio", FloatType(), required=False),
    NestedField(4, "dose", DecimalType(9, 2), required=False),
    NestedField(5, "device", StringType(), required=False),
)


def breaking(new: Schema) -> list[str]:
    return [c.text for c in compare_schemas(BASE, new) if c.breaking]


def additive(new: Schema) -> list[str]:
    return [c.text for c in compare_schemas(BASE, new) if not c.breaking]


def with_fields(*replacements: NestedField, drop: tuple[int, ...] = ()) -> Schema:
    by_id = {f.field_id: f for f in BASE.fields if f.field_id not in drop}
    for field in replacements:
        by_id[field.field_id] = field
    return schema(*by_id.values())


def test_unchanged_schema_has_no_changes():
    assert compare_schemas(BASE, BASE) == []


def test_added_optional_column_is_additive():
    new = with_fields(NestedField(6, "trend", StringType(), required=False))
    assert breaking(new) == []
    assert additive(new) == ["optional column trend added"]


def test_added_required_column_is_breaking():
    assert breaking(with_fields(NestedField(6, "trend", StringType(), required=True))) == [
        "required column trend added"
    ]


def test_dropped_column_is_breaking():
    assert breaking(with_fields(drop=(5,))) == ["column device dropped"]


@pytest.mark.parametrize(
    ("field", "text"),
    [
        (NestedField(2, "sgv", LongType(), required=False), "column sgv widened int -> long"),
        (NestedField(3, "ratio", DoubleType(), required=False), "column ratio widened float -> double"),
        (
            NestedField(4, "dose", DecimalType(12, 2), required=False),
            "column dose widened decimal(9, 2) -> decimal(12, 2)",
        ),
    ],
)
def test_safe_widenings_are_additive(field, text):
    new = with_fields(field)
    assert breaking(new) == []
    assert additive(new) == [text]


@pytest.mark.parametrize(
    "field",
    [
        NestedField(1, "id", IntegerType(), required=True),  # narrowing
        NestedField(2, "sgv", StringType(), required=False),  # incompatible
        NestedField(3, "ratio", LongType(), required=False),
        NestedField(4, "dose", DecimalType(12, 3), required=False),  # scale change
        NestedField(4, "dose", DecimalType(8, 2), required=False),  # precision down
        NestedField(5, "device", StructType(NestedField(10, "x", StringType(), required=False)), required=False),
    ],
)
def test_unsafe_type_changes_are_breaking(field):
    assert len(breaking(with_fields(field))) == 1


def test_optional_to_required_is_breaking_and_back_is_additive():
    assert breaking(with_fields(NestedField(2, "sgv", IntegerType(), required=True))) == ["column sgv made required"]
    assert additive(with_fields(NestedField(1, "id", LongType(), required=False))) == ["column id made optional"]


def test_rename_keeps_field_id_and_is_breaking():
    assert breaking(with_fields(NestedField(5, "device_name", StringType(), required=False))) == [
        "column device renamed to device_name (field id 5)"
    ]


def test_same_name_with_new_field_id_is_a_replacement():
    new = with_fields(NestedField(9, "device", StringType(), required=False), drop=(5,))
    assert breaking(new) == ["column device replaced (field id 5 -> 9)"]
    assert additive(new) == []


def test_nested_struct_fields_are_compared_by_id():
    old = schema(NestedField(1, "meta", StructType(NestedField(2, "a", StringType(), required=False)), required=False))
    added = schema(
        NestedField(
            1,
            "meta",
            StructType(
                NestedField(2, "a", StringType(), required=False), NestedField(3, "b", LongType(), required=False)
            ),
            required=False,
        )
    )
    dropped = schema(NestedField(1, "meta", StructType(), required=False))
    assert [c.text for c in compare_schemas(old, added)] == ["optional column meta.b added"]
    assert [(c.breaking, c.text) for c in compare_schemas(old, dropped)] == [(True, "column meta.a dropped")]
