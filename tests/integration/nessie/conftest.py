"""The Nessie contract tests' catalog: a fresh trunk branch per test on the session's stack (../conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from cascade_ci.catalog.nessie import NessieBranchCatalog


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
