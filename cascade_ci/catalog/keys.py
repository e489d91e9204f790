"""Which rows of an Iceberg table hold given natural keys, reading only the key columns it must.

Iceberg keeps each data file's lower and upper bound per column. A scan of the key columns filtered to
the range of the keys looked for skips, before reading them, the files whose bounds miss that range
(time-ordered keys such as MongoDB ObjectIds touch only the newest files); the files left are read key
columns only. A key is a value, or a row of values for a compound key; a row with a null in its key
never matches (as SQL's UNIQUE).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import DataScan, FileScanTask, Table

ROWS_PER_PROBE = 4_000_000  # old key rows read and matched at once: bounds the memory of a lookup
READERS = 4  # data files read at once
Bounds = list[tuple[int, "pa.Scalar", "pa.Scalar"]]  # (column index, lowest, highest)


class Keys:
    """Natural keys looked for: rows of the key columns (those with a null dropped) and each column's range."""

    def __init__(self, rows: pa.Table) -> None:
        self.rows = rows.drop_null()
        self.names = tuple(rows.column_names)

    @functools.cached_property
    def bounds(self) -> Bounds:
        return _bounds(self.rows)

    def range_filter(self, names: tuple[str, ...] | None = None) -> BooleanExpression:
        """Each key column (named as in `names`, else as in the keys) within its range.

        Columns without an order Iceberg keeps bounds for, or holding a NaN, are left unbounded.
        """
        from pyiceberg.expressions import AlwaysTrue, And, GreaterThanOrEqual, LessThanOrEqual

        names = names or self.names
        found: BooleanExpression = AlwaysTrue()
        for index, low, high in self.bounds:
            bounded = And(GreaterThanOrEqual(names[index], low.as_py()), LessThanOrEqual(names[index], high.as_py()))
            found = And(found, bounded)
        return found

    def mask(self, rows: pa.Table) -> pa.Array:
        """For each of `rows`, whether its key (its columns named as the keys') is one of these keys.

        Only the rows within the keys' range are looked up, among only the keys within those rows' range
        (hashing is what costs); the keys are cast to the types of `rows`' columns. When those rows and
        keys are the same, in the same order (a window read again as it was stored), nothing is hashed.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        probe = rows.select(list(self.names))
        inside = _within(probe, self.bounds) if self.rows.num_rows else pa.repeat(False, probe.num_rows)
        probe = probe.filter(inside)
        if probe.num_rows == 0:
            return inside
        wanted = self.rows.cast(probe.schema)
        wanted = wanted.filter(_within(wanted, _bounds(probe)))
        if probe.num_rows == wanted.num_rows and probe.equals(wanted):
            found = pa.repeat(True, probe.num_rows)
        elif len(self.names) == 1:
            found = pc.is_in(probe.column(0), value_set=_array(wanted.column(0)))
        else:
            numbered = probe.append_column("__row", pa.arange(0, probe.num_rows))
            hits = numbered.join(wanted.group_by(list(self.names)).aggregate([]), self.names, join_type="left semi")
            found = pc.is_in(pa.arange(0, probe.num_rows), value_set=_array(hits.column("__row")))
        return pc.replace_with_mask(inside, inside, _array(found))


def _bounds(keys: pa.Table) -> Bounds:
    """(column index, lowest, highest) of each column that has an order and values (a NaN has no place)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ordered = (pa.types.is_integer, pa.types.is_floating, pa.types.is_string, pa.types.is_large_string)
    ordered += (pa.types.is_temporal, pa.types.is_decimal)
    found = []
    for index, column in enumerate(keys.columns):
        if not any(kind(column.type) for kind in ordered) or column.null_count == len(column):
            continue
        if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
            continue
        low, high = pc.min_max(column).values()
        found.append((index, low, high))
    return found


