"""Helpers shared by the security tests: the CLI in-process, and lines the Actions runner would run."""

from __future__ import annotations

import re
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


def workflow_commands(text: str, *, ours: tuple[str, ...] = ()) -> list[str]:
    """The lines of `text` the runner would take as workflow commands (`::` after leading space, `##[` anywhere),
    cut where the runner cuts lines (CR, LF, CRLF); lines starting with one of `ours` are cascade's own."""
    lines = re.split(r"\r\n|\r|\n", text)
    found = [line for line in lines if line.lstrip().startswith("::") or "##[" in line]
    return [line for line in found if not line.startswith(ours) or "##[" in line] if ours else found
