"""Shared fixtures: an isolated embedded catalog per test, and a clean environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.settings import _ENV_NAMES, Settings, load_settings

_SCRUB = (
    "GITHUB_ACTIONS",
    "GITHUB_OUTPUT",
    "GITHUB_STEP_SUMMARY",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_SERVER_URL",
    "GITHUB_REPOSITORY",
    "GITHUB_ACTOR",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CI variables leak in, no stray .env is read, every test has its own CASCADE_HOME."""
    settings_names = {name.upper() for name in _ENV_NAMES.values()}
    for name in list(os.environ):
        if name.startswith("CASCADE_") or name.upper() in settings_names or name in _SCRUB:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CASCADE_REPORTS_DIR", str(tmp_path / "reports"))


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
