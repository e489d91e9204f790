"""Setup time of a workflow job: installing cascade-ci with pip (what actions/setup did) vs uv from uv.lock
(what it does now, `actions/setup/install.sh`), each with an empty ("cold") and a filled ("warm") download
cache, into a fresh virtual environment each time, as a new runner would.

Usage: python bench/setup_install.py [--runs N] [--methods pip,uv] [--smoke]
Prints one JSON line per (method, cache) with the median, min and max seconds. The pip case installs the
same package set (`pip install '.[trino,dlt]'`, resolving afresh); both install the project non-editable.
--smoke installs a two-package project offline-friendly instead (fast; for the test suite).
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

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "actions" / "setup" / "install.sh"
SMOKE_PROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "smoke"
version = "0"
dependencies = ["click>=8"]

[project.optional-dependencies]
trino = []
dlt = []
dev = []

[tool.setuptools]
py-modules = []
"""


def uv_on_path(work: Path) -> dict[str, str]:
    """An environment whose PATH has uv (installed once, like the action's first run on a runner)."""
    tools = work / "uv-tool"
    if not (tools / "bin" / "uv").exists():
        subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True)
        subprocess.run([tools / "bin" / "pip", "install", "--quiet", "uv==0.13.9"], check=True)
    return {**os.environ, "PATH": f"{tools / 'bin'}:{os.environ['PATH']}"}


def install(method: str, root: Path, work: Path, cache: Path, env: dict[str, str]) -> float:
    """Seconds to install `root` into a new venv with `method`, using download cache `cache`."""
    venv = Path(tempfile.mkdtemp(dir=work, prefix="venv-"))
    shutil.rmtree(venv)
    started = time.perf_counter()
    if method == "uv":
        run_env = {**env, "UV_CACHE_DIR": str(cache)}
        subprocess.run(["bash", str(INSTALL), str(root), str(venv), sys.executable], env=run_env, check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "--cache-dir"]
        subprocess.run([*pip, str(cache), f"{root}[trino,dlt]"], env=env, check=True)
    elapsed = time.perf_counter() - started
    shutil.rmtree(venv, ignore_errors=True)
    return elapsed


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(samples), 2),
        "min_s": round(min(samples), 2),
        "max_s": round(max(samples), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--methods", default="pip,uv")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="setup-bench-") as tmp:
        work = Path(tmp)
        root = REPO
        if args.smoke:
            root = work / "smoke"
            root.mkdir()
            (root / "pyproject.toml").write_text(SMOKE_PROJECT)
            env = uv_on_path(work)
            subprocess.run(["uv", "lock", "--project", str(root), "--quiet"], env=env, check=True)
        env = uv_on_path(work)
        for method in args.methods.split(","):
            cold, warm = [], []
            for run in range(args.runs):
                cache = work / f"cache-{method}-{run}"
                cold.append(install(method, root, work, cache, env))  # empty cache
                warm.append(install(method, root, work, cache, env))  # the cache the cold run filled
                shutil.rmtree(cache, ignore_errors=True)
            for label, samples in (("cold", cold), ("warm", warm)):
                line = {"method": method, "cache": label, "runs": args.runs, **summary(samples)}
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
