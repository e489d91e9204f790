"""The `dlt` source: run a dlt source or resource offline and hand its tables over as Arrow.

    [sources.github]
    dlt = "my_pipeline.github:issues"   # a dlt source or resource, or a callable returning one
    options = { page_size = 50 }        # keyword arguments for that callable

The data is extracted and normalized by dlt into Parquet files in a throwaway folder (the `filesystem`
destination; dlt's pipeline state lives there too, so nothing reaches ~/.dlt and dlt's incremental
cursors start afresh every run: cascade's window is the state). Nested lists become their own tables,
named `parent__child` as dlt names them.

Row ids. dlt gives each root row a random `_dlt_id` and links nested rows to their parent through
`_dlt_parent_id` and `_dlt_list_idx`. cascade drops `_dlt_load_id` and re-derives the ids so a re-run
upserts instead of duplicating: a root row's `_dlt_id` hashes its primary key (dlt's, else the source's
`keys` for that table, else the whole row), a nested row's hashes its parent's id, table and position.
`keys(table)` is what ingest upserts on when the config names none: a root table's dlt primary key,
else its merge key; `_dlt_id` for a nested table whose root rows have a key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from base64 import urlsafe_b64encode
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cascade_ci.errors import ConfigError, MissingExtraError, SourceError

if TYPE_CHECKING:
    import pyarrow as pa

    from cascade_ci.config import Settings, SourceConfig
    from cascade_ci.sources.base import SourceContext

DROPPED = ("_dlt_load_id",)
ROW_ID, PARENT_ID, LIST_IDX, ROOT_ID = "_dlt_id", "_dlt_parent_id", "_dlt_list_idx", "_dlt_root_id"
LINKS = (ROW_ID, PARENT_ID, LIST_IDX, ROOT_ID)


class DltSource:
    """Runs `config.dlt` through a local dlt pipeline; `keys(table)` is known once `read` has run."""

    def __init__(self, config: SourceConfig, settings: Settings) -> None:
        if not config.dlt:
            raise ConfigError("the dlt source needs `dlt`, the module:attr of a dlt source or resource")
        self.config = config
        self.settings = settings
        self._keys: dict[str, list[str]] = {}

    def keys(self, table: str) -> list[str]:
        """The columns `table` (as `read` named it) is upserted on; empty when dlt declares none."""
        return list(self._keys.get(table, []))

    def read(self, ctx: SourceContext) -> Mapping[str, pa.Table]:
        """Extract, normalize and load into a temporary folder, then read every data table back."""
        try:
            import dlt
        except ImportError as e:
            raise MissingExtraError(f"the dlt source needs dlt: pip install 'cascade-ci[dlt]' ({e})") from e
        from dlt.pipeline.exceptions import PipelineStepFailed

        with tempfile.TemporaryDirectory(prefix="cascade-dlt-") as tmp, _quiet_dlt():
            data = self.data(dict(ctx.options))
            pipeline = dlt.pipeline(
                pipeline_name="cascade_" + re.sub(r"\W", "_", ctx.name),
                pipelines_dir=str(Path(tmp, "pipelines")),
                destination=dlt.destinations.filesystem(bucket_url=str(Path(tmp, "data"))),
                dataset_name=self.config.namespace,
            )
            try:
                pipeline.run(data, loader_file_format="parquet")
                return self.collect(pipeline)
            except PipelineStepFailed as e:
                raise SourceError(f"dlt source {ctx.name!r} failed in its {e.step} step: {e.exception}") from e
            finally:
                if pipeline.is_active:
                    pipeline.deactivate()

    def data(self, options: dict[str, Any]) -> Any:
        """The dlt source or resource `config.dlt` names, called with `options` where it takes them."""
        import inspect

        from dlt.extract import DltResource
        from dlt.extract import DltSource as DltSourceObject

        from cascade_ci.plugins import import_attr

        spec = self.config.dlt or ""
        target = import_attr(spec, self.settings.root)
        if isinstance(target, DltSourceObject):
            if options:
                raise ConfigError(f"{spec!r} is an instantiated dlt source; name its @dlt.source function for options")
            return target
        if isinstance(target, DltResource) and not options:
            return target
        if not callable(target):
            raise ConfigError(f"{spec!r} is a {type(target).__name__}, not a dlt source or resource")
        try:
            inspect.signature(target).bind(**options)
        except TypeError as e:
            raise ConfigError(f"{spec!r} does not take the options {sorted(options)}: {e}") from e
        except ValueError:
            pass  # no signature to check (a builtin); the call below tells
        try:
            made = target(**options)
        except Exception as e:
            raise SourceError(f"{spec!r} failed to build its dlt source: {type(e).__name__}: {e}") from e
        if not isinstance(made, DltSourceObject | DltResource):
            raise ConfigError(f"{spec!r} returned a {type(made).__name__}, not a dlt source or resource")
        return made

    def identity(self, root: str, table: Mapping[str, Any], rows: pa.Table | None) -> list[str]:
        """What tells a root row from another: dlt's primary key, else the key the config gives the table."""
        given = self.config.keys.get(root) or self.config.keys.get(f"{self.config.namespace}.{root}") or []
        key = _hinted(table, "primary_key") or list(given)
        return key if rows is not None and set(key) <= set(rows.column_names) else []

    def collect(self, pipeline: Any) -> dict[str, pa.Table]:
        """Every loaded data table (dlt's own `_dlt_*` tables left out), ids made deterministic."""
        from dlt.destinations.exceptions import DestinationUndefinedEntity

        schema = pipeline.default_schema
        tables = [table for table in schema.data_tables() if not table["name"].startswith("_dlt")]
        parents = {table["name"]: table.get("parent") for table in tables}
        read: dict[str, pa.Table] = {}
        with pipeline.destination_client() as client:
            for table in sorted(tables, key=lambda table: _depth(table["name"], parents)):
                name = table["name"]
                try:
                    files = sorted(client.list_table_files(name))
                except DestinationUndefinedEntity:
                    continue
                if files:
                    read[name] = _read_parquet(files)
        ids: dict[str, dict[str, str]] = {}
        self._keys = {}
        for name, rows in read.items():
            root = _root(name, parents)
            identity = self.identity(root, schema.get_table(root), read.get(root))
            if parents[name] is None:
                rows, ids[name] = _root_ids(name, rows, identity)
                self._keys[name] = _hinted(schema.get_table(name), "primary_key", "merge_key")
            else:
                rows, ids[name] = _nested_ids(name, rows, ids.get(parents[name] or "", {}), ids.get(root, {}))
                self._keys[name] = [ROW_ID] if identity else []
            read[name] = rows.drop_columns([column for column in DROPPED if column in rows.column_names])
        return read


