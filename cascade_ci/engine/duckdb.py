"""The embedded engine: dbt-duckdb over a scratch DuckDB file, loaded from and published to a branch.

`prepare` copies the branch's raw tables (Arrow, via pyiceberg) into the DuckDB file; dbt builds the
marts there; `publish` writes each mart back onto the branch as an Iceberg table, evolving its schema
to match the model (so the schema gate sees a model's breaking change as one).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from cascade_ci.catalog.writes import replace_table
from cascade_ci.engine.base import DbtTarget

if TYPE_CHECKING:
    import pyarrow as pa

    from cascade_ci.catalog.base import BranchCatalog


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quoted(name: str) -> str:
    """`schema.table` -> `"schema"."table"`, refusing anything but plain identifiers."""
    parts = name.split(".")
    if len(parts) != 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        raise ValueError(f"not a plain schema.table name: {name!r}")
    return ".".join(f'"{part}"' for part in parts)


def _connect(path: Path, read_only: bool = False) -> object:
    import duckdb

    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("SET TimeZone = 'UTC'")
    return con


class DuckDbEngine:
    """dbt-duckdb on a DuckDB file under `work_dir` (kept between runs so dbt can parse partially)."""

    name = "duckdb"

    def __init__(self, catalog: BranchCatalog, work_dir: Path, threads: int = 2) -> None:
        self.catalog = catalog
        self.work_dir = Path(work_dir)
        self.path = self.work_dir / "cascade.duckdb"
        self.threads = threads

    def prepare(self, branch: str, sources: dict[str, pa.Schema]) -> DbtTarget:
        """Load the branch's raw tables into a fresh DuckDB file (a table not on the branch comes in empty)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        tables = self.catalog.tables(branch)
        con = _connect(self.path)
        try:
            for name, schema in sources.items():
                target = quoted(name)
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {target.split('.')[0]}")
                rows = tables.load_table(name).scan().to_arrow() if tables.table_exists(name) else schema.empty_table()
                con.register("incoming", rows)
                con.execute(f"CREATE TABLE {target} AS SELECT * FROM incoming")  # noqa: S608 (quoted identifier)
                con.unregister("incoming")
        finally:
            con.close()
        output = {
            "type": "duckdb",
            "path": str(self.path),
            "threads": self.threads,
            "keep_open": False,
            "settings": {"TimeZone": "UTC"},
        }
        return DbtTarget(output=output)

    def publish(self, branch: str, models: list[str]) -> dict[str, int]:
        """Write each built model onto the branch, replacing the table's rows."""
        con = _connect(self.path, read_only=True)
        try:
            built = {name: con.sql(f"SELECT * FROM {quoted(name)}").to_arrow_table() for name in models}  # noqa: S608
        finally:
            con.close()
        tables = self.catalog.tables(branch)
        for name, rows in built.items():
            replace_table(tables, name, rows)
        return {name: rows.num_rows for name, rows in built.items()}

    def close(self) -> None:
        """Nothing is held open between calls."""
