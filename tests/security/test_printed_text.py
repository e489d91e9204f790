"""Findings 3 and 4: what cascade prints carries no URL credentials, and no workflow command from a foreign text.

A service's error text (here a fake Nessie's) could start a line with `::add-mask::`, `::error::`,
`::set-output` or `::stop-commands::`, or hold the legacy `##[...]` form the runner takes anywhere in a line.
"""

from __future__ import annotations

import io
import json
import re

import pytest

from cascade_ci.github import annotate
from tests.fakes.http import FakeServer, unused_port
from tests.security.conftest import cascade, workflow_commands

PASSWORD = "hunter2-pw"
INJECTION = (
    "bad ref\n::add-mask::innocent\n  ::error title=pwned::injected\r::set-output name=promote::true\n"
    "::stop-commands::abc\u2028::warning::x\nlegacy ##[error]injected too %0A::error::encoded"
)


def nessie_env(uri: str) -> dict[str, str]:
    return {"CASCADE_CATALOG": "nessie", "NESSIE_URI": uri}


@pytest.mark.parametrize("command", [["refs", "--json"], ["log", "main", "--json"], ["config", "check", "--json"]])
def test_credentials_in_nessie_uri_are_never_printed(command: list[str]) -> None:
    env = nessie_env(f"http://admin:{PASSWORD}@127.0.0.1:{unused_port()}")
    result = cascade(*command, env=env)
    assert PASSWORD not in result.stdout and PASSWORD not in result.stderr, result.output
    json.loads(result.stdout)
    if command[0] != "config":
        assert result.exit_code == 2
        assert "http://***@127.0.0.1" in result.stderr or "http://127.0.0.1" in result.stderr


def test_doctor_does_not_print_url_credentials() -> None:
    env = {**nessie_env(f"http://admin:{PASSWORD}@127.0.0.1:{unused_port()}"), "CASCADE_ENGINE": "trino"}
    env["TRINO_URI"] = f"http://trino:{PASSWORD}@127.0.0.1:{unused_port()}"
    result = cascade("doctor", "--json", env=env)
    assert result.exit_code == 2
    assert PASSWORD not in result.stdout + result.stderr
    json.loads(result.stdout)


def test_service_error_text_cannot_inject_workflow_commands() -> None:
    with FakeServer() as nessie:
        error = {"message": f"{INJECTION} at https://svc:{PASSWORD}@nessie.internal/x", "errorCode": "BAD_REQUEST"}
        for path in ("/api/v2/trees", "/api/v2/trees/main", "/api/v2/trees/main/history", "/api/v2/config"):
            nessie.reply("GET", path, error, status=400)
        for args in (["refs"], ["refs", "--json"], ["log", "main"], ["log", "main", "--json"]):
            result = cascade(*args, env=nessie_env(nessie.url))
            assert result.exit_code == 2, result.output
            assert nessie.requests, "the fake Nessie was asked"
            assert "injected" in result.stderr  # the text is shown ...
            assert workflow_commands(result.stdout) == workflow_commands(result.stderr) == []  # ... inert
            assert PASSWORD not in result.stdout + result.stderr


def test_neutralize_breaks_every_command_form_and_keeps_the_text() -> None:
    from cascade_ci.github import neutralize

    safe = neutralize(INJECTION)
    assert workflow_commands(safe.replace("\u2028", "\n")) == []
    assert "add-mask::innocent" in safe and "injected too" in safe
    assert neutralize("plain text: a::b, c") == "plain text: a::b, c"


def test_annotation_of_foreign_text_stays_one_command() -> None:
    stream = io.StringIO()
    annotate("error", INJECTION, title="::error::t\n::x", stream=stream)
    assert len(workflow_commands(stream.getvalue().rstrip("\n"), ours=("::error title=",))) == 0
    assert len(re.split(r"\r\n|\r|\n", stream.getvalue().rstrip("\n"))) == 1
    assert "%250A::error::encoded" in stream.getvalue()  # a literal %0A is not decoded into a new line


def test_redact_urls_in_free_text() -> None:
    from cascade_ci.errors import redact_urls

    text = f"at https://u:{PASSWORD}@h:1/p and s3://AKIA:{PASSWORD}@bucket/k, http://tok@x; ftp://plain/x"
    assert redact_urls(text) == "at https://***@h:1/p and s3://***@bucket/k, http://***@x; ftp://plain/x"
