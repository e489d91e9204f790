"""docker-compose.yml is closed: ports on loopback only, and no credential with a default or a literal value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"
CREDENTIAL = re.compile(r"password|secret|access_key|token|credential|_user$|root_user|\.name$", re.IGNORECASE)
REFERENCE = re.compile(r"\$\{(\w+)(:?[-?+])?([^}]*)\}")


def environment(service: dict[str, Any]) -> list[tuple[str, str]]:
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return [(str(key), "" if value is None else str(value)) for key, value in env.items()]
    return [tuple(item.split("=", 1)) if "=" in item else (item, "") for item in env]  # type: ignore[misc]


def problems(compose: dict[str, Any]) -> list[str]:
    found = []
    for name, service in (compose.get("services") or {}).items():
        for port in service.get("ports") or []:
            if not str(port).startswith("127.0.0.1:"):
                found.append(f"{name}: port {port} is not bound to 127.0.0.1")
        for key, value in environment(service):
            references = REFERENCE.findall(value)
            credential = CREDENTIAL.search(key) or any(CREDENTIAL.search(var) for var, _, _ in references)
            if not credential:
                continue
            if not references:
                found.append(f"{name}: {key} is a credential written in the file")
            for var, operator, _ in references:
                if operator not in (":?", "?"):
                    found.append(f"{name}: {key} takes ${{{var}}} with a default or none required")
    return found


def test_the_compose_file_binds_loopback_and_takes_credentials_from_env():
    compose = yaml.safe_load(COMPOSE.read_text())
    assert problems(compose) == []
    assert compose["services"]["minio"]["environment"]["MINIO_ROOT_PASSWORD"].startswith("${AWS_SECRET_ACCESS_KEY:?")


def test_the_check_catches_an_open_port_and_a_default_credential():
    bad = {
        "services": {
            "minio": {
                "ports": ["9000:9000", "127.0.0.1:9001:9001"],
                "environment": {"MINIO_ROOT_PASSWORD": "${AWS_SECRET_ACCESS_KEY:-cascade-secret}"},
            },
            "nessie": {"environment": ["cascade-s3.secret=hunter2", "cascade-s3.name=${AWS_ACCESS_KEY_ID:?set it}"]},
        }
    }
    assert problems(bad) == [
        "minio: port 9000:9000 is not bound to 127.0.0.1",
        "minio: MINIO_ROOT_PASSWORD takes ${AWS_SECRET_ACCESS_KEY} with a default or none required",
        "nessie: cascade-s3.secret is a credential written in the file",
    ]


def test_every_variable_the_compose_file_requires_is_in_env_example():
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    example = {line.split("=", 1)[0] for line in (REPO / ".env.example").read_text().splitlines() if "=" in line}
    assert required <= example, required - example
    assert Path(REPO / ".gitignore").exists() and ".env" in (REPO / ".gitignore").read_text().split()
