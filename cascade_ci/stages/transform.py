"""Transform stage: run the project's dbt project on the run's branch and record its test results there.

Models, seeds and snapshots are built with `dbt build` (tests excluded), then every data test runs with
`dbt test`, so a failing test never keeps a model from being built (the gates judge the data; they need
all of it). Every node dbt materialized as a table (table, incremental, seed, snapshot) becomes an Iceberg
table of the branch under its schema; views and ephemeral models stay inside the engine. The test outcomes
and the sources' declared freshness are committed onto the branch with the data they judged, where the
dbt and freshness gates read them.
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cascade_ci.branch_state import DBT_FRESHNESS, DBT_MANIFEST, DBT_TESTS, HISTORY_LIMIT, KIND, MetaKind, read_branch
from cascade_ci.errors import CascadeError, ConfigError, Terminal
from cascade_ci.naming import branch_name, is_pr_branch

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog
    from cascade_ci.config import Settings, TransformConfig
    from cascade_ci.engine.base import DbtTarget, Engine, Model

TABLE_LIKE = ("table", "incremental", "seed", "snapshot")
HOURS = {"minute": 1 / 60, "hour": 1.0, "day": 24.0}


class TransformError(CascadeError, Terminal):
    """dbt could not build a model (a SQL or project error, not a failing data test)."""


@dataclass(frozen=True)
class TransformResult:
    branch: str
    head_hash: str
    rows: dict[str, int]
    tests: dict[str, int]
    run_results: str
    build: str = "full"  # full | state:modified+ (a pull request's branch against main's stored manifest)
    state_from: str | None = None  # the main commit whose stored manifest the build compared against

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def outputs(self) -> dict[str, str]:
        return {
            "branch": self.branch,
            "head_hash": self.head_hash,
            **{f"tests_{k}": str(v) for k, v in self.tests.items()},
        }


@dataclass(frozen=True)
class DbtProject:
    """The user's dbt project as cascade runs it."""

    path: Path
    profile: str
    config: TransformConfig
    root: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> DbtProject:
        """The project `[transform]` declares; ConfigError when there is none or it has no dbt_project.yml."""
        import yaml

        config = settings.transform
        if config is None:
            raise ConfigError(
                f"no [transform] table in {settings.config_file or 'cascade.toml'}: no dbt project to run"
            )
        path = settings.path(config.project_dir)
        project_file = path / "dbt_project.yml"
        if not project_file.is_file():
            raise ConfigError(f"transform.project_dir: no dbt_project.yml in {path}")
        declared = yaml.safe_load(project_file.read_text(encoding="utf-8")) or {}
        profile = config.profile or str(declared.get("profile") or "cascade")
        return cls(path, profile, config, settings.root)

    def selection(self, modified_only: bool = False) -> list[str]:
        """--select / --exclude / --vars as the config gives them; `modified_only` narrows the selection to
        `state:modified+` (the `--state` folder is passed separately)."""
        args = []
        if modified_only:
            args += ["--select", *([f"state:modified+,{s}" for s in self.config.select] or ["state:modified+"])]
        elif self.config.select:
            args += ["--select", *self.config.select]
        if self.config.exclude:
            args += ["--exclude", *self.config.exclude]
        if self.config.vars:
            args += ["--vars", json.dumps(self.config.vars)]
        return args


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


def run_dbt(args: list[str], project: DbtProject, target: DbtTarget, work_dir: Path) -> dict[str, Any]:
    """Invoke dbt in-process, offline and quiet, on `project`; return run_results.json (empty for `parse`)."""
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.update(target.env)
    from dbt.cli.main import dbtRunner

    profiles = work_dir / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    output = {**target.output, "threads": project.config.threads, "schema": project.config.schema_}
    (profiles / "profiles.yml").write_text(
        json.dumps({project.profile: {"target": "branch", "outputs": {"branch": output}}}), encoding="utf-8"
    )
    results_file = work_dir / "target" / "run_results.json"
    results_file.unlink(missing_ok=True)
    command = [
        *args,
        "--project-dir", str(project.path),
        "--profiles-dir", str(profiles),
        "--target-path", str(work_dir / "target"),
        "--log-path", str(work_dir / "logs"),
        "--log-level", "none",
        "--log-level-file", "info",
        "--no-use-colors",
        "--no-send-anonymous-usage-stats",
    ]  # fmt: skip
    with contextlib.redirect_stdout(sys.stderr):  # dbt logs to stdout; stdout belongs to our --json payload
        result = dbtRunner().invoke(command)
    if result.exception is not None:
        raise TransformError(f"dbt {args[0]} could not run: {result.exception}") from result.exception
    if not results_file.is_file():
        if args[0] != "parse" and result.success is False:
            raise TransformError(f"dbt {args[0]} failed before running anything (see {work_dir / 'logs'})")
        return {"results": []}
    return json.loads(results_file.read_text(encoding="utf-8"))


