"""1,000 generated bad Nightscout payloads: no crash; each bad record rejected alone, named; or a blocked verdict.

Each generated entry records what it was made of (whether it is a reading, skipped by its type, or
unreadable), so the test knows, independently of the parser, which records must land, which must be
rejected (each in the rejects table, named by its place and id) and which skipped. Landed readings go
through the pandera gate's rule matching on the `marts.fct_glucose_readings` frame the dbt models would
build from them (mirrored here in polars: one reading per time, error codes out, the site's local time):
out-of-range glucose and misdated readings must block, and nothing else may. A few landed-but-bad batches
then run the real ingest -> validate -> promote path: promotion is refused, main untouched.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from glucose_github.nightscout import entries_to_batch
from glucose_github.raw import DIRECTIONS, GLUCOSE
from glucose_github.schemas import MART_SCHEMAS, FactGlucoseReadings
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.config import load_settings
from cascade_ci.errors import RefusedError
from cascade_ci.gates import pandera_gate
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.stages.ingest import ingest
from cascade_ci.stages.promote import promote
from cascade_ci.stages.validate import validate
from cascade_ci.verdict import Level
from tests.conftest import GLUCOSE_EXAMPLE
from tests.examples.rejects import rejected_rows, tallies
from tests.fakes.marts import glucose_category

MART = "marts.fct_glucose_readings"
MISSING = object()
MAX_MS = 2**63 // 1000
INT32 = 2**31
# Dates up to MAX_MS are accepted (DuckDB, which runs the real dbt model, handles them); the polars mirror
# of the model below cannot compute hours past chrono's year 262,143, so generated dates stay inside that.
POLARS_MAX_MS = 8_000_000_000_000_000
SCHEMA = FactGlucoseReadings.to_schema()

# -- what an entry is made of ----------------------------------------------------------------------


@dataclass(frozen=True)
class Made:
    entry: Any
    outcome: str  # "reading", "skipped" (mbg, cal, other types) or "rejected"
    key: tuple[Any, ...] | None  # a reading's identity: ("id", _id) or ("derived", date, device)
    plain_id: str | None
    sgv: int | None
    valid: bool | None


text = st.text(max_size=10)  # any unicode except lone surrogates (see test_lone_surrogate_... below)
ids = st.one_of(st.sampled_from(["a", "b", "5f0c1e"]), st.text(min_size=1, max_size=24))
good_dates = st.one_of(
    st.integers(1_600_000_000_000, 1_900_000_000_000),
    st.integers(-POLARS_MAX_MS, POLARS_MAX_MS),
    st.floats(-1e15, 1e15, allow_nan=False),
    st.integers(1_600_000_000_000, 1_900_000_000_000).map(str),  # numeric text, as shell pipelines write it
)
bad_dates = st.sampled_from([math.nan, math.inf, -math.inf, True, False, "soon", [], {}, MAX_MS, -MAX_MS, 2**63, 1e300])
good_sgv = st.one_of(
    st.integers(0, 1000), st.integers(0, INT32 - 1), st.integers(0, 1000).map(float), st.integers(0, 999).map(str)
)
bad_sgv = st.sampled_from([1.5, -1, -INT32, math.nan, math.inf, "high", "", True, INT32, 10**40, 1e300, [], {}])
good_int = st.one_of(st.none(), st.integers(-INT32, INT32 - 1), st.integers(-100, 100).map(float))
bad_int = st.sampled_from(["x", 1.5, INT32, -INT32 - 1, True, math.nan, []])
good_text = st.one_of(st.none(), text)
bad_text = st.sampled_from([5, 1.5, False, [], {}, {"$oid": "x"}])
good_valid = st.sampled_from([None, True, False])
bad_valid = st.sampled_from(["yes", 1, 0, []])
KNOWN = {"_id", "identifier", "date", "sgv", "type", "direction", "trend", "device", "utcOffset", "dateString"}
KNOWN |= {"isValid"}


def pick(draw, good, bad, missing_ok: bool = True) -> tuple[Any, bool]:
    """(value or MISSING, is_bad): mostly good values, sometimes bad ones, sometimes absent."""
    mode = draw(st.sampled_from(["good"] * 6 + ["bad"] + (["missing"] if missing_ok else [])))
    if mode == "missing":
        return MISSING, False
    return (draw(good), False) if mode == "good" else (draw(bad), True)


@st.composite
def entries(draw) -> Made:
    if draw(st.integers(0, 19)) == 0:
        return Made(draw(st.sampled_from([None, 5, "sgv", [], ["x"], 1.5])), "rejected", None, None, None, None)
    entry: dict[str, Any] = {}
    id_mode = draw(st.sampled_from(["good"] * 4 + ["oid", "unusable", "missing"]))
    plain_id = None
    if id_mode == "good":
        entry["_id"] = plain_id = draw(ids)
    elif id_mode == "oid":
        plain_id = draw(ids)
        entry["_id"] = {"$oid": plain_id}
    elif id_mode == "unusable":  # Nightscout ignores such an _id: the entry gets a derived id, as without one
        entry["_id"] = draw(st.sampled_from(["", 0, 12, None, [], {"$oid": 5}, {"$oid": ""}, {}, True]))
    kind = draw(st.sampled_from(["sgv", "sgv", "sgv", "absent", "null", "mbg", "cal", "other", "int"]))
    kind_value = {"sgv": "sgv", "absent": MISSING, "null": None, "mbg": "mbg", "cal": "cal", "int": 5}.get(
        kind, draw(text.filter(lambda t: t != "sgv"))
    )
    date, bad_date = pick(draw, good_dates, bad_dates)
    sgv, bad_sgv_value = pick(draw, good_sgv, bad_sgv)
    fields = {"date": date, "type": kind_value, "sgv": sgv}
    bad = bad_date or date is MISSING or bad_sgv_value or sgv is MISSING
    for key, good, wrong in (
        ("direction", st.one_of(st.sampled_from(DIRECTIONS), good_text), bad_text),
        ("trend", good_int, bad_int),
        ("utcOffset", good_int, bad_int),
        ("device", good_text, bad_text),
        ("dateString", good_text, bad_text),
        ("isValid", good_valid, bad_valid),
    ):
        fields[key], wrong_value = pick(draw, good, wrong)
        bad = bad or wrong_value
    entry.update({k: v for k, v in fields.items() if v is not MISSING})
    extra = draw(
        st.dictionaries(text.filter(lambda k: k not in KNOWN), st.one_of(st.none(), st.integers(), text), max_size=2)
    )
    entry.update(extra)
    if kind == "int":
        return Made(entry, "rejected", None, plain_id, None, None)  # Nightscout refuses a type that is not text
    if not (kind_value == "sgv" or (kind_value in (None, MISSING) and "sgv" in entry)):
        return Made(entry, "skipped", None, plain_id, None, None)  # checked for nothing: its type says it is no reading
    if bad:
        return Made(entry, "rejected", None, plain_id, None, None)
    return as_reading(entry, plain_id)


def as_reading(entry: dict[str, Any], plain_id: str | None) -> Made:
    """A reading the source can read, as this test models it: its identity, glucose and validity."""
    # An empty device is no device, as an empty _id is no id: both derive the same identity.
    key = ("id", plain_id) if plain_id else ("derived", int(float(entry["date"])), entry.get("device") or None)
    return Made(entry, "reading", key, plain_id, int(float(entry["sgv"])), entry.get("isValid"))


@st.composite
def batches(draw) -> list[Made]:
    """Entries, sometimes with a reading sent again (anywhere in the batch): same time and _id, another
    value, its device absent, null, empty or as it was, as uploaders resend. Identity is then tried
    every few batches, not only when two generated readings happen to share a time."""
    made = draw(st.lists(entries(), max_size=8))
    readings = [m for m in made if m.outcome == "reading"]
    for _ in range(draw(st.integers(0, 2)) if readings else 0):
        first = draw(st.sampled_from(readings))
        entry = {key: value for key, value in first.entry.items() if key != "device"}
        device = draw(st.sampled_from([MISSING, None, "", first.entry.get("device", MISSING)]))
        entry |= {} if device is MISSING else {"device": device}
        entry["sgv"] = draw(good_sgv)
        made.insert(draw(st.integers(0, len(made))), as_reading(entry, first.plain_id))
    return made


# -- the mart the dbt models build, and the pandera gate's verdict on it -------------------------------


def mart_frame(raw: pa.Table) -> pl.DataFrame:
    """fct_glucose_readings from raw.glucose_entries, as models/staging/stg_glucose_entries.sql and
    models/marts/fct_glucose_readings.sql compute it (one batch: one ingested_at)."""
    frame = (
        pl.from_arrow(raw)
        .filter((pl.col("entry_type") == "sgv") & pl.col("is_valid").fill_null(True))
        .sort(["date_ms", "entry_id"])
        .unique(subset=["date_ms"], keep="first", maintain_order=True)
        .filter(pl.col("sgv") >= 39)
    )
    local = pl.col("reading_timestamp") + pl.duration(minutes=pl.col("site_utc_offset").fill_null(0))
    g = pl.col("sgv").cast(pl.Int32)
    return frame.select(
        "entry_id",
        g.alias("glucose_mg_dl"),
        "reading_timestamp",
        local.dt.date().alias("reading_date"),
        local.dt.hour().cast(pl.Int32).alias("hour_of_day"),
        local.dt.weekday().cast(pl.Int32).alias("day_of_week"),
        pl.col("site_utc_offset").fill_null(0).cast(pl.Int32),
        "direction",
        glucose_category(g).alias("glucose_category"),
        g.is_between(70, 180).alias("is_in_range"),
        "device",
    )


def gate_checks(frame: pl.DataFrame) -> dict[str, Any]:
    failures = pandera_gate._failures(SCHEMA, frame)
    return {
        ((rule.column and f"{rule.column}:{rule.name}") or rule.name): pandera_gate._check(
            MART, rule, pandera_gate._matches(rule, failures), "error", "the batch"
        )
        for rule in pandera_gate.rules_of(SCHEMA)
    }


FAST = settings(
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def as_text(record: Any) -> str:
    """How a rejected record is kept: its JSON text."""
    try:
        return json.dumps(record, ensure_ascii=False, default=str)
    except ValueError:
        return json.dumps(record, default=str)


@FAST
@given(batches())
# Found by this test in about 1 run of 5: an empty device and no device are one identity, the last copy kept.
@example([as_reading({"date": 0, "sgv": 0, "device": ""}, None), as_reading({"date": 0, "sgv": 0}, None)])
@example([as_reading({"date": 0, "sgv": 0}, None), as_reading({"date": 0.5, "sgv": "7", "device": ""}, None)])
def test_bad_payloads_are_rejected_alone_or_blocked(made: list[Made]):
    batch = entries_to_batch([m.entry for m in made], "nightscout-export")  # never raises for a record
    raw = batch.tables[GLUCOSE]

    # Every rejected record is in the rejects table (once per distinct text), named by its place and id.
    rejected = {i for i, m in enumerate(made) if m.outcome == "rejected"}
    last_of_text = {as_text(made[i].entry): i for i in sorted(rejected)}
    named = {}
    (tally,) = tallies(batch, GLUCOSE)
    assert tally.startswith(f"{len(made)} records read: {raw.num_rows} readings, {len(rejected)} rejected, ")
    for row in rejected_rows(batch, GLUCOSE):
        found = re.match(r"Nightscout entry #(\d+) (\(_id=.*?\)|\(no _id\)): ", row["reason"])
        assert found, row["reason"]
        index = int(found.group(1))
        named[row["record"]] = index
        m = made[index]
        label = f"(_id={m.plain_id!r})" if m.plain_id and isinstance(m.entry, dict) else None
        assert label is None or found.group(2) == label or "_id=" in found.group(2), (row["reason"], label)
        assert "\n" not in row["reason"] and len(row["reason"]) < 500, row["reason"]
    assert named == last_of_text, (named, last_of_text)
    event(f"{len(rejected)} rejected" if rejected else "none rejected")

    # Every reading lands once per identity (the last copy), whatever else the batch holds.
    readings: dict[tuple[Any, ...], Made] = {}
    for m in made:
        if m.outcome == "reading":
            readings.pop(m.key, None)
            readings[m.key] = m
    landed = raw.select(["entry_id", "sgv", "is_valid"]).to_pylist()  # dates may be past Python's datetime
    assert raw.num_rows == len(readings), (landed, list(readings))
    by_id = {row["entry_id"]: row for row in landed}
    for key, m in readings.items():
        if key[0] == "id":
            assert by_id[key[1]]["sgv"] == m.sgv
            assert by_id[key[1]]["is_valid"] == m.valid
    assert sorted(row["sgv"] for row in by_id.values()) == sorted(m.sgv for m in readings.values())
    event(f"{min(len(readings), 3)}{'+' if len(readings) > 3 else ''} readings")

    # The gates block exactly out-of-range glucose and misdated readings among those the mart keeps.
    frame = mart_frame(raw)
    checks = gate_checks(frame)
    high = [v for v in frame["glucose_mg_dl"].to_list() if v > 600]
    assert checks["glucose_mg_dl:less_than_or_equal_to"].observed == (len(high) or None)
    assert checks["glucose_mg_dl:greater_than_or_equal_to"].passed  # error codes never reach the mart
    assert checks["entry_id:unique"].passed
    unknown_direction = any(d is not None and d not in DIRECTIONS for d in frame["direction"].to_list())
    assert checks["direction:isin"].passed == (not unknown_direction)
    assert checks["direction:isin"].severity is Level.WARN  # a category: warns, never blocks
    earliest = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000)
    latest = int((datetime.now(UTC) + timedelta(days=1)).timestamp() * 1000)
    stamps = frame["reading_timestamp"].dt.epoch("ms").to_list()
    misdated = [t for t in stamps if not earliest <= t <= latest]
    blocked = any(c.blocks for c in checks.values())
    event(f"landed, {'blocked' if blocked else 'passed'}")
    assert blocked == bool(high or misdated), {k: c.message for k, c in checks.items() if not c.passed}


# -- no bad row reaches main: the real ingest -> validate -> promote path ----------------------------


def good_reading(i: int, entry_id: str, sgv: int) -> dict[str, Any]:
    return {"_id": entry_id, "date": 1_790_000_000_000 + i * 300_000, "sgv": sgv, "type": "sgv", "direction": "Flat"}


@st.composite
def landed_but_bad(draw) -> list[dict[str, Any]]:
    """Readings the source keeps (they can be read) that the gates must refuse: too high, or dated ahead."""
    count = draw(st.integers(1, 6))
    batch = [good_reading(i, f"id-{i}", draw(st.integers(39, 600))) for i in range(count)]
    at = draw(st.integers(0, count - 1))
    if draw(st.sampled_from(["high", "future"])) == "high":
        batch[at]["sgv"] = draw(st.integers(601, INT32 - 1))
    else:
        batch[at]["date"] = int((datetime.now(UTC) + timedelta(days=draw(st.integers(2, 3650)))).timestamp() * 1000)
    return batch


def empty_marts(catalog: LocalBranchCatalog) -> None:
    """main holds the four marts, empty, with the dtypes the dbt models produce."""
    tables = catalog.tables("main")
    tables.create_namespace("marts")
    for name, model in MART_SCHEMAS.items():
        frame = pl.DataFrame(schema={col: c.dtype.type for col, c in model.to_schema().columns.items()})
        tables.create_table(name, frame.to_arrow().schema)


def publish_attempt(entries: list[dict[str, Any]], run_id: str) -> tuple[Any, str, str, LocalBranchCatalog, Path]:
    """Real ingest from an export file (the example's nightscout source, `-o file=`), the mart built as dbt
    would, the real validate with the example's pandera schemas; then promote."""
    home = Path(tempfile.mkdtemp(prefix="bad-payload-"))
    cfg = load_settings(
        GLUCOSE_EXAMPLE / "cascade.toml", home=home / "home", reports_dir=home / "reports", gates="schema,pandera"
    )
    catalog = LocalBranchCatalog(cfg.home)
    empty_marts(catalog)
    main_before = catalog.get_ref("main").hash
    branch = create_run_branch(cfg, catalog, run_id).branch
    export = home / "export.json"
    export.write_text(json.dumps(entries), encoding="utf-8")
    ingest(cfg, catalog, run_id, sources=["nightscout"], options={"file": str(export)})
    raw = catalog.tables(branch).load_table(GLUCOSE).scan().to_arrow()
    catalog.tables(branch).load_table(MART).append(mart_frame(raw).to_arrow())
    verdict = validate(cfg, catalog, run_id)
    assert [gate.gate for gate in verdict.gates] == ["schema", "pandera"]
    try:
        outcome = promote(cfg, catalog, run_id).action
    except RefusedError as e:
        outcome = f"refused: {e}"
    return verdict, outcome, main_before, catalog, home


_CLEANUPS: list[tuple[LocalBranchCatalog, Path]] = []


def request_cleanup(catalog: LocalBranchCatalog, home: Path) -> None:
    _CLEANUPS.append((catalog, home))


@pytest.fixture(autouse=True)
def _cleanup_homes():
    yield
    while _CLEANUPS:
        catalog, home = _CLEANUPS.pop()
        catalog.close()
        shutil.rmtree(home, ignore_errors=True)


IN_A_MONTH = int((datetime.now(UTC) + timedelta(days=30)).timestamp() * 1000)


@settings(max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(landed_but_bad())
# Both ways a batch goes bad, always tried (random batches alone are all one kind in 1 run of 2**(n-1)).
@example([good_reading(0, "id-0", 100), good_reading(1, "id-1", 601)])
@example([good_reading(0, "id-0", 100), {**good_reading(1, "id-1", 120), "date": IN_A_MONTH}])
def test_no_bad_row_reaches_main(entries: list[dict[str, Any]]):
    verdict, outcome, main_before, catalog, home = publish_attempt(entries, "bad")
    request_cleanup(catalog, home)
    failing = [c for c in verdict.checks if c.blocks]
    assert verdict.blocked and failing, verdict.to_json()
    assert {c.table for c in failing} == {MART}
    assert {c.name.split(":")[0] for c in failing} <= {"glucose_mg_dl", "reading_timestamp"}
    assert outcome.startswith("refused: ") and "blocked by its verdict" in outcome, outcome
    assert catalog.get_ref("main").hash == main_before
    assert catalog.tables("main").load_table(MART).scan().to_arrow().num_rows == 0
    assert not catalog.tables("main").table_exists(GLUCOSE)


def test_a_good_batch_does_reach_main():
    """The control: the same path with valid readings promotes, so the test above can tell the difference."""
    entries = [good_reading(i, f"ok-{i}", 40 + 112 * i) for i in range(6)]
    entries.append(good_reading(6, "code", 5))  # an error code: kept in raw, out of the mart, not blocking
    verdict, outcome, main_before, catalog, home = publish_attempt(entries, "good")
    request_cleanup(catalog, home)
    assert not verdict.blocked, [c.message for c in verdict.checks if c.blocks]
    assert outcome == "promoted"
    on_main = catalog.tables("main").load_table(MART).scan().to_arrow()
    assert sorted(on_main.column("glucose_mg_dl").to_pylist()) == [40, 152, 264, 376, 488, 600]
    assert catalog.get_ref("main").hash != main_before


# -- gaps these payloads found, fixed since ------------------------------------------------------------


def test_lone_surrogate_in_a_string_is_rejected():
    entries = json.loads('[{"_id": "ok", "date": 1790000000000, "sgv": 100, "device": "dex\\udc80"}]')  # valid JSON
    batch = entries_to_batch(entries, "nightscout-export")
    (rejected,) = rejected_rows(batch, GLUCOSE)
    assert rejected["reason"].startswith("Nightscout entry #0 (_id='ok'): device is not valid Unicode")
    assert "\\udc80" in rejected["record"]  # kept as JSON text that UTF-8 can carry
    assert batch.tables[GLUCOSE].num_rows == 0


def test_reason_stays_on_one_line_whatever_the_id():
    # An _id from the source can carry a newline and a GitHub workflow command into the job log.
    batch = entries_to_batch([{"_id": "x\n::error::forged", "date": 1790000000000, "sgv": "high"}], "x")
    (reason,) = [row["reason"] for row in rejected_rows(batch, GLUCOSE)]
    assert "\n" not in reason and reason.startswith("Nightscout entry #0 (_id='x\\n::error::forged'): ")


def test_reading_dated_in_the_far_future_is_blocked():
    year_97000 = 3_000_000_000_000_000  # ms since 1970; accepted by the source, and DuckDB computes its hour
    batch = entries_to_batch([{"_id": "far", "date": year_97000, "sgv": 100}], "nightscout-export")
    checks = gate_checks(mart_frame(batch.tables[GLUCOSE]))
    assert any(c.blocks for c in checks.values())
