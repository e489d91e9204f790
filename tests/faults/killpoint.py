"""Run `cascade <args>` in a process that kills itself with SIGKILL at a named point. No product code is edited.

`CASCADE_FAULT_KILL` lists points, comma-separated, each `method:N:when` for a `BranchCatalog` method, or for a
table write of a ref's pyiceberg catalog (`commit_table`, `create_table`, `create_namespace`); it is patched on
both backends (`LocalBranchCatalog`/`LocalRefCatalog`, `NessieBranchCatalog`/`NessieRefCatalog`), so the point
fires on whichever one the environment selects (a table write takes `before` and `after` only):

  before  SIGKILL just before the method's N-th call runs (nothing of it reached the catalog)
  inside  SIGKILL inside the N-th call's atomic unit, once its work is done and before it is published:
          embedded, in its SQLite transaction after its statements ran and before COMMIT (the process dies
          holding an open write transaction); Nessie, once its private `cascade-scratch/<time>-<uuid>` branch
          holds the staged commit (or merge check), before the scratch branch is dropped and the result
          published (the scratch branch is left behind and named in the message: `(left <name>)`).
          A call that returns without reaching its transaction or scratch branch exits with an error instead.
  after   SIGKILL just after the N-th call returned (the catalog applied it; the process never answered)

With `CASCADE_FAULT_NESSIE_PID` naming a Nessie server's pid file, a `before` or `after` point SIGKILLs that
server (its process group) instead, and the command goes on without it (it then fails talking to Nessie).

Usage: CASCADE_FAULT_KILL=fast_forward:1:after python -m tests.faults.killpoint promote --run-id 7
A run that never reaches the point exits normally (the test then sees a return code other than -9).
Calls are counted across threads (gc judges and deletes branches on several threads on Nessie): the N-th call
is the N-th to start, and other threads' calls already in flight at the kill may still reach the catalog.
"""

from __future__ import annotations

import functools
import itertools
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.catalog.local_tables import LocalRefCatalog
from cascade_ci.catalog.nessie import NessieBranchCatalog
from cascade_ci.catalog.nessie_tables import NessieRefCatalog

CATALOGS = (LocalBranchCatalog, NessieBranchCatalog)
TABLE_CATALOGS = (LocalRefCatalog, NessieRefCatalog)
TABLE_WRITES = ("commit_table", "create_table", "create_namespace")
WHENS = ("before", "inside", "after")


def _crash_nessie(point: str, pid_file: str) -> None:
    """SIGKILL the Nessie server whose pid `pid_file` holds, and return once it is gone."""
    from tests.faults.nessie_process import kill_group

    kill_group(int(Path(pid_file).read_text()))
    sys.stderr.write(f"killpoint: Nessie SIGKILLed at {point}\n")
    sys.stderr.flush()


def _die(point: str) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.write(f"killpoint: SIGKILL at {point}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("SIGKILL did not stop the process")


class Armed(threading.local):
    """The `inside` points of the calls in progress on this thread: a call's atomic units run on its thread."""

    def __init__(self) -> None:
        self.points: list[str] = []


def _hook_atomic_units(armed: Armed) -> None:
    """Die at the end of the next atomic unit while an `inside` point is `armed`, before it is published."""
    original_tx = LocalBranchCatalog._tx
    original_scratch = NessieBranchCatalog._scratch

    @contextmanager
    def tx(self: LocalBranchCatalog) -> Iterator[sqlite3.Connection]:
        with original_tx(self) as db:
            yield db
            if armed.points:
                _die(armed.points[0])  # the statements ran; COMMIT never will

    @contextmanager
    def scratch(self: NessieBranchCatalog, at_hash: str, for_branch: str) -> Iterator[str]:
        with original_scratch(self, at_hash, for_branch) as name:
            yield name
            if armed.points:  # the staged work is on the scratch branch; its drop and the publish never happen
                _die(f"{armed.points[0]} (left {name})")

    LocalBranchCatalog._tx = tx  # type: ignore[method-assign]
    NessieBranchCatalog._scratch = scratch  # type: ignore[method-assign]


def _killing(original: Callable[..., Any], point: str, armed: Armed) -> Callable[..., Any]:
    """`original`, killing the process at `point` (`method:N:when`); calls are numbered across threads."""
    _, nth, when = point.split(":")
    calls = itertools.count(1)
    counting = threading.Lock()

    @functools.wraps(original)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        with counting:
            hit = next(calls) == int(nth)
        if not hit:
            return original(self, *args, **kwargs)
        nessie = os.environ.get("CASCADE_FAULT_NESSIE_PID")
        if nessie and when != "inside":
            if when == "before":
                _crash_nessie(point, nessie)
                return original(self, *args, **kwargs)
            result = original(self, *args, **kwargs)
            _crash_nessie(point, nessie)
            return result
        if when == "before":
            _die(point)
        if when == "after":
            original(self, *args, **kwargs)
            _die(point)
        armed.points.append(point)  # inside: the transaction or scratch branch hook dies once the call's work is done
        try:
            original(self, *args, **kwargs)
        finally:
            armed.points.remove(point)
        raise SystemExit(f"killpoint: {point} returned without reaching a transaction or scratch branch")

    return wrapped


def install(spec: str) -> None:
    armed = Armed()
    _hook_atomic_units(armed)
    for point in filter(None, (p.strip() for p in spec.split(","))):
        method, nth, when = point.split(":")
        table_write = method in TABLE_WRITES and when != "inside"
        if when not in WHENS or not nth.isdigit() or not (table_write or all(hasattr(c, method) for c in CATALOGS)):
            raise SystemExit(f"killpoint: bad point {point!r}")
        for catalog in TABLE_CATALOGS if table_write else CATALOGS:  # a process uses one: its calls are counted
            setattr(catalog, method, _killing(getattr(catalog, method), point, armed))


def main() -> None:
    install(os.environ.pop("CASCADE_FAULT_KILL", ""))
    from cascade_ci.cli import cli

    cli.main(args=sys.argv[1:], prog_name="cascade")


if __name__ == "__main__":
    main()
