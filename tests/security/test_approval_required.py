"""With `approvers` in the config (a repository without environment reviewers), main moves only with an
approval: a listed approver's comment (`promote --approved-by LOGIN`, from `cascade approve`) or a GitHub
environment review of the promoting run. A dispatch of the promote workflow by anyone with write access
carries neither, and must not promote."""

from __future__ import annotations

import json

import pytest

from cascade_ci.catalog import open_catalog
from cascade_ci.config import load_settings
from cascade_ci.errors import RefusedError
from cascade_ci.stages.promote import promote
from tests.conftest import readings, write_rows
from tests.security.conftest import cascade


@pytest.fixture
def validated_run(monkeypatch: pytest.MonkeyPatch) -> str:
    """Run 701 branched, written and validated (passing) on the embedded catalog; approvers: alice, bob."""
    for name in ("GITHUB_TOKEN", "GITHUB_RUN_ID", "GITHUB_REPOSITORY", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CASCADE_GATES", "schema")
    monkeypatch.setenv("CASCADE_APPROVERS", "alice,bob")
    branch = cascade("branch", "--run-id", "701").stdout.strip()
    write_rows(open_catalog(), branch, "raw.readings", readings(1))
    assert cascade("validate", "--run-id", "701").exit_code == 0
    return "701"


@pytest.mark.parametrize("extra", [[], ["--update"], ["--approved-by", "mallory"], ["--approved-by", "alice-x"]])
def test_promotion_without_a_listed_approval_is_refused(validated_run: str, extra: list[str]) -> None:
    main = open_catalog().get_ref("main").hash
    result = cascade("promote", "--run-id", validated_run, "--json", *extra)
    assert result.exit_code == 1, result.output
    assert "approv" in json.loads(result.stdout)["message"]
    assert open_catalog().get_ref("main").hash == main


def test_the_promote_stage_itself_refuses_without_an_approval(validated_run: str) -> None:
    """`cascade run`'s automatic promotion calls the stage with the run's provenance only."""
    catalog = open_catalog()
    main = catalog.get_ref("main").hash
    with pytest.raises(RefusedError, match="approv"):
        promote(load_settings(), catalog, validated_run, provenance={"actor": "mallory"})
    assert catalog.get_ref("main").hash == main


@pytest.mark.parametrize("login", ["alice", "Bob"])
def test_a_listed_approver_promotes(validated_run: str, login: str) -> None:
    result = cascade("promote", "--run-id", validated_run, "--approved-by", login, "--json")
    assert result.exit_code == 0, result.output
    assert open_catalog().get_ref("main").hash == json.loads(result.stdout)["main_after"]


def test_a_dry_run_needs_no_approval(validated_run: str) -> None:
    result = cascade("promote", "--run-id", validated_run, "--dry-run", "--json")
    assert result.exit_code == 0, result.output


def test_a_malformed_approver_is_a_usage_error_without_a_traceback(validated_run: str) -> None:
    result = cascade("promote", "--run-id", validated_run, "--approved-by", "alice;rm -rf /")
    assert result.exit_code == 2, result.output
    assert "not a GitHub login" in result.stderr and "Traceback" not in result.stderr
