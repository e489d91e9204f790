"""Run `cascade <args>` against Nessie in a process that SIGKILLs itself at a named point. No product code is edited.

The Nessie counterpart of tests/faults/killpoint.py. `CASCADE_FAULT_KILL` lists points, comma-separated,
each `method:N:when` for a `NessieBranchCatalog` method:

  before   SIGKILL just before the method's N-th call runs (nothing of it reached Nessie)
  after    SIGKILL just after the N-th call returned (Nessie applied it; the process never answered)
  staged   SIGKILL inside the N-th call, once its private `cascade-scratch/<time>-<uuid>` branch holds the staged
           commit (or merge check) and before the scratch branch is dropped and the result published: the
           Nessie analogue of dying inside an open transaction. The scratch branch is left behind.

Usage: CASCADE_FAULT_KILL=fast_forward:1:after python -m tests.faults.nessie_killpoint promote --run-id 7
A run that never reaches the point exits normally (the test then sees a return code other than -9).
Calls are counted across threads (gc judges and deletes branches on several threads on Nessie): the N-th call
is the N-th to start, and other threads' calls already in flight at the kill may still reach Nessie.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cascade_ci.catalog.nessie import NessieBranchCatalog

WHENS = ("before", "after", "staged")


def _die(point: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"killpoint: SIGKILL at {point}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(spec: str) -> None:
    armed: list[str] = []  # `staged` points of calls in progress: die when their scratch block completes
    counting = threading.Lock()

    original_scratch = NessieBranchCatalog._scratch

    @contextmanager
    def scratch(self: NessieBranchCatalog, at_hash: str) -> Iterator[str]:
        with original_scratch(self, at_hash) as name:
            yield name
            if armed:  # the staged work is on the scratch branch; its drop and the publish never happen
                _die(f"{armed[0]} (left {name})")

    NessieBranchCatalog._scratch = scratch  # type: ignore[method-assign]

    for point in filter(None, (p.strip() for p in spec.split(","))):
        method, nth, when = point.split(":")
        if when not in WHENS or not hasattr(NessieBranchCatalog, method):
            raise SystemExit(f"killpoint: bad point {point!r}")
        original: Callable[..., Any] = getattr(NessieBranchCatalog, method)
        calls = [0]

        def wrapped(
            self: NessieBranchCatalog,
            *args: Any,
            _original: Callable[..., Any] = original,
            _calls: list[int] = calls,
            _n: int = int(nth),
            _when: str = when,
            _point: str = point,
            **kwargs: Any,
        ) -> Any:
            with counting:
                _calls[0] += 1
                hit = _calls[0] == _n
            if hit and _when == "before":
                _die(_point)
            if hit and _when == "staged":
                armed.append(_point)
            try:
                result = _original(self, *args, **kwargs)
            finally:
                if hit and _when == "staged" and _point in armed:
                    armed.remove(_point)
            if hit and _when == "staged":
                raise SystemExit(f"killpoint: {_point} never staged anything on a scratch branch")
            if hit and _when == "after":
                _die(_point)
            return result

        functools.update_wrapper(wrapped, original)
        setattr(NessieBranchCatalog, method, wrapped)


def main() -> None:
    install(os.environ.pop("CASCADE_FAULT_KILL", ""))
    from cascade_ci.cli import cli

    cli.main(args=sys.argv[1:], prog_name="cascade")


if __name__ == "__main__":
    main()
