"""Nessie behind a real token issuer: who gets in, with what, and where credentials may never go."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest
import requests

from cascade_ci.catalog.base import scratch_name
from cascade_ci.catalog.nessie import NessieBranchCatalog
from cascade_ci.catalog.nessie_auth import NessieAuth, check_transport
from cascade_ci.catalog.nessie_tables import NessieRefCatalog
from cascade_ci.config import load_settings
from cascade_ci.errors import AccessDeniedError, ConfigError
from tests.conftest import EXAMPLES, PROJECT_LEFTOVERS
from tests.security.conftest import AuthStack, cascade_in


@pytest.fixture
def project(tmp_path: Path, auth_stack: AuthStack) -> tuple[Path, dict[str, str]]:
    """examples/minimal in a tmp folder, on the auth-enabled Nessie, with its own run id; no credentials yet."""
    root = tmp_path / "minimal"
    shutil.copytree(EXAMPLES / "minimal", root, ignore=shutil.ignore_patterns(*PROJECT_LEFTOVERS))
    env = {
        "CASCADE_CATALOG": "nessie",
        "CASCADE_ENGINE": "duckdb",
        "CASCADE_HOME": str(tmp_path / "home"),
        "CASCADE_REPORTS_DIR": str(tmp_path / "reports"),
        "GITHUB_RUN_ID": uuid.uuid4().hex[:12],
        **{key: auth_stack[key] for key in ("NESSIE_URI", "NESSIE_WAREHOUSE", "S3_ENDPOINT", "S3_REGION")},
        **{key: auth_stack[key] for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
    }
    return root, env


def settings_of(auth_stack: AuthStack, client: str) -> dict[str, str]:
    """Settings overrides (as flags would give them) for `client`'s OAuth2 credentials."""
    return {
        "nessie_oauth2_token_url": auth_stack["NESSIE_OAUTH2_TOKEN_URL"],
        "nessie_oauth2_client_id": client,
        "nessie_oauth2_client_secret": auth_stack.secret(client),
    }


def test_unauthenticated_calls_are_refused_on_both_apis(auth_stack: AuthStack):
    for path in ("/api/v2/trees", "/iceberg/v1/config?warehouse=warehouse"):
        with pytest.raises(HTTPError) as refused:
            urlopen(auth_stack["NESSIE_URI"] + path, timeout=30)
        assert refused.value.code == 401, path


def test_the_cli_without_credentials_is_told_so(project):
    root, env = project
    done = cascade_in(root, {**env, "NESSIE_AUTH": "none"}, "refs")
    assert done.returncode == 2
    assert "refused the credentials (HTTP 401)" in done.stderr
    assert "NESSIE_AUTH" in done.stderr


def run_pipeline(root: Path, writer: dict[str, str], promoter: dict[str, str]) -> None:
    for step in ("branch", "ingest", "validate"):
        done = cascade_in(root, writer, step)
        assert done.returncode == 0, f"{step}: {done.stderr}"
    done = cascade_in(root, promoter, "promote")
    assert done.returncode == 0, done.stderr
    refs = cascade_in(root, promoter, "refs", "--json")
    assert refs.returncode == 0, refs.stderr
    assert "prod-" in refs.stdout


def test_the_pipeline_runs_with_oauth2_client_credentials(project, auth_stack: AuthStack):
    root, env = project
    run_pipeline(
        root, {**env, **auth_stack.oauth2_env("cascade-writer")}, {**env, **auth_stack.oauth2_env("cascade-promoter")}
    )


def test_the_pipeline_runs_with_bearer_tokens(project, auth_stack: AuthStack):
    root, env = project
    run_pipeline(
        root, {**env, **auth_stack.bearer_env("cascade-writer")}, {**env, **auth_stack.bearer_env("cascade-promoter")}
    )


def test_a_wrong_secret_is_a_one_line_error_without_the_secret(project, auth_stack: AuthStack):
    root, env = project
    wrong = "not-the-secret-" + uuid.uuid4().hex
    credentials = {**auth_stack.oauth2_env("cascade-writer"), "NESSIE_OAUTH2_CLIENT_SECRET": wrong}
    done = cascade_in(root, {**env, **credentials}, "branch")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "refused client 'cascade-writer'" in done.stderr
    assert wrong not in done.stderr + done.stdout


def test_the_reader_cannot_create_a_branch(project, auth_stack: AuthStack):
    root, env = project
    done = cascade_in(root, {**env, **auth_stack.oauth2_env("cascade-reader")}, "branch")
    assert done.returncode == 2
    assert "CREATE_REFERENCE" in done.stderr and "not allowed" in done.stderr
    assert cascade_in(root, {**env, **auth_stack.oauth2_env("cascade-reader")}, "refs").returncode == 0


