"""GC at scale on Nessie: `collect_garbage` over N pipeline branches of a real Nessie server.

Set-up (not timed, 8 threads): N branches made with the branch stage; half carry a passing verdict.
Nessie's commit times cannot be set, so GC judges ages as of 10 days from now: passed branches
(7-day retention) are deleted, unvalidated ones (14 days) kept.

Usage: CASCADE_STACK_ENV=services/.run/stack.env python bench/nessie_gc_scale.py [--branches 10000]
(start the services first: `bash services/stack.sh start`). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nessie_latency import load_stack_env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--branches", type=int, default=10_000)
    args = parser.parse_args()
    load_stack_env()
    from cascade_ci.branch_state import KIND, VALIDATED_HASH, VERDICT, MetaKind
    from cascade_ci.catalog import open_catalog
    from cascade_ci.config import load_settings
    from cascade_ci.stages.branch import create_run_branch
    from cascade_ci.stages.gc import collect_garbage
    from cascade_ci.verdict import GateResult, Verdict

    prefix = f"bench{uuid.uuid4().hex[:6]}/run-"
    settings = load_settings(branch_prefix=prefix)
    catalog = open_catalog(settings)

    def make(i: int) -> None:
        made = create_run_branch(settings, catalog, str(i))
        if i % 2 == 0:
            verdict = Verdict(
                run_id=str(i), attempt=1, branch=made.branch, validated_hash=made.head_hash, base_ref="main",
                base_hash=made.base_hash, started_at=datetime.now(UTC).isoformat(), duration_s=0.1,
                gates=(GateResult("schema"),),
            )  # fmt: skip
            properties = {KIND: MetaKind.VERDICT, VERDICT: verdict.to_json(), VALIDATED_HASH: made.head_hash}
            catalog.commit_meta(made.branch, "verdict", properties, expected_hash=made.head_hash)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(make, range(args.branches)))
    setup = time.perf_counter() - started
    started = time.perf_counter()
    decisions = collect_garbage(settings, catalog, datetime.now(UTC) + timedelta(days=10))
    wall = time.perf_counter() - started
    actions = Counter(d.action for d in decisions)
    assert actions == {"deleted": (args.branches + 1) // 2, "kept": args.branches // 2}, actions
    print(json.dumps({
        "backend": "nessie", "branches": args.branches, "setup_s": round(setup, 1), "gc_wall_s": round(wall, 2),
        "per_branch_ms": round(1000 * wall / args.branches, 2), "deleted": actions["deleted"],
        "kept": actions["kept"], "target_s": 60, "target_met": wall < 60,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
