"""The `files` source: every CSV, Parquet or JSON-lines file a glob matches, read into Arrow.

    [sources.orders]
    files = "data/orders/*.csv"   # relative to the project root; `**` recurses
    table = "orders"              # optional: one table for all files (default: each file's stem)
    format = "csv"                # optional: csv | parquet | jsonl (default: by suffix)
    types = { amount = "double" } # optional: column types of CSV and JSON lines (default: as read)

Files are read in sorted order. Files that land in the same table are concatenated, so a later file may
add a column (earlier rows get nulls). Rows are kept as the files have them.

A bad record does not fail its file: a CSV row with the wrong number of fields, a JSON line that is not
an object or whose value changes a column's kind (number, text, ...), and a value that does not fit the
type `types` declares for its column, are rejected (`ctx.reject`: the file, the row or line, and the fix)
and the other rows land. A column `types` does not name is typed as read (a CSV column with one value that
is not a number is text). A file that cannot be read at all (missing, not UTF-8, not CSV, no JSON line in it) fails
the read naming the file and the fix.
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cascade_ci.errors import ConfigError, SourceError

if TYPE_CHECKING:
    import pyarrow as pa

    from cascade_ci.config import Settings, SourceConfig
    from cascade_ci.sources.base import SourceContext

SUFFIXES = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
FORMAT_NAMES = {"csv": "CSV", "parquet": "Parquet", "jsonl": "JSON lines"}
Reject = Callable[[Any, str], None]  # (record, reason) of one record a file holds


class FileSource:
    """Reads the files of a `files` source section, one Arrow table per target table."""

    def __init__(self, config: SourceConfig, settings: Settings) -> None:
        if not config.files:
            raise ConfigError("the files source needs `files`, a glob of CSV, Parquet or JSON-lines files")
        self.config = config
        self.settings = settings
        self.types = {column: arrow_type(column, name) for column, name in config.types.items()}

    def paths(self) -> list[Path]:
        """The files the glob matches, sorted; SourceError when there are none."""
        pattern = Path(self.config.files or "").expanduser()
        root = Path(self.settings.root).resolve()
        full = str(pattern) if pattern.is_absolute() else f"{glob.escape(str(root))}/{pattern}"
        found = sorted(Path(path) for path in glob.glob(full, recursive=True) if Path(path).is_file())
        if not found:
            raise SourceError(f"no file matches {self.config.files!r} (resolved against {root})")
        return found

    def read(self, ctx: SourceContext) -> Mapping[str, pa.Table]:
        """Every matched file, grouped by table and concatenated in file order."""
        parts: dict[str, list[tuple[Path, pa.Table]]] = {}
        for path in self.paths():
            fmt = self.format_of(path)
            table = self.config.table or path.stem

            def reject(record: Any, reason: str, table: str = table) -> None:
                ctx.reject(table, record, reason)

            rows = read_file(path, fmt, self.shown(path), reject, self.types)
            parts.setdefault(table, []).append((path, rows))
        return {table: self.concat(table, tables) for table, tables in parts.items()}

    def format_of(self, path: Path) -> str:
        """The configured format, else the one the suffix names; ConfigError when neither does."""
        fmt = self.config.format or SUFFIXES.get(path.suffix.lower())
        if fmt is None:
            raise ConfigError(
                f"{self.shown(path)}: cannot tell the format from the suffix {path.suffix!r}; "
                "set `format` (csv, parquet or jsonl) on the source"
            )
        return fmt

    def concat(self, table: str, parts: list[tuple[Path, pa.Table]]) -> pa.Table:
        """The files of one table as one, columns widened and types promoted where they can be."""
        import pyarrow as pa

        combined = parts[0][1]
        for path, rows in parts[1:]:
            try:
                combined = pa.concat_tables([combined, rows], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise SourceError(
                    f"{self.shown(path)}: does not fit table {table!r} of the files before it: {e}"
                ) from e
        return combined

    def shown(self, path: Path) -> str:
        """`path` relative to the project root when it lies inside it, for messages."""
        root = Path(self.settings.root).resolve()
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


_TIMESTAMP = re.compile(r"timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]")


def arrow_type(column: str, name: str) -> pa.DataType:
    """The Arrow type `name` names (`int64`, `double`, `timestamp[us, tz=UTC]`, ...); ConfigError if none."""
    import pyarrow as pa

    stamp = _TIMESTAMP.fullmatch(name.strip())
    if stamp:
        return pa.timestamp(stamp.group(1), tz=stamp.group(2))
    try:
        return pa.type_for_alias(name.strip())
    except ValueError:
        raise ConfigError(
            f"types.{column}: unknown type {name!r}; use int64, int32, double, bool, string, date32, "
            "timestamp[us] or timestamp[us, tz=UTC]"
        ) from None


def read_file(
    path: Path,
    fmt: str,
    shown: str | None = None,
    reject: Reject | None = None,
    types: Mapping[str, pa.DataType] | None = None,
) -> pa.Table:
    """One file in `fmt` (csv, parquet, jsonl) as Arrow; SourceError naming the file, the reason and the fix.

    `types` declares column types of CSV and JSON lines. With `reject`, a record that cannot be read is
    handed to it (record, reason) and the others are kept; without, it fails the file.
    """
    import pyarrow as pa

    shown = shown or str(path)
    readers: dict[str, Callable[[Path, str, Reject | None, Mapping[str, pa.DataType]], pa.Table]] = {
        "csv": _csv,
        "parquet": _parquet,
        "jsonl": _jsonl,
    }
    try:
        return readers[fmt](path, shown, reject, types or {})
    except (pa.ArrowException, ValueError, OSError) as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise SourceError(f"{shown}: cannot read as {FORMAT_NAMES[fmt]}: {reason}{FIXES[fmt]}") from e


FIXES = {
    "csv": "; is it CSV with a header row? Else set `format` on the source",
    "parquet": "; is it a whole Parquet file? Else set `format` on the source",
    "jsonl": "; write one JSON object per line, or set `format` on the source",
}


def _csv(path: Path, shown: str, reject: Reject | None, types: Mapping[str, pa.DataType]) -> pa.Table:
    import pyarrow as pa
    from pyarrow import csv

    found: list[Any] = []  # the rows with the wrong number of fields

    def bad_row(row: Any) -> str:
        found.append(row)
        return "error" if reject is None else "skip"

    # pyarrow skips a UTF-8 BOM itself; quoted fields may hold commas and newlines.
    parse = csv.ParseOptions(newlines_in_values=True, invalid_row_handler=bad_row)
    convert = csv.ConvertOptions(column_types=dict(types))
    try:
        try:
            table = csv.read_csv(path, parse_options=parse, convert_options=convert)
            if not any(row.number is None for row in found):
                return _rejected_rows(table, found, shown, reject)
        except pa.ArrowInvalid:
            pass
        found.clear()  # only the single-threaded reader knows a bad row's line number
        single = csv.ReadOptions(use_threads=False)
        table = csv.read_csv(path, parse_options=parse, convert_options=convert, read_options=single)
        return _rejected_rows(table, found, shown, reject)
    except pa.ArrowInvalid as e:
        if reject is None or "conversion error" not in str(e):
            raise
    found.clear()
    return _rejected_rows(_csv_coerced(path, shown, reject, parse, types), found, shown, reject)


def _rejected_rows(table: pa.Table, rows: list[Any], shown: str, reject: Reject | None) -> pa.Table:
    """`table`, once the CSV rows with the wrong number of fields are handed to `reject`."""
    for row in rows if reject is not None else ():
        where = f"line {row.number}" if row.number is not None else "a row"
        reject(
            {"file": shown, "line": row.number, "text": row.text},
            f"{shown}: {where}: {row.actual_columns} fields where the header has {row.expected_columns}; "
            "fix the row (quote a value that holds a comma)",
        )
    return table


def _csv_coerced(path: Path, shown: str, reject: Reject, parse: Any, types: Mapping[str, pa.DataType]) -> pa.Table:
    """A CSV file some of whose values do not fit the declared `types`: those rows are rejected, the others cast."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv

    as_text = csv.ConvertOptions(column_types={name: pa.string() for name in types})
    single = csv.ReadOptions(use_threads=False)
    text = csv.read_csv(path, parse_options=parse, convert_options=as_text, read_options=single)
    declared = {name: kind for name, kind in types.items() if name in text.column_names}
    for name in declared:  # an empty field is a null, as it is when the column is read typed
        column = text.column(name)
        text = text.set_column(text.column_names.index(name), name, pc.if_else(pc.equal(column, ""), None, column))
    bad: dict[int, list[str]] = {}
    for name, kind in declared.items():
        column = text.column(name).combine_chunks()
        blocks = range(0, len(column), UNFIT_BLOCK)
        for number in [n for start in blocks for n in _unfit(column.slice(start, UNFIT_BLOCK), kind, start)]:
            bad.setdefault(number, []).append(f"{name} {column[number].as_py()!r} is not {kind}")
    rows = {number: text.slice(number, 1).to_pylist()[0] for number in bad}
    for number, problems in sorted(bad.items()):
        reject(
            {"file": shown, "row": number + 1, **rows[number]},
            f"{shown}: row {number + 1}: {'; '.join(problems)}; fix the value or leave it empty",
        )
    kept = text.filter(pa.array([number not in bad for number in range(text.num_rows)]))
    return _cast(kept, declared)


