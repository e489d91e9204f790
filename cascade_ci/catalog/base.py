"""The BranchCatalog contract every backend implements, and the values it speaks in.

Every mutation is a compare-and-swap on a ref's head: nothing is ever a blind overwrite, and a
branch's head only moves forward (new commits, fast-forwards) unless `assign` is called with the
hash the caller saw.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cascade_ci.naming import PR_PREFIX, SCRATCH_PREFIX

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

# Private branches a command stages its writes on, published by a compare-and-swap and then dropped. A killed
# command leaves one behind: `sweep_leftovers` deletes those older than SCRATCH_MAX_AGE; `list_refs` hides them.
SCRATCH_MAX_AGE = timedelta(hours=1)  # far longer than any staging
# A pull request's staging branches are `cascade-scratch/pr-*`: the pull-request identity writes only those
# (README "Security model"), so its code cannot commit onto a pipeline run's staging branch.
SCRATCH_PR = "pr-"
_SCRATCH_NAME = re.compile(re.escape(SCRATCH_PREFIX) + f"(?:{SCRATCH_PR})?" + r"(\d+)-[0-9a-f]{32}")


def scratch_name(for_branch: str = "") -> str:
    """A fresh scratch branch name to stage writes to `for_branch`: `cascade-scratch/<unix time>-<uuid>`,
    `cascade-scratch/pr-<unix time>-<uuid>` for a pull request's `pr/N`."""
    owner = SCRATCH_PR if for_branch.startswith(PR_PREFIX) else ""
    return f"{SCRATCH_PREFIX}{owner}{int(time.time())}-{uuid.uuid4().hex}"


@contextmanager
def scratch_branch(catalog: BranchCatalog, at_hash: str, for_branch: str = "") -> Iterator[str]:
    """A fresh scratch branch at `at_hash` to stage writes to `for_branch` on; dropped afterwards (left behind
    only by a kill)."""
    from cascade_ci.errors import CatalogError

    name = scratch_name(for_branch)
    catalog.create_ref(name, at_hash)
    try:
        yield name
    finally:
        with suppress(CatalogError):
            catalog.delete_ref(name, catalog.get_ref(name).hash)


def stale_scratch(name: str, now: datetime) -> bool:
    """True for a scratch branch name made more than SCRATCH_MAX_AGE before `now`."""
    match = _SCRATCH_NAME.fullmatch(name)
    return match is not None and now.timestamp() - int(match.group(1)) >= SCRATCH_MAX_AGE.total_seconds()


class RefKind(StrEnum):
    BRANCH = "branch"
    TAG = "tag"


class ChangeKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    MODIFIED = "modified"


@dataclass(frozen=True)
class Ref:
    """A named pointer to a commit."""

    name: str
    kind: RefKind
    hash: str


@dataclass(frozen=True)
class Commit:
    """One entry of a ref's history. `properties` carry verdicts, run ids and provenance."""

    hash: str
    parents: tuple[str, ...]
    time: datetime
    message: str
    properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def parent(self) -> str | None:
        return self.parents[0] if self.parents else None


@dataclass(frozen=True)
class TableChange:
    """A table that differs between two refs; locations are Iceberg metadata file locations."""

    table: str
    kind: ChangeKind
    from_location: str | None
    to_location: str | None


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do natively; stages read these instead of catching NotImplementedError."""

    native_fast_forward: bool
    cross_process_safe: bool
    concurrent_calls: bool = False  # several calls in flight at once go faster (a remote server)


@runtime_checkable
class BranchCatalog(Protocol):
    """Git-like refs over Iceberg tables. Names are validated by `cascade_ci.naming` before they get here."""

    capabilities: Capabilities
    default_branch: str

    def create_ref(self, name: str, from_ref: str, kind: RefKind = RefKind.BRANCH) -> Ref:
        """Create a branch or tag at `from_ref`'s head (a ref name or a commit hash). Zero-copy."""
        ...

    def get_ref(self, name: str) -> Ref:
        """The ref and its current head. Raises NotFoundError."""
        ...

    def list_refs(self, prefix: str = "") -> list[Ref]:
        """Refs whose name starts with `prefix`, sorted by name."""
        ...

    def log(self, ref: str, limit: int | None = None) -> list[Commit]:
        """First-parent history of `ref`, newest first."""
        ...

    def is_ancestor(self, ancestor: str, ref: str) -> bool:
        """True if commit `ancestor` is `ref`'s head or reachable from it."""
        ...

    def diff(self, from_ref: str, to_ref: str) -> list[TableChange]:
        """Tables whose metadata differs between two refs or hashes."""
        ...

    def commit_meta(self, branch: str, message: str, properties: Mapping[str, str], expected_hash: str) -> Ref:
        """Append a commit that changes no table and carries `properties`."""
        ...

    def fast_forward(self, target: str, source_hash: str, expected_target_hash: str) -> Ref:
        """Move `target` to `source_hash` only if its head is `expected_target_hash` and is an ancestor.

        Raises ConflictError when the head moved, NotFastForwardError when history diverged.
        """
        ...

    def merge(self, source: str, target: str, expected_target_hash: str, message: str) -> Ref:
        """Three-way merge of `source` into `target`; a table changed on both sides is a MergeConflictError."""
        ...

    def restore(
        self,
        branch: str,
        to_hash: str,
        expected_hash: str,
        message: str,
        properties: Mapping[str, str],
        tables: Collection[str] | None = None,
    ) -> Ref:
        """Append a commit that makes `branch`'s tables equal to those at `to_hash`. History is kept.

        `tables` restores only those (`ns.table`; one missing at `to_hash` is removed), with the namespaces
        they need that the branch lacks; every other table stays as it is.
        """
        ...

    def assign(self, name: str, to_hash: str, expected_hash: str) -> Ref:
        """Point a ref at another commit if its head is still `expected_hash`."""
        ...

    def delete_ref(self, name: str, expected_hash: str) -> None:
        """Delete a ref if its head is still `expected_hash`. The default branch cannot be deleted."""
        ...

    def sweep_leftovers(self, now: datetime) -> list[Ref]:
        """Delete what interrupted commands of this backend left behind (e.g. staging refs); return them."""
        ...

    def tables(self, ref: str) -> Catalog:
        """A pyiceberg Catalog of `ref`: writes on a branch become commits; tags and hashes are read-only."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