def _manifest(work_dir: Path) -> dict[str, Any]:
    return json.loads((work_dir / "target" / "manifest.json").read_text(encoding="utf-8"))


def _table_of(node: dict[str, Any]) -> str:
    return f"{node['schema']}.{node.get('alias') or node['name']}"


def incremental_tables(manifest: dict[str, Any]) -> list[str]:
    """The tables of the project's incremental models."""
    return sorted(
        _table_of(node)
        for node in manifest.get("nodes", {}).values()
        if node.get("resource_type") == "model" and node.get("config", {}).get("materialized") == "incremental"
    )


def built_models(run_results: dict[str, Any], manifest: dict[str, Any]) -> list[Model]:
    """Every node of a `dbt build` that succeeded and is materialized as a table."""
    from cascade_ci.engine.base import Model

    models = []
    nodes = manifest.get("nodes", {})
    for result in run_results.get("results", []):
        node = nodes.get(result["unique_id"], {})
        config = node.get("config", {})
        materialized = "seed" if node.get("resource_type") == "seed" else config.get("materialized")
        if node.get("resource_type") == "snapshot":
            materialized = "snapshot"
        if result["status"] != "success" or materialized not in TABLE_LIKE:
            continue
        key = config.get("unique_key") or ()
        models.append(Model(_table_of(node), materialized, tuple([key] if isinstance(key, str) else key)))
    return sorted(models, key=lambda model: model.table)


def _hours(threshold: dict[str, Any] | None) -> float | None:
    if not threshold or threshold.get("count") is None or threshold.get("period") not in HOURS:
        return None
    return float(threshold["count"]) * HOURS[threshold["period"]]


def source_freshness(manifest: dict[str, Any], project: DbtProject) -> list[dict[str, Any]]:
    """The freshness each dbt source declares (`freshness:` + `loaded_at_field`), as the freshness gate reads it."""
    from cascade_ci.gates.dbt_gate import repo_path

    declared = []
    for source in manifest.get("sources", {}).values():
        freshness = source.get("freshness") or (source.get("config") or {}).get("freshness") or {}
        column = source.get("loaded_at_field")
        warn, error = _hours(freshness.get("warn_after")), _hours(freshness.get("error_after"))
        if not column or (warn is None and error is None):
            continue
        file = source.get("original_file_path")
        declared.append(
            {
                "table": f"{source['schema']}.{source.get('identifier') or source['name']}",
                "column": column,
                "warn_after_hours": warn,
                "error_after_hours": error,
                "file": repo_path(project.path, project.root, file) if file else None,
            }
        )
    return sorted(declared, key=lambda entry: entry["table"])


def pack_manifest(data: bytes) -> str:
    """The manifest as a commit property: gzip, then base64."""
    import base64
    import gzip

    return base64.b64encode(gzip.compress(data, mtime=0)).decode("ascii")


def unpack_manifest(text: str) -> bytes:
    import base64
    import gzip

    return gzip.decompress(base64.b64decode(text))


def stored_manifest(catalog: BranchCatalog, ref: str) -> tuple[str, bytes] | None:
    """The newest dbt manifest stored in `ref`'s history (the commit and the manifest), or None."""
    for commit in catalog.log(ref, limit=HISTORY_LIMIT):
        text = commit.properties.get(DBT_MANIFEST)
        if text:
            return commit.hash, unpack_manifest(text)
    return None


