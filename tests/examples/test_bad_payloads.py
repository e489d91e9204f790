"""1,000 generated bad Nightscout payloads: no crash, a clear error naming the record, or a blocked verdict.

Each generated entry records what it was made of (which fields are malformed, whether it is an sgv
entry), so the test knows, independently of the parser, whether the batch must be rejected and which
record the error must name. Accepted batches go through the pandera gate's rule matching on the
`marts.fct_glucose_readings` frame the dbt model would build from them (mirrored here in polars):
out-of-range glucose and duplicate ids must block, and nothing else may. A few accepted-but-bad
batches then run the real ingest -> validate -> promote path: promotion is refused, main untouched.
"""

from __future__ import annotations

import json
import math
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
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.config import load_settings
from cascade_ci.errors import CascadeError, RefusedError, SourceError
from cascade_ci.gates import pandera_gate
from cascade_ci.stages.branch import create_run_branch
from cascade_ci.stages.ingest import ingest
from cascade_ci.stages.promote import promote
from cascade_ci.stages.validate import validate
from cascade_ci.verdict import Level
from tests.conftest import GLUCOSE_EXAMPLE
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
    core_bad: bool  # not an object, or a bad _id/date: rejected whatever its type
    detail_bad: bool  # a bad sgv/trend/utcOffset/direction/device/dateString: rejected if it is an sgv entry
    sgv_kind: bool
    plain_id: str | None
    sgv: int | None
    direction: str | None

    @property
    def rejected(self) -> bool:
        return self.core_bad or (self.sgv_kind and self.detail_bad)


def raw_date(made: Made) -> int:
    """The reading's time in ms, as the source reads it."""
    return int(made.entry["date"])


text = st.text(max_size=10)  # any unicode except lone surrogates (see test_lone_surrogate_... below)
ids = st.one_of(st.sampled_from(["a", "b", "5f0c1e"]), st.text(min_size=1, max_size=24))
good_dates = st.one_of(
    st.integers(1_600_000_000_000, 1_900_000_000_000),
    st.integers(-POLARS_MAX_MS, POLARS_MAX_MS),
    st.floats(-1e15, 1e15, allow_nan=False),
)
bad_dates = st.sampled_from(
    [math.nan, math.inf, -math.inf, True, False, "1700000000000", None, [], {}, MAX_MS, -MAX_MS, 2**63, 10**30, 1e300]
)
good_sgv = st.one_of(st.integers(0, 1000), st.integers(-INT32, INT32 - 1), st.integers(-1000, 1000).map(float))
bad_sgv = st.sampled_from([1.5, math.nan, math.inf, "100", True, None, INT32, -INT32 - 1, 10**40, 1e300, [], {}])
good_int = st.one_of(st.none(), st.integers(-INT32, INT32 - 1), st.integers(-100, 100).map(float))
bad_int = st.sampled_from(["x", 1.5, INT32, -INT32 - 1, True, math.nan, []])
good_text = st.one_of(st.none(), text)
bad_text = st.sampled_from([5, 1.5, False, [], {}, {"$oid": "x"}])
KNOWN = {"_id", "date", "sgv", "type", "direction", "trend", "device", "utcOffset", "dateString"}


def pick(draw, good, bad, missing_ok: bool = True) -> tuple[Any, bool]:
    """(value or MISSING, is_bad): mostly good values, sometimes bad ones, sometimes absent."""
    mode = draw(st.sampled_from(["good"] * 6 + ["bad"] + (["missing"] if missing_ok else [])))
    if mode == "missing":
        return MISSING, False
    return (draw(good), False) if mode == "good" else (draw(bad), True)


