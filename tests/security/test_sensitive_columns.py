"""Finding 5: a column marked `sensitive` keeps its values out of every report of a blocked run.

The failing values of a pandera check on it appear in none of summary.md (the PR comment and step summary),
summary-full.md, junit.xml, verdict.json, the annotations or the command's output; the count and the failing
rows' keys do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.security.conftest import cascade

# Out-of-range readings: distinctive numbers that cannot appear by chance (a hash, a time, a row count).
FAILING = {"r-003": 987654, "r-007": 876543, "r-011": 765432}
SCHEMA = """\
schema_type: polars_dataframe
api: polars
columns:
  reading_id:
    dtype: String
    unique: true
  sgv:
    dtype: Int64
    in_range: {min_value: 39, max_value: 600}
  note:
    dtype: String
    nullable: true
    isin: [ok, fine]
"""
CONFIG = """\
[sources.readings]
files = "data/*.csv"
table = "readings"
keys = { readings = ["reading_id"] }

[tables."raw.readings"]
schema = "schema.yaml"
unique = ["reading_id"]
sensitive = ["sgv"]
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "cascade.toml").write_text(CONFIG)
    (root / "schema.yaml").write_text(SCHEMA)
    rows = ["reading_id,sgv,note"]
    for n in range(1, 13):
        rid = f"r-{n:03d}"
        rows.append(f"{rid},{FAILING.get(rid, 100 + n)},{'odd-note' if n == 5 else 'ok'}")
    (root / "data" / "readings.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(root)
    monkeypatch.setenv("CASCADE_GATES", "schema,pandera")
    return root


def test_blocked_run_shows_counts_and_keys_but_no_sensitive_value(project: Path, tmp_path: Path) -> None:
    github = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "77"}
    github |= {"GITHUB_STEP_SUMMARY": str(tmp_path / "step.md"), "GITHUB_OUTPUT": str(tmp_path / "out.txt")}
    result = cascade("run", "--run-id", "77", "--json", env=github)
    assert result.exit_code == 1, result.output  # blocked
    reports = tmp_path / "reports"
    texts = {
        name: (reports / name).read_text() for name in ("summary.md", "summary-full.md", "junit.xml", "verdict.json")
    }
    texts |= {"step summary": (tmp_path / "step.md").read_text(), "outputs": (tmp_path / "out.txt").read_text()}
    texts |= {"stdout": result.stdout, "stderr (annotations)": result.stderr}
    for where, text in texts.items():
        for value in FAILING.values():
            assert str(value) not in text, f"{value} in {where}"
            assert f"{value:,}" not in text, f"{value:,} in {where}"

    verdict = json.loads(texts["verdict.json"])
    checks = {(c["table"], c["name"]): c for gate in verdict["gates"] for c in gate["checks"]}
    sgv = checks[("raw.readings", "sgv:in_range")]
    assert not sgv["passed"] and sgv["observed"] == 3
    for key in FAILING:
        assert key in sgv["message"]
        assert key in texts["summary-full.md"] and key in texts["junit.xml"]
    assert "3 failing values" in texts["summary-full.md"]
    assert "::error" in result.stderr and "sgv" in result.stderr  # the annotation names the check
    # A column not marked sensitive still shows its failing value.
    assert "odd-note" in checks[("raw.readings", "note:isin")]["message"]
