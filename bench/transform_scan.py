"""Embedded transform cost against the size of a raw table the model reads one day of.

Two embedded catalogs, each with one time-ordered table `raw.events` on main (id, ts, value and a
96-character random `pad`; one row every 10 s, so a day is the same 8,640 rows at every size; written
in the same number of appends, so both have the same number of snapshots, manifests and data files):
~10 MB and ~1 GB of Parquet. A real dbt project (written to a temp folder: profile `cascade`, source
`raw.events`, one table model selecting the middle day) runs through the embedded engine, as the
transform stage runs it: `DuckDbEngine.prepare` -> dbt in-process (`dbt run`) -> `publish`, on one
branch (so from the second run on, the model's previous output is on the branch too). The two sizes'
runs are interleaved, after one untimed warm-up each (dbt's import and first parse).

Baseline: what `prepare` did before the lazy views, copying the table whole into a DuckDB file.

Usage: python bench/transform_scan.py [--smoke] [--repeat 5] [--small-mb 10] [--large-mb 1000] [--work DIR]
  --smoke: ~0.2 MB vs ~2 MB, one run, no baseline (a smoke test; the ratio means little there).
  --work:  keep the catalogs in DIR and reuse them when their size matches (the 1 GB build takes a while).
Prints one JSON line per size and a summary line with the ratio.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa
import pyarrow.compute as pc

from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.engine.base import DbtTarget, Model
from cascade_ci.engine.duckdb import DuckDbEngine

TABLE = "raw.events"
MODEL = "marts.day_events"
BRANCH = "bench/transform"
START = datetime(2024, 1, 1)
STEP_S = 10  # one row every 10 s: 8,640 rows a day
ROWS_PER_DAY = 86_400 // STEP_S
PAD = 96  # characters of base64 (random: zstd cannot shrink it much)
APPENDS = 10
BATCH = 500_000  # rows generated and written per Arrow batch

DBT_PROJECT = """\
name: transform_scan
version: "1.0"
config-version: 2
profile: cascade
model-paths: ["models"]
models:
  transform_scan:
    +materialized: table
"""
SOURCES = """\
version: 2
sources:
  - name: raw
    schema: raw
    tables:
      - name: events
"""
DAY_MODEL = """\
select *
from {{ source('raw', 'events') }}
where ts >= cast('{{ var("day") }}' as timestamp)
  and ts < cast('{{ var("day") }}' as timestamp) + interval 1 day
