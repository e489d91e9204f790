"""Append rows to a table on a branch through `open_catalog().tables(branch)`, as a pipeline's writer would.

Usage: python -m tests.faults.write_rows BRANCH TABLE FIRST_ID COUNT
Rows: `id` FIRST_ID .. FIRST_ID+COUNT-1 (int64) and `run` = BRANCH (string). One Iceberg commit.
"""

from __future__ import annotations

import sys

import pyarrow as pa

from cascade_ci.catalog import open_catalog

SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("run", pa.string())])


def rows(branch: str, first: int, count: int) -> pa.Table:
    return pa.table({"id": pa.array(range(first, first + count), pa.int64()), "run": [branch] * count}, schema=SCHEMA)


def main() -> None:
    branch, table, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    catalog = open_catalog()
    catalog.tables(branch).load_table(table).append(rows(branch, first, count))
    print(catalog.get_ref(branch).hash)


if __name__ == "__main__":
    main()
