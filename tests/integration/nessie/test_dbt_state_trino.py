"""`cascade transform --pr N` on the real stack (Nessie, Trino with dbt-trino, S3): `state:modified+` against the
manifest stored in a Nessie commit by main's last promotion.

The Nessie is this test's own (docker-compose.yml's settings, on the stack's S3; the stack's Trino reaches it
by the catalogs cascade creates): the shared one's `main` is reset by other tests while this one runs for a
minute.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from cascade_ci.catalog.nessie import NessieBranchCatalog
from cascade_ci.config import load_settings
from cascade_ci.engine.trino import TrinoEngine, identifier
from tests.faults.nessie_process import ComposeNessie
from tests.integration.test_dbt_state import exercise, make_project


@pytest.fixture
def own_nessie(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    nessie = ComposeNessie(tmp_path_factory.mktemp("nessie"), stack["S3_ENDPOINT"], environ=stack)
    try:
        nessie.start()
        yield nessie.uri
    finally:
        nessie.kill()


@pytest.fixture
def on_trino(
    stack: dict[str, str], own_nessie: str, trunk_name: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """cascade on the own Nessie, the stack's Trino and S3; main is a trunk of this test (so is its Trino catalog)."""
    for key, value in stack.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NESSIE_URI", own_nessie)
    monkeypatch.setenv("CASCADE_CATALOG", "nessie")
    monkeypatch.setenv("CASCADE_ENGINE", "trino")
    monkeypatch.setenv("ICEBERG_NESSIE_REF", trunk_name)
    settings = load_settings()
    with NessieBranchCatalog.from_settings(settings) as store:
        root = store._call("GET", "/config")["noAncestorHash"]
        store.create_ref(trunk_name, root)
        store.commit_meta(trunk_name, "initialize catalog", {}, root)
        yield
        engine = TrinoEngine(settings, store)  # the consumers' catalog of this trunk: not left behind
        engine.execute(f"DROP CATALOG IF EXISTS {identifier(engine.ensure_main_catalog())}")


def test_pr_builds_modified_models_on_trino(on_trino: None, tmp_path: Path) -> None:
    exercise(make_project(tmp_path), pr=random.randint(10_000, 10**9), run=random.randint(10_000, 10**9))