def same_place(stored: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """`stored` with each node and source that `current` also has put in the database `current` puts it in.

    The engine gives every branch its own database (Trino: a catalog per branch), so a manifest built on
    another branch names another database; dbt would count every source, and all that reads it, as modified.
    """
    for section in ("nodes", "sources"):
        now = current.get(section) or {}
        for unique_id, node in (stored.get(section) or {}).items():
            here = now.get(unique_id)
            if not isinstance(node, dict) or not isinstance(here, dict) or node.get("database") == here.get("database"):
                continue
            node["database"] = here.get("database")
            if "relation_name" in node:
                node["relation_name"] = here.get("relation_name")
    return stored


def _state_dir(catalog: BranchCatalog, settings: Settings, work_dir: Path) -> tuple[Path, str] | None:
    """Main's stored manifest, placed where this run's parse (target/manifest.json) puts things, written into a
    `--state` folder; with the commit it came from. None when main has none."""
    found = stored_manifest(catalog, settings.main_branch)
    if found is None:
        return None
    state = work_dir / "state"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    stored = same_place(json.loads(found[1]), _manifest(work_dir))
    (state / "manifest.json").write_text(json.dumps(stored), encoding="utf-8")
    return state, found[0]


def _model_failures(run_results: dict[str, Any]) -> list[str]:
    return [
        f"{r['unique_id']}: {(r.get('message') or '').strip()}"
        for r in run_results["results"]
        if r["status"] not in ("success", "pass")
    ]


def transform(
    settings: Settings,
    catalog: BranchCatalog,
    run_id: str,
    engine: Engine | None = None,
    allow_empty: bool = False,
) -> TransformResult:
    """Build the project's models on the run's branch and commit the dbt test outcomes next to them.

    A branch whose last ingest failed or landed nothing is refused unless `allow_empty`.
    """
    from cascade_ci.engine import open_engine
    from cascade_ci.gates.dbt_gate import outcomes_from

    project = DbtProject.from_settings(settings)
    name = branch_name(run_id, settings.branch_prefix)
    read_branch(catalog, name).require_ingest("transform", allow_empty)
    engine = engine or open_engine(settings, catalog)
    work_dir = settings.path(settings.home) / "dbt"
    reports = settings.path(settings.reports_dir) / "dbt"
    with _exclusive(work_dir / ".lock"):
        try:
            target = engine.prepare(name)
            run_dbt(["parse"], project, target, work_dir)
            # a pull request's branch forked from main: models main's manifest says are unchanged are there already
            state = _state_dir(catalog, settings, work_dir) if is_pr_branch(name) else None
            state_args = ["--state", str(state[0])] if state else []
            incremental = incremental_tables(_manifest(work_dir))
            if incremental:
                target = engine.prepare(name, incremental)
            selection = project.selection(modified_only=state is not None)
            built = run_dbt(["build", "--exclude-resource-type", "test", "unit_test", *selection, *state_args],
                            project, target, work_dir)  # fmt: skip
            failures = _model_failures(built)
            if failures:
                raise TransformError("dbt could not build: " + "; ".join(failures))
            manifest = _manifest(work_dir)
            rows = engine.publish(name, built_models(built, manifest))
            tested = run_dbt(["test", *project.selection()], project, target, work_dir)
        finally:
            engine.close()
        reports.mkdir(parents=True, exist_ok=True)
        for artifact in ("run_results.json", "manifest.json"):
            shutil.copyfile(work_dir / "target" / artifact, reports / artifact)
        (reports / "build_results.json").write_text(json.dumps(built), encoding="utf-8")  # what `dbt build` built
        packed = pack_manifest((work_dir / "target" / "manifest.json").read_bytes())
    outcomes = outcomes_from(tested, manifest, project.path, settings.root)
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
    head = catalog.get_ref(name)
    after = catalog.commit_meta(
        name,
        f"dbt: {len(rows)} tables built, {len(outcomes)} tests, "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
        {
            KIND: MetaKind.TRANSFORM,
            DBT_TESTS: json.dumps(outcomes, sort_keys=True),
            DBT_FRESHNESS: json.dumps(source_freshness(manifest, project), sort_keys=True),
            DBT_MANIFEST: packed,
        },
        expected_hash=head.hash,
    )
    build, state_from = ("state:modified+", state[1]) if state else ("full", None)
    return TransformResult(name, after.hash, rows, counts, str(reports / "run_results.json"), build, state_from)
