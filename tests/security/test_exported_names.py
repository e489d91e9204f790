"""actions/setup/export_env.py refuses every variable name that changes how later steps' programs start
(shells, git, pip, the JVM, Perl, Ruby, the C library) or where their connections go (proxies, CA bundles):
the pipeline's settings and secrets are for the pipeline's config, not for the job's tools."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.unit.test_export_env import export, parse

# Each of these makes a later `run:` step (bash, git, pip/uv's install, dbt's JVM-free Python...) run
# other code, or sends its traffic (with the catalog's credentials) through another host.
NAMES = [
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "GIT_SSH_COMMAND",
    "GIT_CONFIG_COUNT",
    "PIP_INDEX_URL",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "PERL5OPT",
    "RUBYOPT",
    "GCONV_PATH",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
]


@pytest.mark.parametrize("where", ["settings", "secrets"])
@pytest.mark.parametrize("name", NAMES)
def test_tool_and_connection_variables_are_refused(tmp_path, name: str, where: str) -> None:
    done, written = export(tmp_path, **{where: {name: "x", "NIGHTSCOUT_URL": "https://example.org"}})
    assert done.returncode == 2, done.stderr
    assert f"{name} is reserved" in done.stderr
    assert written == ""


def test_shell_options_from_settings_would_run_code_in_every_later_bash_step(tmp_path) -> None:
    """What the refusal prevents: SHELLOPTS=xtrace with a PS4 holding a command substitution, which bash
    imports for a user that is not root (a GitHub-hosted runner's `runner`)."""
    done, written = export(tmp_path, settings={"SHELLOPTS": "xtrace", "PS4": "$(echo INJECTED >&2)"})
    env = {"PATH": os.environ["PATH"], **parse(written)}
    as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    step = subprocess.run([*as_user, "bash", "-c", "true"], env=env, capture_output=True, text=True, check=False)
    assert "INJECTED" not in step.stderr, "a later bash step ran the PS4 command"
    assert done.returncode == 2