@st.composite
def entries(draw) -> Made:
    if draw(st.integers(0, 19)) == 0:
        return Made(draw(st.sampled_from([None, 5, "sgv", [], ["x"], 1.5])), True, False, False, None, None, None)
    entry: dict[str, Any] = {}
    core_bad = detail_bad = False
    id_mode = draw(st.sampled_from(["good"] * 5 + ["oid", "bad", "missing"]))
    plain_id = None
    if id_mode == "good":
        entry["_id"] = plain_id = draw(ids)
    elif id_mode == "oid":
        plain_id = draw(ids)
        entry["_id"] = {"$oid": plain_id}
    elif id_mode == "bad":
        entry["_id"] = draw(st.sampled_from(["", 0, 12, None, [], {"$oid": 5}, {"$oid": ""}, {}, True]))
        core_bad = True
    else:
        core_bad = True
    date, bad = pick(draw, good_dates, bad_dates)
    core_bad |= bad or date is MISSING
    kind = draw(st.sampled_from(["sgv", "sgv", "sgv", "absent", "null", "mbg", "cal", "other", "int"]))
    kind_value = {"sgv": "sgv", "absent": MISSING, "null": None, "mbg": "mbg", "cal": "cal", "int": 5}.get(
        kind, draw(text)
    )
    sgv, bad_s = pick(draw, good_sgv, bad_sgv)
    fields = {"date": date, "type": kind_value, "sgv": sgv}
    detail = {"sgv": bad_s}
    for key, good, bad in (
        ("direction", st.one_of(st.sampled_from(DIRECTIONS), good_text), bad_text),
        ("trend", good_int, bad_int),
        ("utcOffset", good_int, bad_int),
        ("device", good_text, bad_text),
        ("dateString", good_text, bad_text),
    ):
        fields[key], detail[key] = pick(draw, good, bad)
    entry.update({k: v for k, v in fields.items() if v is not MISSING})
    extra = draw(
        st.dictionaries(text.filter(lambda k: k not in KNOWN), st.one_of(st.none(), st.integers(), text), max_size=2)
    )
    entry.update(extra)
    sgv_kind = kind_value == "sgv" or (kind_value in (None, MISSING) and "sgv" in entry)
    detail_bad = any(detail.values()) or (sgv_kind and sgv is MISSING)
    if isinstance(sgv, float) and sgv.is_integer():
        sgv = int(sgv)
    direction = entry.get("direction") if isinstance(entry.get("direction"), str) else None
    return Made(entry, core_bad, detail_bad, sgv_kind, plain_id, sgv if isinstance(sgv, int) else None, direction)


# -- the mart the dbt model builds, and the pandera gate's verdict on it --------------------------------


def mart_frame(raw: pa.Table) -> pl.DataFrame:
    """fct_glucose_readings from raw.glucose_entries, as models/marts/fct_glucose_readings.sql computes it."""
    frame = pl.from_arrow(raw).filter(pl.col("entry_type") == "sgv")
    ts, g = pl.col("reading_timestamp"), pl.col("glucose_mg_dl")
    return frame.select(
        "entry_id", pl.col("sgv").cast(pl.Int32).alias("glucose_mg_dl"), "reading_timestamp", "direction", "device"
    ).select(
        "entry_id",
        "glucose_mg_dl",
        "reading_timestamp",
        ts.dt.date().alias("reading_date"),
        ts.dt.hour().cast(pl.Int32).alias("hour_of_day"),
        ts.dt.weekday().cast(pl.Int32).alias("day_of_week"),
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


@FAST
@given(st.lists(entries(), max_size=8))
def test_bad_payloads_are_rejected_clearly_or_blocked(made: list[Made]):
    payload = [m.entry for m in made]
    first_bad = next((i for i, m in enumerate(made) if m.rejected), None)
    try:
        batch = entries_to_batch(payload, "nightscout-export")
    except CascadeError as e:  # the only exceptions allowed out of a source
        event("rejected")
        assert isinstance(e, SourceError), repr(e)
        assert first_bad is not None, f"a good payload was rejected: {e}"
        message = str(e)
        assert f"Nightscout entry #{first_bad} " in message, (message, first_bad)
        named = made[first_bad]
        assert (
            ((f"(_id={named.plain_id!r})" if named.plain_id else "(no _id)") in message)
            if isinstance(named.entry, dict)
            else ("not an object" in message)
        ), message
        assert len(message) < 500, message
        return
    assert first_bad is None, f"entry #{first_bad} should have been rejected: {payload[first_bad]!r}"

    readings = [m for m in made if m.sgv_kind]
    event(f"accepted with {min(len(readings), 3)}{'+' if len(readings) > 3 else ''} readings")
    raw = batch.tables[GLUCOSE]
    assert raw.num_rows == len(readings)
    assert raw.column("entry_id").to_pylist() == [m.plain_id for m in readings]
    assert raw.column("sgv").to_pylist() == [m.sgv for m in readings]

    checks = gate_checks(mart_frame(raw))
    low = [m.sgv for m in readings if m.sgv < 20]
    high = [m.sgv for m in readings if m.sgv > 600]
    seen: set[str] = set()
    dupes = {m.plain_id for m in readings if m.plain_id in seen or seen.add(m.plain_id)}
    assert checks["glucose_mg_dl:greater_than_or_equal_to"].observed == (len(low) or None)
    assert checks["glucose_mg_dl:less_than_or_equal_to"].observed == (len(high) or None)
    assert checks["entry_id:unique"].passed == (not dupes)
    for value in (low + high)[:1]:
        assert repr(value) in "".join(c.message for c in checks.values())
    unknown_direction = any(m.direction is not None and m.direction not in DIRECTIONS for m in readings)
    assert checks["direction:isin"].passed == (not unknown_direction)
    assert checks["direction:isin"].severity is Level.WARN  # a category: warns, never blocks
    earliest = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000)
    latest = int((datetime.now(UTC) + timedelta(days=1)).timestamp() * 1000)
    misdated = [m for m in readings if not earliest <= raw_date(m) <= latest]
    blocked = any(c.blocks for c in checks.values())
    event(f"accepted, {'blocked' if blocked else 'passed'}")
    assert blocked == bool(low or high or dupes or misdated), {k: c.message for k, c in checks.items() if not c.passed}


