"""Latency of the ref operations a pipeline run makes on Nessie: branch create, promote, and a full run.

Usage: CASCADE_STACK_ENV=services/.run/stack.env python bench/nessie_latency.py [--repeat 20] [--run]
(start the services first: `bash services/stack.sh start`). Prints JSON lines (median and p90 ms). The ref
operations need no project; --run runs the glucose + GitHub example (examples/glucose-github/cascade.toml).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "glucose-github" / "cascade.toml"


def load_stack_env() -> None:
    path = Path(os.environ.get("CASCADE_STACK_ENV", "services/.run/stack.env"))
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            os.environ[key.strip()] = value.strip()
    os.environ["CASCADE_CATALOG"] = "nessie"


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    return json.dumps({
        "operation": name, "n": len(samples), "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
    })  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--run", action="store_true", help="also time `cascade run` end to end (dbt-trino)")
    args = parser.parse_args()
    load_stack_env()
    from cascade_ci.catalog import open_catalog
    from cascade_ci.config import load_settings
    from cascade_ci.stages.branch import create_run_branch
    from cascade_ci.stages.promote import promote
    from cascade_ci.stages.validate import validate

    settings = load_settings(gates="schema")
    catalog = open_catalog(settings)
    created, promoted = [], []
    for _ in range(args.repeat):
        run_id = f"bench-{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        create_run_branch(settings, catalog, run_id)
        created.append(time.perf_counter() - started)
        validate(settings, catalog, run_id)
        started = time.perf_counter()
        promote(settings, catalog, run_id)
        promoted.append(time.perf_counter() - started)
    print(summary("branch (create ref + marker commit)", created))
    print(summary("promote (verdict check, provenance commit, fast-forward, tag)", promoted))
    if args.run:
        started = time.perf_counter()
        exe = Path(sys.executable).parent / "cascade"
        command = [str(exe), "--config", str(EXAMPLE), "run", "--json"]
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
        wall = time.perf_counter() - started
        stages = json.loads(done.stdout)["stage_seconds"] if done.returncode == 0 else done.stderr[-500:]
        print(
            json.dumps({"operation": "cascade run (Nessie + Trino + S3)", "wall_s": round(wall, 1), "stages": stages})
        )


if __name__ == "__main__":
    main()
