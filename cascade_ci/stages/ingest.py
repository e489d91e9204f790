"""Ingest stage: read the project's sources, write their tables onto the run's branch, idempotently.

Every source is read before anything is written, but for streams: rows a source returns as a
`pyarrow.RecordBatchReader` or a generator of record batches are read while they are written, in
chunks, so that memory stays flat however large they are (their first batch is read before anything
is written). Rows are upserted on each table's key (`catalog.writes.upsert`: the files holding a
replaced key rewritten and the rows appended, in one Iceberg commit per table, or per chunk of a
stream), so re-ingesting a window adds no duplicates; a table without a key is appended to.

All tables of one ingest land at once: they are written on a private scratch branch forked at the run
branch's head, and the run branch is then moved to the scratch branch's head by one compare-and-swap
(the way a run branch is created). A failed write, a stream that fails midway, or a process killed at
any point leaves the run branch exactly where it was: there is nothing to undo, and no other writer's
commit is ever reverted. A branch that moved meanwhile is left as it is (MovedError: ingest again).
Only a pipeline branch cascade-ci created takes an ingest: never main, whatever the branch prefix.

The records a source rejected (`ctx.reject`) land in `<table>__rejects` (`cascade_ci.rejects`) in the same
move. Every ingest ends with an `ingest` commit recording its outcome (`IngestRecord`: landed, empty or
failed, rows and rejects per table), staged with the data when it lands, committed on the run branch
alone when it fails: the `rejects` gate judges the rejects' share from it, and transform, validate and
promote refuse a branch whose last ingest failed or landed nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cascade_ci.branch_state import INGEST, KIND, IngestRecord, MetaKind, read_branch
from cascade_ci.catalog.base import scratch_branch
from cascade_ci.catalog.writes import append_rows, upsert
from cascade_ci.errors import CascadeError, ConfigError, ConflictError, MovedError, RefusedError, SourceError
from cascade_ci.naming import branch_name
from cascade_ci.rejects import KEY, rejects_of, rejects_table
from cascade_ci.rejects import SUFFIX as REJECTS_SUFFIX
from cascade_ci.sources.base import SourceContext, build_source, concat_rows, to_rows

if TYPE_CHECKING:
    import pyarrow as pa

    from cascade_ci.catalog.base import BranchCatalog
    from cascade_ci.config import Settings, SourceConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    branch: str
    sources: list[str]
    rows: dict[str, int]
    head_hash: str
    rejected: dict[str, int] = field(default_factory=dict)  # per table: records its sources rejected

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def outputs(self) -> dict[str, str]:
        return {
            "branch": self.branch,
            "head_hash": self.head_hash,
            "rows": str(sum(self.rows.values())),
            "rejected": str(sum(self.rejected.values())),
        }


@dataclass(frozen=True)
class TableWrite:
    """Rows for one table (a table, or a stream read as it is written) and the key they are upserted on."""

    table: str
    rows: pa.Table | pa.RecordBatchReader
    keys: tuple[str, ...]  # empty: the rows are appended
    sources: tuple[str, ...] = ()  # the sources the rows came from


def selected(settings: Settings, names: Iterable[str] = ()) -> dict[str, SourceConfig]:
    """The sources to read: those named (`all` for every one), else every source not marked `default = false`."""
    wanted = [name for name in names if name]
    if not settings.sources:
        where = settings.config_file or "cascade.toml (none found)"
        raise ConfigError(f"no sources are declared in {where}: add a [sources.NAME] table")
    if not wanted:
        return {name: config for name, config in settings.sources.items() if config.default}
    if "all" in wanted:
        return dict(settings.sources)
    unknown = [name for name in wanted if name not in settings.sources]
    if unknown:
        raise ConfigError(f"unknown source(s) {unknown}; declared: {', '.join(settings.sources)}")
    return {name: settings.sources[name] for name in wanted}


def _qualified(table: str, namespace: str) -> str:
    return table if "." in table else f"{namespace}.{table}"


def _key(settings: Settings, config: SourceConfig, source: Any, table: str) -> tuple[str, ...]:
    """The key a table is upserted on: the source's `keys`, else the table's `unique`, else the source's own."""
    short = table.split(".", 1)[1]
    declared = config.keys.get(table) or config.keys.get(short)
    if declared:
        return tuple(declared)
    if table in settings.tables and settings.tables[table].unique:
        return tuple(settings.tables[table].unique)
    own = getattr(source, "keys", None)
    return tuple(own(short)) if callable(own) else ()


def read_sources(
    settings: Settings,
    run_id: str,
    names: Iterable[str] = (),
    options: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    contexts: list[tuple[SourceContext, SourceConfig]] | None = None,
) -> list[TableWrite]:
    """Read every selected source for one window (nothing is written). `options` override each source's options.

    Each source's context is appended to `contexts` (with its config): the records it rejects are there.
    """
    until = now or datetime.now(UTC)
    since = until - timedelta(hours=settings.ingest_hours)
    writes: dict[str, TableWrite] = {}
    for name, config in selected(settings, names).items():
        source = build_source(name, config, settings)
        ctx = SourceContext(name, since, until, run_id, settings.root, {**config.options, **(options or {})})
        if contexts is not None:
            contexts.append((ctx, config))
        for table, rows in source.read(ctx).items():
            full = _qualified(str(table), config.namespace)
            try:
                data = _checked(to_rows(rows), name, full)
            except (TypeError, ValueError) as e:
                raise SourceError(_not_tabular(name, full, e)) from e
            sources = (name,)
            if full in writes:
                data = concat_rows(writes[full].rows, data)
                sources = (*writes[full].sources, name)
            writes[full] = TableWrite(full, data, _key(settings, config, source, full), sources)
    return sorted(writes.values(), key=lambda write: write.table)


