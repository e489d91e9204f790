"""Validation gates. Each gate module exposes `run(ctx) -> GateResult`; they are imported only when run."""

from __future__ import annotations

import importlib
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from cascade_ci.verdict import GateResult

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog, TableChange
    from cascade_ci.config import Settings
    from cascade_ci.branch_state import BranchState

logger = logging.getLogger(__name__)

GATE_MODULES = {
    "schema": "cascade_ci.gates.schema_gate",
    "dbt": "cascade_ci.gates.dbt_gate",
    "pandera": "cascade_ci.gates.pandera_gate",
    "freshness": "cascade_ci.gates.freshness_gate",
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
    full: bool = False  # validate every row, even of tables the branch only appended to
    now: datetime | None = None


def _describe(error: BaseException) -> str:
    return "".join(traceback.format_exception_only(error)).strip()


def run_gate(name: str, ctx: GateContext, sleep: Callable[[float], None] = time.sleep) -> GateResult:
    """Run one gate. Transient faults are retried (VALIDATION_RETRY_*); data failures never are.

    An exception that outlives the retries becomes an infrastructure error of the gate, never a pass.
    """
    from cascade_ci.errors import is_transient

    started = time.perf_counter()
    settings = ctx.settings
    attempts = settings.validation_retry_max_attempts if settings.validation_retry_enabled else 1
    retries: list[str] = []
    if name not in GATE_MODULES:
        result = GateResult(gate=name, error=f"gate {name!r} is not available in this build")
    else:
        module = importlib.import_module(GATE_MODULES[name])
        for attempt in range(1, attempts + 1):
            try:
                result = module.run(ctx)
                break
            except Exception as e:
                if attempt < attempts and is_transient(e):
                    delay = settings.validation_retry_delay_seconds
                    retries.append(
                        f"attempt {attempt} of {attempts} hit a transient fault ({_describe(e)}); "
                        f"retried after {delay:g} s"
                    )
                    logger.warning("%s gate: %s", name, retries[-1])
                    sleep(delay)
                    continue
                result = GateResult(gate=name, error=_describe(e))
                break
    return replace(result, duration_s=round(time.perf_counter() - started, 3), retries=tuple(retries))
