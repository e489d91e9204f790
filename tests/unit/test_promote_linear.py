"""Promotion's linearity rule: main's head on the branch's first-parent line, no merge above it."""

from __future__ import annotations

from datetime import UTC, datetime

from cascade_ci.catalog.base import Commit
from cascade_ci.stages.promote import _linear_onto

ROOT = "2e1cfa82b035" + "0" * 52  # Nessie's no-ancestor hash: main before its first commit, in no log
T = datetime(2026, 12, 1, tzinfo=UTC)


class History:
    def __init__(self, *commits: Commit) -> None:
        self.commits = list(commits)

    def log(self, ref: str, limit: int | None = None) -> list[Commit]:
        return self.commits[:limit]


def commit(name: str, *parents: str) -> Commit:
    return Commit(name, tuple(parents), T, name)


def test_main_at_a_root_no_log_lists_is_below_the_branch():
    branch = History(commit("b2", "b1"), commit("b1", ROOT))
    assert _linear_onto(branch, ROOT, "b2")


def test_main_in_the_history_is_below_the_branch():
    assert _linear_onto(History(commit("b2", "b1"), commit("b1", "m"), commit("m", "m0")), "m", "b2")


def test_a_merge_above_main_or_a_main_elsewhere_is_refused():
    assert not _linear_onto(History(commit("b2", "b1", "x"), commit("b1", "m")), "m", "b2")
    assert not _linear_onto(History(commit("b2", "b1"), commit("b1", ROOT)), "elsewhere", "b2")
