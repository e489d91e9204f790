"""What cascade-ci writes into commit metadata, and how a pipeline branch's state is read back from it.

Stages record their facts as commits that change no table (`cascade.kind` says which fact). A data
commit has no `cascade.kind`, so "nothing changed since the verdict" means "only cascade commits
since the verdict".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

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
INGEST = "cascade.ingest"
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
    INGEST = "ingest"


# Commits of these kinds change no table: data judged before them is still the data at the head.
META_ONLY = frozenset(
    {MetaKind.BRANCH, MetaKind.ATTEMPT, MetaKind.VERDICT, MetaKind.PROMOTION, MetaKind.TRANSFORM, MetaKind.INGEST}
)


@dataclass(frozen=True)
class IngestRecord:
    """What the last ingest of a branch did, as its `ingest` commit tells it.

    `outcome` is `landed` (rows were written), `empty` (the sources gave no row) or `failed` (nothing
    was written; `error` says why). `rows` and `rejected` count per table; `sources` maps each table to
    the sources that gave it rows or rejects.
    """

    outcome: str
    rows: Mapping[str, int] = field(default_factory=dict)
    rejected: Mapping[str, int] = field(default_factory=dict)
    sources: Mapping[str, list[str]] = field(default_factory=dict)
    run_id: str = ""
    error: str = ""

    LANDED: ClassVar[str] = "landed"
    EMPTY: ClassVar[str] = "empty"
    FAILED: ClassVar[str] = "failed"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IngestRecord:
        data = json.loads(text)
        return cls(
            **{key: data[key] for key in ("outcome", "rows", "rejected", "sources", "run_id", "error") if key in data}
        )

    @property
    def landed(self) -> bool:
        return self.outcome == self.LANDED


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

    @cached_property
    def ingest(self) -> IngestRecord | None:
        """The newest ingest's record, or None when no ingest recorded one on this branch."""
        commit = self.latest.get(MetaKind.INGEST) or self.created  # an updated branch's marker carries it over
        return IngestRecord.from_json(commit.properties[INGEST]) if commit and INGEST in commit.properties else None

    def require_ingest(self, stage: str, allow_empty: bool = False) -> None:
        """Refuse (RefusedError) to run `stage` on a branch whose last ingest failed or landed nothing.

        A branch no ingest recorded anything on (its data written some other way) is let through.
        """
        from cascade_ci.errors import RefusedError

        record = self.ingest
        if allow_empty or record is None or record.landed:
            return
        rejects = ", only rejected records" if any(record.rejected.values()) else ""
        why = (
            f"failed ({record.error})" if record.outcome == IngestRecord.FAILED
            else f"landed no row (its sources gave none{rejects})"
        )  # fmt: skip
        run = f" --run-id {record.run_id}" if record.run_id else ""
        raise RefusedError(
            f"{stage} refused: the last ingest on {self.ref.name} {why}; run `cascade ingest{run}` again, "
            f"or pass --allow-empty to {stage} it as it is"
        )

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