"""


def events(first: int, rows: int) -> pa.Table:
    """Rows `first` .. `first + rows - 1`: ids in order, ts every STEP_S seconds from START."""
    ids = pa.array(range(first, first + rows), pa.int64())
    start_us = int((START - datetime(1970, 1, 1)).total_seconds() * 1_000_000)
    ts = pc.add(pc.multiply(ids, STEP_S * 1_000_000), start_us).cast(pa.timestamp("us"))
    text = base64.b64encode(os.urandom(rows * PAD * 3 // 4))
    offsets = pa.array(range(0, (rows + 1) * PAD, PAD), pa.int32())
    pad = pa.StringArray.from_buffers(rows, offsets.buffers()[1], pa.py_buffer(text))
    return pa.table({"id": ids, "ts": ts, "value": pc.random(rows), "pad": pad})


def data_bytes(catalog: LocalBranchCatalog, ref: str) -> int:
    return sum(task.file.file_size_in_bytes for task in catalog.tables(ref).load_table(TABLE).scan().plan_files())


def build(home: Path, target_bytes: int) -> tuple[LocalBranchCatalog, float]:
    """A catalog whose main holds TABLE with about `target_bytes` of Parquet (reused if already built)."""
    marker = home / "built.json"
    if marker.is_file() and json.loads(marker.read_text())["target_bytes"] == target_bytes:
        return LocalBranchCatalog(home), json.loads(marker.read_text())["build_s"]
    shutil.rmtree(home, ignore_errors=True)
    catalog = LocalBranchCatalog(home)
    tables = catalog.tables("main")
    tables.create_namespace("raw")
    table = tables.create_table(TABLE, events(0, 1).schema)
    probe = events(0, 50_000)
    table.append(probe)  # measure the bytes a row takes on disk, then start over
    bytes_per_row = data_bytes(catalog, "main") / probe.num_rows
    tables.drop_table(TABLE)
    table = tables.create_table(TABLE, probe.schema)
    rows = max(APPENDS, int(target_bytes / bytes_per_row))
    per_append = rows // APPENDS
    started = time.perf_counter()
    for i in range(APPENDS):
        first = i * per_append
        batches = [
            events(first + at, min(BATCH, per_append - at)).to_batches()[0] for at in range(0, per_append, BATCH)
        ]
        table.append(pa.Table.from_batches(batches))
        table = tables.load_table(TABLE)
    build_s = time.perf_counter() - started
    marker.write_text(json.dumps({"target_bytes": target_bytes, "build_s": build_s}))
    return catalog, build_s


def write_project(folder: Path) -> Path:
    (folder / "models").mkdir(parents=True, exist_ok=True)
    (folder / "dbt_project.yml").write_text(DBT_PROJECT)
    (folder / "models" / "sources.yml").write_text(SOURCES)
    (folder / "models" / "day_events.sql").write_text(DAY_MODEL)
    return folder


def run_dbt(project: Path, target: DbtTarget, work_dir: Path, day: datetime) -> None:
    """`dbt run` in-process, as the transform stage invokes it (profile `cascade`, offline, quiet)."""
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from dbt.cli.main import dbtRunner

    profiles = work_dir / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    output = {**target.output, "schema": "marts"}
    (profiles / "profiles.yml").write_text(
        json.dumps({"cascade": {"target": "branch", "outputs": {"branch": output}}}), encoding="utf-8"
    )
    command = [
        "run",
        "--project-dir", str(project),
        "--profiles-dir", str(profiles),
        "--target-path", str(work_dir / "target"),
        "--log-path", str(work_dir / "logs"),
        "--log-level", "none",
        "--no-use-colors",
        "--no-send-anonymous-usage-stats",
        "--vars", json.dumps({"day": day.isoformat(sep=" ")}),
    ]  # fmt: skip
    with contextlib.redirect_stdout(sys.stderr):
        result = dbtRunner().invoke(command)
    if result.exception is not None or not result.success:
        raise RuntimeError(f"dbt run failed: {result.exception or result.result}")


def transform(engine: DuckDbEngine, project: Path, day: datetime, expected: int) -> dict[str, float]:
    """One embedded transform: prepare, dbt run, publish (the model must hold `expected` rows); seconds for each."""
    t0 = time.perf_counter()
    target = engine.prepare(BRANCH)
    t1 = time.perf_counter()
    run_dbt(project, target, engine.work_dir, day)
    t2 = time.perf_counter()
    rows = engine.publish(BRANCH, [Model(MODEL, "table")])
    t3 = time.perf_counter()
    if rows[MODEL] != expected:
        raise RuntimeError(f"the model holds {rows[MODEL]} rows, not the day's {expected}")
    return {"prepare_s": t1 - t0, "dbt_run_s": t2 - t1, "publish_s": t3 - t2, "total_s": t3 - t0}


def copy_baseline(catalog: LocalBranchCatalog, folder: Path) -> float:
    """The old `prepare`: read the whole table through pyiceberg and write it into a DuckDB file."""
    from cascade_ci.engine.duckdb import _connect, _copy

    path = folder / "copy.duckdb"
    path.unlink(missing_ok=True)
    started = time.perf_counter()
    con = _connect(path)
    try:
        con.execute('CREATE SCHEMA "raw"')
        _copy(con, '"raw"."events"', catalog.tables(BRANCH).load_table(TABLE).scan().to_arrow_batch_reader())
    finally:
        con.close()
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--small-mb", type=float, default=10)
    parser.add_argument("--large-mb", type=float, default=1000)
    parser.add_argument("--copy-repeat", type=int, default=1)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.smoke:
        args.small_mb, args.large_mb, args.repeat, args.copy_repeat = 0.2, 2, 1, 0
    work = args.work or Path(tempfile.mkdtemp(prefix="cascade-transform-scan-"))
    try:
        project = write_project(work / "project")
        sizes = {"small": args.small_mb, "large": args.large_mb}
        setups = {}
        for label, megabytes in sizes.items():
            catalog, build_s = build(work / f"{label}-{megabytes:g}mb", int(megabytes * 1e6))
            if BRANCH in {ref.name for ref in catalog.list_refs()}:
                catalog.delete_ref(BRANCH, catalog.get_ref(BRANCH).hash)
            catalog.create_ref(BRANCH, "main")
            size = data_bytes(catalog, "main")
            rows = catalog.tables("main").load_table(TABLE).current_snapshot().summary["total-records"]
            middle = int(rows) // ROWS_PER_DAY // 2
            day = START + timedelta(days=middle)
            expected = min(ROWS_PER_DAY, int(rows) - middle * ROWS_PER_DAY)  # a whole day, but in --smoke
            engine = DuckDbEngine(catalog, work / f"{label}-dbt")
            transform(engine, project, day, expected)  # warm-up: dbt's import and first parse, the first publish
            setups[label] = (catalog, engine, day, expected, size, build_s, int(rows))
        samples: dict[str, list[dict[str, float]]] = {label: [] for label in sizes}
        for _ in range(args.repeat):
            for label in sizes:
                _, engine, day, expected, *_ = setups[label]
                samples[label].append(transform(engine, project, day, expected))
        lines = []
        for label, (catalog, _, day, expected, size, build_s, rows) in setups.items():
            copies = [copy_baseline(catalog, work) for _ in range(args.copy_repeat)]
            runs = samples[label]
            line = {
                "size": label,
                "data_bytes": size,
                "data_mb": round(size / 1e6, 1),
                "rows": rows,
                "files": APPENDS,
                "build_s": round(build_s, 1),
                "day": day.date().isoformat(),
                "model_rows": expected,
                "repeat": len(runs),
                "median": {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]},
                "max_total_s": round(max(run["total_s"] for run in runs), 3),
                "copy_baseline_s": round(statistics.median(copies), 2) if copies else None,
            }
            lines.append(line)
            print(json.dumps(line), flush=True)
        small, large = (line["median"]["total_s"] for line in lines)
        summary = {
            "large_vs_small_total": round(large / small, 3),
            "target": "<= 1.5",
            "met": large / small <= 1.5,
            "smoke": args.smoke,  # at smoke sizes the ratio is noise: dbt's fixed cost is all there is
        }
        print(json.dumps(summary), flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
