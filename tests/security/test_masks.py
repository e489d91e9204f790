"""Finding 1: `::add-mask::` lines never reach stdout (which may be --json), and only derived secrets are masked.

GitHub masks `secrets.*` values (GITHUB_TOKEN among them) itself; a value derived at run time, such as the
SHA-1 of the Nightscout secret, is not, so cascade asks for it, on stderr (the runner reads commands there too).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from cascade_ci import github_api
from tests.examples.test_nightscout_source import ENDPOINT, nightscout_api, synthetic
from tests.fakes.http import FakeServer
from tests.security.conftest import cascade

SECRET = "n1ghtscout-s3cret-value"
SECRET_SHA1 = hashlib.sha1(SECRET.encode()).hexdigest()
TOKEN = "ghs_" + "t0ken" * 8


@pytest.mark.usefixtures("glucose_project")
def test_ingest_json_in_actions_is_pure_json_without_secrets():
    entries = synthetic(20, datetime.now(UTC) - timedelta(hours=2))
    with FakeServer() as server:
        server.route("GET", ENDPOINT, nightscout_api(entries))
        env = {
            "GITHUB_ACTIONS": "true",
            "GITHUB_TOKEN": TOKEN,
            "GITHUB_REPOSITORY": "octo/cascade",
            "NIGHTSCOUT_URL": server.url,
            "NIGHTSCOUT_API_SECRET": SECRET,
        }
        assert cascade("branch", "--run-id", "7", env=env).exit_code == 0
        result = cascade("ingest", "--run-id", "7", "--source", "nightscout", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    json.loads(result.stdout)  # stdout is the JSON payload and nothing else
    for secret in (SECRET, SECRET_SHA1, TOKEN):
        assert secret not in result.stdout
    assert SECRET not in result.stderr and TOKEN not in result.stderr  # GitHub masks these itself
    assert f"::add-mask::{SECRET_SHA1}" in result.stderr.splitlines()  # derived: cascade asks for it


def test_github_api_prints_no_mask_for_the_workflow_token(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "octo/cascade", "GITHUB_ACTIONS": "true"}
    assert github_api.from_env(env) is not None
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
