"""Zero-copy branching: branch + small write + promotion cost against the size of the data on main.

Two embedded catalogs, one holding ~10 MB and one ~1 GB of Iceberg table data on main (random float64
columns, which zstd cannot shrink, written in the same number of appends so both tables have the same
number of snapshots, manifests and data files: only the bytes differ). On each, timed `--repeat` times:

    create_ref(branch, main) -> a 10-row append on the branch -> fast_forward(main, branch head)

(samples of the two sizes interleaved) and, as the baseline that PR-schema approaches pay, "copy the
table into a staging schema": read the whole table from main and write it into another table
(`staging.<name>`), timed at both sizes.

Usage: python bench/zero_copy.py [--small] [--repeat 31] [--copy-repeat 2] [--nessie]
  --small: ~1 MB vs ~50 MB (a smoke test; the ratio means little at that size).
Prints one JSON line per size and a summary line with the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa
import pyarrow.compute as pc

from cascade_ci.catalog.base import BranchCatalog
from cascade_ci.catalog.local import LocalBranchCatalog

TABLE = "bench.wide"
NESSIE = False  # --nessie: the same on a real Nessie + S3 (moto), CASCADE_STACK_ENV naming the stack
COLUMNS = 16  # float64 columns: 128 bytes per row
APPENDS = 10  # same number of appends (snapshots, data files) at every size


def wide_rows(rows: int, seed: int) -> pa.Table:
    data = {f"c{i:02d}": pc.random(rows, initializer=seed * 1000 + i) for i in range(COLUMNS)}
    data["id"] = pa.array(range(seed * rows, (seed + 1) * rows), pa.int64())
    return pa.table(data)


def open_store(home: Path, trunk: str) -> BranchCatalog:
    """The embedded catalog in `home`, or (--nessie) a fresh trunk branch on the Nessie of CASCADE_STACK_ENV."""
    if not NESSIE:
        return LocalBranchCatalog(home)
    from cascade_ci.catalog.nessie import NessieBranchCatalog
    from cascade_ci.config import load_settings

    store = NessieBranchCatalog.from_settings(load_settings(main_branch=trunk))
    root = store._call("GET", "/config")["noAncestorHash"]
    store.create_ref(trunk, root)
    store.commit_meta(trunk, "initialize catalog", {}, root)
    return store


def data_bytes(catalog: BranchCatalog, ref: str, table: str) -> int:
    scan = catalog.tables(ref).load_table(table).scan()
    return sum(task.file.file_size_in_bytes for task in scan.plan_files())


def build(home: Path, target_bytes: int, trunk: str) -> tuple[BranchCatalog, float, int]:
    """A catalog whose trunk holds TABLE with about `target_bytes` of Parquet; returns (catalog, seconds, bytes)."""
    catalog = open_store(home, trunk)
    tables = catalog.tables(trunk)
    tables.create_namespace("bench")
    tables.create_namespace("staging")
    rows_per_append = max(1, target_bytes // (COLUMNS * 8 + 8) // APPENDS)
    table = tables.create_table(TABLE, wide_rows(1, 0).schema)
    started = time.perf_counter()
    for i in range(APPENDS):
        table.append(wide_rows(rows_per_append, i))
        table = tables.load_table(TABLE)
    return catalog, time.perf_counter() - started, data_bytes(catalog, trunk, TABLE)


def branch_write_promote(catalog: BranchCatalog, trunk: str, name: str, tiny: pa.Table) -> dict[str, float]:
    """The zero-copy path: branch from the trunk (main), one small append, fast-forward the trunk."""
    t0 = time.perf_counter()
    main = catalog.get_ref(trunk)
    catalog.create_ref(name, main.hash)
    t1 = time.perf_counter()
    catalog.tables(name).load_table(TABLE).append(tiny)
    t2 = time.perf_counter()
    head = catalog.get_ref(name)
    catalog.fast_forward(trunk, head.hash, expected_target_hash=main.hash)
    t3 = time.perf_counter()
    return {"branch_s": t1 - t0, "write_s": t2 - t1, "promote_s": t3 - t2, "total_s": t3 - t0}


def copy_to_staging(catalog: BranchCatalog, trunk: str, name: str) -> float:
    """The baseline: materialise main's table into a staging table (read everything, write everything)."""
    tables = catalog.tables(trunk)
    started = time.perf_counter()
    rows = tables.load_table(TABLE).scan().to_arrow()
    tables.create_table(f"staging.{name}", rows.schema).append(rows)
    elapsed = time.perf_counter() - started
    del rows
    tables.drop_table(f"staging.{name}")
    return elapsed


