"""cascade_ci.doctor and `cascade doctor`: what it finds on fake services, how it judges Nessie's version store
from a server configuration or an observation, and the exit codes (2 when a service cannot be used, else 0).

The real services (a Nessie killed and restarted on RocksDB) are in tests/faults/test_nessie_restart.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cascade_ci import doctor
from cascade_ci.cli import cli
from cascade_ci.config import load_settings
from cascade_ci.doctor import (
    NessieServer,
    Observation,
    ServerConfig,
    Status,
    diagnose,
    judge_store,
    read_server_config,
)
from cascade_ci.errors import ConfigError
from tests.fakes.http import FakeServer, unused_port

REPO = Path(__file__).resolve().parents[2]
ROOT_HASH = "2e1cfa82b035c26cbbbdae632cea070514eb8b773f616aaeaf668e2f0be8f10d"
MAIN_HASH = "a" * 64
ROCKSDB = NessieServer(store_type="ROCKSDB")
OPENAPI = (  # the head of Nessie's /nessie-openapi/openapi.yaml
    "---\nopenapi: 3.0.3\ninfo:\n  title: Nessie API\n  description: |-\n    Catalog\n\n    * more\n"
    "  contact:\n    name: Project Nessie\n  version: {version}\nservers:\n- url: x\n"
)


@pytest.fixture(autouse=True)
def no_declared_store(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NESSIE_VERSION_STORE_TYPE", "NESSIE_MANAGEMENT_URI"):
        monkeypatch.delenv(name, raising=False)


def versions_env() -> dict[str, str]:
    lines = (REPO / "services" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_tested_versions_are_the_ones_the_services_pin():
    pinned = versions_env()
    tested = doctor.TESTED_VERSIONS
    assert tested == {"nessie": pinned["NESSIE_VERSION"], "trino": pinned["TRINO_VERSION"]}


# -- the server configuration ---------------------------------------------------------------------------


def test_the_compose_file_runs_nessie_on_rocksdb_on_a_named_volume():
    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    config = read_server_config(REPO / "docker-compose.yml", {})
    assert config.source.endswith("(service nessie)")  # the server, not the helper that owns the volume
    assert config.get(doctor.STORE_TYPE) == "ROCKSDB"
    path = config.get(doctor.ROCKS_PATH)
    volume = config.volume_for(path)
    assert volume is not None, f"{path} is on no volume"
    named = {v.split(":")[0] for v in compose["services"]["nessie"]["volumes"] if v.split(":")[1] == volume}
    assert named and named <= set(compose["volumes"]), "the store's volume is not a named volume"
    helper = compose["services"]["nessie-data"]
    assert f"{named.pop()}:{volume}" in helper["volumes"] and "chown" in " ".join(helper["entrypoint"])
    assert "-Xmx" in config.jvm_options and compose["services"]["nessie"]["mem_limit"]
    finding = judge_store(config, None, None, None)
    assert finding.status is Status.OK and finding.details["persistent"] is True, finding


def test_compose_values_are_filled_from_the_environment_and_env_var_names_are_understood(tmp_path):
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(
        "services:\n"
        "  catalog:\n"
        "    image: ghcr.io/projectnessie/nessie:0.99.0\n"
        "    environment:\n"
        "      NESSIE_VERSION_STORE_TYPE: ${STORE:-IN_MEMORY}\n"
        "      NESSIE_VERSION_STORE_PERSIST_ROCKS_DATABASE_PATH: /data/rocks\n"
        "    volumes: [{type: volume, source: data, target: /data}]\n"
    )
    config = read_server_config(compose, {"STORE": "ROCKSDB"})
    assert config.get("nessie.version.store.type") == "ROCKSDB"
    assert config.volume_for(config.get(doctor.ROCKS_PATH)) == "/data"
    assert read_server_config(compose, {}).get("nessie.version.store.type") == "IN_MEMORY"


def test_a_compose_file_without_nessie_is_a_config_error(tmp_path):
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  db:\n    image: postgres:17\n")
    with pytest.raises(ConfigError, match="no Nessie service"):
        read_server_config(compose)


def test_properties_files_are_read_as_java_reads_them(tmp_path):
    path = tmp_path / "application.properties"
    path.write_text(
        "# a comment\n! another\n\nnessie.version.store.type = ROCKSDB\n"
        "nessie.version.store.persist.rocks.database-path: /var/lib/nessie\n"
        "quarkus.http.port 19120\nlong.value=a,\\\n  b\n"
    )
    config = read_server_config(path)
    assert config.properties == {
        "nessie.version.store.type": "ROCKSDB",
        "nessie.version.store.persist.rocks.database-path": "/var/lib/nessie",
        "quarkus.http.port": "19120",
        "long.value": "a,b",
    }
    assert not config.container


# -- judging the version store --------------------------------------------------------------------------


def props(**values: str) -> ServerConfig:
    return ServerConfig("application.properties", {key.replace("_", "."): value for key, value in values.items()})


JDBC = "nessie.version.store.persist.jdbc.datasource"


@pytest.mark.parametrize(
    ("config", "store_type", "status", "persistent", "says"),
    [
        (None, None, Status.WARN, None, "does not report its version store"),
        (None, "in_memory", Status.WARN, False, "loses every ref, tag and branch"),
        (props(), None, Status.WARN, False, "IN_MEMORY"),  # Nessie's default when the type is not set
        (None, "ROCKSDB", Status.OK, True, "persistent"),
        (None, "JDBC2", Status.OK, True, "persistent"),
        (None, "JDBC", Status.WARN, True, "deprecated, migrate to JDBC2"),
        (None, "MONGO", Status.WARN, None, "not a version store type"),
        (ServerConfig("x", {doctor.STORE_TYPE: "ROCKSDB"}), None, Status.WARN, None, "/tmp may be emptied"),
        (
            ServerConfig("x", {doctor.STORE_TYPE: "ROCKSDB", doctor.ROCKS_PATH: "/srv/nessie"}),
            None,
            Status.OK,
            True,
            "",
        ),
        (
            ServerConfig("c", {doctor.STORE_TYPE: "ROCKSDB", doctor.ROCKS_PATH: "/data/db"}, container=True),
            None,
            Status.WARN,
            None,
            "container's own filesystem",
        ),
        (
            ServerConfig("c", {doctor.STORE_TYPE: "ROCKSDB", doctor.ROCKS_PATH: "/data/db"}, ("/data",), True),
            None,
            Status.OK,
            True,
            "persistent",
        ),
        (
            ServerConfig(
                "x",
                {
                    doctor.STORE_TYPE: "JDBC2",
                    JDBC: "postgresql",
                    "QUARKUS_DATASOURCE_POSTGRESQL_JDBC_URL": "jdbc:postgresql://db:5432/nessie",
                },
            ),
            None,
            Status.OK,
            True,
            "persistent",
        ),
        (
            ServerConfig("x", {doctor.STORE_TYPE: "JDBC2", JDBC: "postgresql"}),
            None,
            Status.WARN,
            None,
            "no quarkus.datasource.postgresql.jdbc.url",
        ),
        (ServerConfig("x", {doctor.STORE_TYPE: "JDBC2", JDBC: "h2"}), None, Status.WARN, None, "H2 in memory"),
    ],
)
def test_the_declared_store_is_judged(config, store_type, status, persistent, says):
    finding = judge_store(config, store_type, None, None)
    assert (finding.status, finding.details["persistent"]) == (status, persistent), finding
    assert says in finding.message


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_repository_older_than_the_process_proves_a_persistent_store():
    finding = judge_store(None, None, NOW - timedelta(days=3), Observation(process_started=NOW))
    assert finding.status is Status.OK and finding.details["persistent"] is True
    assert finding.details["outlived_a_restart"] is True and "survived a restart" in finding.message


def test_a_repository_as_young_as_the_process_proves_nothing():
    finding = judge_store(None, None, NOW + timedelta(seconds=2), Observation(process_started=NOW))
    assert finding.status is Status.WARN and finding.details["persistent"] is None
    assert finding.details["outlived_a_restart"] is False
    assert "no older than the running process" in finding.message


def test_an_unreadable_management_port_is_named():
    finding = judge_store(None, None, NOW, Observation(error="http://127.0.0.1:1/q/metrics did not answer"))
    assert finding.status is Status.WARN and "127.0.0.1:1/q/metrics did not answer" in finding.message


def test_an_observation_does_not_excuse_a_store_outside_the_volume():
    config = ServerConfig("c", {doctor.STORE_TYPE: "ROCKSDB", doctor.ROCKS_PATH: "/data/db"}, container=True)
    finding = judge_store(config, None, NOW - timedelta(days=1), Observation(process_started=NOW))
    assert finding.status is Status.WARN and "survived a restart" in finding.message


def test_the_process_start_is_read_from_the_metrics():
    metrics = '# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds{application="Nessie"} 1.7e9\n'
    with FakeServer() as fake:
        fake.reply("GET", "/q/metrics", metrics.encode(), headers={"Content-Type": "text/plain"})
        seen = doctor.observe(fake.url)
    assert seen.process_started == datetime.fromtimestamp(1.7e9, UTC)
    assert fake.requests[0].headers["accept"] == "text/plain"  # Nessie answers 406 to application/json
    with FakeServer() as fake:
        fake.reply("GET", "/q/metrics", b"jvm_threads 3\n")
        assert "no process_start_time_seconds" in doctor.observe(fake.url).error


# -- the services -----------------------------------------------------------------------------------------


def fake_nessie(fake: FakeServer, version: str = "0.99.0", warehouse: str = "gs://lake/") -> None:
    fake.reply(
        "GET",
        "/api/v2/config",
        {"defaultBranch": "main", "actualApiVersion": 2, "specVersion": "2.2.0", "noAncestorHash": ROOT_HASH,
         "repositoryCreationTimestamp": "2026-11-01T10:00:00.123456789Z"},
    )  # fmt: skip
    fake.reply("GET", "/nessie-openapi/openapi.yaml", OPENAPI.format(version=version).encode())
    fake.reply("GET", "/api/v2/trees/main", {"reference": {"type": "BRANCH", "name": "main", "hash": MAIN_HASH}})
    fake.reply("GET", "/iceberg/v1/config", {"defaults": {"warehouse": warehouse}, "overrides": {}})


def fake_trino(fake: FakeServer, version: str = "476", starting: bool = False) -> None:
    info = {"nodeVersion": {"version": version}, "environment": "x", "coordinator": True, "starting": starting}
    fake.reply("GET", "/v1/info", info)


@pytest.fixture
def production(monkeypatch):
    """Settings for catalog nessie and engine trino, pointed at two fake servers."""
    with FakeServer() as nessie, FakeServer() as trino:
        monkeypatch.setenv("CASCADE_CATALOG", "nessie")
        monkeypatch.setenv("NESSIE_URI", nessie.url)
        monkeypatch.setenv("TRINO_URI", trino.url)
        yield nessie, trino


def checks(report) -> dict[str, tuple[Status, str]]:
    return {f.check: (f.status, f.message) for f in report.findings}


def test_everything_answering_as_tested_is_ok(production):
    nessie, trino = production
    fake_nessie(nessie)
    fake_trino(trino)
    report = diagnose(load_settings(), ROCKSDB)
    found = checks(report)
    assert set(found) == {"nessie", "nessie version", "version store", "s3 bucket", "trino", "trino version"}
    assert {status for status, _ in found.values()} == {Status.OK}, found
    assert MAIN_HASH[:12] in found["nessie"][1] and "0.99.0" in found["nessie"][1]
    assert report.exit_code == 0 and report.count(Status.WARN) == 0


def test_untested_versions_and_a_starting_trino_are_warnings_not_errors(production):
    nessie, trino = production
    fake_nessie(nessie, version="0.104.1")
    fake_trino(trino, version="479", starting=True)
    report = diagnose(load_settings(), ROCKSDB)
    found = checks(report)
    assert found["nessie version"] == (Status.WARN, "0.104.1: this release is tested with 0.99.0")
    assert found["trino version"] == (Status.WARN, "479: this release is tested with 476")
    assert found["trino"][0] is Status.WARN and "still starting" in found["trino"][1]
    assert report.exit_code == 0 and report.count(Status.WARN) == 3


def test_a_nessie_without_its_openapi_document_has_an_unknown_version(production):
    nessie, trino = production
    fake_nessie(nessie)
    nessie.reply("GET", "/nessie-openapi/openapi.yaml", {"message": "Not Found"}, status=404)
    fake_trino(trino)
    found = checks(diagnose(load_settings(), ROCKSDB))
    assert found["nessie version"][0] is Status.WARN and found["nessie version"][1].startswith("unknown")


def test_an_unreachable_nessie_is_an_error_and_its_storage_is_not_checked(production, monkeypatch):
    _, trino = production
    fake_trino(trino)
    dead = f"http://127.0.0.1:{unused_port()}"
    monkeypatch.setenv("NESSIE_URI", dead)
    report = diagnose(load_settings(), timeout=2)
    found = checks(report)
    assert found["nessie"][0] is Status.ERROR and dead in found["nessie"][1]
    assert "s3 bucket" not in found and found["trino"][0] is Status.OK
    assert report.exit_code == 2


@pytest.mark.parametrize(
    ("route", "answer", "status", "says"),
    [
        ("/api/v2/config", {"hello": "world"}, 200, "is not Nessie's REST API v2"),
        ("/api/v2/config", {"message": "boom"}, 500, "HTTP 500"),
        ("/api/v2/trees/main", {"message": "Named reference 'main' not found"}, 404, "branch 'main' cannot be read"),
    ],
)
def test_a_nessie_that_answers_wrongly_is_an_error(production, route, answer, status, says):
    nessie, trino = production
    fake_nessie(nessie)
    nessie.reply("GET", route, answer, status=status)
    fake_trino(trino)
    report = diagnose(load_settings(), ROCKSDB)
    assert report.findings[0].status is Status.ERROR and says in report.findings[0].message, report.findings[0]
    assert report.exit_code == 2


def test_an_unreachable_trino_is_an_error(production, monkeypatch):
    nessie, _ = production
    fake_nessie(nessie)
    monkeypatch.setenv("TRINO_URI", f"http://127.0.0.1:{unused_port()}")
    report = diagnose(load_settings(), ROCKSDB, timeout=2)
    assert checks(report)["trino"][0] is Status.ERROR and report.exit_code == 2


@pytest.mark.parametrize(
    ("bucket_answer", "status", "says"), [(200, Status.OK, "reachable"), (404, Status.ERROR, "no such bucket")]
)
def test_the_warehouse_bucket_is_looked_up_where_the_client_writes(
    production, monkeypatch, bucket_answer, status, says
):
    nessie, trino = production
    fake_nessie(nessie, warehouse="s3://lake")
    fake_trino(trino)
    with FakeServer() as s3:
        s3.reply("HEAD", "/lake", None, status=bucket_answer)
        monkeypatch.setenv("S3_ENDPOINT", s3.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
        found = checks(diagnose(load_settings(), ROCKSDB))
        assert [(r.method, r.path) for r in s3.requests] == [("HEAD", "/lake")]
        endpoint = s3.url
    assert found["s3 bucket"][0] is status and says in found["s3 bucket"][1] and endpoint in found["s3 bucket"][1]


def test_an_unreachable_s3_is_an_error(production, monkeypatch):
    nessie, trino = production
    fake_nessie(nessie, warehouse="s3://lake/prefix")
    fake_trino(trino)
    monkeypatch.setenv("S3_ENDPOINT", f"http://127.0.0.1:{unused_port()}")
    report = diagnose(load_settings(), ROCKSDB, timeout=2)
    assert checks(report)["s3 bucket"][0] is Status.ERROR and report.exit_code == 2


# -- the embedded catalog ---------------------------------------------------------------------------------


def test_a_new_embedded_catalog_is_fine_and_left_uncreated(tmp_path):
    report = diagnose(load_settings())
    found = checks(report)
    assert found["embedded catalog"][0] is Status.OK and "no catalog yet" in found["embedded catalog"][1]
    assert found["duckdb"][0] is Status.OK
    assert not (tmp_path / "home").exists() and report.exit_code == 0


def test_an_embedded_catalog_reports_its_refs(catalog, settings):
    head = catalog.get_ref("main").hash
    found = checks(diagnose(settings))
    assert found["embedded catalog"] == (Status.OK, f"{catalog.path}: 1 ref(s), main at {head[:12]}")


def test_an_embedded_catalog_that_cannot_be_created_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "a-file" / "home"))
    report = diagnose(load_settings())
    assert report.findings[0].status is Status.ERROR and report.exit_code == 2


# -- the command ------------------------------------------------------------------------------------------


def test_doctor_json_and_text(production):
    nessie, trino = production
    fake_nessie(nessie)
    fake_trino(trino)
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["catalog"], payload["engine"], payload["errors"], payload["warnings"]) == ("nessie", "trino", 0, 1)
    store = next(f for f in payload["findings"] if f["check"] == "version store")
    assert store["status"] == "warn" and store["details"]["persistent"] is None
    text = CliRunner().invoke(cli, ["doctor"], env={"NESSIE_VERSION_STORE_TYPE": "IN_MEMORY"})
    assert text.exit_code == 0
    line = next(line for line in text.stdout.splitlines() if "version store" in line)
    assert line.startswith("warn  catalog  version store") and "declared in --nessie-store" in line
    assert "0 error(s), 1 warning(s): exit 0" in text.stderr


def test_doctor_reads_the_named_server_config_and_exits_2_when_nessie_is_down(monkeypatch, tmp_path):
    monkeypatch.setenv("CASCADE_CATALOG", "nessie")
    monkeypatch.setenv("NESSIE_URI", f"http://127.0.0.1:{unused_port()}")
    monkeypatch.setenv("CASCADE_ENGINE", "duckdb")
    result = CliRunner().invoke(cli, ["doctor", "--json", "--nessie-config", str(REPO / "docker-compose.yml")])
    assert result.exit_code == 2
    nessie, store, engine = json.loads(result.stdout)["findings"]
    assert nessie["status"] == "error" and engine["check"] == "duckdb"
    assert store["status"] == "ok" and store["details"]["volume"] == "/var/lib/nessie", store
    missing = CliRunner().invoke(cli, ["doctor", "--nessie-config", str(tmp_path / "nope.properties")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