# -- no bad row reaches main: the real ingest -> validate -> promote path ----------------------------


def good_reading(i: int, entry_id: str, sgv: int) -> dict[str, Any]:
    return {"_id": entry_id, "date": 1_790_000_000_000 + i * 300_000, "sgv": sgv, "type": "sgv", "direction": "Flat"}


@st.composite
def accepted_but_bad(draw) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 6))
    batch = [good_reading(i, f"id-{i}", draw(st.integers(20, 600))) for i in range(count)]
    defect = draw(st.sampled_from(["low", "high", "duplicate"]))
    at = draw(st.integers(0, count - 1))
    if defect == "low":
        batch[at]["sgv"] = draw(st.integers(-INT32, 19))
    elif defect == "high":
        batch[at]["sgv"] = draw(st.integers(601, INT32 - 1))
    else:
        batch.append(good_reading(count, batch[at]["_id"], draw(st.integers(20, 600))))
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


@settings(max_examples=5, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(accepted_but_bad())
def test_no_bad_row_reaches_main(entries: list[dict[str, Any]]):
    verdict, outcome, main_before, catalog, home = publish_attempt(entries, "bad")
    request_cleanup(catalog, home)
    failing = [c for c in verdict.checks if c.blocks]
    assert verdict.blocked and failing, verdict.to_json()
    assert {c.table for c in failing} == {MART}
    assert {c.name.split(":")[0] for c in failing} <= {"glucose_mg_dl", "entry_id"}
    assert outcome.startswith("refused: ") and "blocked by its verdict" in outcome, outcome
    assert catalog.get_ref("main").hash == main_before
    assert catalog.tables("main").load_table(MART).scan().to_arrow().num_rows == 0
    assert not catalog.tables("main").table_exists(GLUCOSE)


def test_a_good_batch_does_reach_main():
    """The control: the same path with valid readings promotes, so the test above can tell the difference."""
    entries = [good_reading(i, f"ok-{i}", 20 + 116 * i) for i in range(6)]
    verdict, outcome, main_before, catalog, home = publish_attempt(entries, "good")
    request_cleanup(catalog, home)
    assert not verdict.blocked, [c.message for c in verdict.checks if c.blocks]
    assert outcome == "promoted"
    on_main = catalog.tables("main").load_table(MART).scan().to_arrow()
    assert sorted(on_main.column("glucose_mg_dl").to_pylist()) == [20, 136, 252, 368, 484, 600]
    assert catalog.get_ref("main").hash != main_before


# -- gaps these payloads found, fixed since ------------------------------------------------------------


def test_lone_surrogate_in_a_string_is_a_source_error():
    entries = json.loads('[{"_id": "ok", "date": 1790000000000, "sgv": 100, "device": "dex\\udc80"}]')  # valid JSON
    with pytest.raises(SourceError, match=r"Nightscout entry #0 \(_id='ok'\): device is not valid Unicode"):
        entries_to_batch(entries, "nightscout-export")


def test_error_message_stays_on_one_line_whatever_the_id():
    # An _id from the source can carry a newline and a GitHub workflow command into the job log.
    with pytest.raises(SourceError) as caught:
        entries_to_batch([{"_id": "x\n::error::forged", "date": 1790000000000, "sgv": "high"}], "nightscout-export")
    assert "\n" not in str(caught.value)


def test_reading_dated_in_the_far_future_is_blocked():
    year_97000 = 3_000_000_000_000_000  # ms since 1970; accepted by the source, and DuckDB computes its hour
    batch = entries_to_batch([{"_id": "far", "date": year_97000, "sgv": 100}], "nightscout-export")
    checks = gate_checks(mart_frame(batch.tables[GLUCOSE]))
    assert any(c.blocks for c in checks.values())
