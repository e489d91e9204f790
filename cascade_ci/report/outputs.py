"""Verdict -> the key/value job outputs a workflow reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cascade_ci.verdict import Verdict


def render(verdict: Verdict) -> dict[str, str]:
    """`verdict`, `blocked`, `errors`, `warnings`, `checks` (as JUnit counts them), `branch`, ... as strings."""
    return {
        "verdict": verdict.outcome,
        "blocked": str(verdict.blocked).lower(),
        "errors": str(verdict.errors),
        "warnings": str(verdict.warnings),
        "checks": str(verdict.check_count),
        "branch": verdict.branch,
        "validated_hash": verdict.validated_hash,
        "base_hash": verdict.base_hash,
        "run_id": verdict.run_id,
        "attempt": str(verdict.attempt),
        "gates": ",".join(f"{gate.gate}:{gate.status}" for gate in verdict.gates),
    }
