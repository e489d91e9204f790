"""Which rows of an Iceberg table hold given natural keys, reading only the key columns it must.

Iceberg keeps each data file's lower and upper bound per column. A scan of the key columns filtered to
the range of the keys looked for skips, before reading them, the files whose bounds miss that range
(time-ordered keys such as MongoDB ObjectIds touch only the newest files); the files left are read key
columns only. A key is a value, or a row of values for a compound key; a row with a null in its key
never matches (as SQL's UNIQUE).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import DataScan, FileScanTask, Table

ROWS_PER_PROBE = 8_000_000  # old key rows read and matched at once: bounds the memory of a lookup


def range_filter(keys: pa.Table, names: tuple[str, ...]) -> BooleanExpression:
    """Each key column between its lowest and highest value in `keys` (no nulls), named as in `names`.

    Columns that have no order Iceberg keeps bounds for, or hold a NaN (NaN has no place in a range), are
    left unbounded.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyiceberg.expressions import AlwaysTrue, And, GreaterThanOrEqual, LessThanOrEqual

    bounded = (pa.types.is_integer, pa.types.is_floating, pa.types.is_string, pa.types.is_large_string)
    bounded += (pa.types.is_temporal, pa.types.is_decimal)
    found: BooleanExpression = AlwaysTrue()
    for column, name in zip(keys.columns, names, strict=True):
        if not any(kind(column.type) for kind in bounded) or column.null_count == len(column):
            continue
        if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
            continue
        low, high = pc.min_max(column).values()
        found = And(found, And(GreaterThanOrEqual(name, low.as_py()), LessThanOrEqual(name, high.as_py())))
    return found


def old_key_scan(table: Table, snapshot_id: int, new_keys: pa.Table, names: tuple[str, ...]) -> DataScan:
    """A scan of a snapshot's key columns within the range of the new keys (no nulls).

    Iceberg prunes every data file whose bounds for a key column miss its range before reading it.
    pyiceberg binds a row filter to the table's current schema and the selected fields to the snapshot's:
    the filter names the columns as `new_keys` do, the selection as `names` (the snapshot's names) do.
    """
    in_range = range_filter(new_keys, tuple(new_keys.column_names))
    return table.scan(snapshot_id=snapshot_id, selected_fields=names, row_filter=in_range)


def key_mask(rows: pa.Table, keys: pa.Table) -> pa.ChunkedArray:
    """For each row of `rows`, whether its key (the columns of `keys`, by name) is one of `keys`' rows.

    `keys` are cast to the types of `rows`' columns; a null in a key never matches.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    names = keys.column_names
    wanted = keys.drop_null().cast(pa.schema([rows.schema.field(name) for name in names]))
    if len(names) == 1:
        return pc.is_in(rows.column(names[0]), value_set=wanted.column(0).combine_chunks())
    numbered = rows.select(names).append_column("__row", pa.arange(0, rows.num_rows))
    hits = numbered.join(wanted.group_by(names).aggregate([]), names, join_type="left semi")
    return pa.chunked_array([pc.is_in(pa.arange(0, rows.num_rows), value_set=hits.column("__row").combine_chunks())])


@dataclass(frozen=True)
class Hit:
    """A data file holding some of the keys, and which of its rows (in scan order) do."""

    task: FileScanTask
    rows: pa.ChunkedArray


def files_holding(table: Table, keys: pa.Table, skip: Collection[str] = ()) -> list[Hit]:
    """The current snapshot's data files (but those in `skip`) holding a row whose key is one of `keys`' rows.

    Reads the key columns of the files whose bounds overlap the keys' range, a few million rows at a time.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan
    from pyiceberg.utils.concurrent import ExecutorFactory

    keys = keys.drop_null()
    snapshot = table.current_snapshot()
    if snapshot is None or keys.num_rows == 0:
        return []
    names = tuple(keys.column_names)
    scan = old_key_scan(table, snapshot.snapshot_id, keys, names)
    tasks = [task for task in scan.plan_files() if task.file.file_path not in skip]
    reader = ArrowScan(table.metadata, table.io, scan.projection(), AlwaysTrue())
    hits = []
    for group in _groups(tasks):
        old = list(ExecutorFactory.get_or_create().map(lambda task: reader.to_table([task]).select(names), group))
        if not old:
            continue
        matched = key_mask(pa.concat_tables(old), keys)
        start = 0
        for task, rows in zip(group, old, strict=True):
            mask = matched.slice(start, rows.num_rows)
            start += rows.num_rows
            if pc.any(mask).as_py():
                hits.append(Hit(task, mask))
    return hits


def _groups(tasks: list[FileScanTask]) -> list[list[FileScanTask]]:
    """Tasks in runs of at most ROWS_PER_PROBE records (a larger file is a run of its own)."""
    groups: list[list[FileScanTask]] = []
    rows = ROWS_PER_PROBE
    for task in tasks:
        if rows + task.file.record_count > ROWS_PER_PROBE:
            groups.append([])
            rows = 0
        groups[-1].append(task)
        rows += task.file.record_count
    return groups
