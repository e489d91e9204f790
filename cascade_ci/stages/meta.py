"""What cascade-ci writes into commit metadata, and how a pipeline branch's state is read back from it.

Stages record their facts as commits that change no table (`cascade.kind` says which fact). A data
commit has no `cascade.kind`, so "nothing changed since the verdict" means "only cascade commits
since the verdict".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog, Commit, Ref
    from cascade_ci.gates.result import Verdict

KIND = "cascade.kind"
RUN_ID = "cascade.run-id"
ATTEMPT = "cascade.attempt"
BASE_HASH = "cascade.base-hash"
VERDICT = "cascade.verdict"
VALIDATED_HASH = "cascade.validated-hash"
CREATED_BY = "cascade.created-by"
BRANCH = "cascade.branch"
CREATOR = "cascade-ci"
HISTORY_LIMIT = 1000  # commits a pipeline branch may carry before its creation marker is looked for no further


class MetaKind(StrEnum):
    BRANCH = "branch"
    ATTEMPT = "attempt"
    VERDICT = "verdict"
    PROMOTION = "promotion"
    ROLLBACK = "rollback"


# Commits of these kinds change no table: data judged before them is still the data at the head.
META_ONLY = frozenset({MetaKind.BRANCH, MetaKind.ATTEMPT, MetaKind.VERDICT, MetaKind.PROMOTION})


@dataclass(frozen=True)
class BranchState:
    """A pipeline branch as its history tells it."""

    ref: Ref
    head: Commit
    created: Commit | None
    verdict: Verdict | None
    verdict_commit: Commit | None
    verdict_is_current: bool
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


def read_branch(catalog: BranchCatalog, name: str) -> BranchState:
    """Walk a branch's history back to its creation marker, noting the newest verdict on the way."""
    from cascade_ci.gates.result import Verdict

    ref = catalog.get_ref(name)
    history = catalog.log(ref.hash, limit=HISTORY_LIMIT)
    created = verdict_commit = None
    only_meta_since_head = True
    verdict_is_current = False
    attempt = None
    for commit in history:
        kind = commit.properties.get(KIND)
        if attempt is None and ATTEMPT in commit.properties:
            attempt = int(commit.properties[ATTEMPT])
        if kind == MetaKind.VERDICT and verdict_commit is None:
            verdict_commit = commit
            verdict_is_current = only_meta_since_head
        if kind == MetaKind.BRANCH and commit.properties.get(BRANCH) == name:
            # The marker names its branch: markers of other runs reach this history through main.
            created = commit
            break
        if kind not in META_ONLY:
            only_meta_since_head = False
    verdict = Verdict.from_json(verdict_commit.properties[VERDICT]) if verdict_commit else None
    if verdict is not None and verdict_commit is not None and verdict.validated_hash != verdict_commit.parent:
        verdict_is_current = False
    return BranchState(
        ref=ref,
        head=history[0],
        created=created,
        verdict=verdict,
        verdict_commit=verdict_commit,
        verdict_is_current=verdict_is_current,
        attempt=attempt or 1,
    )