UNFIT_BLOCK = 4096  # values cast at once while misfits are looked for


def _unfit(values: pa.Array, kind: pa.DataType, offset: int = 0) -> list[int]:
    """The positions (from `offset`) of the values that cannot be cast to `kind`: halves are cast until the
    misfits are found, so a block with a few of them costs a few casts, not one per value."""
    import pyarrow as pa

    try:
        values.cast(kind)
        return []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        if len(values) == 1:
            return [offset]
    half = len(values) // 2
    return _unfit(values.slice(0, half), kind, offset) + _unfit(values.slice(half), kind, offset + half)


def _misfits(rows: list[dict[str, Any]], types: Mapping[str, pa.DataType]) -> dict[int, list[str]]:
    """Per row index, the values that do not fit their column's declared type."""
    import pyarrow as pa

    bad: dict[int, list[str]] = {}
    for number, row in enumerate(rows):
        for name, kind in types.items():
            value = row.get(name)
            if value is None:
                continue
            try:
                pa.scalar(value).cast(kind)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                bad.setdefault(number, []).append(f"{name} {value!r} is not {kind}")
    return bad


def _cast(table: pa.Table, types: Mapping[str, pa.DataType]) -> pa.Table:
    """`table` with each column `types` names cast to its type."""
    for name, kind in types.items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, table.column(name).cast(kind))
    return table


