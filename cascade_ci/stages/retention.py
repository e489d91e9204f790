"""Retention of main's history and of promotion tags: what `cascade gc --files` keeps.

Main's history: the commits of main's first-parent line younger than `main_retention_days`, with the one
main stood at when that window opened (so main reads as it was at any moment of the window), or back to
its `main_retention_promotions`-th newest promotion commit, whichever reaches further back. The head is
always kept; with fewer promotions than asked for, everything is.

`prod-*` tags: kept while younger than `tag_retention_days` (counted from the time in the tag's name, else
from its commit's time) or among the `tag_retention_count` newest. The newest tag and a tag that a rollback
in main's retained history restored (`cascade.rollback-to` names it, `cascade.rollback-hash` its commit)
are never deleted. A tag is deleted by compare-and-swap on the commit it was judged at.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cascade_ci.branch_state import KIND, MetaKind
from cascade_ci.errors import AccessDeniedError, ConflictError, NotFoundError, ServiceUnavailableError

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog, Commit, Ref

ROLLBACK_TO = "cascade.rollback-to"  # written by stages.rollback
ROLLBACK_HASH = "cascade.rollback-hash"
_TAG_TIME = re.compile(r"(\d{8}-\d{6})(?:-\d+)?$")


@dataclass(frozen=True)
class TagDecision:
    tag: str
    hash: str
    age_days: float
    action: str  # kept | deleted | would-delete
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retained_history(history: Sequence[Commit], now: datetime, days: int, promotions: int) -> list[Commit]:
    """The newest commits of `history` (main's first-parent log, newest first) that retention keeps."""
    if not history:
        return []
    window = now - timedelta(days=days)
    by_days = next((i for i, commit in enumerate(history) if commit.time < window), len(history) - 1)
    promoted = [i for i, commit in enumerate(history) if commit.properties.get(KIND) == MetaKind.PROMOTION]
    if promotions == 0:
        by_count = 0
    elif len(promoted) >= promotions:
        by_count = promoted[promotions - 1]
    else:
        by_count = len(history) - 1
    return list(history[: max(by_days, by_count) + 1])


def rollback_targets(history: Sequence[Commit]) -> set[str]:
    """Tag names and commit hashes that rollbacks in `history` restored."""
    found = set()
    for commit in history:
        if commit.properties.get(KIND) == MetaKind.ROLLBACK:
            found.update(v for v in (commit.properties.get(ROLLBACK_TO), commit.properties.get(ROLLBACK_HASH)) if v)
    return found


def tag_time(catalog: BranchCatalog, ref: Ref) -> datetime:
    """When a tag was made: the UTC time in its name (`prod-YYYYMMDD-HHMMSS`), else its commit's time."""
    match = _TAG_TIME.search(ref.name)
    if match:
        return datetime.strptime(match.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    return catalog.log(ref.hash, limit=1)[0].time


def judge_tags(
    tags: Sequence[tuple[Ref, datetime]], now: datetime, days: int, count: int, protected: set[str]
) -> list[TagDecision]:
    """Keep or expire each tag (action `kept` or `expired`), newest first."""
    decisions = []
    ordered = sorted(tags, key=lambda pair: (pair[1], pair[0].name), reverse=True)
    for rank, (ref, made) in enumerate(ordered):
        age = (now - made).total_seconds() / 86400
        if rank == 0:
            reason = "the newest tag"
        elif ref.name in protected or ref.hash in protected:
            reason = "a rollback on main restored it"
        elif rank < count:
            reason = f"among the {count} newest"
        elif age <= days:
            reason = "within retention"
        else:
            decisions.append(
                TagDecision(ref.name, ref.hash, age, "expired", f"older than {days} d, not among the newest")
            )
            continue
        decisions.append(TagDecision(ref.name, ref.hash, age, "kept", reason))
    return decisions


NO_TAG_PERMISSION = "no permission to delete tags; run gc with the promoter identity"


def expire_tag(catalog: BranchCatalog, decision: TagDecision, dry_run: bool) -> TagDecision:
    """Carry out an `expired` decision: delete the tag if it still points where it was judged."""
    if decision.action != "expired":
        return decision
    if dry_run:
        return TagDecision(decision.tag, decision.hash, decision.age_days, "would-delete", decision.reason)
    try:
        catalog.delete_ref(decision.tag, expected_hash=decision.hash)
    except AccessDeniedError:  # the nightly gc runs as the writer; only the promoter deletes prod-* tags
        return TagDecision(decision.tag, decision.hash, decision.age_days, "kept", NO_TAG_PERMISSION)
    except (ConflictError, NotFoundError, ServiceUnavailableError) as e:
        return TagDecision(decision.tag, decision.hash, decision.age_days, "kept", f"not deleted: {e}")
    return TagDecision(decision.tag, decision.hash, decision.age_days, "deleted", decision.reason)
