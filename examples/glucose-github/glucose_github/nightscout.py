"""Nightscout: glucose entries from the REST API v1, or from export files, read as Nightscout reads them.

What Nightscout does, and this module with it (cgm-remote-monitor, `lib/server/entries.js` and the
reports in `lib/report/`):

- Identity: an entry is its `_id` (mongoexport writes `{"$oid": ...}`; API v3 calls it `identifier`).
  Uploaders post entries without one, and Nightscout upserts them on (time, type). An entry without
  an id gets one derived from (`date`, `type`, `device`; an empty `device` is none, as an empty `_id`
  is), so a rerun upserts it instead of adding it again; repeats inside a batch keep the last copy
  (Nightscout's upsert overwrites). The staging model then keeps one reading per (`date`, type), as
  Nightscout's client merges entries on their time, so a reading re-uploaded under a new `_id` counts
  once.
- `sgv` is a number or numeric text (Nightscout's reports `parseFloat` it). Values below 39 are Dexcom
  error codes (5 = sensor not calibrated, 9 = absolute deviation, ...): kept in raw, left out of the
  glucose metrics and counted per day by the dbt project.
- Only `sgv` entries are readings: `mbg` (meter) and `cal` (calibration) records are skipped before
  any of their fields is looked at. An entry without `type` is a reading if it has `sgv`.
- Files: a JSON array, an object with an `entries` (or API v3 `result`) array, or JSON lines (one
  document per line, as mongoexport writes), with or without a UTF-8 byte order mark.

A record that cannot be read is not fatal: it is returned, as its JSON text with the reason, in the
`raw.glucose_entries__rejects` table. Only a file that cannot be read at all (not UTF-8, not JSON,
an array broken mid-way) fails, naming the file, the place and the fix.

The API answers newest first, so `fetch_entries` pages backwards through the window by moving
`find[date][$lt]` to the oldest `date` seen.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

from cascade_ci.errors import ConfigError, SourceError, SourceUnavailableError, safe_url
from cascade_ci.github import mask
from cascade_ci.http_guard import check_credential_url
from cascade_ci.http_guard import opener as guarded_opener
from glucose_github.raw import GLUCOSE, RawBatch, schemas

API_SOURCE = "nightscout-api"
EXPORT_SOURCE = "nightscout-export"
ERROR_CODES_BELOW = 39  # sgv < 39 is a CGM error code, not a glucose value (Nightscout's errorcodes plugin)
MAX_TRIES = 4
RETRY_DELAYS = (0.5, 1.0, 2.0)  # seconds before the 2nd, 3rd and 4th try
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT32 = 2**31
_MAX_MS = 2**63 // 1000  # keeps date_ms * 1000 (microseconds) inside int64
_MAX_OFFSET = 18 * 60  # minutes: the widest UTC offset there is
_FIXED_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")
_NUMBER = re.compile(r"\s*[+-]?\d+(\.\d*)?([eE][+-]?\d+)?\s*")
_COLUMNS = (
    "entry_id",
    "sgv",
    "date_ms",
    "date_string",
    "direction",
    "trend",
    "device",
    "entry_type",
    "utc_offset",
    "site_utc_offset",
    "is_valid",
)


class Rejected(Exception):
    """Why one record cannot be read (becomes a row of the rejects table, never a failed file)."""


@dataclass
class Entries:
    """Readings (one per id, the last copy kept), rejected records (text, reason) and the count skipped."""

    zone: tzinfo | None = None
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    skipped: int = 0
    read: int = 0

    def add(self, entry: Any, where: str, text: str | None = None) -> None:
        """Read one record: a reading, a skipped record (mbg, cal, ...) or a rejected one."""
        self.read += 1
        try:
            row = _row(entry, self.zone)
        except Rejected as why:
            self.rejected.append((text if text is not None else _as_text(entry), f"{_label(entry, where)}: {why}"))
            return
        if row is None:
            self.skipped += 1
            return
        self.rows.pop(row["entry_id"], None)  # a repeat replaces the earlier copy, as Nightscout's upsert does
        self.rows[row["entry_id"]] = row

    def reject(self, text: str, reason: str) -> None:
        self.read += 1
        self.rejected.append((text, reason))

    def tally(self) -> str:
        """What became of the records read."""
        repeats = self.read - self.skipped - len(self.rejected) - len(self.rows)
        return (
            f"{self.read} records read: {len(self.rows)} readings, {len(self.rejected)} rejected, "
            f"{self.skipped} skipped (not sgv), {repeats} repeats"
        )

    def batch(self, source: str) -> RawBatch:
        """`raw.glucose_entries` (ordered by time), its rejected records and the read's tally."""
        import pyarrow as pa
        import pyarrow.compute as pc

        rows = sorted(self.rows.values(), key=lambda row: row["date_ms"])
        schema = schemas()[GLUCOSE]
        column = {f.name: f.type for f in schema}
        data = {name: pa.array([row[name] for row in rows], column[name]) for name in _COLUMNS}
        micros = pc.multiply(data["date_ms"], pa.scalar(1000, pa.int64()))
        data["reading_timestamp"] = micros.cast(column["reading_timestamp"])
        data["ingested_at"] = pa.nulls(len(rows), column["ingested_at"])
        data["source"] = pa.array([source] * len(rows), pa.string())
        table = pa.table([data[f.name] for f in schema], schema=schema)
        return RawBatch({GLUCOSE: table}, rejected={GLUCOSE: list(self.rejected)}, tallies={GLUCOSE: self.tally()})


