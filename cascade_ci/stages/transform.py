"""Transform stage: run the dbt project against the run's branch and record its test results there.

Models are built with `dbt run`, then every data test runs with `dbt test`, so a failing test never
keeps a mart from being built (the gates judge the data; they need all of it). The test outcomes
are committed onto the branch with the data they judged, where the dbt gate reads them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cascade_ci.errors import CascadeError, Terminal
from cascade_ci.naming import branch_name
from cascade_ci.pipeline.raw import schemas
from cascade_ci.branch_state import DBT_TESTS, KIND, MetaKind

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog
    from cascade_ci.engine.base import DbtTarget, Engine
    from cascade_ci.config import Settings

MARTS = (
    "marts.fct_glucose_readings",
    "marts.fct_daily_glucose_metrics",
    "marts.fct_github_user_events",
    "marts.fct_github_repo_stats",
)


class TransformError(CascadeError, Terminal):
    """dbt could not build a model (a SQL or project error, not a failing data test)."""


@dataclass(frozen=True)
class TransformResult:
    branch: str
    head_hash: str
    rows: dict[str, int]
    tests: dict[str, int]
    run_results: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def outputs(self) -> dict[str, str]:
        return {
            "branch": self.branch,
            "head_hash": self.head_hash,
            **{f"tests_{k}": str(v) for k, v in self.tests.items()},
        }


def project_dir() -> Path:
    """The reference pipeline's dbt project, shipped inside the package."""
    return Path(str(resources.files("cascade_ci.pipeline") / "dbt"))


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One dbt run at a time per work folder (dbt keeps process-wide state and shares target/)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_dbt(command: str, target: DbtTarget, work_dir: Path) -> tuple[Any, dict[str, Any]]:
    """Invoke dbt in-process, offline and quiet; return the runner result and run_results.json."""
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.update(target.env)
    from dbt.cli.main import dbtRunner

    profiles = work_dir / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    (profiles / "profiles.yml").write_text(
        json.dumps({"cascade": {"target": "branch", "outputs": {"branch": target.output}}}), encoding="utf-8"
    )
    args = [
        command,
        "--project-dir", str(project_dir()),
        "--profiles-dir", str(profiles),
        "--target-path", str(work_dir / "target"),
        "--log-path", str(work_dir / "logs"),
        "--log-level", "none",
        "--log-level-file", "info",
        "--no-use-colors",
        "--no-send-anonymous-usage-stats",
    ]  # fmt: skip
    with contextlib.redirect_stdout(sys.stderr):  # dbt logs to stdout; stdout belongs to our --json payload
        result = dbtRunner().invoke(args)
    if result.exception is not None:
        raise TransformError(f"dbt {command} could not run: {result.exception}") from result.exception
    results_file = work_dir / "target" / "run_results.json"
    return result, json.loads(results_file.read_text(encoding="utf-8"))


def _model_failures(run_results: dict[str, Any]) -> list[str]:
    return [
        f"{r['unique_id']}: {(r.get('message') or '').strip()}"
        for r in run_results["results"]
        if r["status"] not in ("success", "pass")
    ]


def transform(settings: Settings, catalog: BranchCatalog, run_id: str, engine: Engine | None = None) -> TransformResult:
    """Build the marts on the run's branch and commit the dbt test outcomes next to them."""
    from cascade_ci.engine import open_engine
    from cascade_ci.gates.dbt_gate import outcomes_from

    name = branch_name(run_id, settings.branch_prefix)
    catalog.get_ref(name)
    engine = engine or open_engine(settings, catalog)
    work_dir = settings.home.resolve() / "dbt"
    reports = settings.reports_dir / "dbt"
    with _exclusive(work_dir / ".lock"):
        try:
            target = engine.prepare(name, schemas())
            _, built = run_dbt("run", target, work_dir)
            failures = _model_failures(built)
            if failures:
                raise TransformError("dbt could not build: " + "; ".join(failures))
            rows = engine.publish(name, list(MARTS))
            _, tested = run_dbt("test", target, work_dir)
        finally:
            engine.close()
        manifest = json.loads((work_dir / "target" / "manifest.json").read_text(encoding="utf-8"))
        reports.mkdir(parents=True, exist_ok=True)
        for artifact in ("run_results.json", "manifest.json"):
            shutil.copyfile(work_dir / "target" / artifact, reports / artifact)
    outcomes = outcomes_from(tested, manifest, project_dir())
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
    head = catalog.get_ref(name)
    after = catalog.commit_meta(
        name,
        f"dbt: {len(outcomes)} tests, " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
        {KIND: MetaKind.TRANSFORM, DBT_TESTS: json.dumps(outcomes, sort_keys=True)},
        expected_hash=head.hash,
    )
    return TransformResult(name, after.hash, rows, counts, str(reports / "run_results.json"))
