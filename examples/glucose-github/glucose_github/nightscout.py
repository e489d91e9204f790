"""Nightscout: glucose entries from the REST API v1, or from a JSON export file.

The API answers newest first, so `fetch_entries` pages backwards through the window by moving
`find[date][$lt]` to the oldest `date` seen. Every record is checked before a table is built:
a malformed payload is a `SourceError` naming the record, never a partial batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from glucose_github.raw import GLUCOSE, RawBatch, schemas

from cascade_ci.errors import ConfigError, SourceError, SourceUnavailableError, safe_url
from cascade_ci.github import mask

API_SOURCE = "nightscout-api"
EXPORT_SOURCE = "nightscout-export"
MAX_TRIES = 4
RETRY_DELAYS = (0.5, 1.0, 2.0)  # seconds before the 2nd, 3rd and 4th try
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT32 = 2**31
_MAX_MS = 2**63 // 1000  # keeps date_ms * 1000 (microseconds) inside int64


def fetch_entries(
    base_url: str,
    api_secret: str | None,
    since: datetime,
    until: datetime,
    *,
    page_size: int = 1000,
    session: urllib.request.OpenerDirector | None = None,
    max_pages: int = 1000,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> RawBatch:
    """Glucose entries with `since <= date < until` from `GET /api/v1/entries/sgv.json`, all pages.

    Args:
        base_url: The Nightscout site, e.g. `https://my-cgm.example.org`.
        api_secret: The plain API secret; only its SHA-1 is sent, in the `API-SECRET` header.
        since: Start of the window (inclusive), timezone-aware.
        until: End of the window (exclusive), timezone-aware.
        page_size: The `count` asked for per request.
        session: An opener to send requests with (default: `urllib.request.build_opener()`).
        max_pages: More full pages than this is an error rather than a silently cut window.
        timeout: Seconds per request.
        sleep: Called with the backoff delay between tries (tests pass a no-op).
    """
    if since.tzinfo is None or until.tzinfo is None:
        raise ConfigError("since and until must be timezone-aware datetimes")
    if since >= until:
        raise ConfigError(f"empty window: since {since.isoformat()} is not before until {until.isoformat()}")
    if page_size < 1 or max_pages < 1:
        raise ConfigError("page_size and max_pages must be positive")
    headers = {"Accept": "application/json", "User-Agent": "cascade-ci"}
    if api_secret:
        hashed = hashlib.sha1(api_secret.encode("utf-8")).hexdigest()  # noqa: S324 - Nightscout's protocol
        if os.environ.get("GITHUB_ACTIONS") == "true":
            mask(api_secret)
            mask(hashed)
        headers["API-SECRET"] = hashed
    opener = session or urllib.request.build_opener()
    endpoint = f"{base_url.rstrip('/')}/api/v1/entries/sgv.json"
    gte, upper = _to_ms(since), _to_ms(until)
    entries: list[dict[str, Any]] = []
    seen: set[str | None] = set()
    for _page in range(max_pages):
        query = urllib.parse.urlencode({"count": page_size, "find[date][$gte]": gte, "find[date][$lt]": upper})
        page = _get_json(opener, f"{endpoint}?{query}", headers, timeout, sleep)
        if not isinstance(page, list):
            kind = type(page).__name__
            raise SourceError(f"Nightscout answered {kind}, not a list of entries, at {safe_url(endpoint)}")
        offset = len(entries)
        for index, entry in enumerate(page):
            _check_record(entry, offset + index)
            entry_id = _plain_id(entry["_id"])
            if entry_id not in seen:  # a page boundary can repeat a record; keep the first
                seen.add(entry_id)
                entries.append(entry)
        if len(page) < page_size:
            return entries_to_batch(entries, API_SOURCE)
        oldest = min(_date_ms(entry, offset + index) for index, entry in enumerate(page))
        if oldest >= upper:
            raise SourceError(f"Nightscout ignored the date filter at {safe_url(endpoint)} (no older entries returned)")
        upper = oldest
    raise SourceError(f"Nightscout has more than {max_pages} pages of {page_size} entries in the window; narrow it")


def load_export(path: Path) -> RawBatch:
    """Entries from a Nightscout JSON export: an array of entries, or an object with an `entries` array."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"cannot read Nightscout export {path}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("entries"), list):
        data = data["entries"]
    if not isinstance(data, list):
        raise SourceError(f"Nightscout export {path} is neither a list of entries nor an object with 'entries'")
    return entries_to_batch(data, EXPORT_SOURCE)


