"""Verdicts the report tests render: large ones, one whose data is hostile, and the ones the publishers read."""

from __future__ import annotations

from cascade_ci.verdict import Check, GateResult, Level, TableDelta, Verdict

VALIDATED = "a1b2c3d4e5f6" + "0" * 52
BASE = "f0e1d2c3b4a5" + "9" * 52
STAGES = {"branch": "done", "ingest": "done", "transform": "done", "validate": "blocked", "promote": "blocked"}


def verdict(gates: tuple[GateResult, ...], **changes: object) -> Verdict:
    """A verdict of run 8123456789, attempt 2, judging `gates`."""
    values: dict[str, object] = {
        "run_id": "8123456789",
        "attempt": 2,
        "branch": "pipeline/run-8123456789",
        "validated_hash": VALIDATED,
        "base_ref": "main",
        "base_hash": BASE,
        "started_at": "2026-03-01T10:00:00+00:00",
        "duration_s": 12.5,
        "gates": gates,
        "run_url": "https://github.com/o/r/actions/runs/8123456789",
        "stages": STAGES,
    }
    values.update(changes)
    return Verdict(**values)  # type: ignore[arg-type]


def ten_thousand_failing() -> Verdict:
    """A bad batch: 10,000 failing checks in one gate (a few warnings among them), then passing gates."""
    failing = tuple(
        Check(
            "pandera",
            f"raw.events_{index % 7}",
            f"value_{index}:in_range",
            Level.WARN if index % 10 == 0 else Level.ERROR,
            False,
            f"{index} failing values in all 120000 rows: " + ", ".join(str(-v) for v in range(5)) + ", ...",
            file="schemas/events.yaml",
            line=3 + index,
            observed=index,
            expected=0,
        )
        for index in range(10_000)
    )
    pandera = GateResult("pandera", checks=failing, duration_s=0.9410000000000001)
    schema = GateResult("schema", checks=(Check("schema", "raw.events_0", "columns_match", Level.ERROR, True),))
    freshness = GateResult(
        "freshness", checks=(Check("freshness", "raw.events_0", "max_age", Level.WARN, False, "72.0 h old"),)
    )
    changes = tuple(TableDelta(f"raw.events_{i}", "updated", 100_000, 120_000) for i in range(7))
    return verdict((schema, pandera, freshness), changes=changes)


def twenty_tables() -> Verdict:
    """20 tables, each judged by five gates with a dozen checks, some failing; every table changed."""
    tables = [f"analytics.table_{index:02d}" for index in range(20)]
    gates = []
    for gate in ("schema", "pandera", "dbt", "freshness", "sql"):
        checks = tuple(
            Check(
                gate,
                table,
                f"column_{column}:rule_{gate}",
                Level.WARN if column % 4 == 1 else Level.ERROR,
                column % 3 != 0,
                f"{column * 17} failing values in 4,096 added rows: 'a long sample value', 'another sample', ...",
                file=f"models/{table}.yml",
                line=column + 1,
            )
            for table in tables
            for column in range(12)
        )
        gates.append(GateResult(gate, checks=checks, duration_s=1.1 + len(gate) / 10, retries=("attempt 1: timeout",)))
    changes = tuple(
        TableDelta(
            table,
            "updated",
            rows_before=1_000,
            rows_after=1_200,
            schema_changes=tuple(f"added column extra_{n}: long" for n in range(4)),
            rows_added=250,
            rows_deleted=50,
        )
        for table in tables
    )
    return verdict(tuple(gates), changes=changes)


HOSTILE = (
    '<img src="https://tracker.example/p.gif"> </details><h1>PASSED</h1><details> '
    "[click me](https://evil.example/x) https://evil.example/y www.evil.example @octocat @org/team #123 "
    "ping@mail.example :tada: ``` nested `backticks` ``` a|b <script>alert(1)</script> \x07bell"
)


def hostile() -> Verdict:
    """Every data value a piece of HTML, a link, a mention or Markdown that must come out as text."""
    check = Check("sql", f"raw.{HOSTILE}", f"name {HOSTILE}", Level.ERROR, False, HOSTILE, observed=HOSTILE)
    warn = Check("sql", "raw.t", "w", Level.WARN, False, f"line one\nline two {HOSTILE}")
    passed = Check("sql", "raw.t", "ok", Level.ERROR, True, HOSTILE)
    gates = (
        GateResult("sql", checks=(check, warn, passed), retries=(HOSTILE,)),
        GateResult("dbt", error=f"`dbt` failed: {HOSTILE}\nTraceback ```"),
    )
    changes = (TableDelta(f"raw.{HOSTILE}", "updated", 1, 2, schema_changes=(HOSTILE,)),)
    stages = {"branch": "done", f'x"]; click s0 href "javascript:alert(1)" %% {HOSTILE}': "blocked\n```"}
    return verdict(gates, changes=changes, stages=stages, branch=f"pipeline/{HOSTILE}", base_ref=HOSTILE)


def publishers_blocked() -> Verdict:
    """What the publishers were run on: a failure, a gate that could not run, warnings and passes."""
    dbt = GateResult(
        "dbt",
        checks=(
            Check(
                "dbt", "marts.orders", "unique_orders_id", Level.ERROR, False, "3 failing rows",
                file="dbt/models/marts/schema.yml", line=7, observed=3, expected=0,
            ),
            Check("dbt", "marts.orders", "not_null_orders_id", Level.ERROR, True, "passed"),
            Check(
                "dbt", "marts.orders", "accepted_values_orders_status", Level.WARN, False, "1 failing row",
                file="dbt/models/marts/schema.yml", line=12,
            ),
        ),
        duration_s=2.5,
    )  # fmt: skip
    sql = GateResult("sql", error="ServiceUnavailableError: the engine did not answer\nTraceback ...", duration_s=0.25)
    return verdict((dbt, sql, stale_gate()))


def stale_gate() -> GateResult:
    """Stale data 72 h old (a warning) and a fresh table."""
    return GateResult(
        "freshness",
        checks=(
            Check(
                "freshness", "raw.github_repo_stats", "max_age", Level.WARN, False, "72.0 h old (warn after 24 h)",
                file="cascade.toml", line=9,
            ),
            Check("freshness", "raw.readings", "max_age", Level.ERROR, True, "1.5 h old"),
        ),
        duration_s=0.9410000000000001,
    )  # fmt: skip


def publishers_passed() -> Verdict:
    """Only warnings fail: the verdict passes, and no publisher may call it a failure."""
    return verdict((stale_gate(),), stages={})
