"""Storage lifecycle: warehouse size after many runs and `gc --files`, and gc time at 10,000 files.

Scenario `runs`: N runs of `run_pipeline` on a tiny project without dbt (written to a temp folder): a python
source gives `events` (100 new rows a run, appended) and `status` (the same 50 keys every run, upserted, so
each run rewrites the file holding them, as a rebuilt mart would); gates schema + pandera. Then gc as it runs
31 days later (pipeline branches past retention) with RETENTION below: warehouse bytes after gc against the
bytes the live refs' heads reference (target <= 1.1x).

Scenario `scale`: F files: F/2 one-row Parquet files registered on main (`add_files`, 500 a commit), F/2 on a
branch that is then deleted (its files are garbage); gc timed in-process (add ~0.4 s of CLI start-up).

On Nessie (`--nessie`, with CASCADE_STACK_ENV naming the running stack) every ref and namespace carries a
fresh prefix, promotion tags are moved under it, and the sweep is limited to the namespaces' folders: the
server and the bucket are shared.

Usage: python bench/storage_gc.py [--runs 100] [--files 10000] [--nessie] [--smoke]
Prints one JSON line per scenario.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SOURCE = """
import pyarrow as pa

def rows(ctx):
    run = int(ctx.options["run"])
    events = pa.table({"id": pa.array(range(run * 100, run * 100 + 100), pa.int64()), "value": [run] * 100})
    status = pa.table({"key": pa.array(range(50), pa.int64()), "seen": pa.array([run] * 50, pa.int64())})
    return {"events": events, "status": status}
"""
CONFIG = """
gates = ["schema", "pandera"]

[sources.tiny]
python = "tiny_source:rows"
namespace = "{namespace}"
keys = {{ status = ["key"] }}

[tables."{namespace}.status"]
unique = ["key"]
"""
# The runs take minutes, not days: retention by age keeps nothing more (0 days), the counts decide (main's
# history back to the 10th newest promotion, the 20 newest tags: the defaults), and no writer runs (no grace).
RETENTION = {"gc_grace_hours": 0, "main_retention_days": 0, "tag_retention_days": 0}
LATER = timedelta(days=31)


class Backend:
    """A catalog to bench on: the embedded one in a temp folder, or a private corner of the shared Nessie."""

    def __init__(self, nessie: bool, folder: Path) -> None:
        self.nessie = nessie
        self.prefix = f"b{uuid.uuid4().hex[:8]}" if nessie else ""
        self.folder = folder
        os.environ["CASCADE_HOME"] = str(folder / "home")
        os.environ["CASCADE_REPORTS_DIR"] = str(folder / "reports")
        if nessie:
            from nessie_latency import load_stack_env

            load_stack_env()

    def settings(self, config: Path | None = None, **overrides):
        from cascade_ci.config import load_settings

        if self.nessie:
            overrides.update(main_branch=f"{self.prefix}/main", branch_prefix=f"{self.prefix}/run-")
        return load_settings(config, **RETENTION, **overrides)

    def open(self, settings):
        from cascade_ci.catalog import open_catalog

        catalog = open_catalog(settings)
        if self.nessie:  # a private trunk, as the embedded catalog starts: one empty commit
            root = catalog._call("GET", "/config")["noAncestorHash"]
            catalog.create_ref(settings.main_branch, root)
            catalog.commit_meta(settings.main_branch, "initialize catalog", {}, root)
        return catalog

    def roots(self, catalog, namespaces: list[str]) -> list[str] | None:
        if not self.nessie:
            return None
        from cascade_ci.catalog.sweep_nessie import NessieSweep

        warehouse = NessieSweep(catalog).warehouse.rstrip("/")
        return [f"{warehouse}/{namespace}/" for namespace in namespaces]

    @property
    def tag_prefix(self) -> str:
        return f"{self.prefix}/prod-" if self.nessie else "prod-"

    def own_tag(self, catalog, tag: str, run: int) -> None:
        """On the shared server, move a promotion tag under the prefix (a gc judges only `tag_prefix` tags)."""
        if self.nessie:
            from cascade_ci.catalog.base import RefKind

            ref = catalog.get_ref(tag)
            catalog.create_ref(f"{self.prefix}/{tag}-{run}", ref.hash, RefKind.TAG)
            catalog.delete_ref(tag, ref.hash)

    def cleanup(self, catalog) -> None:
        if self.nessie:
            from cascade_ci.catalog.sweep_nessie import NessieSweep

            for name, head in NessieSweep(catalog).heads().items():
                if name.startswith(f"{self.prefix}/"):
                    catalog._call("DELETE", f"/trees/{name}@{head}")


def heads_report(backend: Backend, catalog, roots):
    """A dry-run sweep that keeps only the refs' heads: what the live refs reference, and the warehouse."""
    from cascade_ci.catalog.sweep import Chain, backend_for, sweep

    heads = backend_for(catalog).heads()
    chains = [Chain(name, (head,)) for name, head in heads.items()]
    return sweep(catalog, chains, datetime.now(UTC), dry_run=True, roots=roots)


def gc(settings, catalog, backend: Backend, roots, now: datetime):
    from cascade_ci.stages.gc import collect_garbage, collect_storage

    started = time.perf_counter()
    branches = collect_garbage(settings, catalog, now)
    storage = collect_storage(settings, catalog, now, branches=branches, roots=roots, tag_prefix=backend.tag_prefix)
    return storage, time.perf_counter() - started


