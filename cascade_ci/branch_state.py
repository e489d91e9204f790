"""What cascade-ci writes into commit metadata, and how a pipeline branch's state is read back from it.

Stages record their facts as commits that change no table (`cascade.kind` says which fact). A data
commit has no `cascade.kind`, so "nothing changed since the verdict" means "only cascade commits
since the verdict".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog, Commit, Ref
    from cascade_ci.verdict import Verdict

KIND = "cascade.kind"
RUN_ID = "cascade.run-id"
ATTEMPT = "cascade.attempt"
BASE_HASH = "cascade.base-hash"
VERDICT = "cascade.verdict"
VALIDATED_HASH = "cascade.validated-hash"
CREATED_BY = "cascade.created-by"
BRANCH = "cascade.branch"
DBT_TESTS = "cascade.dbt-tests"
DBT_FRESHNESS = "cascade.dbt-freshness"
DBT_MANIFEST = "cascade.dbt-manifest"  # the dbt manifest the transform built with, gzip + base64 (`state:modified`)
CREATOR = "cascade-ci"
FIRST_PAGE = 64
HISTORY_LIMIT = 1000  # commits a pipeline branch may carry before its creation marker is looked for no further


class MetaKind(StrEnum):
    BRANCH = "branch"
    ATTEMPT = "attempt"
    VERDICT = "verdict"
    PROMOTION = "promotion"
    ROLLBACK = "rollback"
    TRANSFORM = "transform"


# Commits of these kinds change no table: data judged before them is still the data at the head.
META_ONLY = frozenset({MetaKind.BRANCH, MetaKind.ATTEMPT, MetaKind.VERDICT, MetaKind.PROMOTION, MetaKind.TRANSFORM})


@dataclass(frozen=True)
class BranchState:
    """A pipeline branch as its history tells it, back to its creation marker."""

    ref: Ref
    head: Commit
    created: Commit | None
    latest: Mapping[str, Commit] = field(default_factory=dict)
    current: frozenset[str] = frozenset()
    attempt: int = 1

    @property
    def ours(self) -> bool:
        """True if cascade-ci created this branch (its history holds the creation marker naming it)."""
        return self.created is not None and self.created.properties.get(CREATED_BY) == CREATOR

    @property
    def base_hash(self) -> str | None:
        return self.created.properties.get(BASE_HASH) if self.created else None

    @property
    def last_activity(self) -> datetime:
        return self.head.time

    def is_current(self, kind: MetaKind) -> bool:
        """True if the newest `kind` commit saw the data that is at the head (only metadata came after)."""
        return kind in self.current

    @property
    def verdict_commit(self) -> Commit | None:
        return self.latest.get(MetaKind.VERDICT)

    @cached_property
    def verdict(self) -> Verdict | None:
        from cascade_ci.verdict import Verdict

        commit = self.verdict_commit
        return Verdict.from_json(commit.properties[VERDICT]) if commit else None

    @property
    def verdict_is_current(self) -> bool:
        """The newest verdict judged exactly the head's data, and names the commit it judged."""
        verdict, commit = self.verdict, self.verdict_commit
        return (
            verdict is not None
            and commit is not None
            and self.is_current(MetaKind.VERDICT)
            and verdict.validated_hash == commit.parent
        )


def _marks(commit: Commit, branch: str) -> bool:
    """The creation marker of `branch` (markers name their branch: others reach a history through main)."""
    return commit.properties.get(KIND) == MetaKind.BRANCH and commit.properties.get(BRANCH) == branch


def read_branch(catalog: BranchCatalog, name: str) -> BranchState:
    """Walk a branch's history back to its creation marker, noting the newest commit of each kind."""
    ref = catalog.get_ref(name)
    # Most branches find their marker within a few commits: read a short page first, the long one if needed.
    for limit in (FIRST_PAGE, HISTORY_LIMIT):
        history = catalog.log(ref.hash, limit=limit)
        if len(history) < limit or any(_marks(commit, name) for commit in history):
            break
    latest: dict[str, Commit] = {}
    current: set[str] = set()
    created = None
    attempt = None
    only_meta_since_head = True
    for commit in history:
        kind = commit.properties.get(KIND)
        if attempt is None and ATTEMPT in commit.properties:
            attempt = int(commit.properties[ATTEMPT])
        if _marks(commit, name):
            created = commit
            break
        if kind is not None and kind not in latest:
            latest[kind] = commit
            if only_meta_since_head:
                current.add(kind)
        if kind not in META_ONLY:
            only_meta_since_head = False
    return BranchState(
        ref=ref,
        head=history[0],
        created=created,
        latest=latest,
        current=frozenset(current),
        attempt=attempt or 1,
    )
