"""Run `cascade <args>` in a process that kills itself with SIGKILL at a named point. No product code is edited.

`CASCADE_FAULT_KILL` lists points, comma-separated, each `method:N:when` for a `LocalBranchCatalog` method:

  before     SIGKILL just before the method's N-th call runs
  after      SIGKILL just after the N-th call returned (its transaction committed)
  precommit  SIGKILL inside the N-th call's SQLite transaction, after its statements ran and before
             COMMIT: the process dies holding an open write transaction

Usage: CASCADE_FAULT_KILL=fast_forward:1:after python -m tests.faults.killpoint promote --run-id 7
A run that never reaches the point exits normally (the test then sees a return code other than -9).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cascade_ci.catalog.local import LocalBranchCatalog

WHENS = ("before", "after", "precommit")


def _die(point: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"killpoint: SIGKILL at {point}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(spec: str) -> None:
    armed: list[str] = []  # points whose transaction must die before COMMIT

    original_tx = LocalBranchCatalog._tx

    @contextmanager
    def tx(self: LocalBranchCatalog) -> Iterator[Any]:
        with original_tx(self) as db:
            yield db
            if armed:
                _die(armed[0])  # the statements ran; COMMIT never will

    LocalBranchCatalog._tx = tx  # type: ignore[method-assign]

    for point in filter(None, (p.strip() for p in spec.split(","))):
        method, nth, when = point.split(":")
        if when not in WHENS or not hasattr(LocalBranchCatalog, method):
            raise SystemExit(f"killpoint: bad point {point!r}")
        original: Callable[..., Any] = getattr(LocalBranchCatalog, method)
        calls = [0]

        def wrapped(
            self: LocalBranchCatalog,
            *args: Any,
            _original: Callable[..., Any] = original,
            _calls: list[int] = calls,
            _n: int = int(nth),
            _when: str = when,
            _point: str = point,
            **kwargs: Any,
        ) -> Any:
            _calls[0] += 1
            hit = _calls[0] == _n
            if hit and _when == "before":
                _die(_point)
            if hit and _when == "precommit":
                armed.append(_point)
            try:
                result = _original(self, *args, **kwargs)
            finally:
                if hit and _when == "precommit":
                    armed.remove(_point)
            if hit and _when == "after":
                _die(_point)
            return result

        functools.update_wrapper(wrapped, original)
        setattr(LocalBranchCatalog, method, wrapped)


def main() -> None:
    install(os.environ.pop("CASCADE_FAULT_KILL", ""))
    from cascade_ci.cli import cli

    cli.main(args=sys.argv[1:], prog_name="cascade")


if __name__ == "__main__":
    main()
