"""N concurrent runs appending to one table, each promoted with `cascade promote --update`: do they all land?

Usage: python bench/concurrent_update.py [--nessie] [--runs 1,4,16,30] [--rows 100] [--baseline 5] [--smoke]
(--nessie: CASCADE_STACK_ENV names the running stack's stack.env, as for bench/nessie_latency.py).

A minimal project (no dbt): a Python source writing each run's own ids to `raw.x`, `unique = ["id"]`, the
default gates. Every step is a real `cascade` process, as in CI. All N runs start together and run
branch -> ingest -> validate at once, all forking from the same main; once all are validated, their
promote steps (`promote --update`) queue one at a time, as the workflows' per-catalog concurrency group
makes them queue. Checked for every N (the script fails otherwise): all N land, main holds every run's
rows once, main's first-parent history has no merge commit, every `prod-*` tag of a promotion is on it,
one per promotion. Measured: `landing_s`, from all validated to the last landed (the promote jobs); the
total wall time (on one machine the N runs' own stages share its cores, where CI gives each its runner);
validation cycles per landed run (its own validate plus one per update).

Baseline (the target's yardstick): --baseline K single runs one after another, each promoting onto the
previous (no update needed), give a promote step's median; plus the wall time of one full `cascade run`.
Target: N=30 lands within 3x (30 promote steps + one full run), at most 2 validation cycles per run. As
the machine's load drifts, every N is also judged in place: its seed run is a full run, and the first
promote step in its queue needs no update (all N forked from the seed), so `target_landing_s` is
3 x (N x that step + that full run), measured under the same load as the landing.

Each N gets its own catalog: a fresh CASCADE_HOME, or on Nessie its own trunk and branch prefix (the
shared server is never reset). Prints one JSON line for the baseline and one per N.
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
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog

SOURCE = '''
import pyarrow as pa


def rows(ctx):
    """The run's own ids: `first` .. `first + count - 1`."""
    first, count = int(ctx.options["first"]), int(ctx.options["count"])
    ids = list(range(first, first + count))
    return {"x": pa.table({"id": pa.array(ids, pa.int64()), "run": [ctx.run_id] * count})}
