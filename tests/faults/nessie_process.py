"""A Nessie server a test can SIGKILL and start again on the same version store.

Two ways to run one, each as users run it:
- `StackNessie`: the Nessie of a private `services/stack.sh start` (RocksDB in its run folder); killed
  through its pid file, started again with `services/stack.sh restart-nessie`.
- `ComposeNessie`: Nessie started as a process with docker-compose.yml's settings for its `nessie`
  service: its environment (as Docker passes it, `${VAR:-default}` filled in) and JAVA_OPTS_APPEND.
  Only what names the container's network or disk is replaced, by system properties that beat the
  environment: host and ports (loopback, free), the S3 endpoint (the test's S3 in place of `minio`) and
  the RocksDB folder (a test folder in place of the named volume, which must hold the compose's path).
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from urllib.request import urlopen

from cascade_ci.doctor import ROCKS_PATH, ServerConfig, read_server_config

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "services" / "stack.sh"
COMPOSE = REPO / "docker-compose.yml"
START_TIMEOUT = 180  # seconds: a cold JVM on a loaded 2-core runner


def versions() -> dict[str, str]:
    """services/versions.env as a dict."""
    lines = (REPO / "services" / "versions.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(uri: str, alive: Callable[[], bool], timeout: float = START_TIMEOUT) -> float:
    """Seconds until GET {uri}/api/v2/config answers; AssertionError if the process dies or time runs out."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert alive(), f"Nessie at {uri} exited while starting"
        try:
            with urlopen(f"{uri}/api/v2/config", timeout=2) as response:
                if b"defaultBranch" in response.read():
                    return time.monotonic() - started
        except OSError:
            time.sleep(0.25)
    raise AssertionError(f"Nessie at {uri} did not answer within {timeout} s")


def kill_group(pid: int) -> None:
    """SIGKILL the process group `pid` leads (its own session) and wait until the process is gone.

    For a process that is not this one's child (its zombie is reaped elsewhere); a child is waited for.
    """
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} outlived SIGKILL")


class Restartable(Protocol):
    uri: str
    management_uri: str

    def wait_until_up(self) -> float: ...  # seconds it waited
    def kill(self) -> None: ...  # SIGKILL; returns when the process is gone
    def start(self) -> float: ...  # on the same store; returns the seconds until it answered


class StackNessie:
    """The Nessie of a `services/stack.sh start` run folder."""

    def __init__(self, run: Path, uri: str) -> None:
        self.run, self.uri = run, uri
        self.config_file = run / "nessie" / "config" / "application.properties"
        self.store = run / "nessie" / "rocksdb"

    @property
    def management_uri(self) -> str:
        return f"http://127.0.0.1:{read_server_config(self.config_file).get('quarkus.management.port')}"

    def wait_until_up(self) -> float:
        return wait_until_up(self.uri, lambda: (self.run / "nessie.pid").exists())

    def kill(self) -> None:
        kill_group(int((self.run / "nessie.pid").read_text()))

    def start(self) -> float:
        """`services/stack.sh restart-nessie`; returns the seconds it took."""
        started = time.monotonic()
        env = {**os.environ, "CASCADE_SERVICES_RUN": str(self.run)}
        command = ["bash", str(STACK), "restart-nessie"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=START_TIMEOUT + 60)
        assert done.returncode == 0, f"restart-nessie failed:\n{done.stderr[-3000:]}"
        return time.monotonic() - started


class ComposeNessie:
    """Nessie as docker-compose.yml configures it, as a local process on the cached runner jar."""

    def __init__(self, workdir: Path, s3_endpoint: str, environ: dict[str, str], compose: Path = COMPOSE) -> None:
        self.compose = compose
        self.config: ServerConfig = read_server_config(compose, environ)
        store_path = self.config.get(ROCKS_PATH)
        assert store_path, f"{compose}: the Nessie service sets no {ROCKS_PATH}"
        volume = self.config.volume_for(store_path)
        assert volume, f"{compose}: {store_path} is not on a volume of the Nessie service"
        # The named volume becomes a folder of the test; the store keeps its place inside it.
        self.store = workdir / "volume" / Path(store_path).relative_to(volume)
        self.workdir = workdir
        self.port, self.management_port = free_port(), free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.management_uri = f"http://127.0.0.1:{self.management_port}"
        local = {
            "quarkus.http.host": "127.0.0.1",
            "quarkus.http.port": str(self.port),
            "quarkus.management.host": "127.0.0.1",
            "quarkus.management.port": str(self.management_port),
            ROCKS_PATH: str(self.store),
            "nessie.catalog.service.s3.default-options.endpoint": s3_endpoint.rstrip("/") + "/",
            "nessie.catalog.service.s3.default-options.external-endpoint": s3_endpoint.rstrip("/") + "/",
        }
        v = versions()
        jar = Path(os.environ.get("CASCADE_SERVICES_CACHE", Path.home() / ".cache/cascade-ci/services"))
        self.jar = jar / f"nessie-quarkus-{v['NESSIE_VERSION']}-runner.jar"
        self.command = [
            f"{v['NESSIE_JAVA_HOME']}/bin/java",
            *shlex.split(self.config.jvm_options),
            *(f"-D{key}={value}" for key, value in local.items()),
            "-jar",
            str(self.jar),
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it and wait until it answers; returns the seconds that took."""
        started = time.monotonic()
        self.launch()
        self.wait_until_up()
        return time.monotonic() - started

    def launch(self) -> None:
        """Start the process (the jar is fetched first if the cache lacks it); `wait_until_up` waits for it."""
        if not self.jar.exists():
            subprocess.run(["bash", str(STACK), "fetch", "--without-trino"], check=True, capture_output=True)
        self.store.parent.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "nessie.log").open("ab")
        env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), **self.config.properties}
        self.process = subprocess.Popen(
            self.command, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def wait_until_up(self) -> float:
        assert self.process is not None, "not launched"
        process = self.process
        try:
            return wait_until_up(self.uri, lambda: process.poll() is None)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.log_tail()}") from None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def log_tail(self, lines: int = 40) -> str:
        path = self.workdir / "nessie.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
