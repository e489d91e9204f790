"""One result model for every gate: Check -> GateResult -> Verdict. Renderers take a Verdict."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 (a status, not a password)
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"


class Level(StrEnum):
    """A check's severity: `error` blocks promotion, `warn` is reported and lets it through."""

    ERROR = "error"
    WARN = "warn"


@dataclass(frozen=True)
class Check:
    """One assertion about one table. `name` is stable across runs (never a run id)."""

    gate: str
    table: str
    name: str
    severity: Level
    passed: bool
    message: str = ""
    file: str | None = None
    line: int | None = None
    observed: Any = None
    expected: Any = None

    @property
    def blocks(self) -> bool:
        return not self.passed and self.severity is Level.ERROR

    @property
    def warns(self) -> bool:
        return not self.passed and self.severity is Level.WARN


@dataclass(frozen=True)
class GateResult:
    """What one gate found. `error` is an infrastructure fault (the gate could not judge)."""

    gate: str
    checks: tuple[Check, ...] = ()
    error: str | None = None
    duration_s: float = 0.0
    retries: tuple[str, ...] = ()

    @property
    def status(self) -> Status:
        if self.error is not None:
            return Status.ERROR
        if any(check.blocks for check in self.checks):
            return Status.FAIL
        return Status.PASS


@dataclass(frozen=True)
class TableDelta:
    """How one table differs between the validated branch and its base."""

    table: str
    change: str
    rows_before: int | None = None
    rows_after: int | None = None
    schema_changes: tuple[str, ...] = ()
    rows_added: int | None = None
    rows_deleted: int | None = None


@dataclass(frozen=True)
class Verdict:
    """The decision about one data version (a branch head), with everything that led to it."""

    run_id: str
    attempt: int
    branch: str
    validated_hash: str
    base_ref: str
    base_hash: str
    started_at: str
    duration_s: float
    gates: tuple[GateResult, ...] = ()
    changes: tuple[TableDelta, ...] = ()
    run_url: str | None = None
    stages: dict[str, str] = field(default_factory=dict)

    @property
    def checks(self) -> list[Check]:
        return [check for gate in self.gates for check in gate.checks]

    @property
    def faults(self) -> int:
        """Gates that could not run; a verdict with no gate at all counts one."""
        return sum(gate.error is not None for gate in self.gates) if self.gates else 1

    @property
    def check_count(self) -> int:
        """Checks as every report counts them: each gate that could not run is one more (errored) check."""
        return len(self.checks) + self.faults

    @property
    def errors(self) -> int:
        """Blocking failures plus gates that could not run; a verdict with no gate at all counts one."""
        return sum(check.blocks for check in self.checks) + self.faults

    @property
    def warnings(self) -> int:
        return sum(check.warns for check in self.checks)

    @property
    def blocked(self) -> bool:
        return self.errors > 0

    @property
    def outcome(self) -> str:
        return "blocked" if self.blocked else "passed"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(outcome=self.outcome, blocked=self.blocked, errors=self.errors, warnings=self.warnings)
        for gate, source in zip(data["gates"], self.gates, strict=True):
            gate["status"] = str(source.status)
        return data

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        derived = {"outcome", "blocked", "errors", "warnings"}
        values = {key: value for key, value in data.items() if key not in derived}
        values["gates"] = tuple(
            GateResult(
                gate=gate["gate"],
                checks=tuple(Check(**{**check, "severity": Level(check["severity"])}) for check in gate["checks"]),
                error=gate["error"],
                duration_s=gate["duration_s"],
                retries=tuple(gate.get("retries", ())),
            )
            for gate in data["gates"]
        )
        values["changes"] = tuple(
            TableDelta(**{**delta, "schema_changes": tuple(delta["schema_changes"])}) for delta in data["changes"]
        )
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> Verdict:
        return cls.from_dict(json.loads(text))
