"""Nessie itself SIGKILLed at each write a command makes to it, then started again on the same store: the
command fails naming Nessie (exit 2; or exits 0 if it made no call after that write), the catalog holds the
state before or after the command (never a mix), the same command rerun converges, and
`cascade branch --recreate` then always works.

The server is a private `services/stack.sh start --without-trino` (moto, and Nessie on RocksDB in its run
folder): the shared stack is never killed. `before` kills Nessie just before the write is sent (it fails on
a refused connection); `after` kills it just after Nessie applied the write (the command's next call fails).
The cases (set-up, command, the two states) are test_kill_anywhere.py's.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.nessie_process import STACK, StackNessie
from tests.faults.support import cascade_killed_at
from tests.faults.test_kill_anywhere import CASES, OUTCOMES, converges, store

pytestmark = pytest.mark.timeout(900)

# The Nessie writes of each command (tests/faults/killpoint.py names them), each crashed before and after.
CRASHES = {
    "branch": ["create_ref:1:after", "commit_meta:1:after", "create_ref:2:before", "create_ref:2:after"],
    "ingest": ["create_ref:1:after", "commit_table:1:after", "assign:1:before", "assign:1:after"],
    "validate": ["commit_meta:1:before", "commit_meta:1:after"],
    "promote": ["commit_meta:1:after", "fast_forward:1:before", "fast_forward:1:after", "create_ref:2:after"],
    "rollback": ["restore:1:before", "restore:1:after"],
    "gc": ["delete_ref:1:before", "delete_ref:1:after"],
}


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], StackNessie]]:
    run = tmp_path_factory.mktemp("crashable")
    env = {**os.environ, "CASCADE_SERVICES_RUN": str(run)}
    started = subprocess.run(
        ["bash", str(STACK), "start", "--without-trino"], env=env, capture_output=True, text=True, timeout=900
    )
    try:
        assert started.returncode == 0, f"services/stack.sh start failed:\n{started.stderr[-4000:]}"
        lines = (run / "stack.env").read_text().splitlines()
        values = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
        yield values, StackNessie(run, values["NESSIE_URI"])
    finally:
        if (run / "nessie.pid").exists():
            StackNessie(run, "").kill()
        subprocess.run(["bash", str(STACK), "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture
def stack(private_stack: tuple[dict[str, str], StackNessie]) -> dict[str, str]:
    """The private stack in place of the shared one: `nessie_backend` empties it and points cascade at it."""
    return private_stack[0]


@pytest.fixture
def server(private_stack: tuple[dict[str, str], StackNessie], monkeypatch: pytest.MonkeyPatch) -> StackNessie:
    nessie = private_stack[1]
    nessie.wait_until_up()
    monkeypatch.setenv("CASCADE_GATES", "schema")
    return nessie


def params() -> list[Any]:
    return [pytest.param(command, at, id=f"{command}-{at}") for command, points in CRASHES.items() for at in points]


@pytest.mark.usefixtures("nessie_backend")
@pytest.mark.parametrize(("command", "crash_at"), params())
def test_nessie_crashed_at_a_write_then_rerun_converges(server: StackNessie, command: str, crash_at: str) -> None:
    case = CASES[command]
    with store() as catalog:
        start = case.prepare(catalog)
    pid_file = str(Path(server.run) / "nessie.pid")
    crashed = cascade_killed_at(crash_at, *case.args, env={"CASCADE_FAULT_NESSIE_PID": pid_file})
    assert f"Nessie SIGKILLed at {crash_at}" in crashed.stderr, str(crashed)
    if crashed.returncode != 0:  # a crash after a command's last write goes unnoticed: it had finished
        assert crashed.returncode == 2 and "Nessie" in crashed.stderr.splitlines()[-1], str(crashed)
        assert "Traceback" not in crashed.stderr, str(crashed)
    server.start()

    with store() as catalog:
        assert case.observe(catalog, start) in OUTCOMES[command], "the crash left a state between before and after"
    converges(case, start)
