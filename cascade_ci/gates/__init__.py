"""Validation gates, resolved by name through the `cascade_ci.gates` entry points (or `module:attr`).

Built-ins (schema, pandera, dbt, freshness, sql) register exactly as a third-party gate would; each is a
module with `name` and `run(ctx) -> GateResult`, imported only when run.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from cascade_ci.errors import redact_urls
from cascade_ci.gates.base import Gate, GateContext
from cascade_ci.verdict import GateResult

__all__ = ["Gate", "GateContext", "load_gate", "run_gate"]

logger = logging.getLogger(__name__)


def _describe(error: BaseException) -> str:
    """The error as one text for the verdict, with any URL's user and password redacted."""
    return redact_urls("".join(traceback.format_exception_only(error)).strip())


def load_gate(name: str, root: Path | None = None) -> Gate:
    """The gate `name` names: an entry point of `cascade_ci.gates` or `module:attr` (a class is instantiated).

    `root` (the project root) is put on sys.path for `module:attr`. Raises ConfigError (PluginError,
    MissingExtraError) when the name resolves to nothing that can run.
    """
    from cascade_ci.plugins import PluginError, resolve

    gate = resolve("cascade_ci.gates", name, root)
    if isinstance(gate, type):
        gate = gate()
    if not callable(getattr(gate, "run", None)):
        raise PluginError(f"{name!r} is not a gate: it has no run(ctx) method")
    return gate


def run_gate(name: str, ctx: GateContext, sleep: Callable[[float], None] = time.sleep) -> GateResult:
    """Run one gate. Transient faults are retried (VALIDATION_RETRY_*); data failures never are.

    A gate that cannot be resolved, and an exception that outlives the retries, become an infrastructure
    error of the gate, never a pass.
    """
    from cascade_ci.errors import is_transient

    started = time.perf_counter()
    settings = ctx.settings
    attempts = settings.validation_retry_max_attempts if settings.validation_retry_enabled else 1
    retries: list[str] = []
    try:
        gate = load_gate(name, settings.root)
    except Exception as e:
        result = GateResult(gate=name, error=f"gate {name!r} cannot be loaded: {_describe(e)}")
    else:
        label = getattr(gate, "name", None) or name
        for attempt in range(1, attempts + 1):
            try:
                result = gate.run(ctx)
                if not isinstance(result, GateResult):
                    result = GateResult(
                        gate=label, error=f"gate {name!r} returned {type(result).__name__}, not a GateResult"
                    )
                break
            except Exception as e:
                if attempt < attempts and is_transient(e):
                    delay = settings.validation_retry_delay_seconds
                    retries.append(
                        f"attempt {attempt} of {attempts} hit a transient fault ({_describe(e)}); "
                        f"retried after {delay:g} s"
                    )
                    logger.warning("%s gate: %s", label, retries[-1])
                    sleep(delay)
                    continue
                result = GateResult(gate=label, error=_describe(e))
                break
    return replace(result, duration_s=round(time.perf_counter() - started, 3), retries=tuple(retries))