def _within(table: pa.Table, bounds: Bounds) -> pa.Array:
    """Which rows of `table` lie within `bounds` on every column they bound (a null is not within)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    inside = pa.repeat(True, table.num_rows)
    for index, low, high in bounds:
        column = table.column(index)
        inside = pc.and_(inside, pc.and_(pc.greater_equal(column, low), pc.less_equal(column, high)))
    return pc.fill_null(_array(inside), False)


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if hasattr(values, "combine_chunks") else values


def old_key_scan(table: Table, snapshot_id: int | None, new_keys: pa.Table | Keys, names: tuple[str, ...]) -> DataScan:
    """A scan of a snapshot's key columns (the current one's by default) within the range of the new keys.

    Iceberg prunes every data file whose bounds for a key column miss its range before reading it.
    pyiceberg binds a row filter to the table's current schema and the selected fields to the snapshot's
    (the current schema for the current snapshot): the filter names the columns as `new_keys` do, the
    selection as `names` do.
    """
    keys = new_keys if isinstance(new_keys, Keys) else Keys(new_keys)
    if snapshot_id is None:
        return table.scan(selected_fields=names, row_filter=keys.range_filter())
    return table.scan(snapshot_id=snapshot_id, selected_fields=names, row_filter=keys.range_filter())


def added_range(table: Table, base_id: int, names: tuple[str, ...]) -> tuple[int, BooleanExpression | None]:
    """The rows the data files added since snapshot `base_id` hold, and each of `names` within the range those files'
    column bounds give (metadata only: no data file is read).

    The range is None when it cannot be told from bounds: a file without a bound for a key column (all nulls, or
    not kept), or a floating-point key (NaN lies outside every bound). AlwaysFalse when no file was added.
    """
    from pyiceberg.conversions import from_bytes
    from pyiceberg.expressions import AlwaysFalse, AlwaysTrue, And, GreaterThanOrEqual, LessThanOrEqual
    from pyiceberg.types import DoubleType, FloatType

    old = {task.file.file_path for task in table.scan(snapshot_id=base_id).plan_files()}
    added = [task.file for task in table.scan().plan_files() if task.file.file_path not in old]
    rows = sum(data_file.record_count for data_file in added)
    if not added:
        return rows, AlwaysFalse()
    schema = table.schema()
    found: BooleanExpression = AlwaysTrue()
    for name in names:
        key = schema.find_field(name)
        if isinstance(key.field_type, FloatType | DoubleType):
            return rows, None
        lows = [(data_file.lower_bounds or {}).get(key.field_id) for data_file in added]
        highs = [(data_file.upper_bounds or {}).get(key.field_id) for data_file in added]
        if None in lows or None in highs:
            return rows, None
        low = min(from_bytes(key.field_type, bound) for bound in lows if bound is not None)
        high = max(from_bytes(key.field_type, bound) for bound in highs if bound is not None)
        found = And(found, And(GreaterThanOrEqual(name, low), LessThanOrEqual(name, high)))
    return rows, found


@dataclass(frozen=True)
class Hit:
    """A data file holding some of the keys: its key columns as read, and which of its rows (in scan order) do."""

    task: FileScanTask
    keys: pa.Table
    rows: pa.Array


def files_holding(table: Table, keys: Keys, skip: Collection[str] = ()) -> Iterator[Hit]:
    """The current snapshot's data files (but those in `skip`) holding a row with one of `keys`.

    Reads the key columns of the files whose bounds overlap the keys' range, a few million rows at a time
    (the hits of one run are yielded before the next is read).
    """
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.compute as pc
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan

    if table.current_snapshot() is None or keys.rows.num_rows == 0:
        return
    scan = old_key_scan(table, None, keys, keys.names)
    tasks = [task for task in scan.plan_files() if task.file.file_path not in skip]
    reader = ArrowScan(table.metadata, table.io, scan.projection(), AlwaysTrue())
    for group in _groups(tasks):
        # Not on pyiceberg's executor: each read submits its own work to it, and would wait for itself.
        with ThreadPoolExecutor(READERS) as readers:
            old = list(readers.map(lambda task: reader.to_table([task]), group))
        matched = keys.mask(pa.concat_tables(old, promote_options="permissive"))
        start = 0
        for task, rows in zip(group, old, strict=True):
            mask = matched.slice(start, rows.num_rows)
            start += rows.num_rows
            if pc.any(mask).as_py():
                yield Hit(task, rows, mask)


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
