"""Upsert against append: what `cascade_ci.catalog.writes.upsert` costs over a plain pyiceberg append.

Rows: a 24-character string key (ordered like ObjectIds: a timestamp leads, new keys sort after old
ones), an int and a timestamp. A window is `--rows` consecutive keys. Timed, each on a table of its own,
the cases interleaved after one untimed warm-up:

    append    pyiceberg `table.append(window 0)` into an empty table (the baseline)
    empty     upsert of window 0 into an empty table
    disjoint  upsert of window 1 into a table holding window 0 (no key there yet)
    overlap   upsert of window 0.5 (half its keys in window 0) into a table holding window 0

Targets: empty and disjoint at most 1.5x the append, overlap at most 3x. `--order random` scatters the
keys (rows in no particular order; every old file spans every new key range): reported, no target.

Memory: a subprocess per case (`--memory ROWS`) upserts ROWS rows given as a generator of 100,000-row
record batches (never materialized) and reports its RSS high-water mark (`resource.getrusage`):
`stream-empty` into an empty table, `stream-overlap` into a table holding the first half of the keys
(filled by another subprocess). Target: 10x the rows at most 2x the peak. The memory runs come first:
on Linux a child's ru_maxrss starts at its parent's RSS, which the timed runs would raise; each also
reports VmHWM (/proc/self/status), its own address space's high-water mark, as a check.

Usage: python bench/upsert.py [--smoke] [--rows 1000000] [--repeat 5] [--order ordered|random] [--nessie]
       [--memory-rows 1000000] [--no-memory] [--old]
  --smoke: 20,000 rows, one repeat, memory at 20,000 vs 200,000 rows (a smoke test of the script).
  --nessie: on Nessie + S3 (CASCADE_STACK_ENV names the stack), on a trunk branch of its own, removed after.
  --old: also time the upsert this replaced (one pyiceberg overwrite filtered by an `In` of every key).
Prints JSON lines: one per case, one per memory run, a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa
import pyarrow.compute as pc

from cascade_ci.catalog.base import BranchCatalog
from cascade_ci.catalog.writes import upsert

KEYS = ("id",)
BATCH = 100_000  # rows per generated record batch
EPOCH_US = 1_700_000_000_000_000
CASES = ("append", "empty", "disjoint", "overlap")
TARGETS = {"empty": 1.5, "disjoint": 1.5, "overlap": 3.0}


def rows(start: int, count: int, order: str = "ordered", version: int = 0) -> pa.Table:
    """Rows numbered start..start+count. Keys are 24 digits: `ordered` like ObjectIds (10 of a second, 100
    rows a second, then 14 of the number), `random` led by 13 digits of a scramble of the number (an odd
    multiplier modulo 2**40: consecutive numbers land anywhere in the key space, none twice)."""
    numbers = pa.arange(start, start + count)
    if order == "random":
        lead, width = pc.bit_wise_and(pc.multiply(numbers, 2_654_435_761), 2**40 - 1), 13
    else:
        lead, width = pc.add(pc.divide(numbers, 100), EPOCH_US // 1_000_000), 10

    def digits(values: pa.Array, n: int) -> pa.Array:
        return pc.utf8_lpad(values.cast(pa.string()), n, "0")

    return pa.table(
        {
            "id": pc.binary_join_element_wise(digits(lead, width), digits(numbers, 24 - width), ""),
            "n": pc.add(numbers, version),
            "at": pc.add(numbers, EPOCH_US).cast(pa.timestamp("us")),
        }
    )


def batches(start: int, count: int) -> Iterator[pa.RecordBatch]:
    """`rows(start, count)` as record batches made one at a time."""
    for first in range(start, start + count, BATCH):
        yield from rows(first, min(BATCH, start + count - first), version=1).to_batches()


def open_store(home: Path, trunk: str | None) -> BranchCatalog:
    """The embedded catalog in `home`, or (a trunk given) a fresh trunk branch on the Nessie of CASCADE_STACK_ENV."""
    if trunk is None:
        from cascade_ci.catalog.local import LocalBranchCatalog

        return LocalBranchCatalog(home)
    from cascade_ci.catalog.nessie import NessieBranchCatalog
    from cascade_ci.config import load_settings
    from cascade_ci.errors import NotFoundError

    store = NessieBranchCatalog.from_settings(load_settings(main_branch=trunk))
    try:
        store.get_ref(trunk)
        return store  # made by an earlier step of the same run
    except NotFoundError:
        pass
    root = store._call("GET", "/config")["noAncestorHash"]
    store.create_ref(trunk, root)
    store.commit_meta(trunk, "initialize catalog", {}, root)
    return store


def old_upsert(table, window: pa.Table) -> None:
    """What upsert was before: one overwrite whose filter is an `In` of every key, over every data file."""
    from pyiceberg.expressions import In

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Delete operation did not match any records")
        table.overwrite(window, overwrite_filter=In(KEYS[0], set(window.column(KEYS[0]).to_pylist())))


def run_case(tables, case: str, name: str, n: int, order: str, old: bool) -> float:
    """Prepare a table for `case` (untimed), then time the write; checks the row count it leaves."""
    table = tables.create_table(name, rows(0, 1).schema)
    if case in ("disjoint", "overlap"):
        table.append(rows(0, n, order))
        table = tables.load_table(name)
    window = {"disjoint": n, "overlap": n // 2}.get(case, 0)
    incoming = rows(window, n, order, version=1)
    started = time.perf_counter()
    if case == "append":
        table.append(incoming)
    elif old:
        old_upsert(table, incoming)
    else:
        upsert(tables, name, incoming, KEYS)
    elapsed = time.perf_counter() - started
    expected = {"append": n, "empty": n, "disjoint": 2 * n, "overlap": n + n // 2}[case]
    assert tables.load_table(name).scan().count() == expected, (case, name)
    tables.drop_table(name)
    return elapsed


def timings(store: BranchCatalog, trunk: str, n: int, repeat: int, order: str, old: bool) -> dict[str, list[float]]:
    tables = store.tables(trunk)
    if not tables.namespace_exists("bench"):
        tables.create_namespace("bench")
    cases = list(CASES)
    for case in cases:  # warm-up: imports, first-call caches
        run_case(tables, case, f"bench.warm_{case}", min(n, 10_000), order, old)
    samples: dict[str, list[float]] = {case: [] for case in cases}
    for i in range(repeat):
        for case in cases[i % len(cases) :] + cases[: i % len(cases)]:  # rotate: drift hits every case alike
            samples[case].append(run_case(tables, case, f"bench.{case}_{i}", n, order, old))
    return samples


def memory_run(count: int, case: str, trunk: str | None, home: str) -> dict:
    """In this process: upsert `count` streamed rows; the RSS high-water mark, before and after."""
    store = open_store(Path(home), trunk)
    tables = store.tables(trunk or "main")
    if not tables.namespace_exists("bench"):
        tables.create_namespace("bench")
    name = f"bench.stream_{case}"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if case == "fill":
        written = upsert(tables, name, batches(0, count // 2), KEYS)
    else:
        written = upsert(tables, name, batches(0, count), KEYS)
    elapsed = time.perf_counter() - started
    expected = count if case != "fill" else count // 2
    assert written == expected and tables.load_table(name).scan().count() == expected
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "rows": count,
        "seconds": round(elapsed, 2),
        "rss_before_mb": before // 1024,
        "peak_rss_mb": peak // 1024,
        "vm_hwm_mb": _vm_hwm() // 1024,
    }


def _vm_hwm() -> int:
    """This address space's RSS high-water mark (KiB), which, unlike ru_maxrss, no parent's RSS can raise."""
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.exists() else []
    return next((int(line.split()[1]) for line in lines if line.startswith("VmHWM:")), 0)


def memory(count: int, case: str, nessie: bool) -> dict:
    """`memory_run` in fresh subprocesses (a table of its own; `stream-overlap` filled by another one)."""
    home = tempfile.mkdtemp(prefix="upsert-memory-")
    trunk = f"um{uuid.uuid4().hex[:8]}/main" if nessie else None
    try:
        steps = ["fill", "overlap"] if case == "stream-overlap" else ["empty"]
        for step in steps:
            args = [sys.executable, __file__, "--memory", str(count), "--memory-case", step, "--home", home]
            done = subprocess.run(args + (["--trunk", trunk] if trunk else []), capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-3000:])
            result = json.loads(done.stdout.strip().splitlines()[-1])
        return {**result, "case": case}
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if trunk:
            drop_trunk(trunk)


def drop_trunk(trunk: str) -> None:
    """Delete the run's trunk branch (through a catalog whose default branch is another one)."""
    from cascade_ci.catalog.nessie import NessieBranchCatalog
    from cascade_ci.config import load_settings

    with NessieBranchCatalog.from_settings(load_settings()) as store:
        store.delete_ref(trunk, store.get_ref(trunk).hash)


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: does the script run")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--order", choices=("ordered", "random"), default="ordered")
    parser.add_argument("--nessie", action="store_true", help="on Nessie + S3 (CASCADE_STACK_ENV names the stack)")
    parser.add_argument("--memory-rows", type=int, default=1_000_000)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--old", action="store_true", help="time the replaced upsert (overwrite with an In filter)")
    parser.add_argument("--memory", type=int, help=argparse.SUPPRESS)  # a memory subprocess: this many rows
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--trunk", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.nessie or args.trunk:
        from nessie_latency import load_stack_env

        load_stack_env()
    if args.memory:
        print(json.dumps(memory_run(args.memory, args.memory_case, args.trunk, args.home)))
        return
    if args.smoke:
        args.rows, args.repeat, args.memory_rows = 20_000, 1, 20_000
    backend = "nessie" if args.nessie else "embedded"
    # Memory first: a child's ru_maxrss starts at its parent's RSS (Linux), which the timed runs would raise.
    summary: dict = {}
    if not args.no_memory and not args.old:
        small, large = args.memory_rows, args.memory_rows * 10
        for case in ("stream-empty", "stream-overlap"):
            runs = [memory(count, case, args.nessie) for count in (small, large)]
            for run in runs:
                print(json.dumps({"backend": backend, **run}), flush=True)
            ratio = runs[1]["peak_rss_mb"] / runs[0]["peak_rss_mb"]
            summary[f"peak_rss_ratio_{case}"] = round(ratio, 2)
            summary[f"peak_rss_target_met_{case}"] = ratio <= 2
    home = Path(tempfile.mkdtemp(prefix="upsert-bench-"))
    trunk = f"ub{uuid.uuid4().hex[:8]}/main" if args.nessie else "main"
    store = open_store(home, trunk if args.nessie else None)
    try:
        samples = timings(store, trunk, args.rows, args.repeat, args.order, args.old)
    finally:
        store.close()
        shutil.rmtree(home, ignore_errors=True)
        if args.nessie:
            drop_trunk(trunk)
    medians = {case: median(values) for case, values in samples.items()}
    run = {"backend": backend, "order": args.order, "rows": args.rows, "old": args.old}
    for case, values in samples.items():
        print(json.dumps({**run, "case": case, "median_s": medians[case], "samples_s": [round(v, 3) for v in values]}))
    load = round(os.getloadavg()[0], 2)
    summary = {"summary": "upsert", **run, "repeat": args.repeat, "load_avg_1m": load, **summary}
    if "append" in medians:
        ratios = {case: round(medians[case] / medians["append"], 2) for case in TARGETS}
        summary["ratio_to_append"] = ratios
        if args.order == "ordered":
            summary["targets_met"] = {case: ratios[case] <= limit for case, limit in TARGETS.items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
