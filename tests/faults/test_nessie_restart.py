"""Nessie killed (SIGKILL) in the middle of a batch of runs and started again on the same version store.

Run on both configurations cascade-ci ships (tests/faults/nessie_process.py): services/stack.sh's, the
stack the tests and developers run, and docker-compose.yml's, what users deploy (its Nessie service's
settings started as a process: there is no Docker engine here). Each Nessie has its own RocksDB store;
S3 is the moto of a private `services/stack.sh start --without-trino` (the shared stack is never
restarted). The glucose + GitHub example runs on DuckDB: the engine is not under test, and Trino would
add minutes.

The batch: run A is promoted (main moves, a prod- tag); run B is killed in the middle, after its first
table commit and before its second, and fails with exit 2; Nessie starts again on the same store. Then
every ref (main, the tag, every branch, scratch ones included) points where it pointed at the kill,
every table at A's tag reads back whole, B's first table is still on B's branch, B completes when rerun,
and `cascade doctor` sees a persistent store. The gates are cut to `schema` and the Nessie client's
retries to short waits: neither is under test here, and both would only add time.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from cascade_ci.catalog.nessie import NessieBranchCatalog
from cascade_ci.catalog.nessie_tables import NessieRefCatalog
from cascade_ci.cli import cli
from cascade_ci.naming import SCRATCH_PREFIX
from tests.faults.nessie_process import STACK, ComposeNessie, Restartable, StackNessie
from tests.faults.nessie_support import all_refs, open_nessie

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], dict[str, Restartable]]]:
    """A private `services/stack.sh start --without-trino` (moto, and Nessie on RocksDB), and a Nessie with
    docker-compose.yml's settings on that moto, booting while the first test runs."""
    run = tmp_path_factory.mktemp("restartable")
    env = {**os.environ, "CASCADE_SERVICES_RUN": str(run)}
    started = subprocess.run(
        ["bash", str(STACK), "start", "--without-trino"], env=env, capture_output=True, text=True, timeout=900
    )
    compose = None
    try:
        assert started.returncode == 0, f"services/stack.sh start failed:\n{started.stderr[-4000:]}"
        lines = (run / "stack.env").read_text().splitlines()
        stack = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
        compose = ComposeNessie(tmp_path_factory.mktemp("compose"), stack["S3_ENDPOINT"], environ=stack)
        compose.launch()
        yield stack, {"stack.sh": StackNessie(run, stack["NESSIE_URI"]), "docker-compose.yml": compose}
    finally:  # the stores are thrown away: no graceful shutdown needed
        if compose is not None:
            compose.kill()
        if (run / "nessie.pid").exists():
            StackNessie(run, "").kill()
        subprocess.run(["bash", str(STACK), "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture(params=["stack.sh", "docker-compose.yml"])
def nessie(request, servers, monkeypatch) -> Restartable:
    """A Nessie the test may kill, with cascade's environment pointed at it (catalog nessie, engine duckdb)."""
    stack, by_config = servers
    for key in ("S3_ENDPOINT", "S3_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.setenv(key, stack[key])
    monkeypatch.setenv("CASCADE_CATALOG", "nessie")
    monkeypatch.setenv("CASCADE_ENGINE", "duckdb")
    monkeypatch.setenv("CASCADE_GATES", "schema")  # the gates are not under test: the quickest one
    original = NessieBranchCatalog.from_settings.__func__

    def quick_retries(cls, settings):  # the retry policy is tested elsewhere: retry, but without waiting long
        catalog = original(cls, settings)
        catalog._backoff = 0.05
        return catalog

    monkeypatch.setattr(NessieBranchCatalog, "from_settings", classmethod(quick_retries))
    server = by_config[request.param]
    server.wait_until_up()
    monkeypatch.setenv("NESSIE_URI", server.uri)
    start_main()
    return server


def start_main() -> None:
    """A first commit on a new repository's main, as the `nessie_backend` fixture gives the shared Nessie."""
    with open_nessie() as catalog:
        root = catalog.get_ref("main").hash
        catalog.commit_meta("main", "initialize catalog", {}, expected_hash=root)


def cascade(*args: str) -> tuple[int, dict]:
    """`cascade <args> --json` in-process: the exit code, and the payload with the end of stderr as `_log`."""
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    try:
        payload = json.loads(result.stdout)
    except ValueError:
        payload = {"stdout": result.stdout}
    payload["_log"] = result.stderr[-6000:]
    return result.exit_code, payload


def contents(ref: str, only: str | None = None) -> dict[str, tuple[int, str]]:
    """Every table at `ref` (or just `only`), read whole: rows and a digest of them (order-independent)."""
    found = {}
    with open_nessie() as catalog:
        tables = catalog.tables(ref)
        names = [only] if only else [".".join(t) for ns in tables.list_namespaces() for t in tables.list_tables(ns)]
        for name in names:
            rows = tables.load_table(name).scan().to_arrow().to_pylist()
            digest = hashlib.sha256("\n".join(sorted(map(repr, rows))).encode()).hexdigest()
            found[name] = (len(rows), digest)
    return found


@pytest.fixture
def kill_at_second_commit(nessie, monkeypatch) -> dict:
    """Once `seen["armed"]`, SIGKILL Nessie just before the second table commit; records what it saw."""
    seen: dict = {"armed": False, "committed": []}
    commit = NessieRefCatalog.commit_table

    def commit_table(self, table, *args, **kwargs):
        name = ".".join(table.name()[-2:])
        if seen["armed"] and "refs" not in seen:
            if seen["committed"]:  # nothing else writes: this is the state at the kill
                with open_nessie() as catalog:
                    seen["refs"] = all_refs(catalog)
                ref, first = seen["committed"][0]
                seen["first"] = (ref, first, contents(ref, only=first))
                nessie.kill()
                seen["killed_at"] = name
            else:
                seen["committed"].append((self.name, name))
        return commit(self, table, *args, **kwargs)

    monkeypatch.setattr(NessieRefCatalog, "commit_table", commit_table)
    seen["disarm"] = lambda: monkeypatch.setattr(NessieRefCatalog, "commit_table", commit)
    return seen


@pytest.mark.usefixtures("glucose_project")
def test_nessie_killed_mid_batch_loses_nothing(nessie, kill_at_second_commit):
    timings = {}
    started = time.monotonic()
    code, run_a = cascade("run", "--run-id", "501")
    assert code == 0 and run_a["outcome"] == "promoted", run_a["_log"]
    promoted = contents(run_a["tag"])
    assert promoted["raw.glucose_entries"][0] > 0 and promoted["marts.fct_glucose_readings"][0] > 0, promoted
    with open_nessie() as catalog:
        main_a = all_refs(catalog)["main"]
    kill_at_second_commit["armed"] = True  # for run B
    timings["run A"] = time.monotonic() - started

    started = time.monotonic()
    code, run_b = cascade("run", "--run-id", "502")
    kill_at_second_commit["disarm"]()
    assert "killed_at" in kill_at_second_commit, "Nessie was never killed: run B made no second table commit"
    assert code == 2, run_b["_log"]  # Nessie is gone: an infrastructure error, not a decision
    timings["run B until it failed"] = time.monotonic() - started

    timings["restart"] = nessie.start()
    before = kill_at_second_commit["refs"]
    with open_nessie() as catalog:
        after = all_refs(catalog)
    assert after == before, "refs changed across the restart"
    assert before["main"] == before[run_a["tag"]] == main_a, "main moved during run B"
    assert "pipeline/run-501" in before and "pipeline/run-502" in before
    assert contents(run_a["tag"]) == promoted, "a promoted table does not read back whole"
    ref, first, rows = kill_at_second_commit["first"]
    # ingest stages its tables on a scratch branch: the commit Nessie took before dying is there, whole
    assert ref.startswith(SCRATCH_PREFIX) and contents(ref, only=first) == rows, f"{first} on {ref} changed"

    started = time.monotonic()
    code, rerun = cascade("run", "--run-id", "502")
    assert code == 0 and rerun["outcome"] == "promoted", rerun["_log"]
    timings["run B rerun"] = time.monotonic() - started
    with open_nessie() as catalog:
        refs = all_refs(catalog)
    assert refs["main"] == refs[rerun["tag"]] != main_a
    assert refs[run_a["tag"]] == main_a, "run A's tag moved"
    assert set(contents(rerun["tag"])) == set(promoted)

    doctor = ["doctor", "--nessie-management", nessie.management_uri]
    if isinstance(nessie, ComposeNessie):
        doctor += ["--nessie-config", str(nessie.compose)]
    code, report = cascade(*doctor)
    assert code == 0, report
    store = next(f for f in report["findings"] if f["check"] == "version store")
    assert store["status"] == "ok" and store["details"]["persistent"] is True, store
    assert store["details"]["outlived_a_restart"] is True, store
    print(f"{type(nessie).__name__}: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))