'''
CONFIG = """
[sources.bench]
python = "bench_rows:rows"

[tables."raw.x"]
unique = ["id"]
"""


class Project:
    """The minimal project and one catalog for it; `env` is what every `cascade` process of it gets."""

    def __init__(self, nessie: bool, rows: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cascade-bench-"))
        (self.root / "bench_rows.py").write_text(SOURCE)
        (self.root / "cascade.toml").write_text(CONFIG)
        self.rows = rows
        self.nessie = nessie
        self.env = {**os.environ, "CASCADE_CONFIG": str(self.root / "cascade.toml"), "CASCADE_HOME": str(self.root)}
        if nessie:
            tag = f"b{uuid.uuid4().hex[:8]}"
            self.env.update(ICEBERG_NESSIE_REF=f"{tag}/main", CASCADE_BRANCH_PREFIX=f"{tag}/run-")
            catalog = self.catalog()
            root = catalog._call("GET", "/config")["noAncestorHash"]
            catalog.create_ref(catalog.default_branch, root)
            catalog.commit_meta(catalog.default_branch, "initialize catalog", {}, root)

    def catalog(self) -> BranchCatalog:
        from cascade_ci.catalog import open_catalog
        from cascade_ci.config import load_settings

        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            return open_catalog(load_settings(self.env["CASCADE_CONFIG"]))
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def cascade(self, *args: str, run: str = "") -> tuple[dict, float]:
        """One `cascade` process; its JSON output and wall seconds. Fails the benchmark on exit 2."""
        env = {**self.env, "CASCADE_REPORTS_DIR": str(self.root / "reports" / run)}
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "cascade_ci", *args, "--json"], env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - started
        if done.returncode not in (0, 1):
            raise SystemExit(f"cascade {' '.join(args)} -> {done.returncode}\n{done.stderr[-3000:]}")
        return json.loads(done.stdout), seconds

    def run_until_validated(self, run: str, first: int) -> None:
        self.cascade("branch", "--run-id", run, run=run)
        rows = ("-o", f"first={first}", "-o", f"count={self.rows}")
        self.cascade("ingest", "--run-id", run, *rows, run=run)
        verdict, _ = self.cascade("validate", "--run-id", run, run=run)
        assert verdict["outcome"] == "passed", verdict

    def drop(self) -> None:
        """Delete what the benchmark made: its folder, and on Nessie its refs (the server is shared)."""
        from cascade_ci.naming import TAG_PREFIX

        if self.nessie:
            catalog = self.catalog()
            prefix = self.env["ICEBERG_NESSIE_REF"].split("/")[0] + "/"
            on_main = {commit.hash for commit in catalog.log(catalog.default_branch)}
            for ref in catalog.list_refs():
                if ref.name.startswith(prefix) or (ref.name.startswith(TAG_PREFIX) and ref.hash in on_main):
                    catalog._call("DELETE", f"/trees/{quote(ref.name, safe='/')}@{ref.hash}")
        shutil.rmtree(self.root, ignore_errors=True)

    def full_run(self, run: str, first: int) -> float:
        env_rows = ("-o", f"first={first}", "-o", f"count={self.rows}")
        outcome, seconds = self.cascade("run", "--run-id", run, *env_rows, run=run)
        assert outcome["outcome"] == "promoted", outcome
        return seconds


def baseline(nessie: bool, rows: int, runs: int) -> dict:
    """One full run, then `runs` single runs in sequence: a promote step that needs no update."""
    project = Project(nessie, rows)
    full = project.full_run("seed", 0)
    steps = []
    for i in range(runs):
        run = f"s{i}"
        project.run_until_validated(run, (i + 1) * rows)
        promoted, seconds = project.cascade("promote", "--run-id", run, run=run)
        assert promoted["action"] == "promoted" and promoted["updates"] == 0, promoted
        steps.append(seconds)
    step = statistics.median(steps)
    project.drop()
    return {
        "backend": "nessie" if nessie else "local",
        "baseline_runs": runs,
        "full_run_s": round(full, 2),
        "promote_step_median_s": round(step, 3),
        "target_wall_s_for_30": round(3 * (30 * step + full), 1),
    }


def concurrent(nessie: bool, rows: int, n: int) -> dict:
    """N runs at once, promote steps queued; every landing checked."""
    project = Project(nessie, rows)
    full = project.full_run("seed", 0)  # main holds raw.x before the runs fork
    queue = threading.Lock()  # the per-catalog concurrency group: one promote job at a time
    results: dict[str, dict] = {}
    ready: list[float] = []
    validated = threading.Barrier(n, action=lambda: ready.append(time.perf_counter()))

    def one(i: int) -> None:
        run = f"u{i:03d}"
        try:
            project.run_until_validated(run, (i + 1) * rows)
        except BaseException:
            validated.abort()  # the others stop waiting (BrokenBarrierError) instead of hanging
            raise
        validated.wait()
        with queue:
            results[run], seconds = project.cascade("promote", "--run-id", run, "--update", run=run)
        results[run]["promote_s"] = seconds

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        list(pool.map(one, range(n)))
    wall = time.perf_counter() - started

    landed = [r for r in results.values() if r.get("action") == "promoted"]
    assert len(landed) == n, [r for r in results.values() if r.get("action") != "promoted"]
    checks = check_main(project, n, [r["main_after"] for r in landed])
    project.drop()
    cycles = [1 + r["updates"] for r in landed]
    plain = [r["promote_s"] for r in landed if r["updates"] == 0]  # the first in the queue
    landing = started + wall - ready[0]
    target = 3 * (n * statistics.median(plain) + full)
    return {
        "backend": "nessie" if nessie else "local",
        "runs": n,
        "landed": len(landed),
        "wall_s": round(wall, 1),
        "landing_s": round(landing, 1),
        "target_landing_s": round(target, 1),
        "met": landing <= target and max(cycles) <= 2,
        "full_run_s": round(full, 2),
        "first_promote_s": round(statistics.median(plain), 2),
        "promote_queue_s": round(sum(r["promote_s"] for r in landed), 1),
        "promote_step_median_s": round(statistics.median(r["promote_s"] for r in landed), 2),
        "validations_per_run_max": max(cycles),
        "validations_per_run_mean": round(statistics.mean(cycles), 2),
        **checks,
    }


def check_main(project: Project, n: int, landed_heads: list[str]) -> dict:
    """Every row once, main one line, one tag per promotion on it."""
    from cascade_ci.naming import TAG_PREFIX

    catalog = project.catalog()
    main = catalog.default_branch
    ids = catalog.tables(main).load_table("raw.x").scan(selected_fields=("id",)).to_arrow()["id"].to_pylist()
    expected = list(range((n + 1) * project.rows))
    assert sorted(ids) == expected, f"{len(ids)} rows on main, {len(set(ids))} distinct; expected {len(expected)}"
    history = catalog.log(main)
    on_main = {commit.hash for commit in history}
    merges = [commit.hash for commit in history if len(commit.parents) > 1]
    assert not merges, f"merge commits on main: {merges}"
    tags = [ref for ref in catalog.list_refs(TAG_PREFIX) if ref.hash in on_main]
    assert len(tags) == n + 1, f"{len(tags)} tags on main for {n} promotions and the seed run"
    assert set(landed_heads) <= {tag.hash for tag in tags}, "a promotion without its tag"
    return {"rows_on_main": len(ids), "rows_lost_or_duplicated": 0, "merge_commits_on_main": 0, "tags": len(tags) - 1}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nessie", action="store_true", help="run on the stack CASCADE_STACK_ENV names")
    parser.add_argument("--runs", default="1,4,16,30", help="comma-separated N")
    parser.add_argument("--rows", type=int, default=100, help="rows each run appends")
    parser.add_argument("--baseline", type=int, default=5, help="sequential single runs for the baseline")
    parser.add_argument("--smoke", action="store_true", help="a quick check: N = 1, 2; 5 rows; 1 baseline run")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.rows, args.baseline = "1,2", 5, 1
    if args.nessie:
        from nessie_latency import load_stack_env  # bench/ is on sys.path: this script's folder

        load_stack_env()
    print(json.dumps(baseline(args.nessie, args.rows, args.baseline)), flush=True)
    for n in (int(part) for part in args.runs.split(",")):
        print(json.dumps(concurrent(args.nessie, args.rows, n)), flush=True)


if __name__ == "__main__":
    main()
