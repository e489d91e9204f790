"""Shared fixtures: an isolated embedded catalog per test, a clean environment, and the real services.

The services (moto as S3, Nessie, Trino) come from `services/stack.sh start`, run once per session in
a private run folder, unless CASCADE_STACK_ENV names the stack.env of services already running (as
.ci/run does, so that one stack serves all). If they cannot start, every test that needs them fails
with the stack's log; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.config import Settings, env_name, load_settings

_SCRUB = (
    "GITHUB_ACTIONS",
    "GITHUB_OUTPUT",
    "GITHUB_STEP_SUMMARY",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_SERVER_URL",
    "GITHUB_REPOSITORY",
    "GITHUB_ACTOR",
    "GITHUB_TOKEN",
    # the example's settings, read through ${VAR} in its cascade.toml
    "NIGHTSCOUT_URL",
    "NIGHTSCOUT_API_SECRET",
    "GLUCOSE_FRESHNESS_HOURS",
    "GLUCOSE_TIMEZONE",
    "GLUCOSE_REJECTS_MAX_SHARE",
    "GLUCOSE_GMI_WINDOW_DAYS",
    "GLUCOSE_GMI_MIN_COMPLETENESS_PCT",
    "GH_SOURCE_TOKEN",
    "GITHUB_STATS_WAIT_S",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CI variables leak in, no stray .env is read, every test has its own CASCADE_HOME."""
    settings_names = {env_name(name).upper() for name in Settings.model_fields}
    for name in list(os.environ):
        if name.startswith("CASCADE_") or name.upper() in settings_names or name in _SCRUB:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CASCADE_REPORTS_DIR", str(tmp_path / "reports"))


REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
GLUCOSE_EXAMPLE = EXAMPLES / "glucose-github"
# What a run leaves in a project folder; a copy of the example starts without it.
PROJECT_LEFTOVERS = (".cascade", "reports", "target", "logs", "__pycache__")


def copy_project(source: Path, target: Path) -> Path:
    """A fresh copy of an example project (without the state and build output a run leaves behind)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*PROJECT_LEFTOVERS))
    return target


@pytest.fixture
def glucose_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of examples/glucose-github in tmp_path/project, the working directory of the test.

    `cascade` finds its cascade.toml from there; CASCADE_HOME and CASCADE_REPORTS_DIR stay the absolute
    paths `clean_env` set, so state and reports land in tmp_path, not in the copy.
    """
    project = copy_project(GLUCOSE_EXAMPLE, tmp_path / "project")
    monkeypatch.chdir(project)
    return project


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings()


@pytest.fixture
def catalog(settings: Settings) -> Iterator[LocalBranchCatalog]:
    with LocalBranchCatalog(settings.home, default_branch=settings.main_branch) as store:
        yield store


def write_rows(catalog: LocalBranchCatalog, ref: str, table: str, rows: pa.Table) -> None:
    """Append `rows` to `table` on `ref`, creating its namespace and table when missing."""
    tables = catalog.tables(ref)
    namespace = table.rsplit(".", 1)[0]
    if not tables.namespace_exists(namespace):
        tables.create_namespace(namespace)
    if not tables.table_exists(table):
        tables.create_table(table, rows.schema)
    tables.load_table(table).append(rows)


def read_rows(catalog: LocalBranchCatalog, ref: str, table: str) -> pa.Table:
    return catalog.tables(ref).load_table(table).scan().to_arrow()


def readings(*ids: int) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64()), "sgv": pa.array([100 + i for i in ids], pa.int32())})


STACK = REPO / "services" / "stack.sh"
STACK_KEYS = (
    "NESSIE_URI",
    "NESSIE_WAREHOUSE",
    "S3_ENDPOINT",
    "S3_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "TRINO_URI",
)


# Read once at import: `clean_env` scrubs CASCADE_* before each test, and a test may ask for the stack lazily.
RUNNING_STACK_ENV = os.environ.get("CASCADE_STACK_ENV")


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def start_services(script: Path, env: dict[str, str]) -> None:
    """`bash script start`; the test fails with the script's output if it fails or hangs (then `stop`)."""
    name = script.relative_to(REPO)
    try:
        started = subprocess.run(["bash", str(script), "start"], env=env, capture_output=True, text=True, timeout=1200)
    except subprocess.TimeoutExpired as e:
        subprocess.run(["bash", str(script), "stop"], env=env, capture_output=True, timeout=120)
        pytest.fail(f"{name} start hung:\n{e.stdout}\n{e.stderr}", pytrace=False)
    if started.returncode != 0:
        output = f"{started.stdout}\n{started.stderr}"
        pytest.fail(f"{name} start failed (exit {started.returncode}):\n{output}", pytrace=False)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The services' settings (NESSIE_URI, S3_ENDPOINT, keys ...), starting them when needed."""
    if RUNNING_STACK_ENV:
        yield _read_env(Path(RUNNING_STACK_ENV))
        return
    with started_stack(tmp_path_factory.mktemp("services")) as settings:
        yield settings


@contextlib.contextmanager
def started_stack(run: Path) -> Iterator[dict[str, str]]:
    """services/stack.sh's services started in run folder `run`, stopped on exit; their settings."""
    env = {**os.environ, "CASCADE_SERVICES_RUN": str(run)}
    start_services(STACK, env)
    try:
        yield _read_env(run / "stack.env")
    finally:
        subprocess.run(["bash", str(STACK), "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture
def nessie_backend(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point cascade at the real stack, with Nessie emptied to a fresh `main` (the server is shared)."""
    from cascade_ci.catalog.nessie import NessieBranchCatalog, _ref_path

    for key, value in stack.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CASCADE_CATALOG", "nessie")
    monkeypatch.setenv("S3_ENDPOINT", stack.get("S3_ENDPOINT", ""))
    from cascade_ci.config import load_settings

    with NessieBranchCatalog.from_settings(load_settings()) as nessie:
        for data in nessie._pages("/trees", "references"):  # every ref, scratch branches included
            if data["name"] != "main":
                nessie._call("DELETE", f"/trees/{_ref_path(data['name'], data['hash'])}")
        root = nessie._call("GET", "/config")["noAncestorHash"]
        nessie.create_ref("reset-scratch", root)
        start = nessie.commit_meta("reset-scratch", "initialize catalog", {}, root)
        nessie.assign("main", start.hash, nessie.get_ref("main").hash)  # test set-up only: a clean trunk
        nessie.delete_ref("reset-scratch", start.hash)
    return stack


@pytest.fixture
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The catalog the CLI uses, `local` or `nessie` (the real server, emptied), given by indirect parametrization;
    the gates cut to `schema`, the quickest."""
    if request.param == "nessie":
        request.getfixturevalue("nessie_backend")
    monkeypatch.setenv("CASCADE_GATES", "schema")
    return request.param