def entries_to_batch(entries: list[dict[str, Any]], source: str) -> RawBatch:
    """The `sgv` entries as a `raw.glucose_entries` table; other types (`mbg`, `cal`) are skipped.

    Raises:
        SourceError: A record lacks `_id` or `date`, or has a value of the wrong type.
    """
    rows = [_row(entry, index) for index, entry in enumerate(entries) if _is_sgv(entry, index)]
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = schemas()[GLUCOSE]
    column = {f.name: f.type for f in schema}
    names = ("entry_id", "sgv", "date_ms", "date_string", "direction", "trend", "device", "entry_type", "utc_offset")
    data = {name: pa.array([row[name] for row in rows], column[name]) for name in names}
    micros = pc.multiply(data["date_ms"], pa.scalar(1000, pa.int64()))
    data["reading_timestamp"] = micros.cast(column["reading_timestamp"])
    data["ingested_at"] = pa.nulls(len(rows), column["ingested_at"])
    data["source"] = pa.array([source] * len(rows), pa.string())
    return RawBatch({GLUCOSE: pa.table([data[f.name] for f in schema], schema=schema)})


# -- records ---------------------------------------------------------------------------------------


def _label(entry: Any, index: int) -> str:
    entry_id = entry.get("_id") if isinstance(entry, dict) else None
    plain = _plain_id(entry_id)
    return f"Nightscout entry #{index} (_id={plain!r})" if plain else f"Nightscout entry #{index} (no _id)"


def _plain_id(value: Any) -> str | None:
    """`_id` as a string; mongoexport writes ObjectIds as `{"$oid": "..."}`."""
    if isinstance(value, dict):
        value = value.get("$oid")
    return value if isinstance(value, str) and value and _encodable(value) else None


def _encodable(text: str) -> bool:
    """False for text UTF-8 cannot carry (lone surrogates, which JSON allows)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_record(entry: Any, index: int) -> None:
    if not isinstance(entry, dict):
        raise SourceError(f"Nightscout entry #{index} is {type(entry).__name__}, not an object")
    if _plain_id(entry.get("_id")) is None:
        raise SourceError(f"{_label(entry, index)}: missing _id")
    _date_ms(entry, index)


def _date_ms(entry: dict[str, Any], index: int) -> int:
    value = entry.get("date")
    if value is None:
        raise SourceError(f"{_label(entry, index)}: missing date")
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise SourceError(f"{_label(entry, index)}: date is not a number: {value!r}")
    if abs(value) >= _MAX_MS:
        raise SourceError(f"{_label(entry, index)}: date is out of range: {value!r}")
    return int(value)


def _is_sgv(entry: Any, index: int) -> bool:
    _check_record(entry, index)
    kind = entry.get("type")
    return kind == "sgv" or (kind is None and "sgv" in entry)


def _int32(entry: dict[str, Any], key: str, index: int, *, required: bool = False) -> int | None:
    value = entry.get(key)
    if value is None and not required:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SourceError(f"{_label(entry, index)}: {key} is not an integer: {value!r}")
    if not -_INT32 <= value < _INT32:
        raise SourceError(f"{_label(entry, index)}: {key} does not fit a 32-bit integer: {value!r}")
    return value


def _text(entry: dict[str, Any], key: str, index: int) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise SourceError(f"{_label(entry, index)}: {key} is not a string: {value!r}")
    if value is not None and not _encodable(value):
        raise SourceError(f"{_label(entry, index)}: {key} is not valid Unicode text: {value!r}")
    return value


def _row(entry: dict[str, Any], index: int) -> dict[str, Any]:
    return {
        "entry_id": _plain_id(entry["_id"]),
        "sgv": _int32(entry, "sgv", index, required=True),
        "date_ms": _date_ms(entry, index),
        "date_string": _text(entry, "dateString", index),
        "direction": _text(entry, "direction", index),
        "trend": _int32(entry, "trend", index),
        "device": _text(entry, "device", index),
        "entry_type": _text(entry, "type", index) or "sgv",
        "utc_offset": _int32(entry, "utcOffset", index),
    }


# -- HTTP ------------------------------------------------------------------------------------------


def _to_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _get_json(
    opener: urllib.request.OpenerDirector,
    url: str,
    headers: dict[str, str],
    timeout: float,
    sleep: Callable[[float], None],
) -> Any:
    """GET `url` as JSON, retrying connection faults, timeouts, 429 and 5xx up to `MAX_TRIES` times."""
    problem = ""
    for attempt in range(MAX_TRIES):
        if attempt:
            sleep(RETRY_DELAYS[min(attempt - 1, len(RETRY_DELAYS) - 1)])
        request = urllib.request.Request(url, headers=headers, method="GET")  # noqa: S310 - caller's http(s) URL
        try:
            with opener.open(request, timeout=timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            exc.close()  # release the connection
            if exc.code in (401, 403):
                raise SourceError(
                    f"Nightscout refused the API secret (HTTP {exc.code}) at {safe_url(url)}; "
                    "check the secret and that the site requires it for reading"
                ) from None
            if exc.code not in RETRY_STATUSES:
                raise SourceError(f"Nightscout answered HTTP {exc.code} {exc.reason} at {safe_url(url)}") from None
            problem = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, DNS, timeout
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            problem = f"{type(reason).__name__}: {reason}"
        else:
            try:
                return json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise SourceError(f"Nightscout answered invalid JSON at {safe_url(url)}: {exc}") from None
    raise SourceUnavailableError(f"Nightscout at {safe_url(url)} did not answer after {MAX_TRIES} tries: {problem}")