def test_the_writer_cannot_move_main(project, auth_stack: AuthStack):
    root, env = project
    writer = {**env, **auth_stack.oauth2_env("cascade-writer")}
    for step in ("branch", "ingest", "validate"):
        assert cascade_in(root, writer, step).returncode == 0
    done = cascade_in(root, writer, "promote")
    assert done.returncode == 2
    assert "is not allowed for role 'service-account-cascade-writer' on reference 'main'" in done.stderr
    auth = NessieAuth.from_settings(load_settings(nessie_auth="oauth2", **settings_of(auth_stack, "cascade-writer")))
    catalog = NessieBranchCatalog(auth_stack["NESSIE_URI"], auth=auth)
    head, branch = catalog.get_ref("main"), catalog.get_ref(f"pipeline/run-{env['GITHUB_RUN_ID']}")
    with pytest.raises(AccessDeniedError, match="'ASSIGN_REFERENCE_TO_HASH' is not allowed"):
        catalog.assign("main", branch.hash, head.hash)  # the plain reassignment, no dry run first
    assert catalog.get_ref("main") == head


def test_the_pull_request_identity_writes_pr_branches_only(project, auth_stack: AuthStack):
    """A pull request's jobs run its own code: their identity cannot forge a pipeline verdict nor move main."""
    root, env = project
    pr, writer = {**env, **auth_stack.oauth2_env("cascade-pr")}, {**env, **auth_stack.oauth2_env("cascade-writer")}
    number = str(int(uuid.uuid4().int % 90000) + 10000)
    for step in ("branch", "ingest", "validate"):  # what the pull-request job runs
        done = cascade_in(root, pr, step, "--pr", number)
        assert done.returncode == 0, f"{step}: {done.stderr}"
    done = cascade_in(root, pr, "branch")  # a pipeline/run-* branch of its own
    assert done.returncode == 2
    assert "'CREATE_REFERENCE' is not allowed for role 'service-account-cascade-pr'" in done.stderr
    assert cascade_in(root, writer, "branch").returncode == 0  # the pipeline's branch, by the writer
    for step in ("ingest", "validate"):  # a commit (data, or a passing verdict) onto it
        done = cascade_in(root, pr, step)
        assert done.returncode == 2, f"{step}: {done.stderr}"
        assert "service-account-cascade-pr" in done.stderr and "not allowed" in done.stderr
    auth = NessieAuth.from_settings(load_settings(nessie_auth="oauth2", **settings_of(auth_stack, "cascade-pr")))
    catalog = NessieBranchCatalog(auth_stack["NESSIE_URI"], auth=auth)
    head, branch = catalog.get_ref("main"), catalog.get_ref(f"pipeline/run-{env['GITHUB_RUN_ID']}")
    with pytest.raises(AccessDeniedError, match="not allowed"):
        catalog.assign("main", catalog.get_ref(f"pr/{number}").hash, head.hash)
    assert catalog.get_ref("main") == head
    assert catalog.get_ref(branch.name) == branch  # nothing landed on the pipeline's branch
    with pytest.raises(AccessDeniedError, match="not allowed"):  # nor on a pipeline command's staging branch
        catalog.create_ref(scratch_name(branch.name), branch.hash)
    writer_catalog = NessieBranchCatalog(
        auth_stack["NESSIE_URI"],
        auth=NessieAuth.from_settings(load_settings(nessie_auth="oauth2", **settings_of(auth_stack, "cascade-writer"))),
    )
    with pytest.raises(AccessDeniedError, match="not allowed"):  # and the writer stays off the pull request's
        writer_catalog.create_ref(scratch_name(f"pr/{number}"), branch.hash)
    gc = cascade_in(root, writer, "branch", "--pr", number, "--delete")  # gc and pr-closed may drop it
    assert gc.returncode == 0, gc.stderr


def test_one_token_serves_both_apis_until_it_is_due(auth_stack: AuthStack):
    auth = NessieAuth(
        "oauth2",
        token_url=auth_stack["NESSIE_OAUTH2_TOKEN_URL"],
        client_id="cascade-reader",
        client_secret=auth_stack.secret("cascade-reader"),
    )
    catalog = NessieBranchCatalog(auth_stack["NESSIE_URI"], auth=auth)
    catalog.get_ref("main")
    tables = catalog.tables("main")
    assert isinstance(tables, NessieRefCatalog)
    tables.list_namespaces()  # Iceberg REST, same token
    catalog.list_refs()
    assert auth.fetches == 1
    auth._expires_at = 0  # due: the next call fetches a new one
    catalog.get_ref("main")
    assert auth.fetches == 2
    assert "secret" not in repr(auth) and auth_stack.secret("cascade-reader") not in repr(auth)


class _Recorder(http.server.BaseHTTPRequestHandler):
    """GET /hop redirects to `target`; every request's Authorization header is recorded."""

    seen: list[tuple[str, str | None]]
    target = ""

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.path.startswith("/hop") or "/api/v2/" in self.path:
            self.send_response(302)
            self.send_header("Location", self.target)
            self.end_headers()
            return
        body = b'{"reference": {"name": "main", "type": "BRANCH", "hash": "00"}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, list, list]]:
    """A server on 127.0.0.1 that redirects to another on `localhost` (another host, another port)."""
    servers, logs = [], []
    for _ in range(2):
        log: list = []
        handler = type("Handler", (_Recorder,), {"seen": log})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        logs.append(log)
    other = f"http://localhost:{servers[1].server_address[1]}/landed"
    servers[0].RequestHandlerClass.target = other
    yield f"http://127.0.0.1:{servers[0].server_address[1]}", logs[0], logs[1]
    for server in servers:
        server.shutdown()


