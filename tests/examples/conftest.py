"""Tests of the examples' own code (`glucose_github`): the example folder is importable, as a user's
project folder is for cascade (`module:attr` imports resolve against the config file's folder)."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import GLUCOSE_EXAMPLE

if str(GLUCOSE_EXAMPLE) not in sys.path:
    sys.path.insert(0, str(GLUCOSE_EXAMPLE))

# The example's cascade.toml reads these (besides those tests/conftest.py scrubs): a developer's own
# settings must not change what the tests expect.
EXAMPLE_VARIABLES = (
    "GLUCOSE_TIMEZONE",
    "GLUCOSE_REJECTS_MAX_SHARE",
    "GLUCOSE_GMI_WINDOW_DAYS",
    "GLUCOSE_GMI_MIN_COMPLETENESS_PCT",
    "GH_SOURCE_TOKEN",
    "GITHUB_API_URL",
    "GITHUB_STATS_WAIT_S",
)


@pytest.fixture(autouse=True)
def _example_variables_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in EXAMPLE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
