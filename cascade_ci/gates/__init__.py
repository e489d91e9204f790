"""Validation gates. Each gate module exposes `run(ctx) -> GateResult`; they are imported only when run."""

from __future__ import annotations

import importlib
import time
import traceback
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from cascade_ci.gates.result import GateResult

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog, TableChange
    from cascade_ci.settings import Settings
    from cascade_ci.stages.meta import BranchState

GATE_MODULES = {
    "schema": "cascade_ci.gates.schema_gate",
    "dbt": "cascade_ci.gates.dbt_gate",
}


@dataclass(frozen=True)
class GateContext:
    """What a gate may look at: the branch head being judged and its base."""

    settings: Settings
    catalog: BranchCatalog
    branch: str
    head_hash: str
    base_hash: str
    changes: tuple[TableChange, ...]
    state: BranchState


def run_gate(name: str, ctx: GateContext) -> GateResult:
    """Run one gate; an unexpected exception becomes an infrastructure error of that gate, never a pass."""
    started = time.perf_counter()
    try:
        module = importlib.import_module(GATE_MODULES[name])
        result: GateResult = module.run(ctx)
    except KeyError:
        result = GateResult(gate=name, error=f"gate {name!r} is not available in this build")
    except Exception as e:
        detail = "".join(traceback.format_exception_only(e)).strip()
        result = GateResult(gate=name, error=f"{type(e).__name__}: {detail}")
    return replace(result, duration_s=round(time.perf_counter() - started, 3))
