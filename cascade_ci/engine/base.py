"""The Engine contract: expose a branch's tables to dbt and to SQL checks, and make built models part of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Materialized = Literal["table", "incremental", "seed", "snapshot"]


@dataclass(frozen=True)
class DbtTarget:
    """One dbt profile output, plus environment variables it reads secrets from through `env_var()`."""

    output: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Model:
    """A dbt node that dbt materialized as a table, to become an Iceberg table of the branch."""

    table: str  # `schema.identifier`, as dbt built it (the Iceberg namespace.table)
    materialized: Materialized = "table"
    unique_key: tuple[str, ...] = ()


@runtime_checkable
class Engine(Protocol):
    """A SQL engine dbt and the SQL checks run on, bound to one branch at a time."""

    name: str

    def prepare(self, branch: str, incremental: list[str] | None = None) -> DbtTarget:
        """Expose every table of the branch to dbt and return the profile target.

        `incremental` names (`schema.table`) the incremental models' tables, which dbt reads and then
        appends or merges into (the other tables are only read).
        """
        ...

    def publish(self, branch: str, models: list[Model]) -> dict[str, int]:
        """Make the built `models` tables of the branch; return rows per table.

        A table model replaces the table; an incremental model appends its new rows (or merges on its
        unique key), so an append stays an Iceberg append that validation can check incrementally.
        """
        ...

    def query(self, ref: str, sql: str) -> list[tuple[Any, ...]]:
        """Run one read-only query against the tables at `ref` (a branch or a commit hash); return its rows.

        Tables are addressed as `namespace.table`, the same on every engine.
        """
        ...

    def close(self) -> None:
        """Release connections and per-branch resources."""
        ...
