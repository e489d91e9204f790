"""A catalog that does not answer: exit 2 with a message naming the catalog, nothing half-done, then recovery.

Embedded backend only for now: another process holds the SQLite write lock past the busy timeout
(shortened in-process from 60 s to 0.3 s by wrapping `sqlite3.connect` as `cascade_ci.catalog.local`
sees it; no product code is changed). Nessie, Trino and S3 come later: add a `Backend` to BACKENDS
whose `unavailable()` makes that service unreachable (e.g. NESSIE_URI at `tests.fakes.http.unused_port()`).
"""

from __future__ import annotations

import gc
import json
import sqlite3
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from cascade_ci.catalog import local
from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.cli import cli
from tests.conftest import readings, write_rows
from tests.faults.support import assert_catalog_sound

BUSY_TIMEOUT_S = 0.3
HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "exclusive":  # no other connection may even read
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
    db.execute("BEGIN EXCLUSIVE")
    db.execute("SELECT count(*) FROM cascade_refs").fetchall()
else:  # an ordinary writer in the middle of a long transaction
    db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes our stdin
"""


@contextmanager
def lock_held(db_path: Path, mode: str = "write") -> Iterator[None]:
    """Another process holds the catalog's SQLite lock until the block ends (then it is released and reaped)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db_path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = holder.stdout.readline()
        if line.strip() != "locked":
            raise RuntimeError(f"the lock holder could not lock the catalog: {holder.stderr.read()}")
        yield
    finally:
        holder.stdin.close()
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
        holder.stdout.close()
        holder.stderr.close()


class _ShortBusyConnection(sqlite3.Connection):
    def execute(self, sql, *args):  # type: ignore[override]
        if sql.strip().upper().startswith("PRAGMA BUSY_TIMEOUT"):
            sql = f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}"
        return super().execute(sql, *args)


@pytest.fixture
def short_busy_timeout(monkeypatch):
    """The embedded catalog gives up on a lock after BUSY_TIMEOUT_S instead of 60 s (this process only)."""
    real_connect = sqlite3.connect
    shim = types.SimpleNamespace(**{name: getattr(sqlite3, name) for name in dir(sqlite3) if not name.startswith("_")})
    shim.connect = lambda *a, **kw: real_connect(
        *a, **{**kw, "timeout": BUSY_TIMEOUT_S, "factory": _ShortBusyConnection}
    )
    monkeypatch.setattr(local, "sqlite3", shim)


@dataclass(frozen=True)
class Backend:
    name: str
    unavailable: Callable[[Path], AbstractContextManager[None]]  # the service stops answering inside the block
    must_name: tuple[str, ...]  # words the error message must contain


BACKENDS = [
    pytest.param(
        Backend("local", lambda home: lock_held(home / "catalog.db"), ("catalog",)),
        id="local-sqlite-write-locked",
    ),
    # Nessie (later): Backend("nessie", <NESSIE_URI at an unused port>, ("Nessie",)), with CASCADE_CATALOG=nessie.
]


def cascade(*args: str):
    return CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)


@pytest.fixture
def validated(settings, monkeypatch):
    """Run 31 is branched, written and validated: ready to promote."""
    monkeypatch.setenv("CASCADE_GATES", "schema")
    assert cascade("branch", "--run-id", "31").exit_code == 0
    with LocalBranchCatalog(settings.home) as catalog:
        write_rows(catalog, "pipeline/run-31", "raw.readings", readings(1, 2))
    assert cascade("validate", "--run-id", "31").exit_code == 0
    with LocalBranchCatalog(settings.home) as catalog:
        return catalog.get_ref("main").hash


def assert_unavailable(result, backend: Backend, elapsed: float) -> None:
    assert result.exit_code == 2, result.output
    payload = json.loads(result.stdout)
    assert payload["type"] == "ServiceUnavailableError", payload
    for word in backend.must_name:
        assert word in payload["message"], payload
    assert elapsed < 10, f"gave up after {elapsed:.1f} s; the busy timeout is {BUSY_TIMEOUT_S} s"


