"""The gate contract: what a gate is given (GateContext) and what it must be (Gate).

A gate is anything with a `run(ctx) -> GateResult` and, optionally, a `name`: a module (the built-ins), an
object, or a class instantiated with no arguments. Built-ins and third-party gates register under the
`cascade_ci.gates` entry-point group (or are named `module:attr`); see `cascade_ci.plugins`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cascade_ci.branch_state import BranchState
    from cascade_ci.catalog.base import BranchCatalog, TableChange
    from cascade_ci.config import Settings
    from cascade_ci.engine.base import Engine
    from cascade_ci.verdict import Check, GateResult


@dataclass(frozen=True)
class Judged:
    """What an earlier verdict on the same branch found about a table whose rows the branch adds are unchanged.

    Set by the update stage, which knows: the table's version at the head is the one that verdict judged
    (`base_moved` False: the table took no change from main either), or the branch's added data files were
    appended again, as they are, onto main's newer version (`base_moved` True). A gate may reuse what depends
    only on those rows and must judge again what depends on the base (a new key against main's new rows).
    `head` and `base` are the hashes that verdict judged.
    """

    checks: tuple[Check, ...]
    head: str
    base: str
    base_moved: bool


@dataclass(frozen=True)
class GateContext:
    """What a gate may look at: the branch head being judged and its base.

    A gate that needs SQL calls `ctx.engine()`, which opens the configured engine once and shares it between
    gates; whoever built the context closes it with `ctx.close()` (or uses the context as a `with` block).
    """

    settings: Settings
    catalog: BranchCatalog
    branch: str
    head_hash: str
    base_hash: str
    changes: tuple[TableChange, ...]
    state: BranchState
    full: bool = False  # validate every row, even of tables the branch only appended to
    now: datetime | None = None
    judged: Mapping[str, Judged] = field(default_factory=dict)  # per table; empty: judge everything afresh
    _engine: list[Engine] = field(default_factory=list, init=False, repr=False, compare=False)

    def engine(self) -> Engine:
        """The SQL engine for this project, opened on first use."""
        if not self._engine:
            from cascade_ci.engine import open_engine

            self._engine.append(open_engine(self.settings, self.catalog))
        return self._engine[0]

    def close(self) -> None:
        """Close the engine if a gate opened it; safe to call more than once."""
        while self._engine:
            self._engine.pop().close()

    def __enter__(self) -> GateContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@runtime_checkable
class Gate(Protocol):
    """A check of a branch head. `run` returns its checks; raising is an infrastructure fault.

    `run` must not judge a data failure by raising: a failing check is a `Check(passed=False)`. An exception
    is retried when transient (`cascade_ci.errors.is_transient`), else it becomes the gate's `error`.
    """

    name: str

    def run(self, ctx: GateContext) -> GateResult:
        """Judge `ctx.head_hash` and return one GateResult named `name`."""
        ...
