"""Real Nessie + moto for the contract tests.

`services/stack.sh start --without-trino` runs once per session, in a private run folder, unless
NESSIE_URI is already set (then the services named by the environment are used as they are). If the
services cannot start, every test that needs them fails with the stack's log; nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cascade_ci.catalog.nessie import NessieBranchCatalog

REPO = Path(__file__).resolve().parents[3]
STACK = REPO / "services" / "stack.sh"
STACK_KEYS = (
    "NESSIE_URI",
    "NESSIE_WAREHOUSE",
    "S3_ENDPOINT",
    "S3_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The services' settings (NESSIE_URI, S3_ENDPOINT, keys ...), starting them when needed."""
    if os.environ.get("NESSIE_URI"):
        yield {key: os.environ[key] for key in STACK_KEYS if os.environ.get(key)}
        return
    run = tmp_path_factory.mktemp("services")
    env = {**os.environ, "CASCADE_SERVICES_RUN": str(run)}
    try:
        started = subprocess.run(
            ["bash", str(STACK), "start", "--without-trino"], env=env, capture_output=True, text=True, timeout=1200
        )
    except subprocess.TimeoutExpired as e:
        subprocess.run(["bash", str(STACK), "stop"], env=env, capture_output=True, timeout=120)
        pytest.fail(f"services/stack.sh start hung:\n{e.stdout}\n{e.stderr}", pytrace=False)
    if started.returncode != 0:
        pytest.fail(
            f"services/stack.sh start failed (exit {started.returncode}):\n{started.stdout}\n{started.stderr}",
            pytrace=False,
        )
    try:
        yield _read_env(run / "stack.env")
    finally:
        subprocess.run(["bash", str(STACK), "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture
def trunk_name() -> str:
    """Each test gets its own empty trunk branch standing in for main: the server is shared by the session."""
    return f"t{uuid.uuid4().hex[:10]}/main"


@pytest.fixture
def catalog(stack: dict[str, str], trunk_name: str) -> Iterator[NessieBranchCatalog]:
    s3 = {
        "s3.endpoint": stack.get("S3_ENDPOINT", ""),
        "s3.region": stack.get("S3_REGION", "us-east-1"),
        "s3.path-style-access": "true",
        "s3.access-key-id": stack.get("AWS_ACCESS_KEY_ID", ""),
        "s3.secret-access-key": stack.get("AWS_SECRET_ACCESS_KEY", ""),
    }
    store = NessieBranchCatalog(
        stack["NESSIE_URI"], stack.get("NESSIE_WAREHOUSE", "warehouse"), default_branch=trunk_name, s3_options=s3
    )
    root = store._call("GET", "/config")["noAncestorHash"]
    store.create_ref(trunk_name, root)
    store.commit_meta(trunk_name, "initialize catalog", {}, root)  # as the embedded catalog starts
    with store:
        yield store
