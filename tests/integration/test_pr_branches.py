"""Pull request branches pr/N: created, recreated and deleted by `cascade branch --pr`, swept by gc, never promoted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from cascade_ci.branch_state import read_branch
from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.cli import cli
from cascade_ci.config import load_settings
from cascade_ci.errors import InvalidNameError, NotFoundError, RefusedError
from cascade_ci.naming import PR_PREFIX, is_pr_branch, pr_branch
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.stages.gc import collect_garbage
from cascade_ci.stages.promote import promote
from tests.conftest import readings, write_rows


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_pr_branch_names() -> None:
    assert pr_branch(12) == "pr/12"
    assert is_pr_branch("pr/12")
    assert not is_pr_branch("pr/12a") and not is_pr_branch("pr/") and not is_pr_branch("pipeline/run-12")
    assert not is_pr_branch("pr/\uff11\uff12")  # full-width digits are digits to str.isdigit, not to us
    for bad in (0, -1, True):
        with pytest.raises(InvalidNameError):
            pr_branch(bad)


def test_branch_pr_creates_recreates_and_deletes(catalog: LocalBranchCatalog) -> None:
    write_rows(catalog, "main", "raw.readings", readings(1, 2))
    created = cascade("branch", "--pr", "7", "--json")
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["branch"] == "pr/7"
    assert json.loads(created.stdout)["action"] == "created"
    write_rows(catalog, "pr/7", "raw.readings", readings(3))
    write_rows(catalog, "main", "raw.readings", readings(4))

    recreated = cascade("branch", "--pr", "7", "--recreate", "--json")
    assert recreated.exit_code == 0, recreated.output
    assert json.loads(recreated.stdout)["action"] == "recreated"
    state = read_branch(catalog, "pr/7")
    assert state.ours and state.base_hash == catalog.get_ref("main").hash  # afresh from main's head
    ids = catalog.tables("pr/7").load_table("raw.readings").scan().to_arrow()["id"].to_pylist()
    assert sorted(ids) == [1, 2, 4]  # the old push's row 3 is gone

    deleted = cascade("branch", "--pr", "7", "--delete", "--json")
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.stdout) == {"branch": "pr/7", "action": "deleted"}
    with pytest.raises(NotFoundError):
        catalog.get_ref("pr/7")
    again = cascade("branch", "--pr", "7", "--delete", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["action"] == "absent"  # idempotent


def test_pr_and_run_id_exclude_each_other(catalog: LocalBranchCatalog, monkeypatch: pytest.MonkeyPatch) -> None:
    clash = cascade("branch", "--pr", "7", "--run-id", "123")
    assert clash.exit_code == 2 and "exclude each other" in clash.output
    monkeypatch.setenv("GITHUB_RUN_ID", "555")  # always set in Actions: --pr still wins without a clash
    result = cascade("branch", "--pr", "8", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["branch"] == "pr/8"
    monkeypatch.delenv("GITHUB_RUN_ID")
    neither = cascade("branch")
    assert neither.exit_code == 2 and "--run-id" in neither.output


def test_delete_refuses_anything_but_a_pr_branch(catalog: LocalBranchCatalog) -> None:
    assert cascade("branch", "--run-id", "42").exit_code == 0
    refused = cascade("branch", "--run-id", "42", "--delete")
    assert refused.exit_code == 1 and "only pull request branches" in refused.output
    assert catalog.get_ref("pipeline/run-42")


def test_other_stages_take_pr(catalog: LocalBranchCatalog) -> None:
    assert cascade("branch", "--pr", "9").exit_code == 0
    result = cascade("validate", "--pr", "9", "--gates", "schema", "--json")
    assert result.exit_code in (0, 1), result.output
    assert json.loads(result.stdout)["branch"] == "pr/9"


def test_promotion_refuses_a_pr_branch(catalog: LocalBranchCatalog) -> None:
    settings = load_settings(branch_prefix=PR_PREFIX)
    create_run_branch(settings, catalog, "5")
    with pytest.raises(RefusedError, match="never promoted"):
        promote(settings, catalog, "5")
    assert read_branch(catalog, "pr/5").ref.hash  # untouched


def test_gc_sweeps_pr_branches_past_retention(settings, catalog: LocalBranchCatalog) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=30)
    pr_settings = load_settings(branch_prefix=PR_PREFIX)
    with LocalBranchCatalog(settings.home, clock=lambda: long_ago) as old:
        create_run_branch(pr_settings, old, "3")
    create_run_branch(pr_settings, catalog, "4")  # fresh: kept
    catalog.create_ref("pr/notes", "main")  # not a PR branch name: never touched
    looked_up: list[str] = []

    def runs(run_id: str):
        looked_up.append(run_id)
        return None

    decisions = {d.branch: d.action for d in collect_garbage(settings, catalog, datetime.now(UTC), runs=runs)}
    assert decisions == {"pr/3": "deleted", "pr/4": "kept"}
    assert looked_up == []  # a PR number is not a workflow run id
    assert catalog.get_ref("pr/notes")
