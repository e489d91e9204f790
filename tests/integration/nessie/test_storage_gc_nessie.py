"""`cascade gc --files` on real Nessie + S3 (moto): the safety property of ../test_storage_gc.py, and what
expiry means on a catalog whose history cannot be rewritten.

The server is shared by the session: each example works on its own trunk (standing in for main), its own
ref names and namespaces, and sweeps only its namespaces' folders of the warehouse.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade_ci.catalog.base import RefKind
from cascade_ci.catalog.nessie import NessieBranchCatalog
from cascade_ci.catalog.sweep_nessie import NessieSweep
from cascade_ci.config import load_settings
from cascade_ci.errors import CatalogError
from cascade_ci.stages.gc import collect_storage
from tests.integration.test_storage_gc import RETENTION, World, check_gc, histories, runs

# Nessie's commit times are the server's: no clock to move, so retention counts from now.
NESSIE_RETENTION = {**RETENTION, "main_retention_days": 0, "tag_retention_days": 0}
MARGIN = timedelta(seconds=2)  # S3 (moto) keeps modification times in whole seconds


@contextmanager
def nessie_world(stack: dict[str, str]) -> Iterator[tuple[World, list[str]]]:
    """A world on a fresh trunk of the shared server, and the warehouse folders of its namespaces."""
    prefix = f"g{uuid.uuid4().hex[:8]}/"
    trunk = f"{prefix}main"
    s3 = {
        "s3.endpoint": stack.get("S3_ENDPOINT", ""),
        "s3.access-key-id": stack.get("AWS_ACCESS_KEY_ID", ""),
        "s3.secret-access-key": stack.get("AWS_SECRET_ACCESS_KEY", ""),
    }
    defaults = {"s3.region": stack.get("S3_REGION", "us-east-1"), "s3.path-style-access": "true"}
    catalog = NessieBranchCatalog(
        stack["NESSIE_URI"], stack.get("NESSIE_WAREHOUSE", "warehouse"), trunk, s3_options=s3, s3_defaults=defaults
    )
    root = catalog._call("GET", "/config")["noAncestorHash"]
    catalog.create_ref(trunk, root)
    catalog.commit_meta(trunk, "initialize catalog", {}, root)
    world = World(catalog, load_settings(main_branch=trunk, branch_prefix=f"{prefix}run-", **NESSIE_RETENTION), prefix)
    warehouse = NessieSweep(catalog).warehouse.rstrip("/")
    roots = [f"{warehouse}/{table.split('.')[0]}/" for table in (world.raw, world.mart)]
    try:
        yield world, roots
    finally:
        for name, head in NessieSweep(catalog).heads().items():
            if name.startswith(prefix):
                with suppress(CatalogError):
                    catalog._call("DELETE", f"/trees/{name}@{head}")


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(history=histories.map(lambda steps: steps[:10]), in_flight=st.booleans())
def test_gc_keeps_every_ref_readable_and_leaves_nothing_unreferenced_on_nessie(stack, history, in_flight):
    with nessie_world(stack) as (world, roots):
        check_gc(world, history, in_flight, roots=roots, tag_prefix=world.tag_prefix, margin=MARGIN)


def test_expired_commits_stay_in_the_log_but_only_tagged_ones_stay_readable(stack):
    with nessie_world(stack) as (world, roots):
        runs(world, 3)
        history = world.catalog.log(world.main)
        old = next(c.hash for c in history[1:] if c.properties.get("cascade.kind") == "promotion")
        # The first run's append (Nessie serves table metadata itself: the manifest list is what goes missing).
        first_write = next(c.hash for c in reversed(history) if c.message.startswith("Update ICEBERG_TABLE"))
        world.catalog.create_ref(world.name("keep"), old, RefKind.TAG)
        expected = world.read(old)
        result = collect_storage(
            world.settings, world.catalog, datetime.now(UTC), roots=roots, tag_prefix=world.tag_prefix
        )
        assert result.history_kept < len(history) and result.files.freed_files > 0
        assert result.files.expired_commits == 0  # Nessie's history is not rewritten...
        assert [c.hash for c in world.catalog.log(world.main)] == [c.hash for c in history]
        assert world.read(old) == expected  # ...a tag keeps a commit readable...
        with pytest.raises(OSError):  # ...and an untagged commit past retention lost its files
            world.read(first_write)
