"""Helpers shared by the security tests: the CLI in-process, and lines the Actions runner would run."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner, Result

from cascade_ci.cli import cli
from tests.conftest import GLUCOSE_EXAMPLE
from tests.examples.conftest import EXAMPLE_VARIABLES

if str(GLUCOSE_EXAMPLE) not in sys.path:  # the example's clients are tested here too
    sys.path.insert(0, str(GLUCOSE_EXAMPLE))


@pytest.fixture(autouse=True)
def _example_variables_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in EXAMPLE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def cascade(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def workflow_commands(text: str) -> list[str]:
    """The lines of `text` the runner would take as workflow commands (`::` after leading space, `##[` anywhere)."""
    return [line for line in text.splitlines() if line.lstrip().startswith("::") or "##[" in line]
