"""The `cascade update` / `promote --update` tests of tests/integration/test_update.py, on real Nessie + S3.

The same tests, imported; only the `backend` fixture differs: Nessie emptied to a fresh main (`nessie_backend`).
"""

from __future__ import annotations

import pytest

from tests.integration.test_update import *  # noqa: F403 (the tests themselves: one contract, two backends)


@pytest.fixture(autouse=True)
def backend(nessie_backend, monkeypatch) -> str:
    """Real Nessie; flows write tables by hand and never run dbt: schema gate only."""
    monkeypatch.setenv("CASCADE_GATES", "schema")
    return "nessie"
