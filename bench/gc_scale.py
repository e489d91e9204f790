"""GC at scale: `collect_garbage` over 1,000 and 10,000 pipeline branches on the embedded catalog.

Set-up (not timed): branches are made with the real branch stage (`create_run_branch`) on a catalog
with an injected clock, so half of them are 30 days old (expired for every status) and half 1 day old
(kept). A third carry a stored verdict (passed or blocked, ~20 checks each, like a real four-gate
verdict), the rest are unvalidated. The set-up connection runs with `PRAGMA synchronous=OFF` to
make it quick; GC is then timed on a fresh catalog opened with the product's settings, as `cascade gc`
opens it (without the CLI's start-up, see bench/cli_startup.py).

A further scenario puts M commits of history on main before the branches fork (a catalog after many
promotions), because reading a branch's state walks its log and checking "promoted?" walks main's
ancestry: it shows how GC time grows with main's history.

Usage: python bench/gc_scale.py [--small] [--branches 1000,10000] [--main-commits 2000]
Prints one JSON line per scenario.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cascade_ci.branch_state import KIND, VALIDATED_HASH, VERDICT, MetaKind
from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.config import load_settings
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.stages.gc import collect_garbage
from cascade_ci.verdict import Check, GateResult, Level, Verdict

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
OLD, RECENT = NOW - timedelta(days=30), NOW - timedelta(days=1)


def verdict_json(run_id: str, branch: str, head: str, base: str, blocked: bool) -> str:
    checks = tuple(
        Check(
            "pandera",
            "marts.fct_glucose_readings",
            f"column_{i}:rule",
            Level.ERROR,
            passed=not (blocked and i == 0),
            message="passed on all 576 rows",
        )
        for i in range(20)
    )
    return Verdict(
        run_id=run_id,
        attempt=1,
        branch=branch,
        validated_hash=head,
        base_ref="main",
        base_hash=base,
        started_at=NOW.isoformat(),
        duration_s=0.4,
        gates=(GateResult("pandera", checks),),
    ).to_json()


def build(home: Path, branches: int, main_commits: int) -> dict[str, int]:
    """Make the branches; returns how many of each kind, and the set-up time."""
    os.environ["CASCADE_HOME"] = str(home)
    settings = load_settings()
    clock = [OLD - timedelta(days=1)]
    catalog = LocalBranchCatalog(settings.home, clock=lambda: clock[0])
    catalog._db.execute("PRAGMA synchronous=OFF")  # set-up only: the timed GC uses a fresh connection
    head = catalog.get_ref("main").hash
    for i in range(main_commits):
        head = catalog.commit_meta("main", f"history {i}", {"bench": str(i)}, expected_hash=head).hash
    expected = Counter()
    started = time.perf_counter()
    for i in range(branches):
        expired = i % 2 == 0
        clock[0] = OLD if expired else RECENT
        run_id = str(100_000 + i)
        made = create_run_branch(settings, catalog, run_id)
        if i % 3 == 0:
            blocked = i % 6 == 0
            catalog.commit_meta(
                made.branch,
                "verdict",
                {
                    KIND: MetaKind.VERDICT,
                    VERDICT: verdict_json(run_id, made.branch, made.head_hash, made.base_hash, blocked),
                    VALIDATED_HASH: made.head_hash,
                },
                expected_hash=made.head_hash,
            )
        expected["deleted" if expired else "kept"] += 1
    catalog._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    catalog.close()
    expected["setup_s"] = round(time.perf_counter() - started, 1)
    return dict(expected)


def run(branches: int, main_commits: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"gc-{branches}-"))
    try:
        expected = build(home, branches, main_commits)
        settings = load_settings()
        catalog = LocalBranchCatalog(settings.home)  # as `cascade gc` opens it
        started = time.perf_counter()
        decisions = collect_garbage(settings, catalog, NOW)
        wall = time.perf_counter() - started
        actions = Counter(d.action for d in decisions)
        statuses = Counter(d.status for d in decisions)
        left = len(catalog.list_refs(settings.branch_prefix))
        catalog.close()
        db_mb = round((home / "catalog.db").stat().st_size / 1e6, 1)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert actions["deleted"] == expected["deleted"] and actions["kept"] == expected["kept"], (actions, expected)
    assert left == expected["kept"], left
    return {
        "branches": branches,
        "main_commits": main_commits,
        "setup_s": expected["setup_s"],
        "catalog_db_mb": db_mb,
        "gc_wall_s": round(wall, 2),
        "per_branch_ms": round(1000 * wall / branches, 3),
        "deleted": actions["deleted"],
        "kept": actions["kept"],
        "statuses": dict(statuses),
        "target_s": 60 if branches >= 10_000 else None,
        "target_met": (wall < 60) if branches >= 10_000 else None,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true", help="200 and 1,000 branches; 200 main commits")
    parser.add_argument("--branches", default=None, help="comma-separated branch counts (default 1000,10000)")
    parser.add_argument("--main-commits", type=int, default=None, help="history on main for the extra scenario")
    parser.add_argument("--history-branches", type=int, default=1000, help="branches in the extra scenario")
    args = parser.parse_args()
    counts = (
        [int(c) for c in args.branches.split(",")] if args.branches else ([200, 1000] if args.small else [1000, 10_000])
    )
    main_commits = args.main_commits if args.main_commits is not None else (200 if args.small else 2000)
    history_branches = min(args.history_branches, 200) if args.small else args.history_branches
    for branches in counts:
        print(json.dumps(run(branches, 0)), flush=True)
    if main_commits:
        print(json.dumps(run(history_branches, main_commits)), flush=True)


if __name__ == "__main__":
    main()
