"""Ingest throughput of the glucose example's Nightscout source for a 1-year export (~105,000 readings).

A year of a Dexcom every 5 minutes (105,120 readings), as a Nightscout site's `entries` collection is
exported, in two shapes: mongoexport's JSON lines (`{"$oid"}`, `{"$numberLong"}`, one document per line)
and a JSON array as xDrip+ posts it (no `_id`: ids derived from date, type and device). Both carry what
real exports do: about 1 % meter and calibration records, 0.3 % error codes, 0.5 % repeats, and a few
unreadable records. Measured, per shape:

- parse: the source function alone (`glucose_github.sources:nightscout`: read, check every record,
  deduplicate, the site's offset per reading for `timezone=Europe/Berlin`, build the Arrow tables);
- ingest: `cascade ingest --source nightscout -o file=...` in a subprocess onto a fresh embedded
  catalog (Python start-up, config, the read, and the upsert of every row into Iceberg), and the same
  again onto the branch that already holds them (a rerun: every key replaced).

Usage: python bench/nightscout_ingest.py [--smoke] [--days 365] [--repeat 3]
  --smoke: 7 days, one run (a smoke test of the script; the figures mean little).
Prints one JSON line per shape and measure (wall and CPU seconds, medians), then a summary line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "glucose-github"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(EXAMPLE))

START = datetime(2025, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)


def readings(days: int) -> list[tuple[datetime, int]]:
    rng = random.Random(7)
    out = []
    moment = START
    for _ in range(days * 288):
        hours = moment.timestamp() / 3600
        value = 140 + 50 * math.sin(2 * math.pi * hours / 24) + 30 * math.sin(2 * math.pi * hours / 4.7)
        value = max(40, min(400, round(value + rng.gauss(0, 10))))
        if rng.random() < 0.003:
            value = rng.choice([5, 9, 10])
        out.append((moment + timedelta(seconds=rng.choice([0, 0, 1, -1])), value))
        moment += STEP
    return out


def mongoexport(path: Path, data: list[tuple[datetime, int]]) -> int:
    """A Nightscout `entries` collection as mongoexport writes it; the number of records."""
    rng = random.Random(11)
    lines = []
    for moment, value in data:
        ms = int(moment.timestamp() * 1000)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        oid = f"{ms // 1000:08x}" + hashlib.blake2b(str(ms).encode(), digest_size=8).hexdigest()
        doc = {"_id": {"$oid": oid}, "sgv": value, "date": {"$numberLong": str(ms)}, "dateString": stamp}
        doc |= {"trend": 4, "direction": "Flat", "device": "share2", "type": "sgv", "utcOffset": 60, "sysTime": stamp}
        line = json.dumps(doc, separators=(",", ":"))
        lines.append(line)
        if rng.random() < 0.005:
            lines.append(line)  # exported twice
        if rng.random() < 0.01:
            lines.append(json.dumps({"_id": {"$oid": oid[::-1]}, "type": "mbg", "mbg": value, "date": ms}))
        if rng.random() < 0.0002:
            lines.append(line[: len(line) // 2])  # cut short
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def xdrip(path: Path, data: list[tuple[datetime, int]]) -> int:
    """The same readings as xDrip+ uploads them (a JSON array, local dateString, no _id)."""
    rng = random.Random(13)
    records = []
    for moment, value in data:
        local = moment.astimezone(datetime.now().astimezone().tzinfo)
        stamp = local.strftime("%Y-%m-%dT%H:%M:%S.000%z")
        record = {"device": "xDrip-DexcomG6", "date": int(moment.timestamp() * 1000), "dateString": stamp}
        record |= {"sgv": value, "delta": 1.5, "direction": "Flat", "type": "sgv", "filtered": value * 1000}
        record |= {"unfiltered": value * 1000 + 700, "rssi": 100, "noise": 1, "sysTime": stamp}
        records.append(record)
        if rng.random() < 0.005:
            records.append(dict(record))
        if rng.random() < 0.01:
            records.append({"device": "xDrip-DexcomG6", "type": "cal", "date": record["date"], "slope": 1000.5})
        if rng.random() < 0.0002:
            records.append(record | {"sgv": "HIGH"})
    path.write_text(json.dumps(records))
    return len(records)


def parse_seconds(path: Path, repeat: int) -> tuple[float, float, dict[str, int]]:
    """(median wall s, median CPU s, rows per table) of the source function on the file."""
    from glucose_github import sources

    from cascade_ci.sources.base import SourceContext

    ctx = SourceContext(
        "nightscout", START, START, "bench", path.parent, {"file": str(path), "timezone": "Europe/Berlin"}
    )
    times, cpu, counts = [], [], {}
    for _ in range(repeat):
        started, used = time.perf_counter(), time.process_time()
        tables = sources.nightscout(ctx)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
        counts = {name: rows.num_rows for name, rows in tables.items() if rows.num_rows}
    return statistics.median(times), statistics.median(cpu), counts


def cli_ingest(path: Path, work: Path, run: str, *, fresh: bool) -> tuple[float, float, dict[str, int]]:
    """`cascade ingest` of the file in a subprocess; (wall s, CPU s of the process, rows written per table)."""
    home = work / "home"
    if fresh and home.exists():
        shutil.rmtree(home)
    env = {**os.environ, "CASCADE_HOME": str(home), "CASCADE_REPORTS_DIR": str(work / "reports")}
    exe = shutil.which("cascade", path=str(Path(sys.executable).parent)) or "cascade"
    config = ["--config", str(work / "project" / "cascade.toml")]
    if fresh:
        made = subprocess.run([exe, *config, "branch", "--run-id", run], env=env, capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
    command = [exe, *config, "ingest", "--run-id", run, "--source", "nightscout", "--json"]
    command += ["-o", f"file={path}", "-o", "timezone=Europe/Berlin"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert done.returncode == 0, done.stderr
    return wall, cpu, {name: n for name, n in json.loads(done.stdout)["rows"].items() if n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    days, repeat = (7, 1) if args.smoke else (args.days, args.repeat)
    work = Path(tempfile.mkdtemp(prefix="nightscout-ingest-"))
    try:
        shutil.copytree(
            EXAMPLE, work / "project", ignore=shutil.ignore_patterns(".cascade", "reports", "target", "logs")
        )
        data = readings(days)
        summary: dict[str, object] = {"days": days, "readings": len(data), "smoke": args.smoke}
        for shape, write, name in (("mongoexport", mongoexport, "entries.jsonl"), ("xdrip", xdrip, "upload.json")):
            path = work / name
            records = write(path, data)
            size_mb = path.stat().st_size / 1e6
            parsed, parsed_cpu, counts = parse_seconds(path, repeat)
            line = {"shape": shape, "measure": "parse", "records": records, "file_mb": round(size_mb, 1)}
            line |= {"median_s": round(parsed, 3), "cpu_s": round(parsed_cpu, 3)}
            line |= {"records_per_s": round(records / parsed), "rows": counts}
            print(json.dumps(line), flush=True)
            fresh = [cli_ingest(path, work, f"{shape}-{i}", fresh=True) for i in range(repeat)]
            rerun = [cli_ingest(path, work, f"{shape}-{repeat - 1}", fresh=False) for _ in range(repeat)]
            for measure, runs in (("cli_ingest", fresh), ("cli_ingest_rerun", rerun)):
                wall = statistics.median(w for w, _, _ in runs)
                line = {"shape": shape, "measure": measure, "records": records, "median_s": round(wall, 3)}
                line |= {"cpu_s": round(statistics.median(c for _, c, _ in runs), 3)}
                line |= {"records_per_s": round(records / wall), "rows": runs[-1][2]}
                print(json.dumps(line), flush=True)
            summary[f"{shape}_parse_s"] = round(parsed, 3)
            summary[f"{shape}_cli_ingest_s"] = round(statistics.median(w for w, _, _ in fresh), 3)
        print(json.dumps(summary))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