def runs_scenario(backend: Backend, count: int) -> dict:
    from cascade_ci.stages.run import run_pipeline

    project = backend.folder / "project"
    project.mkdir()
    namespace = f"{backend.prefix}raw" if backend.nessie else "raw"
    (project / "tiny_source.py").write_text(SOURCE)
    (project / "cascade.toml").write_text(CONFIG.format(namespace=namespace))
    settings = backend.settings(project / "cascade.toml")
    catalog = backend.open(settings)
    roots = backend.roots(catalog, [namespace])
    started = time.perf_counter()
    try:
        retried = []
        for run in range(count):
            for attempt in (1, 2):  # see `retried` in RESULTS.md: a race inside pyiceberg's upsert, seldom
                try:
                    result = run_pipeline(settings, catalog, f"r{run}", options={"run": run}, annotations=io.StringIO())
                    break
                except RuntimeError as e:
                    if attempt == 2:
                        raise
                    retried.append(f"r{run}: {e}")
            assert result.outcome == "promoted", result.to_dict()
            backend.own_tag(catalog, result.tag, run)
            if run % 10 == 9:
                print(f"{run + 1} runs in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        runs_s = time.perf_counter() - started
        before = heads_report(backend, catalog, roots)
        storage, gc_s = gc(settings, catalog, backend, roots, datetime.now(UTC) + LATER)
        after = heads_report(backend, catalog, roots)
        return {
            "scenario": "runs",
            "backend": "nessie" if backend.nessie else "local",
            "runs": count,
            "runs_s": round(runs_s, 1),
            "before_files": before.scanned_files,
            "before_bytes": before.scanned_bytes,
            "after_files": after.scanned_files,
            "after_bytes": after.scanned_bytes,
            "live_ref_bytes": after.live_bytes,
            "ratio_to_live_refs": round(after.scanned_bytes / max(after.live_bytes, 1), 3),
            "freed_files": storage.files.freed_files,
            "freed_bytes": storage.files.freed_bytes,
            "tags_kept": sum(t.action == "kept" for t in storage.tags),
            "main_commits_kept": storage.history_kept,
            "commits_expired": storage.files.expired_commits,
            "gc_s": round(gc_s, 2),
            "retried": retried,
        }
    finally:
        backend.cleanup(catalog)


def write_files(table, names: list[str]) -> list[str]:
    """One-row Parquet files in the table's data folder (written through its FileIO: local or S3)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = [f"{table.location()}/data/{name}.parquet" for name in names]

    def one(path: str) -> None:
        with table.io.new_output(path).create(overwrite=True) as out:
            pq.write_table(pa.table({"id": pa.array([len(path)], pa.int64())}), out)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, paths))
    return paths


def add(catalog, ref: str, table_name: str, count: int, tag: str) -> None:
    table = catalog.tables(ref).load_table(table_name)
    paths = write_files(table, [f"{tag}-{i:06d}" for i in range(count)])
    for start in range(0, len(paths), 500):
        catalog.tables(ref).load_table(table_name).add_files(paths[start : start + 500], check_duplicate_files=False)


def scale_scenario(backend: Backend, files: int) -> dict:
    import pyarrow as pa

    namespace = f"{backend.prefix}scale" if backend.nessie else "scale"
    settings = backend.settings()
    catalog = backend.open(settings)
    roots = backend.roots(catalog, [namespace])
    try:
        tables = catalog.tables(settings.main_branch)
        tables.create_namespace(namespace)
        tables.create_table(f"{namespace}.files", pa.schema([("id", pa.int64())]))
        started = time.perf_counter()
        add(catalog, settings.main_branch, f"{namespace}.files", files // 2, "live")
        branch = f"{backend.prefix}/scratch-data" if backend.nessie else "scratch-data"
        catalog.create_ref(branch, settings.main_branch)
        add(catalog, branch, f"{namespace}.files", files - files // 2, "gone")
        catalog.delete_ref(branch, catalog.get_ref(branch).hash)
        setup_s = time.perf_counter() - started
        storage, gc_s = gc(settings, catalog, backend, roots, datetime.now(UTC))
        report = storage.files
        return {
            "scenario": "scale",
            "backend": "nessie" if backend.nessie else "local",
            "files": report.scanned_files,
            "setup_s": round(setup_s, 1),
            "gc_s": round(gc_s, 2),
            "live_files": report.live_files,
            "freed_files": report.freed_files,
            "files_per_s": round(report.scanned_files / gc_s),
            "sweep_phases_s": report.phases,
        }
    finally:
        backend.cleanup(catalog)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--nessie", action="store_true", help="bench on the stack CASCADE_STACK_ENV names")
    parser.add_argument("--smoke", action="store_true", help="a few runs and files, to check the bench works")
    args = parser.parse_args()
    runs, files = (4, 200) if args.smoke else (args.runs, args.files)
    for scenario, size in ((runs_scenario, runs), (scale_scenario, files)):
        with tempfile.TemporaryDirectory() as folder:
            print(json.dumps(scenario(Backend(args.nessie, Path(folder)), size)), flush=True)


if __name__ == "__main__":
    main()