@pytest.mark.parametrize("command", [("gc",), ("refs",), ("log", "pipeline/run-31")], ids=lambda c: c[0])
def test_reads_go_on_while_a_writer_holds_the_lock(settings, validated, short_busy_timeout, command):
    """WAL: a command that only reads (gc with nothing expired, refs, log) does not wait for a writer."""
    with lock_held(settings.home / "catalog.db"):
        started = time.perf_counter()
        result = cascade(*command)
        elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    assert elapsed < BUSY_TIMEOUT_S, f"a read waited {elapsed:.1f} s for the writer"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "command",
    [("branch", "--run-id", "32"), ("promote", "--run-id", "31"), ("validate", "--run-id", "31")],
    ids=lambda c: c[0],
)
def test_locked_catalog_is_exit_2_naming_the_catalog(settings, validated, short_busy_timeout, backend, command):
    with backend.unavailable(settings.home):
        started = time.perf_counter()
        result = cascade(*command)
        elapsed = time.perf_counter() - started
    assert_unavailable(result, backend, elapsed)
    with LocalBranchCatalog(settings.home) as catalog:  # nothing changed, and the catalog works again
        assert catalog.get_ref("main").hash == validated
        assert [ref.name for ref in catalog.list_refs("pipeline/")] == ["pipeline/run-31"]
    assert_catalog_sound(settings.home)
    assert cascade(*command).exit_code in (0, 1)  # the same command now runs (gc or promote may decide 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_catalog_lost_mid_promotion_then_rerun_lands(settings, validated, short_busy_timeout, backend, monkeypatch):
    """The lock is taken after promote read the branch, just before its first write: exit 2, main untouched."""
    original = LocalBranchCatalog.commit_meta
    outage: list[AbstractContextManager[None]] = []

    def commit_meta_during_outage(self, *args, **kwargs):
        if not outage:
            outage.append(backend.unavailable(settings.home))
            outage[0].__enter__()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LocalBranchCatalog, "commit_meta", commit_meta_during_outage)
    try:
        started = time.perf_counter()
        result = cascade("promote", "--run-id", "31")
        elapsed = time.perf_counter() - started
    finally:
        if outage:
            outage[0].__exit__(None, None, None)
    assert outage, "promote never reached its first write"
    assert_unavailable(result, backend, elapsed)
    monkeypatch.setattr(LocalBranchCatalog, "commit_meta", original)
    with LocalBranchCatalog(settings.home) as catalog:
        assert catalog.get_ref("main").hash == validated
    rerun = cascade("promote", "--run-id", "31")
    assert rerun.exit_code == 0 and json.loads(rerun.stdout)["action"] == "promoted", rerun.output
    assert_catalog_sound(settings.home)


def test_lock_released_within_the_busy_timeout_is_waited_for(settings, validated):
    """A writer that finishes within the busy timeout only delays the command (the real 60 s timeout here)."""
    holder = lock_held(settings.home / "catalog.db")
    holder.__enter__()
    release = threading.Timer(0.5, holder.__exit__, args=(None, None, None))
    release.start()
    try:
        started = time.perf_counter()
        result = cascade("promote", "--run-id", "31")
        elapsed = time.perf_counter() - started
    finally:
        release.join()
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["action"] == "promoted"
    assert elapsed >= 0.4, "the command did not wait for the lock"


def test_exclusively_locked_catalog_is_exit_2_naming_the_catalog(settings, validated, short_busy_timeout):
    gc.collect()  # close the connections earlier in-process commands left behind: an exclusive lock needs them gone
    with lock_held(settings.home / "catalog.db", mode="exclusive"):
        started = time.perf_counter()
        result = cascade("refs")
        elapsed = time.perf_counter() - started
    assert_unavailable(result, Backend("local", lock_held, ("catalog",)), elapsed)