def test_the_token_does_not_follow_a_redirect_to_another_host(two_hosts):
    first, at_first, at_other = two_hosts
    auth = NessieAuth("bearer", token="tok-" + uuid.uuid4().hex)
    NessieBranchCatalog(first, auth=auth, retries=0).get_ref("main")  # REST v2 (urllib)
    session = requests.Session()
    session.auth = auth.requests_auth()  # as NessieRefCatalog's session (Iceberg REST)
    assert session.get(f"{first}/hop", timeout=10).status_code == 200
    assert [header for _, header in at_first] == [f"Bearer {auth._static}"] * 2
    assert len(at_other) == 2
    assert all(header is None for _, header in at_other)


def test_the_iceberg_session_carries_cascade_credentials(auth_stack: AuthStack):
    auth = NessieAuth("bearer", token=auth_stack.token("cascade-reader"))
    tables = NessieBranchCatalog(auth_stack["NESSIE_URI"], auth=auth).tables("main")
    assert tables._session.auth.auth is auth


@pytest.mark.parametrize("url", ["http://nessie.example.com:19120", "http://10.0.0.5:19120", "ftp://127.0.0.1/"])
def test_no_credential_over_plain_http_to_another_host(url):
    auth = NessieAuth("bearer", token="tok")
    with pytest.raises(ConfigError, match="plain"):
        NessieBranchCatalog(url, auth=auth, retries=0).get_ref("main")
    with pytest.raises(ConfigError, match="plain"):
        NessieAuth("oauth2", token_url=f"{url}/token", client_id="c", client_secret="s")


def test_https_and_loopback_are_fine():
    for url in ("https://nessie.example.com/api", "http://127.0.0.1:1/", "http://localhost:1/", "http://[::1]:1/"):
        check_transport(url, "a token")


def test_the_cli_refuses_plain_http_to_another_host(project):
    root, env = project
    unsafe = {**env, "NESSIE_URI": "http://10.255.255.1:19120", "NESSIE_AUTH": "bearer", "NESSIE_TOKEN": "tok-x"}
    done = cascade_in(root, unsafe, "refs")
    assert done.returncode == 2
    assert "plain http" in done.stderr and "tok-x" not in done.stderr


def test_a_reader_writing_through_iceberg_rest_is_denied_in_one_line(project, auth_stack: AuthStack):
    root, env = project
    assert cascade_in(root, {**env, **auth_stack.oauth2_env("cascade-writer")}, "branch").returncode == 0
    done = cascade_in(root, {**env, **auth_stack.oauth2_env("cascade-reader")}, "ingest")
    assert done.returncode == 2
    assert "Nessie denied" in done.stderr and "service-account-cascade-reader" in done.stderr
    assert "Traceback" not in done.stderr


def test_doctor_and_the_file_sweep_use_the_credentials(project, auth_stack: AuthStack):
    root, env = project
    reader = {**env, **auth_stack.oauth2_env("cascade-reader")}
    doctor = cascade_in(root, reader, "doctor", "--json")
    findings = {(f["component"], f["check"]): f for f in json.loads(doctor.stdout)["findings"]}
    assert findings[("catalog", "nessie")]["status"] == "ok", findings
    assert findings[("storage", "s3 bucket")]["status"] == "ok", findings
    unauthenticated = cascade_in(root, {**env, "NESSIE_AUTH": "none"}, "doctor", "--json")
    nessie = next(f for f in json.loads(unauthenticated.stdout)["findings"] if f["check"] == "nessie")
    assert nessie["status"] == "error" and "401" in nessie["message"]
    sweep = cascade_in(root, {**env, **auth_stack.oauth2_env("cascade-writer")}, "gc", "--files", "--dry-run", "--json")
    assert sweep.returncode == 0, sweep.stderr


def test_config_check_masks_the_nessie_secrets(tmp_path: Path):
    shutil.copytree(EXAMPLES / "minimal", tmp_path / "minimal", ignore=shutil.ignore_patterns(*PROJECT_LEFTOVERS))
    token, secret = "tok-" + uuid.uuid4().hex, "sec-" + uuid.uuid4().hex
    env = {"NESSIE_AUTH": "oauth2", "NESSIE_TOKEN": token, "NESSIE_OAUTH2_CLIENT_SECRET": secret}
    done = cascade_in(tmp_path / "minimal", env, "config", "check", "--json")
    assert "oauth2" in done.stdout  # the settings were read, and printed
    assert token not in done.stdout + done.stderr and secret not in done.stdout + done.stderr
