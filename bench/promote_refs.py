"""Promote latency on Nessie as the number of refs grows: it must not depend on how many refs there are.

Usage: python bench/promote_refs.py [--refs 200,5000] [--repeat 9] [--private]
Against the stack CASCADE_STACK_ENV names (default services/.run/stack.env), or with --private on a
throwaway `services/stack.sh start --without-trino` of its own (moto + Nessie in a temporary folder,
stopped afterwards): thousands of refs on a shared Nessie would slow everyone's tests, and their set-up
would delete them mid-run. The extra refs are branches `bench-refs/ref-N` at main's head.

For each ref count: the refs are made up to that count, then `--repeat` times a run branch is created,
validated (schema gate) and promoted, and the promote alone is timed (after 2 untimed ones). Also timed,
afterwards: `list_refs`, what promote read before it looked refs up by name. Prints JSON lines; the last
one is the ratio of the medians at the largest and the smallest count (target <= 1.2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STACK = REPO / "services" / "stack.sh"
WARM_UP = 2  # untimed promotions after the refs are made (the server settles after thousands of writes)


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


@contextmanager
def nessie(private: bool) -> Iterator[None]:
    """Point cascade at the stack: the one CASCADE_STACK_ENV names, or a private one started here."""
    if not private:
        os.environ.update(read_env(Path(os.environ.get("CASCADE_STACK_ENV", "services/.run/stack.env"))))
        os.environ["CASCADE_CATALOG"] = "nessie"
        yield
        return
    with tempfile.TemporaryDirectory(prefix="promote-refs-") as run:
        env = {**os.environ, "CASCADE_SERVICES_RUN": run}
        started = subprocess.run(["bash", str(STACK), "start", "--without-trino"], env=env, capture_output=True)
        try:
            if started.returncode != 0:
                raise SystemExit(f"services/stack.sh start failed:\n{started.stderr.decode()[-3000:]}")
            os.environ.update(read_env(Path(run) / "stack.env"))
            os.environ["CASCADE_CATALOG"] = "nessie"
            yield
        finally:
            subprocess.run(["bash", str(STACK), "stop"], env=env, capture_output=True)


def drop(catalog: object, name: str) -> None:
    """Delete ref `name` if it is still there (a shared Nessie's users may have emptied it meanwhile)."""
    from cascade_ci.errors import CatalogError

    with suppress(CatalogError):
        catalog.delete_ref(name, catalog.get_ref(name).hash)  # type: ignore[attr-defined]


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--refs", default="200,5000", help="comma-separated ref counts, smallest first")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--private", action="store_true", help="start a throwaway Nessie + S3 of its own")
    args = parser.parse_args()
    counts = sorted(int(n) for n in args.refs.split(","))
    with nessie(args.private):
        from cascade_ci.catalog import open_catalog
        from cascade_ci.config import load_settings
        from cascade_ci.stages.branch import create_run_branch
        from cascade_ci.stages.promote import promote
        from cascade_ci.stages.validate import validate

        settings = load_settings(gates="schema")
        catalog = open_catalog(settings)
        made: list[str] = []
        medians = {}
        try:
            for count in counts:
                existing = len(catalog.list_refs())
                start = catalog.get_ref(settings.main_branch).hash
                names = [f"bench-refs/ref-{len(made) + i}" for i in range(max(0, count - existing))]
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(catalog.create_ref, names, [start] * len(names)))
                made += names
                samples = []
                for attempt in range(WARM_UP + args.repeat):
                    run_id = f"bench-{uuid.uuid4().hex[:8]}"
                    create_run_branch(settings, catalog, run_id)
                    validate(settings, catalog, run_id)
                    started = time.perf_counter()
                    promote(settings, catalog, run_id)
                    if attempt >= WARM_UP:
                        samples.append(time.perf_counter() - started)
                listing = []
                for _ in range(3):  # after the promotions: a listing's garbage must not slow them
                    started = time.perf_counter()
                    refs = len(catalog.list_refs())
                    listing.append(time.perf_counter() - started)
                medians[count] = median_ms(samples)
                print(json.dumps({"refs": refs, "n": len(samples), "promote_median_ms": medians[count],
                                  "promote_min_ms": round(min(samples) * 1000, 1),
                                  "promote_max_ms": round(max(samples) * 1000, 1),
                                  "list_refs_median_ms": median_ms(listing)}), flush=True)  # fmt: skip
        finally:
            if not args.private:  # a shared Nessie: take the extra refs away again
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda name: drop(catalog, name), made))
        ratio = round(medians[counts[-1]] / medians[counts[0]], 2)
        print(json.dumps({"ratio": ratio, "target": 1.2, "from_refs": counts[0], "to_refs": counts[-1]}))


if __name__ == "__main__":
    main()
