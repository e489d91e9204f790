"""Rollback: make main's tables equal to a promotion tag's, as a new commit. History is kept."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from cascade_ci.branch_state import KIND, MetaKind
from cascade_ci.catalog.base import RefKind
from cascade_ci.errors import ConflictError, RefusedError
from cascade_ci.naming import TAG_PREFIX, validate_ref_name

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog
    from cascade_ci.config import Settings


@dataclass(frozen=True)
class RollbackResult:
    tag: str
    tag_hash: str
    main_before: str
    main_after: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rollback(settings: Settings, catalog: BranchCatalog, tag: str) -> RollbackResult:
    """Append a commit to main restoring the tables at `tag`; compare-and-swap on main's head.

    Only a promotion tag goes: a `prod-*` tag on a commit `cascade promote` wrote (its `cascade.kind` is
    `promotion`), so a tag anyone else made, on data no verdict passed, is refused.
    """
    validate_ref_name(tag)
    if not tag.startswith(TAG_PREFIX):
        raise RefusedError(
            f"{tag!r} is not a promotion tag: rollback goes only to the {TAG_PREFIX}* tags `cascade promote` "
            "creates (`cascade refs` lists them)"
        )
    target = catalog.get_ref(tag)
    if target.kind is not RefKind.TAG:
        raise RefusedError(f"{tag!r} is a {target.kind}, not a tag; rollback goes to a promotion tag")
    tagged = catalog.log(target.hash, limit=1)
    if not tagged or tagged[0].properties.get(KIND) != MetaKind.PROMOTION:
        raise RefusedError(
            f"{tag!r} does not mark a promotion: its commit {target.hash[:12]} was not written by "
            "`cascade promote`; rollback goes only to promotion tags"
        )
    main = catalog.get_ref(settings.main_branch)
    try:
        after = catalog.restore(
            settings.main_branch,
            target.hash,
            expected_hash=main.hash,
            message=f"rollback {settings.main_branch} to {tag}",
            properties={KIND: MetaKind.ROLLBACK, "cascade.rollback-to": tag, "cascade.rollback-hash": target.hash},
        )
    except ConflictError as e:
        raise RefusedError(f"{settings.main_branch} moved during rollback; nothing was changed: {e}") from e
    return RollbackResult(tag, target.hash, main.hash, after.hash)