def summarize(label: str, size: int, build_s: float, samples: list[dict[str, float]], copies: list[float]) -> dict:
    median = {key: round(statistics.median(s[key] for s in samples), 4) for key in samples[0]}
    return {
        "size": label,
        "data_bytes": size,
        "data_mb": round(size / 1e6, 1),
        "build_s": round(build_s, 1),
        "repeat": len(samples),
        "zero_copy_median": median,
        "zero_copy_p90_total_s": round(sorted(s["total_s"] for s in samples)[int(0.9 * (len(samples) - 1))], 4),
        "copy_repeat": len(copies),
        "copy_median_s": round(statistics.median(copies), 3),
    }


def measure(sizes: tuple[tuple[str, int], ...], repeat: int, copy_repeat: int) -> list[dict]:
    """Build every size first, then interleave the samples (A B A B ...) so drift hits both alike."""
    homes = [Path(tempfile.mkdtemp(prefix=f"zero-copy-{label}-")) for label, _ in sizes]
    try:
        trunks = [f"zc{os.getpid()}{label.lower()}/main" if NESSIE else "main" for label, _ in sizes]
        built = [build(home, target, trunk) for home, (_, target), trunk in zip(homes, sizes, trunks, strict=True)]
        tiny = wide_rows(10, 10_000_000)
        for (catalog, _, _), trunk in zip(built, trunks, strict=True):
            branch_write_promote(catalog, trunk, f"{trunk}-warm-up", tiny)  # first-call imports and caches
        samples: list[list[dict[str, float]]] = [[] for _ in sizes]
        for i in range(repeat):
            for k, (catalog, _, _) in enumerate(built):
                samples[k].append(branch_write_promote(catalog, trunks[k], f"{trunks[k]}-b{i}", tiny))
        copies: list[list[float]] = [[] for _ in sizes]
        for i in range(copy_repeat):
            for k, (catalog, _, _) in enumerate(built):
                copies[k].append(copy_to_staging(catalog, trunks[k], f"copy{i}"))
        for catalog, _, _ in built:
            catalog.close()
    finally:
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)
    return [
        summarize(label, size, build_s, samples[k], copies[k])
        for k, ((label, _), (_, build_s, size)) in enumerate(zip(sizes, built, strict=True))
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true", help="~1 MB vs ~50 MB, a quick smoke run")
    parser.add_argument("--repeat", type=int, default=31)
    parser.add_argument("--copy-repeat", type=int, default=2)
    parser.add_argument("--nessie", action="store_true", help="on Nessie + S3 (CASCADE_STACK_ENV names the stack)")
    args = parser.parse_args()
    if args.nessie:
        global NESSIE
        NESSIE = True
        from nessie_latency import load_stack_env

        load_stack_env()
    sizes = (("1MB", 1_000_000), ("50MB", 50_000_000)) if args.small else (("10MB", 10_000_000), ("1GB", 1_000_000_000))
    results = measure(sizes, args.repeat, args.copy_repeat)
    for result in results:
        print(json.dumps(result), flush=True)
    small, large = results
    zc_ratio = large["zero_copy_median"]["total_s"] / small["zero_copy_median"]["total_s"]
    print(
        json.dumps(
            {
                "summary": "zero_copy",
                "sizes": [small["size"], large["size"]],
                "bytes_ratio": round(large["data_bytes"] / small["data_bytes"], 1),
                "zero_copy_total_s": [small["zero_copy_median"]["total_s"], large["zero_copy_median"]["total_s"]],
                "zero_copy_ratio_large_vs_small": round(zc_ratio, 3),
                "target_ratio": 1.2,
                "target_met": zc_ratio <= 1.2,
                "copy_s": [small["copy_median_s"], large["copy_median_s"]],
                "copy_ratio_large_vs_small": round(large["copy_median_s"] / small["copy_median_s"], 1),
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "copy_vs_zero_copy_at_large": round(large["copy_median_s"] / large["zero_copy_median"]["total_s"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