def _read_parquet(files: list[str]) -> pa.Table:
    import pyarrow as pa
    from pyarrow import parquet

    parts = [parquet.read_table(file) for file in files]
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="permissive")


def _depth(name: str, parents: Mapping[str, str | None]) -> int:
    depth = 0
    while parents.get(name):
        name, depth = parents[name] or "", depth + 1
    return depth


def _root(name: str, parents: Mapping[str, str | None]) -> str:
    while parents.get(name):
        name = parents[name] or ""
    return name


def _hinted(table: Mapping[str, Any], *hints: str) -> list[str]:
    """The columns carrying the first of `hints` (primary_key, merge_key) that any column of `table` carries."""
    for hint in hints:
        columns = [name for name, column in table.get("columns", {}).items() if column.get(hint)]
        if columns:
            return columns
    return []


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, default=str, sort_keys=True, separators=(",", ":"))
    return urlsafe_b64encode(hashlib.sha256(text.encode()).digest()[:15]).decode()


def _root_ids(name: str, rows: pa.Table, key: list[str]) -> tuple[pa.Table, dict[str, str]]:
    """Replace dlt's random `_dlt_id` of a root table by a hash of the row's key (else of its data)."""
    if ROW_ID not in rows.column_names:
        return rows, {}
    hashed = rows.select(key) if key else rows.drop_columns([c for c in (*DROPPED, *LINKS) if c in rows.column_names])
    seen: Counter[str] = Counter()
    new = []
    for row in hashed.to_pylist():  # the n-th repeat of a row gets its own id, so its nested rows stay apart
        base = _digest(name, row)
        new.append(_digest(base, seen[base]) if seen[base] else base)
        seen[base] += 1
    old = rows.column(ROW_ID).to_pylist()
    return _set(rows, ROW_ID, new), dict(zip(old, new, strict=True))


def _nested_ids(
    name: str, rows: pa.Table, parent_ids: Mapping[str, str], root_ids: Mapping[str, str]
) -> tuple[pa.Table, dict[str, str]]:
    """Re-derive a nested table's ids from its parent's new ids, as dlt does: hash(parent id, table, position)."""
    if PARENT_ID not in rows.column_names or ROW_ID not in rows.column_names:
        return rows, {}
    parents = [parent_ids.get(old, old) for old in rows.column(PARENT_ID).to_pylist()]
    positions = rows.column(LIST_IDX).to_pylist() if LIST_IDX in rows.column_names else [None] * rows.num_rows
    new = [_digest(parent, name, position) for parent, position in zip(parents, positions, strict=True)]
    old = rows.column(ROW_ID).to_pylist()
    rows = _set(_set(rows, PARENT_ID, parents), ROW_ID, new)
    if ROOT_ID in rows.column_names:
        rows = _set(rows, ROOT_ID, [root_ids.get(old, old) for old in rows.column(ROOT_ID).to_pylist()])
    return rows, dict(zip(old, new, strict=True))


def _set(rows: pa.Table, column: str, values: list[Any]) -> pa.Table:
    import pyarrow as pa

    index = rows.column_names.index(column)
    return rows.set_column(index, rows.field(index), pa.array(values, rows.field(index).type))


@contextmanager
def _quiet_dlt() -> Iterator[None]:
    """Telemetry off, and no "Falling back to `append`" warnings: cascade, not dlt, merges the rows."""
    saved = os.environ.get("RUNTIME__DLTHUB_TELEMETRY")
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    logger = logging.getLogger("dlt")
    logger.addFilter(_not_fallback)
    try:
        yield
    finally:
        logger.removeFilter(_not_fallback)
        if saved is None:
            os.environ.pop("RUNTIME__DLTHUB_TELEMETRY", None)
        else:
            os.environ["RUNTIME__DLTHUB_TELEMETRY"] = saved


def _not_fallback(record: logging.LogRecord) -> bool:
    return "Falling back to `append`" not in record.getMessage()
