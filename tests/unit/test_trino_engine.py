"""Names and literals the Trino engine puts into SQL."""

from __future__ import annotations

import re

import pytest

from cascade_ci.config import load_settings
from cascade_ci.engine.trino import TrinoEngine, catalog_name, identifier, literal, ref_prefix


def test_catalog_names_are_identifiers_and_distinct():
    names = {catalog_name(b) for b in ("pipeline/run-1", "pipeline_run_1", "Pipeline/Run-1", "pipeline/run-1x")}
    assert len(names) == 4
    assert all(re.fullmatch(r"cascade_[a-z0-9_]+_[0-9a-f]{8}", name) for name in names)
    assert len(catalog_name("pipeline/run-" + "9" * 64)) <= 60


def test_literals_and_identifiers():
    assert literal("it's") == "'it''s'"
    assert identifier("marts") == "marts"
    for bad in ("marts; drop", "a.b", "Main", "", "x y"):
        with pytest.raises(ValueError):
            identifier(bad)


def test_ref_prefix_carries_slash_as_unit_separator():
    assert ref_prefix("pipeline/run-7") == "pipeline%1Frun-7"
    assert ref_prefix("main") == "main"


def test_catalog_properties_point_at_the_branch(monkeypatch):
    monkeypatch.setenv("NESSIE_URI", "http://nessie:19120/")
    monkeypatch.setenv("S3_ENDPOINT", "http://s3:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sec'ret")
    engine = TrinoEngine(load_settings(), catalog=None)  # type: ignore[arg-type]
    props = engine.catalog_properties("pipeline/run-7")
    assert props["iceberg.rest-catalog.uri"] == "http://nessie:19120/iceberg/"
    assert props["iceberg.rest-catalog.prefix"] == "pipeline%1Frun-7"
    assert props["s3.aws-secret-key"] == "sec'ret"
    statement = engine._create_statement(catalog_name("pipeline/run-7"), "pipeline/run-7")
    assert "'sec''ret'" in statement and statement.startswith("CREATE CATALOG cascade_pipeline_run_7_")
