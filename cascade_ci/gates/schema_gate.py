"""Schema compatibility: additive changes pass, breaking changes block.

Fields are matched by Iceberg field id, so a rename is seen as a rename, and a drop-and-re-add under
the same name is seen as a replacement (readers holding the old id lose the column).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cascade_ci.catalog.base import ChangeKind
from cascade_ci.verdict import Check, GateResult, Level

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.types import IcebergType

    from cascade_ci.gates.base import GateContext

GATE = "schema"
name = GATE
CHECK = "backward_compatible"


@dataclass(frozen=True)
class SchemaChange:
    breaking: bool
    text: str


def _widens(old: IcebergType, new: IcebergType) -> bool:
    """Iceberg's safe promotions: int->long, float->double, decimal precision up (same scale)."""
    from pyiceberg.types import DecimalType, DoubleType, FloatType, IntegerType, LongType

    if isinstance(old, IntegerType) and isinstance(new, LongType):
        return True
    if isinstance(old, FloatType) and isinstance(new, DoubleType):
        return True
    return (
        isinstance(old, DecimalType)
        and isinstance(new, DecimalType)
        and old.scale == new.scale
        and new.precision > old.precision
    )


def compare_schemas(old: Schema, new: Schema) -> list[SchemaChange]:
    """Every difference between two schemas of one table, each marked breaking or additive."""
    from pyiceberg.schema import index_by_id

    old_fields, new_fields = index_by_id(old), index_by_id(new)
    old_names = {fid: old.find_column_name(fid) for fid in old_fields}
    new_names = {fid: new.find_column_name(fid) for fid in new_fields}
    new_ids_by_name = {name: fid for fid, name in new_names.items()}
    changes: list[SchemaChange] = []
    replaced: set[int] = set()

    for fid, before in old_fields.items():
        name = old_names[fid]
        after = new_fields.get(fid)
        if after is None:
            if name in new_ids_by_name:
                replaced.add(new_ids_by_name[name])
                changes.append(
                    SchemaChange(True, f"column {name} replaced (field id {fid} -> {new_ids_by_name[name]})")
                )
            else:
                changes.append(SchemaChange(True, f"column {name} dropped"))
            continue
        if new_names[fid] != name:
            changes.append(SchemaChange(True, f"column {name} renamed to {new_names[fid]} (field id {fid})"))
        old_type, new_type = before.field_type, after.field_type
        if old_type.is_primitive and new_type.is_primitive:
            if old_type != new_type:
                widened = _widens(old_type, new_type)
                verb = "widened" if widened else "changed type"
                changes.append(SchemaChange(not widened, f"column {name} {verb} {old_type} -> {new_type}"))
        elif type(old_type) is not type(new_type):
            changes.append(SchemaChange(True, f"column {name} changed type {old_type} -> {new_type}"))
        if before.optional and not after.optional:
            changes.append(SchemaChange(True, f"column {name} made required"))
        elif not before.optional and after.optional:
            changes.append(SchemaChange(False, f"column {name} made optional"))

    for fid in sorted(new_fields.keys() - old_fields.keys() - replaced):
        field = new_fields[fid]
        if field.optional:
            changes.append(SchemaChange(False, f"optional column {new_names[fid]} added"))
        else:
            changes.append(SchemaChange(True, f"required column {new_names[fid]} added"))
    return changes


def _check(table: str, changes: list[SchemaChange], note: str = "") -> Check:
    breaking = [change.text for change in changes if change.breaking]
    additive = [change.text for change in changes if not change.breaking]
    if breaking:
        message = "breaking: " + "; ".join(breaking)
    else:
        message = note or ("additive: " + "; ".join(additive) if additive else "schema unchanged")
    return Check(
        gate=GATE,
        table=table,
        name=CHECK,
        severity=Level.ERROR,
        passed=not breaking,
        message=message,
        observed=breaking or additive or None,
        expected="only additive schema changes" if breaking else None,
    )


def run(ctx: GateContext) -> GateResult:
    """One check per table the branch changed: new tables pass, dropped tables and breaking changes fail."""
    base, head = ctx.catalog.tables(ctx.base_hash), ctx.catalog.tables(ctx.head_hash)
    checks = []
    for change in ctx.changes:
        if change.kind is ChangeKind.ADDED:
            checks.append(_check(change.table, [], note="new table"))
        elif change.kind is ChangeKind.REMOVED:
            checks.append(_check(change.table, [SchemaChange(True, f"table {change.table} dropped")]))
        else:
            old = base.load_table(change.table).schema()
            new = head.load_table(change.table).schema()
            checks.append(_check(change.table, compare_schemas(old, new)))
    return GateResult(gate=GATE, checks=tuple(checks))
