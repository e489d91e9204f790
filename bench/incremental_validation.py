"""Incremental vs full validation: a branch appends a share of rows to a large mart; time the pandera gate.

The keys are time-ordered like Nightscout's ObjectIds, so the old-vs-new uniqueness check skips
every old data file by its column bounds.

Usage: python bench/incremental_validation.py [--rows 1000000] [--append 0.01] [--repeat 3]
Prints one JSON line with the medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cascade_ci.catalog import open_catalog
from cascade_ci.config import load_settings
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.stages.validate import validate
from tests.integration.test_retries_and_incremental import readings_table

CHUNK = 1_000_000
# The mart and its pandera schema are the glucose + GitHub example's, declared in its cascade.toml.
CONFIG = Path(__file__).resolve().parents[1] / "examples" / "glucose-github" / "cascade.toml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--append", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["CASCADE_HOME"] = tempfile.mkdtemp()
    os.environ["CASCADE_REPORTS_DIR"] = tempfile.mkdtemp()
    settings = load_settings(CONFIG)
    catalog = open_catalog(settings)
    tables = catalog.tables("main")
    tables.create_namespace("marts")
    table = tables.create_table("marts.fct_glucose_readings", readings_table(range(1)).schema)
    for start in range(0, args.rows, CHUNK):  # one data file per million rows, as daily loads would leave
        table.append(readings_table(range(start, min(start + CHUNK, args.rows))))
    create_run_branch(settings, catalog, "bench")
    added = int(args.rows * args.append)
    branch = catalog.tables("pipeline/run-bench")
    branch.load_table("marts.fct_glucose_readings").append(readings_table(range(args.rows, args.rows + added)))

    def timed(full: bool) -> float:
        samples = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            verdict = validate(settings, catalog, "bench", gates=["pandera"], full=full)
            samples.append(time.perf_counter() - started)
            judged = [c for c in verdict.checks if c.table == "marts.fct_glucose_readings"]
            assert judged and all(c.passed for c in judged), verdict.to_json()
        return statistics.median(samples)

    incremental, full = timed(False), timed(True)
    print(
        json.dumps(
            {
                "rows": args.rows,
                "appended": added,
                "repeat": args.repeat,
                "incremental_s": round(incremental, 3),
                "full_s": round(full, 3),
                "ratio": round(incremental / full, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
