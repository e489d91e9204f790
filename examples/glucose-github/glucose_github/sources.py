"""The example's sources, as `cascade.toml` names them (`python = "glucose_github.sources:sample"`).

Each takes cascade-ci's SourceContext (the window to read and this source's options) and returns every
raw table of the example, in its raw schema: a source that has no rows for a table returns it empty, so
the dbt project always finds all three.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glucose_github.raw import RawBatch, schemas

if TYPE_CHECKING:
    import pyarrow as pa

    from cascade_ci.sources.base import SourceContext


def _names(value: Any) -> list[str]:
    """A list option given as a list or as comma-separated text (as environment variables give it)."""
    parts = value if isinstance(value, list) else str(value or "").split(",")
    return [str(part).strip() for part in parts if str(part).strip()]


def _hours(ctx: SourceContext) -> float:
    return (ctx.until - ctx.since) / timedelta(hours=1)


def _stamped(batch: RawBatch, ctx: SourceContext, label: str) -> dict[str, pa.Table]:
    """Every raw table in the raw schema's column order and types, with `ingested_at` and `source` filled in."""
    import pyarrow as pa

    stamped = {}
    for name, schema in schemas().items():
        rows = batch.tables.get(name, schema.empty_table())
        columns = []
        for field in schema:
            if field.name == "ingested_at":
                columns.append(pa.array([ctx.until] * rows.num_rows, field.type))
            elif field.name == "source" and "source" not in rows.column_names:
                columns.append(pa.array([label] * rows.num_rows, field.type))
            elif field.name in rows.column_names:
                columns.append(rows.column(field.name).cast(field.type))
            else:
                columns.append(pa.nulls(rows.num_rows, field.type))
        stamped[name] = pa.Table.from_arrays(columns, schema=schema)
    return stamped


def sample(ctx: SourceContext) -> dict[str, pa.Table]:
    """Deterministic readings, events and stats; option `defects` injects named defects, `seed` varies them."""
    from glucose_github import sample as generator

    batch = generator.generate(
        ctx.until, seed=int(ctx.options.get("seed", 7)), hours=_hours(ctx), defects=_names(ctx.options.get("defects"))
    )
    return _stamped(batch, ctx, "sample")


def nightscout(ctx: SourceContext) -> dict[str, pa.Table]:
    """Glucose entries from a Nightscout site (options `url`, `api_secret`), or from an export (`file`)."""
    from cascade_ci.errors import ConfigError
    from glucose_github import nightscout as api

    if ctx.options.get("file"):
        return _stamped(api.load_export(Path(str(ctx.options["file"]))), ctx, "file")
    url = ctx.options.get("url")
    if not url:
        raise ConfigError("the nightscout source needs option url (NIGHTSCOUT_URL) or file")
    secret = ctx.options.get("api_secret") or None
    return _stamped(api.fetch_entries(str(url), secret, ctx.since, ctx.until), ctx, "nightscout")


def github(ctx: SourceContext) -> dict[str, pa.Table]:
    """Public events of option `users` and statistics of option `repos`, read with option `token`."""
    from glucose_github import github_source as api

    token = ctx.options.get("token") or None
    base_url = str(ctx.options.get("api_url") or api.DEFAULT_BASE_URL)
    batch = api.fetch_user_events(token, _names(ctx.options.get("users")), base_url=base_url)
    batch = batch.merge(api.fetch_repo_stats(token, _names(ctx.options.get("repos")), base_url=base_url))
    return _stamped(batch, ctx, "github")
