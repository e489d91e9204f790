"""The example's sources, as `cascade.toml` names them (`python = "glucose_github.sources:sample"`).

Each takes cascade-ci's SourceContext (the window to read and this source's options) and returns every
raw table of the example, in its raw schema: a source that has no rows for a table returns it empty, so
the dbt project always finds all three. The records a source could not read are handed to cascade-ci
with the reason (`ctx.reject`), which lands them in `<table>__rejects` and judges their share.
"""

from __future__ import annotations

import glob
import os
from datetime import UTC, timedelta
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


def _files(ctx: SourceContext, value: Any) -> list[Path]:
    """Option `file`: one or more paths, comma-separated, each a path or a glob; a relative one is taken from
    the working directory, else from the project's folder (where cascade.toml is)."""
    from cascade_ci.errors import ConfigError

    found: list[Path] = []
    for name in _names(value):
        path = Path(name).expanduser()
        bases = [path] if path.is_absolute() else [path, Path(ctx.root) / path]
        if glob.has_magic(name):
            matched = next((sorted(map(Path, hits)) for base in bases if (hits := glob.glob(str(base)))), [])
            if not matched:
                raise ConfigError(f"option file: no file matches {name!r}")
            found += matched
        else:
            found.append(next((base for base in bases if base.exists()), path))
    return list(dict.fromkeys(found))


def _stamped(batch: RawBatch, ctx: SourceContext, label: str) -> dict[str, pa.Table]:
    """Every raw table in the raw schema's column order and types, with `ingested_at` and `source` filled in;
    the batch's rejected records reported to cascade-ci (`ctx.reject`)."""
    import pyarrow as pa

    for table, records in batch.rejected.items():
        for record, reason in records:
            ctx.reject(table, record, reason)
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
    """Deterministic readings, events and stats; option `defects` injects named defects, `seed` varies them,
    `timezone` is the site's time zone (default UTC, the generated entries' own offset)."""
    from glucose_github import sample as generator
    from glucose_github.nightscout import site_zone

    batch = generator.generate(
        ctx.until,
        seed=int(ctx.options.get("seed", 7)),
        hours=_hours(ctx),
        defects=_names(ctx.options.get("defects")),
        zone=site_zone(ctx.options.get("timezone")),
    )
    return _stamped(batch, ctx, "sample")


def nightscout(ctx: SourceContext) -> dict[str, pa.Table]:
    """Glucose entries from a Nightscout site (options `url`, `api_secret`), or from exports (`file`: paths or
    globs, comma-separated, read whole whatever the window). Option `timezone`: the site's time zone."""
    from cascade_ci.errors import ConfigError
    from glucose_github import nightscout as api

    zone = api.site_zone(ctx.options.get("timezone"))
    if ctx.options.get("file"):
        return _stamped(api.load_export(_files(ctx, ctx.options["file"]), zone=zone), ctx, "file")
    url = ctx.options.get("url")
    if not url:
        raise ConfigError("the nightscout source needs option url (NIGHTSCOUT_URL) or file")
    secret = ctx.options.get("api_secret") or None
    return _stamped(api.fetch_entries(str(url), secret, ctx.since, ctx.until, zone=zone), ctx, "nightscout")


def github_token(options: Any) -> str | None:
    """The token the GitHub source reads with: option `source_token` (GH_SOURCE_TOKEN), else `token`
    (GITHUB_TOKEN), else the environment's GH_SOURCE_TOKEN or GITHUB_TOKEN; None reads anonymously.

    The config cannot say `${GH_SOURCE_TOKEN:-${GITHUB_TOKEN}}` (no nested defaults), so the choice is here.
    """
    for value in (options.get("source_token"), options.get("token")):
        if value and str(value).strip():
            return str(value).strip()
    for name in ("GH_SOURCE_TOKEN", "GITHUB_TOKEN"):
        if os.environ.get(name, "").strip():
            return os.environ[name].strip()
    return None


def github(ctx: SourceContext) -> dict[str, pa.Table]:
    """Public events of option `users` in the window and statistics of option `repos`.

    One failing user or repository does not fail the others: it lands in the rejects tables with the
    reason. Option `stats_wait_s` bounds the wait for statistics GitHub is still computing (default 30).
    """
    from cascade_ci.errors import ConfigError
    from glucose_github import github_source as api

    token = github_token(ctx.options)
    base_url = str(ctx.options.get("api_url") or api.DEFAULT_BASE_URL)
    try:
        wait = float(ctx.options.get("stats_wait_s") or 30)
    except ValueError:
        raise ConfigError(f"option stats_wait_s is not a number: {ctx.options.get('stats_wait_s')!r}") from None
    users, repos = _names(ctx.options.get("users")), _names(ctx.options.get("repos"))
    batch = api.fetch_user_events(token, users, base_url=base_url, since=ctx.since, until=ctx.until)
    stats = api.fetch_repo_stats(
        token, repos, base_url=base_url, snapshot_date=ctx.until.astimezone(UTC).date(), max_wait_s=wait
    )
    batch = batch.merge(stats)
    failed = api.all_failed(batch, len(users) + len(repos))
    if failed is not None:
        raise failed
    return _stamped(batch, ctx, "github")
