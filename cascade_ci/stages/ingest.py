"""Ingest stage: read a source, write raw Iceberg tables on the run's branch, idempotently.

Rows are upserted on each table's natural key (a delete of matching keys and an append, in one
Iceberg commit), so re-ingesting a window adds no duplicates. A failed write undoes the stage's
earlier writes with a restoring commit: nothing partial stays on the branch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cascade_ci.catalog.writes import upsert
from cascade_ci.errors import ConfigError
from cascade_ci.naming import branch_name
from cascade_ci.pipeline.raw import NATURAL_KEYS, RawBatch, schemas

if TYPE_CHECKING:
    import pyarrow as pa

    from cascade_ci.catalog.base import BranchCatalog
    from cascade_ci.config import Settings

SOURCES = ("sample", "nightscout", "github", "all")


@dataclass(frozen=True)
class IngestResult:
    branch: str
    source: str
    rows: dict[str, int]
    head_hash: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def outputs(self) -> dict[str, str]:
        return {"branch": self.branch, "head_hash": self.head_hash, "rows": str(sum(self.rows.values()))}


def read_source(
    settings: Settings,
    source: str,
    now: datetime,
    from_file: Path | None = None,
    defects: Iterable[str] = (),
) -> RawBatch:
    """Fetch one window of raw rows from `source` (all checked before anything is written)."""
    since = now - timedelta(hours=settings.ingest_hours)
    if from_file is not None:
        from cascade_ci.pipeline.sources import nightscout

        return nightscout.load_export(from_file)
    if source == "sample":
        from cascade_ci.pipeline.sources import sample

        wanted = list(defects) or [d.strip() for d in settings.sample_defects.split(",") if d.strip()]
        return sample.generate(now, seed=settings.sample_seed, hours=settings.ingest_hours, defects=wanted)
    if defects:
        raise ConfigError("--defects applies to the sample source only")
    batch = RawBatch()
    if source in ("nightscout", "all"):
        from cascade_ci.pipeline.sources import nightscout

        if not settings.nightscout_url:
            raise ConfigError("NIGHTSCOUT_URL is not set; it is needed for --source nightscout")
        secret = settings.nightscout_api_secret.get_secret_value() if settings.nightscout_api_secret else None
        batch = batch.merge(nightscout.fetch_entries(settings.nightscout_url, secret, since, now))
    if source in ("github", "all"):
        from cascade_ci.pipeline.sources import github_source

        token = settings.github_token.get_secret_value() if settings.github_token else None
        users = [u.strip() for u in settings.github_users.split(",") if u.strip()]
        repos = [r.strip() for r in settings.github_repos.split(",") if r.strip()]
        batch = batch.merge(github_source.fetch_user_events(token, users, base_url=settings.github_api_url))
        batch = batch.merge(github_source.fetch_repo_stats(token, repos, base_url=settings.github_api_url))
    return batch


def _stamped(name: str, rows: pa.Table, ingested_at: datetime, source: str) -> pa.Table:
    """`rows` in the raw schema's column order and types, with ingest's own columns filled in."""
    import pyarrow as pa

    schema = schemas()[name]
    columns = []
    for field in schema:
        if field.name == "ingested_at":
            columns.append(pa.array([ingested_at] * rows.num_rows, field.type))
        elif field.name == "source" and "source" not in rows.column_names:
            columns.append(pa.array([source] * rows.num_rows, field.type))
        elif field.name in rows.column_names:
            columns.append(rows.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(rows.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def ingest(
    settings: Settings,
    catalog: BranchCatalog,
    run_id: str,
    source: str = "sample",
    from_file: Path | None = None,
    defects: Iterable[str] = (),
    now: datetime | None = None,
) -> IngestResult:
    """Write one window of `source` onto the run's branch."""
    if source not in SOURCES:
        raise ConfigError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
    name = branch_name(run_id, settings.branch_prefix)
    start = catalog.get_ref(name)
    now = now or datetime.now(UTC)
    batch = read_source(settings, source, now, from_file=from_file, defects=defects)
    label = "file" if from_file else source
    tables = catalog.tables(name)
    try:
        for table, rows in sorted(batch.tables.items()):
            upsert(tables, table, _stamped(table, rows, now, label), NATURAL_KEYS[table])
    except BaseException:
        head = catalog.get_ref(name)
        if head.hash != start.hash:
            catalog.restore(name, start.hash, head.hash, "undo a failed ingest", {"cascade.undo": "ingest"})
        raise
    return IngestResult(name, label, batch.row_counts(), catalog.get_ref(name).hash)
