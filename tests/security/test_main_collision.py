"""A config whose run or pull-request branch names can equal the main branch's is refused: with branch_prefix
`mai`, run `n`'s branch is `main`, and `cascade transform --run-id n` (which needs no branch marker) would
build the models straight onto main, with no gate and no approval."""

from __future__ import annotations

import pytest

from tests.security.conftest import cascade


@pytest.mark.parametrize(
    ("prefix", "main"),
    [("mai", "main"), ("pipeline/", "pipeline/main"), ("pipeline/run-", "pipeline/run-prod"), ("pr/", "pr/7")],
)
def test_a_run_branch_that_could_be_main_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, prefix: str, main: str
) -> None:
    monkeypatch.setenv("CASCADE_BRANCH_PREFIX", prefix)
    monkeypatch.setenv("ICEBERG_NESSIE_REF", main)
    result = cascade("branch", "--run-id", "n")
    assert result.exit_code == 2, result.output
    assert "could be named" in result.stderr


@pytest.mark.parametrize("main", ["pr/12", "prod-20260101-000000", "cascade-scratch/x"])
def test_main_cannot_be_named_like_cascades_own_refs(monkeypatch: pytest.MonkeyPatch, main: str) -> None:
    monkeypatch.setenv("ICEBERG_NESSIE_REF", main)
    result = cascade("branch", "--run-id", "1")
    assert result.exit_code == 2, result.output


@pytest.mark.parametrize(("prefix", "main"), [("pipeline/run-", "main"), ("main-", "main"), ("mainline/", "main")])
def test_prefixes_that_cannot_reach_main_are_fine(monkeypatch: pytest.MonkeyPatch, prefix: str, main: str) -> None:
    monkeypatch.setenv("CASCADE_BRANCH_PREFIX", prefix)
    monkeypatch.setenv("ICEBERG_NESSIE_REF", main)
    result = cascade("branch", "--run-id", "1")
    assert result.exit_code == 0, result.output
