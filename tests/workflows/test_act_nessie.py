"""The pull-request path of wap.yml on the real stack (Nessie 0.99, S3, Trino 476), run by act with the fake
GitHub API: pr/<number> in Nessie, the diff comment, one check per gate, the `closed` event, a fork's PR."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from cascade_ci.catalog import open_catalog
from cascade_ci.config import Settings, load_settings
from cascade_ci.github_api import MARKER
from tests.conftest import started_stack
from tests.workflows.test_act import GITHUB_REPOSITORY, PR_JOB, TOKEN, act_pull_request, jobs

# The stack's settings the workflow reads: repository variables (wap.yml's env and pipeline-env) and secrets.
VARIABLES = ("NESSIE_URI", "NESSIE_WAREHOUSE", "S3_ENDPOINT", "S3_REGION", "TRINO_URI")
SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto, Nessie and Trino of this module alone (services/stack.sh): other tests reset the shared Nessie's
    refs (`nessie_backend`), which would pull pr/9 away between two jobs' steps."""
    with started_stack(tmp_path_factory.mktemp("act-stack")) as settings:
        yield settings


@pytest.fixture
def production(own_stack: dict[str, str]) -> tuple[Settings, dict, list]:
    """Settings of that Nessie, and act's --var/-s for it: the jobs get the stack's settings only as
    repository variables and secrets, as on GitHub (this process's environment holds none of them)."""
    settings = load_settings(
        catalog="nessie",
        nessie_uri=own_stack["NESSIE_URI"],
        s3_endpoint=own_stack["S3_ENDPOINT"],
        s3_access_key_id=own_stack["AWS_ACCESS_KEY_ID"],
        s3_secret_access_key=own_stack["AWS_SECRET_ACCESS_KEY"],
    )
    variables = {"CASCADE_CATALOG": "nessie", **{name: own_stack[name] for name in VARIABLES}}
    secrets = [flag for name in SECRETS for flag in ("-s", f"{name}={own_stack[name]}")]
    return settings, variables, secrets


def refs(settings: Settings) -> dict[str, str]:
    with open_catalog(settings) as catalog:
        return {ref.name: ref.hash for ref in catalog.list_refs()}


def test_pull_request_on_nessie_branches_comments_the_diff_and_closing_deletes_the_branch(tmp_path, production):
    settings, variables, secrets = production
    code, log, comments, github = act_pull_request(tmp_path, GITHUB_REPOSITORY, *secrets, variables=variables)
    assert code == 0 and jobs(log) == {PR_JOB: "succeeded"}, log[-4000:]
    assert "pr/9" in refs(settings)
    assert not any(name.startswith("prod-") for name in refs(settings))  # a pull request never promotes

    diff = json.loads((tmp_path / "reports" / "diff.json").read_text())
    assert len(comments) == 1 and comments[0].startswith(MARKER), comments
    body = comments[0]
    assert "cascade verdict: passed" in body
    changed = [table for table in diff["tables"] if table["rows_added"]]
    assert changed, diff
    for table in changed:  # the comment names each changed table and its rows' sample keys
        assert table["table"] in body
        assert all(str(key[0]) in body for key in table["samples"].get("added", [])[:1])
    assert "marts.fct_glucose_readings" in body
    names = {check["name"] for check in github.checks}
    assert names and all(name.startswith("cascade / ") for name in names)
    assert {check.get("conclusion") for check in github.checks} <= {"success", "neutral"}
    assert all(check["head_sha"] == "a" * 40 for check in github.checks)

    closed = act_pull_request(tmp_path, GITHUB_REPOSITORY, *secrets, action="closed", variables=variables)
    code, log, comments, _ = closed
    assert code == 0 and jobs(log) == {"cascade/pr-closed": "succeeded"}, log[-4000:]
    assert "pr/9" not in refs(settings)
    assert comments == []


def test_pull_request_from_a_fork_gets_the_embedded_check_and_no_catalog_access(tmp_path, production):
    settings, variables, secrets = production
    before = refs(settings)
    code, log, comments, github = act_pull_request(tmp_path, "someone/octo-repo-fork", *secrets, variables=variables)
    assert code == 0 and jobs(log) == {"cascade/check (embedded)": "succeeded"}, log[-4000:]
    assert refs(settings) == before  # nothing created, committed or moved in Nessie
    assert comments == [] and github.requests == []
    for secret in (TOKEN, *(flag.split("=", 1)[1] for flag in secrets[1::2])):
        assert secret not in log
