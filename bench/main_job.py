"""The main job end to end on the embedded default (`cascade run`), broken down per stage.

Usage: python bench/main_job.py [--runs 3] [--config PATH]. Runs the project PATH names (default: the
glucose + GitHub example, examples/glucose-github/cascade.toml). Each run uses a fresh CASCADE_HOME (a cold
start, as on a fresh runner) except where --warm is given (one home, so dbt's partial parse is reused).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "glucose-github" / "cascade.toml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warm", action="store_true")
    parser.add_argument("--config", type=Path, default=EXAMPLE, help="the project's cascade.toml")
    args = parser.parse_args()
    exe = shutil.which("cascade", path=str(Path(sys.executable).parent)) or "cascade"
    shared_home = tempfile.mkdtemp()
    walls, stages = [], []
    for i in range(args.runs):
        home = shared_home if args.warm else tempfile.mkdtemp()
        env = {**os.environ, "CASCADE_HOME": home, "CASCADE_REPORTS_DIR": os.path.join(home, "reports")}
        started = time.perf_counter()
        command = [exe, "--config", str(args.config), "run", "--run-id", f"bench-{i}", "--json"]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
        assert done.returncode == 0, done.stderr
        stages.append(json.loads(done.stdout)["stage_seconds"])
    per_stage = {name: round(statistics.median(s[name] for s in stages), 2) for name in stages[0]}
    print(
        json.dumps(
            {
                "runs": args.runs,
                "warm": args.warm,
                "wall_median_s": round(statistics.median(walls), 2),
                "wall_max_s": round(max(walls), 2),
                "stage_median_s": per_stage,
            }
        )
    )


if __name__ == "__main__":
    main()
