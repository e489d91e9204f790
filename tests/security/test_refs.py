"""Findings 6 and 7: rollback goes only to cascade's promotion tags; user-given refs never reach a REST path
unless they are valid Nessie ref names (Nessie's Validation.REF_NAME_REGEX, narrowed) or hex hashes."""

from __future__ import annotations

import json

import pytest

from cascade_ci.catalog import open_catalog
from cascade_ci.catalog.base import RefKind
from cascade_ci.catalog.nessie import NessieBranchCatalog
from cascade_ci.errors import InvalidNameError
from tests.conftest import readings, write_rows
from tests.fakes.http import FakeServer
from tests.security.conftest import cascade


def promoted_tag(run_id: str, row: int) -> str:
    """Run `run_id` through branch, write, validate and promote on the embedded catalog; its `prod-*` tag."""
    branch = cascade("branch", "--run-id", run_id).stdout.strip()
    write_rows(open_catalog(), branch, "raw.readings", readings(row))
    assert cascade("validate", "--run-id", run_id).exit_code == 0
    promoted = cascade("promote", "--run-id", run_id, "--json")
    assert promoted.exit_code == 0, promoted.output
    return json.loads(promoted.stdout)["tag"]


@pytest.fixture
def two_promotions(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.setenv("CASCADE_GATES", "schema")
    return promoted_tag("601", 1), promoted_tag("602", 2)


def test_rollback_to_a_promotion_tag_works(two_promotions: tuple[str, str]) -> None:
    first, _second = two_promotions
    result = cascade("rollback", "--to", first, "--json")
    assert result.exit_code == 0, result.output


def test_rollback_refuses_a_prod_tag_cascade_did_not_make(two_promotions: tuple[str, str]) -> None:
    catalog = open_catalog()
    data_commit = catalog.log("pipeline/run-602", limit=3)[-1].hash  # below the verdict and promotion records
    catalog.create_ref("prod-29990101-000000", data_commit, RefKind.TAG)
    head = catalog.get_ref("main").hash
    result = cascade("rollback", "--to", "prod-29990101-000000", "--json")
    assert result.exit_code == 1, result.output
    assert "not written by `cascade promote`" in json.loads(result.stdout)["message"]
    assert open_catalog().get_ref("main").hash == head


def test_rollback_refuses_a_tag_without_the_promotion_prefix(two_promotions: tuple[str, str]) -> None:
    first, _second = two_promotions
    catalog = open_catalog()
    catalog.create_ref("release-1", catalog.get_ref(first).hash, RefKind.TAG)
    for name in ("release-1", "main", "pipeline/run-601"):
        result = cascade("rollback", "--to", name)
        assert result.exit_code == 1, result.output
        assert "not a promotion tag" in result.stderr


@pytest.mark.parametrize("name", ["../main", "prod-1/../../x", "prod-x@abc", "/prod-1", "prod-1/", "prod-1.", ""])
def test_rollback_refuses_malformed_names_before_any_lookup(name: str) -> None:
    result = cascade("rollback", "--to", name, "--json")
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["type"] == "InvalidNameError"


BAD_REFS = ["../config", "main/../../config", "a//b", "/main", "main/", "main.", "ma in", "main%2F..", "-x", "a@b@c"]


@pytest.fixture
def nessie() -> FakeServer:
    with FakeServer() as server:
        yield server


@pytest.mark.parametrize("ref", BAD_REFS)
def test_bad_ref_names_never_reach_a_nessie_rest_path(nessie: FakeServer, ref: str) -> None:
    catalog = NessieBranchCatalog(nessie.url, "warehouse", "main", retries=0)
    for call in (catalog.get_ref, lambda r: catalog.log(r, limit=1), lambda r: catalog.tables(r)):
        with pytest.raises(InvalidNameError):
            call(ref)
    with pytest.raises(InvalidNameError):
        catalog.delete_ref(ref, "0" * 64)
    assert nessie.requests == []


@pytest.mark.parametrize("commit", ["../../x", "zzzzzzzz", "abc", "0" * 65, "main"])
def test_bad_hashes_never_reach_a_nessie_rest_path(nessie: FakeServer, commit: str) -> None:
    catalog = NessieBranchCatalog(nessie.url, "warehouse", "main", retries=0)
    with pytest.raises(InvalidNameError):
        catalog.assign("pipeline/run-1", "0" * 64, commit)
    with pytest.raises(InvalidNameError):
        catalog.log(f"main@{commit}", limit=1)
    assert nessie.requests == []


@pytest.mark.parametrize("ref", ["../config", "main/../../config"])
def test_cli_refuses_bad_refs_with_exit_2(nessie: FakeServer, ref: str) -> None:
    result = cascade("log", ref, "--json", env={"CASCADE_CATALOG": "nessie", "NESSIE_URI": nessie.url})
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["type"] == "InvalidNameError"
    assert all(".." not in request.target for request in nessie.requests)


@pytest.mark.parametrize("ref", ["../x", "main@../x", "a//b@" + "0" * 64, "main@xyz"])
def test_cli_refuses_bad_refs_on_the_embedded_catalog_too(ref: str) -> None:
    result = cascade("log", ref, "--json")
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["type"] == "InvalidNameError"


GOOD_REFS = ["main", "pipeline/run-1", "prod-20260101-000000-2", "0" * 64, "abcdef12", "main@abcdef12"]


@pytest.mark.parametrize("ref", GOOD_REFS)
def test_valid_ref_specs_pass(ref: str) -> None:
    from cascade_ci.naming import validate_ref_spec

    assert validate_ref_spec(ref) == ref
