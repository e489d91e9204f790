"""The Engine contract: make a branch's raw tables readable by dbt, and its built marts part of the branch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class DbtTarget:
    """One dbt profile output, plus environment variables it reads secrets from through `env_var()`."""

    output: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    """A SQL engine dbt runs on, bound to one branch at a time."""

    name: str

    def prepare(self, branch: str, sources: dict[str, pa.Schema]) -> DbtTarget:
        """Expose the branch's raw tables to dbt (absent ones empty, with the given schema); return the target."""
        ...

    def publish(self, branch: str, models: list[str]) -> dict[str, int]:
        """Make the built `models` tables of the branch (`schema.table`); return rows per table."""
        ...

    def close(self) -> None:
        """Release connections and per-branch resources."""
        ...