def reject_writes(contexts: Iterable[tuple[SourceContext, SourceConfig]]) -> list[TableWrite]:
    """The rejects the sources reported (read after their streams were written), one write per rejects table."""
    found: dict[str, list[tuple[str, Any]]] = {}
    stamp: dict[str, tuple[datetime, str]] = {}
    for ctx, config in contexts:
        for reject in ctx.rejected:
            table = _qualified(reject.table, config.namespace)
            found.setdefault(table, []).append((ctx.name, reject))
            stamp[table] = (ctx.until, ctx.run_id)
    writes = []
    for table in sorted(found):
        sources = tuple(dict.fromkeys(source for source, _ in found[table]))
        writes.append(TableWrite(rejects_of(table), rejects_table(found[table], *stamp[table]), KEY, sources))
    return writes


def _not_tabular(source: str, table: str, error: Exception) -> str:
    return f"source {source!r} returned rows for {table} that are not tabular: {error}"


def _checked(rows: pa.Table | pa.RecordBatchReader, source: str, table: str) -> pa.Table | pa.RecordBatchReader:
    """A stream whose batches that are not rows (or do not fit the first) raise SourceError naming the source."""
    import pyarrow as pa

    if isinstance(rows, pa.Table):
        return rows

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from rows
        except (TypeError, ValueError) as e:
            raise SourceError(_not_tabular(source, table, e)) from e

    return pa.RecordBatchReader.from_batches(rows.schema, batches())


def ingest(
    settings: Settings,
    catalog: BranchCatalog,
    run_id: str,
    sources: Iterable[str] = (),
    options: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """Write one window of the selected sources onto the run's branch, all or nothing (one ref move), with
    the outcome recorded on it."""
    name = branch_name(run_id, settings.branch_prefix)
    state = read_branch(catalog, name)
    if name == settings.main_branch or not state.ours:
        raise RefusedError(
            f"{name!r} is not a pipeline branch cascade-ci created; ingest writes only to those "
            f"(`cascade branch --run-id {run_id}` creates one)"
        )
    start = state.ref.hash
    try:
        chosen = list(selected(settings, sources))
        contexts: list[tuple[SourceContext, SourceConfig]] = []
        writes = read_sources(settings, run_id, chosen, options, now, contexts)
        rows: dict[str, int] = {}
        rejected: dict[str, int] = {}
        with scratch_branch(catalog, start, name) as scratch:
            tables = catalog.tables(scratch)
            for write in writes:
                if write.keys:
                    rows[write.table] = upsert(tables, write.table, write.rows, write.keys)
                else:
                    rows[write.table] = append_rows(tables, write.table, write.rows)
            rejects = reject_writes(contexts)  # after the writes: a stream may reject while it is read
            for write in rejects:
                rejected[write.table.removesuffix(REJECTS_SUFFIX)] = upsert(tables, write.table, write.rows, write.keys)
            sources_of = {write.table: list(write.sources) for write in writes}
            for write in rejects:
                table = write.table.removesuffix(REJECTS_SUFFIX)
                sources_of[table] = list(dict.fromkeys([*sources_of.get(table, []), *write.sources]))
                rows.setdefault(table, 0)
            outcome = IngestRecord.LANDED if sum(rows.values()) else IngestRecord.EMPTY
            staged = _record(catalog, scratch, IngestRecord(outcome, rows, rejected, sources_of, run_id), strict=True)
            try:
                catalog.assign(name, staged, expected_hash=start)
            except ConflictError as e:
                raise MovedError(f"{name} moved while ingesting; nothing was written to it: run ingest again") from e
    except MovedError:
        raise
    except Exception as e:
        _record(catalog, name, IngestRecord(IngestRecord.FAILED, run_id=run_id, error=_short(e)))
        raise
    return IngestResult(name, chosen, rows, staged, rejected)


def ingested_line(result: IngestResult) -> str:
    """Rows per table, and the records rejected where there were any: `raw.orders 98 (2 rejected)`."""
    return ", ".join(
        f"{table} {count}" + (f" ({result.rejected[table]} rejected)" if result.rejected.get(table) else "")
        for table, count in result.rows.items()
    )


def _short(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def _record(catalog: BranchCatalog, branch: str, record: IngestRecord, strict: bool = False) -> str:
    """Commit the ingest's outcome on `branch`; the new head. A failed ingest's record is best effort."""
    rejected = sum(record.rejected.values())
    message = f"ingest {record.outcome}: {sum(record.rows.values())} rows"
    message += f", {rejected} rejected" if rejected else ""
    properties = {KIND: MetaKind.INGEST, INGEST: record.to_json()}
    try:
        head = catalog.get_ref(branch)
        return catalog.commit_meta(branch, message, properties, expected_hash=head.hash).hash
    except CascadeError as e:
        if strict:
            raise
        logger.warning("could not record the failed ingest on %s: %s", branch, e)
        return ""
