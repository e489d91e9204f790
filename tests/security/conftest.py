"""Shared by the security tests: the CLI in-process, lines the Actions runner would run, and a token issuer
(Keycloak) with a Nessie that demands its tokens, once per session (services/auth.sh), unless
CASCADE_AUTH_ENV names the auth.env of ones already running.

That Nessie writes to the session stack's S3 (moto) under s3://<bucket>/auth/; its refs live in memory, so
every session starts empty. The fixture fails (never skips) when the services cannot start.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import pytest
from click.testing import CliRunner, Result

from cascade_ci.cli import cli
from tests.conftest import GLUCOSE_EXAMPLE, REPO, _read_env, start_services
from tests.examples.conftest import EXAMPLE_VARIABLES

if str(GLUCOSE_EXAMPLE) not in sys.path:  # the example's clients are tested here too
    sys.path.insert(0, str(GLUCOSE_EXAMPLE))


@pytest.fixture(autouse=True)
def _example_variables_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in EXAMPLE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def cascade(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def workflow_commands(text: str, *, ours: tuple[str, ...] = ()) -> list[str]:
    """The lines of `text` the runner would take as workflow commands (`::` after leading space, `##[` anywhere),
    cut where the runner cuts lines (CR, LF, CRLF); lines starting with one of `ours` are cascade's own."""
    lines = re.split(r"\r\n|\r|\n", text)
    found = [line for line in lines if line.lstrip().startswith("::") or "##[" in line]
    return [line for line in found if not line.startswith(ours) or "##[" in line] if ours else found


AUTH = REPO / "services" / "auth.sh"
CLIENTS = ("cascade-reader", "cascade-writer", "cascade-pr", "cascade-promoter")
# Read once at import (`clean_env` scrubs CASCADE_*): the auth.env of services already running, if any.
RUNNING_AUTH_ENV = os.environ.get("CASCADE_AUTH_ENV")


class AuthStack(dict):
    """auth.env's values, plus the helpers the tests share."""

    def secret(self, client: str) -> str:
        return self["SECRET_" + client.replace("-", "_")]

    def token(self, client: str) -> str:
        """An access token of `client`, straight from the issuer."""
        grant = {"grant_type": "client_credentials", "client_id": client, "client_secret": self.secret(client)}
        form = urlencode(grant)
        with urlopen(Request(self["NESSIE_OAUTH2_TOKEN_URL"], form.encode(), method="POST"), timeout=30) as resp:
            return json.loads(resp.read())["access_token"]

    def oauth2_env(self, client: str) -> dict[str, str]:
        return {
            "NESSIE_AUTH": "oauth2",
            "NESSIE_OAUTH2_TOKEN_URL": self["NESSIE_OAUTH2_TOKEN_URL"],
            "NESSIE_OAUTH2_CLIENT_ID": client,
            "NESSIE_OAUTH2_CLIENT_SECRET": self.secret(client),
        }

    def bearer_env(self, client: str) -> dict[str, str]:
        return {"NESSIE_AUTH": "bearer", "NESSIE_TOKEN": self.token(client)}


@pytest.fixture(scope="session")
def auth_stack(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthStack]:
    """Keycloak (realm `cascade`: clients cascade-reader, -writer, -promoter) and an auth-enabled Nessie."""
    keys = ("S3_ENDPOINT", "S3_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    if RUNNING_AUTH_ENV:  # started beforehand, on the same S3 (services/auth.sh start)
        values = AuthStack(_read_env(Path(RUNNING_AUTH_ENV)))
        values.update({key: stack[key] for key in keys if key in stack}, NESSIE_WAREHOUSE="warehouse")
        yield values
        return
    run = tmp_path_factory.mktemp("auth-services")
    env = {**os.environ, **{key: stack[key] for key in keys if key in stack}, "CASCADE_AUTH_RUN": str(run)}
    began = time.monotonic()
    start_services(AUTH, env)
    values = AuthStack(_read_env(run / "auth.env"))
    values.update({key: stack[key] for key in keys if key in stack}, NESSIE_WAREHOUSE="warehouse")
    print(f"\nauth services up in {time.monotonic() - began:.1f} s", file=sys.stderr)
    try:
        yield values
    finally:
        subprocess.run(["bash", str(AUTH), "stop"], env=env, capture_output=True, timeout=120)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def cascade_in(project: Path, env: dict[str, str], *args: str) -> Ran:
    """`cascade ARGS` in `project` (in this process, for speed), with `env` over the scrubbed environment."""
    with contextlib.chdir(project):
        result = CliRunner().invoke(cli, list(args), env=env)
    return Ran(result.exit_code, result.stdout, result.stderr)


def _versions() -> dict[str, str]:
    return _read_env(REPO / "services" / "versions.env")


@pytest.fixture(scope="session")
def file_store_trino(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A second Trino (from the stack's cache) whose dynamic catalogs are stored as files, as in
    docker-compose.yml, with the S3 keys in its environment only; (its URI, its catalog folder)."""
    versions = _versions()
    cache = Path(os.environ.get("CASCADE_SERVICES_CACHE", Path.home() / ".cache" / "cascade-ci" / "services"))
    home, java = cache / f"trino-server-{versions['TRINO_VERSION']}", versions["TRINO_JAVA_HOME"]
    root = tmp_path_factory.mktemp("trino-file-store")
    etc, data = root / "etc", root / "data"
    etc.mkdir()
    data.mkdir()
    (root / "catalogs").mkdir()
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (etc / "node.properties").write_text(
        f"node.environment=security\nnode.id=security-{port}\nnode.data-dir={data}\n"
        "node.internal-address=127.0.0.1\nnode.bind-ip=127.0.0.1\n"
    )
    (etc / "jvm.config").write_text("-server\n-Xmx512M\n-XX:+UseSerialGC\n-XX:TieredStopAtLevel=1\n")
    # docker-compose.yml's Trino configuration, on this port and with this catalog folder.
    compose = REPO / "services" / "docker" / "trino"
    config = (compose / "config.properties").read_text().replace("8080", str(port)).replace("localhost", "127.0.0.1")
    (etc / "config.properties").write_text(f"{config}query.max-memory=256MB\nquery.max-memory-per-node=128MB\n")
    store = (compose / "catalog-store.properties").read_text()
    (etc / "catalog-store.properties").write_text(store.replace("/data/trino/catalog", str(root / "catalogs")))
    env = {
        "PATH": f"{java}/bin:{os.environ['PATH']}",
        "JAVA_HOME": java,
        "AWS_ACCESS_KEY_ID": stack["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": stack["AWS_SECRET_ACCESS_KEY"],
    }
    log = (root / "trino.log").open("w")
    process = subprocess.Popen(
        [str(home / "bin" / "launcher"), "run", f"--etc-dir={etc}", f"--data-dir={data}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 300
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"Trino exited: {(root / 'trino.log').read_text()[-3000:]}", pytrace=False)
            try:
                with urlopen(f"{uri}/v1/info", timeout=5) as response:
                    if b'"starting":false' in response.read():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the second Trino did not start within 300 s", pytrace=False)
            time.sleep(0.5)
        yield uri, root / "catalogs"
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=60)
        log.close()