def _parquet(path: Path, shown: str, reject: Reject | None, types: Mapping[str, pa.DataType]) -> pa.Table:
    from pyarrow import parquet

    return parquet.read_table(path)


def _jsonl(path: Path, shown: str, reject: Reject | None, types: Mapping[str, pa.DataType]) -> pa.Table:
    import pyarrow as pa
    from pyarrow import json as arrow_json

    declared = arrow_json.ParseOptions(explicit_schema=pa.schema(list(types.items()))) if types else None
    try:
        return arrow_json.read_json(path, parse_options=declared)  # pyarrow skips a UTF-8 BOM itself
    except pa.ArrowInvalid as e:
        failure = e
    rows, rejected = _json_lines(path)
    if not rows and rejected:  # not one line of it is an object: not JSON lines at all
        raise SourceError(f"{shown}: cannot read as JSON lines: {rejected[0][2]}{FIXES['jsonl']}")
    rows, rejected = _typed(rows, rejected, types)
    if not rejected:
        raise failure  # pyarrow's reason, which no line explains
    if reject is None:
        raise SourceError(f"{shown}: cannot read as JSON lines: {min(rejected)[2]}")
    for _number, text, reason in sorted(rejected):
        reject(text, f"{shown}: {reason}")

    def converted(row: dict[str, Any]) -> dict[str, Any]:
        return {k: pa.scalar(v).cast(types[k]).as_py() if k in types and v is not None else v for k, v in row.items()}

    return _cast(pa.Table.from_pylist([converted(row) for _, row, _ in rows]), types)


Line = tuple[int, dict[str, Any], str]  # line number, object, text
Bad = tuple[int, str, str]  # line number, text, reason


def _json_lines(path: Path) -> tuple[list[Line], list[Bad]]:
    """Every non-blank line: the objects, and the lines that are not one (with the reason)."""
    rows: list[Line] = []
    bad: list[Bad] = []
    with path.open(encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, 1):
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except ValueError as e:
                bad.append((number, text, f"line {number}: {getattr(e, 'msg', e)}; fix the line or remove it"))
                continue
            if isinstance(value, dict):
                rows.append((number, value, text))
            else:
                bad.append((number, text, f"line {number}: {_kind(value)}, not a JSON object"))
    return rows, bad


def _kind(value: Any) -> str:
    """The JSON kind of a value as Arrow types it (an integer and a fraction are both numbers)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "an object"


def _typed(rows: list[Line], bad: list[Bad], types: Mapping[str, pa.DataType]) -> tuple[list[Line], list[Bad]]:
    """The objects whose values fit their declared type, else keep each key's kind (the first non-null value's);
    the others join `bad`."""
    kinds: dict[str, tuple[str, int]] = {}
    kept: list[Line] = []
    for number, row, text in rows:
        changed = _misfits([row], types).get(0, [])
        for key, value in row.items():
            if value is None or key in types:
                continue
            kind = _kind(value)
            first = kinds.setdefault(key, (kind, number))
            if first[0] != kind:
                changed.append(f"{key} is {kind}, not {first[0]} as on line {first[1]}")
        if changed:
            bad.append((number, text, f"line {number}: {'; '.join(changed)}; fix the value"))
        else:
            kept.append((number, row, text))
    return kept, bad
