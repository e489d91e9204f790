"""`cascade branch` killed with SIGKILL at each of its writes, on both backends: never a run branch without its
creation marker, and the same command rerun converges. A marker-less branch (left by an older release, or made
by hand) is refused, and `--recreate` recovers the name.
"""

from __future__ import annotations

import signal
from contextlib import closing
from typing import Any

import pytest

from cascade_ci.branch_state import read_branch
from cascade_ci.catalog import open_catalog
from cascade_ci.config import load_settings
from cascade_ci.errors import NotFoundError
from tests.faults.support import cascade, cascade_killed_at

KILLED = -signal.SIGKILL
RUN = "5151"
BRANCH = f"pipeline/run-{RUN}"

# create_ref 1: the scratch branch; commit_meta 1: the marker on it; create_ref 2: the run's branch; delete_ref 1:
# the scratch branch dropped.
KILLS = [
    "create_ref:1:after",
    "commit_meta:1:after",
    "create_ref:2:before",
    "create_ref:2:after",
    "delete_ref:1:before",
]


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "nessie":
        request.getfixturevalue("nessie_backend")
    return request.param


def params() -> list[Any]:
    return [pytest.param(b, at, id=f"{b}-{at}") for b in ("local", "nessie") for at in KILLS]


def run_branch_state() -> Any:
    with closing(open_catalog(load_settings())) as catalog:
        try:
            return read_branch(catalog, BRANCH), catalog.get_ref("main").hash
        except NotFoundError:
            return None, catalog.get_ref("main").hash


@pytest.mark.parametrize(("backend", "kill_at"), params(), indirect=["backend"])
def test_branch_killed_at_any_write_leaves_no_markerless_branch(backend: str, kill_at: str) -> None:
    killed = cascade_killed_at(kill_at, "branch", "--run-id", RUN)
    assert killed.returncode == KILLED, f"the kill point was not reached: {killed}"
    state, main = run_branch_state()
    if kill_at in ("create_ref:1:after", "commit_meta:1:after", "create_ref:2:before"):
        assert state is None  # only the hidden scratch branch exists
    else:
        assert state is not None and state.ours and state.base_hash == main

    rerun = cascade("branch", "--run-id", RUN, "--json")
    assert rerun.returncode == 0, str(rerun)
    assert rerun.json()["action"] in ("created", "reused")
    state, main = run_branch_state()
    assert state.ours and state.base_hash == main


@pytest.mark.parametrize("backend", ["local", "nessie"], indirect=True)
def test_a_markerless_branch_is_refused_and_recreate_recovers_it(backend: str) -> None:
    with closing(open_catalog(load_settings())) as catalog:
        catalog.create_ref(BRANCH, "main")
    refused = cascade("branch", "--run-id", RUN)
    assert refused.returncode == 1 and "--recreate" in refused.stderr, str(refused)
    recovered = cascade("branch", "--run-id", RUN, "--recreate", "--json")
    assert recovered.returncode == 0, str(recovered)
    assert recovered.json()["action"] == "recreated"
    state, main = run_branch_state()
    assert state.ours and state.base_hash == main