def site_zone(name: Any) -> tzinfo | None:
    """The `timezone` option: an IANA name (`Europe/Berlin`), `UTC` or a fixed `+01:00`; empty means
    each entry's own offset."""
    text = str(name or "").strip()
    if not text:
        return None
    if text.upper() in ("UTC", "Z", "GMT"):
        return UTC
    fixed = _FIXED_OFFSET.fullmatch(text)
    if fixed:
        sign, hours, minutes = fixed.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        if offset > timedelta(minutes=_MAX_OFFSET):
            raise ConfigError(f"timezone {text!r}: an offset is at most 18 hours")
        return timezone(-offset if sign == "-" else offset)
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"timezone {text!r} is not a known time zone: give an IANA name such as Europe/Berlin, UTC or +01:00"
        ) from None


def fetch_entries(
    base_url: str,
    api_secret: str | None,
    since: datetime,
    until: datetime,
    *,
    zone: tzinfo | None = None,
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
        zone: The site's time zone (see `site_zone`); None: each entry's own offset.
        page_size: The `count` asked for per request.
        session: An opener to send requests with (default: `cascade_ci.http_guard.opener()`, whose redirects
            never carry the secret to another host).
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
        check_credential_url(base_url, "the Nightscout API secret")
        hashed = hashlib.sha1(api_secret.encode("utf-8")).hexdigest()  # noqa: S324 - Nightscout's protocol
        if os.environ.get("GITHUB_ACTIONS") == "true":
            mask(hashed)  # derived at run time: GitHub masks the secret itself, not its hash
        headers["API-SECRET"] = hashed
    opener = session or guarded_opener()  # a redirect to another host drops API-SECRET
    endpoint = f"{base_url.rstrip('/')}/api/v1/entries/sgv.json"
    gte, upper = _to_ms(since), _to_ms(until)
    entries = Entries(zone)
    read = 0
    for page_number in range(1, max_pages + 1):
        query = urllib.parse.urlencode({"count": page_size, "find[date][$gte]": gte, "find[date][$lt]": upper})
        page = _get_json(opener, f"{endpoint}?{query}", headers, timeout, sleep)
        if isinstance(page, dict) and isinstance(page.get("result"), list):
            page = page["result"]  # API v3's envelope, from a proxy that serves both
        if not isinstance(page, list):
            kind = type(page).__name__
            raise SourceError(f"Nightscout answered {kind}, not a list of entries, at {safe_url(endpoint)}")
        for index, entry in enumerate(page):
            entries.add(entry, f"Nightscout entry #{read + index}")
        read += len(page)
        if len(page) < page_size:
            return entries.batch(API_SOURCE)
        # a rejected record still says how far back the page goes
        known = [date for date in map(_paging_date, page) if date is not None]
        if not known:
            where = f"Nightscout page {page_number} at {safe_url(endpoint)}"
            raise SourceError(f"{where} has no entry with a date to page on")
        oldest = min(known)
        if oldest >= upper:
            raise SourceError(f"Nightscout ignored the date filter at {safe_url(endpoint)} (no older entries returned)")
        upper = oldest
    raise SourceError(f"Nightscout has more than {max_pages} pages of {page_size} entries in the window; narrow it")


def load_export(paths: Path | str | Iterable[Path | str], *, zone: tzinfo | None = None) -> RawBatch:
    """Entries from one or more Nightscout export files, deduplicated across them (see the module's doc)."""
    files = [Path(paths)] if isinstance(paths, str | Path) else [Path(path) for path in paths]
    entries = Entries(zone)
    for path in files:
        for where, record, text in read_records(path):
            if isinstance(record, Rejected):
                entries.reject(text, f"{where}: {record}")
            else:
                entries.add(record, where, text)
    return entries.batch(EXPORT_SOURCE)


def entries_to_batch(entries: Iterable[Any], source: str, *, zone: tzinfo | None = None) -> RawBatch:
    """Already-parsed entries as `raw.glucose_entries` and its rejects table (`mbg`, `cal` skipped)."""
    read = Entries(zone)
    for index, entry in enumerate(entries):
        read.add(entry, f"Nightscout entry #{index}")
    return read.batch(source)


# -- files -----------------------------------------------------------------------------------------


def read_records(path: Path) -> Iterator[tuple[str, Any, str | None]]:
    """(where, record or Rejected, the record's own text when known) for every record of an export file.

    Raises:
        SourceError: The file cannot be read, is not UTF-8, or is neither JSON nor JSON lines.
    """
    name = path.name
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SourceError(f"cannot read Nightscout export {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SourceError(
            f"Nightscout export {path} is not UTF-8 text (byte {e.start}): export it again as UTF-8 JSON"
        ) from None
    if not text.strip():
        raise SourceError(f"Nightscout export {path} is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as whole:
        if text.lstrip().startswith("["):
            raise SourceError(_broken_array(path, text, whole)) from None
        yield from _json_lines(path, text)
        return
    if isinstance(data, dict) and not _looks_like_entry(data):
        listed = next((data[key] for key in ("entries", "result") if isinstance(data.get(key), list)), None)
        if listed is None:
            raise SourceError(
                f"Nightscout export {path} is an object without an 'entries' or 'result' list: "
                "give a JSON array of entries, an object with 'entries', or one entry per line"
            )
        data = listed
    for index, record in enumerate(data if isinstance(data, list) else [data]):
        yield f"{name} entry #{index}", record, None


def _looks_like_entry(data: dict[str, Any]) -> bool:
    return any(key in data for key in ("sgv", "date", "dateString", "type", "_id"))


_LINES_AT_ONCE = 2000


def _json_lines(path: Path, text: str) -> Iterator[tuple[str, Any, str | None]]:
    """One JSON document per line (mongoexport's format); a line that does not parse is rejected alone."""
    numbered = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    parsed = 0
    first_error = ""
    for start in range(0, len(numbered), _LINES_AT_ONCE):
        chunk = numbered[start : start + _LINES_AT_ONCE]
        try:  # the chunk's lines as one array (C speed); a chunk with a line that is not one document: line by line
            records = json.loads("[" + ",".join(line for _number, line in chunk) + "]")
        except json.JSONDecodeError:
            records = None
        if records is not None and len(records) == len(chunk):
            parsed += len(chunk)
            for (number, line), record in zip(chunk, records, strict=True):
                yield f"{path.name} line {number}", record, line
            continue
        for number, line in chunk:
            where = f"{path.name} line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                first_error = first_error or f"line {number}: {e.msg} at column {e.colno}"
                yield where, Rejected(f"not valid JSON ({e.msg} at column {e.colno})"), line
                continue
            parsed += 1
            yield where, record, line
    if not parsed:
        raise SourceError(
            f"Nightscout export {path} is neither JSON nor JSON lines ({first_error}): "
            "give a JSON array of entries, an object with 'entries', or one entry per line"
        )


def _broken_array(path: Path, text: str, error: json.JSONDecodeError) -> str:
    """The message for a JSON array that breaks mid-way: which entry, where, and what to do."""
    decoder = json.JSONDecoder()
    index, position = 0, text.index("[") + 1
    while True:
        position = _skip(text, position, " \t\r\n")
        if position >= len(text) or text[position] == "]":
            break
        try:
            _value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            break
        position = _skip(text, position, " \t\r\n")
        if position < len(text) and text[position] == ",":
            position += 1
            index += 1
            continue
        index += 1
        break
    return (
        f"Nightscout export {path} is not valid JSON at line {error.lineno} column {error.colno} "
        f"(entry #{index}): {error.msg}; the file is cut or damaged: export it again, or convert it to "
        "one entry per line so that only the damaged entry is rejected"
    )


def _skip(text: str, position: int, characters: str) -> int:
    while position < len(text) and text[position] in characters:
        position += 1
    return position


# -- records ---------------------------------------------------------------------------------------


def _as_text(record: Any) -> str:
    """A record as JSON text (non-ASCII kept when it is valid Unicode)."""
    try:
        text = json.dumps(record, ensure_ascii=False, default=str)
        text.encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        text = json.dumps(record, ensure_ascii=True, default=str)
    return text


def _label(entry: Any, where: str) -> str:
    plain = _plain_id(entry.get("_id")) or _plain_id(entry.get("identifier")) if isinstance(entry, dict) else None
    return f"{where} (_id={_shown(plain)})" if plain else f"{where} (no _id)"


def _shown(value: Any) -> str:
    """A value for a one-line message: its repr (control characters escaped), at most 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _plain_id(value: Any) -> str | None:
    """An id as text: a non-empty string, or mongoexport's `{"$oid": "..."}`; anything else is no id."""
    if isinstance(value, dict):
        value = value.get("$oid")
    return value if isinstance(value, str) and value and _encodable(value) else None


def _encodable(text: str) -> bool:
    """False for text UTF-8 cannot carry (lone surrogates, which JSON allows)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unwrapped(value: Any) -> Any:
    """mongoexport's extended JSON (`{"$numberLong": "..."}`, `{"$date": ...}`) as the plain value."""
    if isinstance(value, dict) and len(value) == 1:
        key, inner = next(iter(value.items()))
        if key in ("$numberLong", "$numberInt", "$numberDouble", "$numberDecimal"):
            return inner
        if key == "$date":
            inner = _unwrapped(inner)
            if isinstance(inner, str) and not _NUMBER.fullmatch(inner):
                moment = _iso(inner)
                return None if moment is None else (moment - _EPOCH) // timedelta(milliseconds=1)
            return inner
    return value


def _number(value: Any) -> float | None:
    """A finite number from a number or numeric text (not a bool); None if it is neither."""
    kind = type(value)
    if kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        value = _unwrapped(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value):
            return None
        value = float(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _iso(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _date_ms(entry: dict[str, Any]) -> int:
    """The reading's time, ms since 1970: `date`, else an ISO `dateString` with an offset."""
    value = entry.get("date")
    number = _number(value)
    if number is None and value is not None:
        raise Rejected(f"date is not a number: {_shown(value)}")
    if number is None:
        stated = entry.get("dateString")
        moment = _iso(stated) if isinstance(stated, str) else None
        if moment is None:
            raise Rejected("missing date (and no dateString with a UTC offset to take it from)")
        number = (moment - _EPOCH) // timedelta(milliseconds=1)
    if abs(number) >= _MAX_MS:
        raise Rejected(f"date is out of range: {_shown(value)}")
    return int(number)


def _paging_date(entry: Any) -> int | None:
    """The `date` of an API record, whether or not it could be read (None if it has none)."""
    if not isinstance(entry, dict):
        return None
    number = _number(entry.get("date"))
    return int(number) if number is not None and abs(number) < _MAX_MS else None


def _whole(entry: dict[str, Any], key: str, *, required: bool = False) -> int | None:
    """A whole number (a number or numeric text) that fits 32 bits."""
    value = entry.get(key)
    if type(value) is int and -_INT32 <= value < _INT32:
        return value
    if value is None:
        if required:
            raise Rejected(f"missing {key}")
        return None
    number = _number(value)
    if number is None:
        raise Rejected(f"{key} is not a number: {_shown(value)}")
    if number != int(number):
        raise Rejected(f"{key} is not a whole number: {_shown(value)}")
    if not -_INT32 <= number < _INT32:
        raise Rejected(f"{key} does not fit a 32-bit integer: {_shown(value)}")
    return int(number)


def _text(entry: dict[str, Any], key: str) -> str | None:
    value = entry.get(key)
    if value is None or (type(value) is str and value.isascii()):
        return value
    if not isinstance(value, str):
        raise Rejected(f"{key} is not text: {_shown(value)}")
    if not _encodable(value):
        raise Rejected(f"{key} is not valid Unicode text: {_shown(value)}")
    return value


def _entry_id(entry: dict[str, Any], date_ms: int, kind: str, device: str | None) -> str:
    """`_id`, else API v3's `identifier`, else an id derived from (date, type, device); `device` empty or
    absent derive the same id."""
    plain = _plain_id(entry.get("_id")) or _plain_id(entry.get("identifier"))
    if plain:
        return plain
    digest = hashlib.blake2b(f"{date_ms}|{kind}|{device or ''}".encode(), digest_size=12).hexdigest()
    return f"ns-{digest}"


def _own_offset(entry: dict[str, Any], utc_offset: int | None) -> int | None:
    """The entry's own UTC offset in minutes: `utcOffset`, else the offset written in `dateString`."""
    if utc_offset is not None and abs(utc_offset) <= _MAX_OFFSET:
        return utc_offset
    stated = entry.get("dateString")
    moment = _iso(stated) if isinstance(stated, str) else None
    if moment is None:
        return None
    return int((moment.utcoffset() or timedelta()) // timedelta(minutes=1))


def _site_offset(zone: tzinfo | None, date_ms: int, own: int | None) -> int:
    if zone is None:
        return own or 0
    return _zone_offset(zone, date_ms)


_HOUR_MS = 3_600_000
_OFFSETS: dict[tuple[tzinfo, int], int | None] = {}


def _offset_at(zone: tzinfo, ms: int) -> int:
    try:
        moment = _EPOCH + timedelta(milliseconds=ms)
        return int(moment.astimezone(zone).utcoffset() // timedelta(minutes=1))  # type: ignore[operator]
    except (OverflowError, ValueError):
        return 0


def _zone_offset(zone: tzinfo, ms: int) -> int:
    """The zone's offset in minutes at `ms` since 1970, cached per hour (computed per reading in an hour
    where the offset changes)."""
    hour = ms // _HOUR_MS
    key = (zone, hour)
    if key not in _OFFSETS:
        start, end = _offset_at(zone, hour * _HOUR_MS), _offset_at(zone, (hour + 1) * _HOUR_MS - 1)
        if len(_OFFSETS) > 1_000_000:
            _OFFSETS.clear()
        _OFFSETS[key] = start if start == end else None
    found = _OFFSETS[key]
    return found if found is not None else _offset_at(zone, ms)


def _row(entry: Any, zone: tzinfo | None) -> dict[str, Any] | None:
    """One reading as a raw row; None for a record that is not a reading (mbg, cal, ...).

    Raises:
        Rejected: The record is a reading (or may be one) that cannot be read.
    """
    if not isinstance(entry, dict):
        raise Rejected(f"is {type(entry).__name__}, not an object")
    kind = entry.get("type")
    if kind is not None and not isinstance(kind, str):
        raise Rejected(f"type is not text: {_shown(kind)}")
    if kind != "sgv" and (kind is not None or "sgv" not in entry):
        return None  # mbg, cal and other types: skipped before any of their fields is checked
    date_ms = _date_ms(entry)
    sgv = _whole(entry, "sgv", required=True)
    if sgv is not None and sgv < 0:
        raise Rejected(f"sgv is negative: {_shown(entry.get('sgv'))}")
    device = _text(entry, "device")
    utc_offset = _whole(entry, "utcOffset")
    valid = entry.get("isValid")
    if valid is not None and not isinstance(valid, bool):
        raise Rejected(f"isValid is not true or false: {_shown(valid)}")
    return {
        "entry_id": _entry_id(entry, date_ms, "sgv", device),
        "sgv": sgv,
        "date_ms": date_ms,
        "date_string": _text(entry, "dateString"),
        "direction": _text(entry, "direction"),
        "trend": _whole(entry, "trend"),
        "device": device,
        "entry_type": "sgv",
        "utc_offset": utc_offset,
        "site_utc_offset": _site_offset(zone, date_ms, _own_offset(entry, utc_offset)),
        "is_valid": valid,
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
                return json.loads(body.decode("utf-8-sig"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise SourceError(f"Nightscout answered invalid JSON at {safe_url(url)}: {exc}") from None
    raise SourceUnavailableError(f"Nightscout at {safe_url(url)} did not answer after {MAX_TRIES} tries: {problem}")
