"""CLI start-up: wall time of `cascade --help` and of a no-op stage (`cascade refs` on a fresh home).

Usage: python bench/cli_startup.py [--runs N]. Prints one JSON line per command (median, min, max seconds).
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


def cascade_exe() -> str:
    found = shutil.which("cascade", path=str(Path(sys.executable).parent))
    return found or "cascade"


def timed(cmd: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return {
        "median_s": round(statistics.median(samples), 3),
        "min_s": round(min(samples), 3),
        "max_s": round(max(samples), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    home = tempfile.mkdtemp()
    env = {**os.environ, "CASCADE_HOME": home}
    exe = cascade_exe()
    subprocess.run([exe, "refs"], env=env, check=True, capture_output=True)  # create the catalog once
    for name, cmd in (("cascade --help", [exe, "--help"]), ("cascade refs (no-op stage)", [exe, "refs"])):
        print(json.dumps({"command": name, "runs": args.runs, **timed(cmd, env, args.runs)}))
    shutil.rmtree(home)


if __name__ == "__main__":
    main()
