"""The `files` source: every CSV, Parquet or JSON-lines file a glob matches, read into Arrow.

    [sources.orders]
    files = "data/orders/*.csv"   # relative to the project root; `**` recurses
    table = "orders"              # optional: one table for all files (default: each file's stem)
    format = "csv"                # optional: csv | parquet | jsonl (default: by suffix)

Files are read in sorted order. Files that land in the same table are concatenated, so a later file may
add a column (earlier rows get nulls). Rows are kept as the files have them.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

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


class FileSource:
    """Reads the files of a `files` source section, one Arrow table per target table."""

    def __init__(self, config: SourceConfig, settings: Settings) -> None:
        if not config.files:
            raise ConfigError("the files source needs `files`, a glob of CSV, Parquet or JSON-lines files")
        self.config = config
        self.settings = settings

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
            parts.setdefault(self.config.table or path.stem, []).append((path, read_file(path, fmt, self.shown(path))))
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


def read_file(path: Path, fmt: str, shown: str | None = None) -> pa.Table:
    """One file in `fmt` (csv, parquet, jsonl) as Arrow; SourceError naming the file and pyarrow's reason."""
    import pyarrow as pa

    readers: dict[str, Callable[[Path], pa.Table]] = {"csv": _csv, "parquet": _parquet, "jsonl": _jsonl}
    try:
        return readers[fmt](path)
    except (pa.ArrowException, ValueError, OSError) as e:
        reason = (fmt == "jsonl" and _json_line_error(path)) or getattr(e, "strerror", None) or str(e)
        raise SourceError(f"{shown or path}: cannot read as {FORMAT_NAMES[fmt]}: {reason or type(e).__name__}") from e


def _csv(path: Path) -> pa.Table:
    import pyarrow as pa
    from pyarrow import csv

    # pyarrow skips a UTF-8 BOM itself; quoted fields may hold commas and newlines.
    parse = csv.ParseOptions(newlines_in_values=True)
    try:
        return csv.read_csv(path, parse_options=parse)
    except pa.ArrowInvalid:
        # Only the single-threaded reader knows the row number of a bad row ("Row #3: ...").
        return csv.read_csv(path, parse_options=parse, read_options=csv.ReadOptions(use_threads=False))


def _parquet(path: Path) -> pa.Table:
    from pyarrow import parquet

    return parquet.read_table(path)


def _jsonl(path: Path) -> pa.Table:
    from pyarrow import json

    return json.read_json(path)  # pyarrow skips a UTF-8 BOM itself


def _json_line_error(path: Path) -> str | None:
    """The first line that is not a JSON object, with its 1-based number (pyarrow counts rows from 0 per block)."""
    import json

    try:
        with path.open(encoding="utf-8-sig") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError as e:
                    return f"line {number}: {getattr(e, 'msg', e)}"
                if not isinstance(value, dict):
                    return f"line {number}: not a JSON object (JSON lines hold one object per line)"
    except (OSError, UnicodeDecodeError) as e:
        return str(e)
    return None
