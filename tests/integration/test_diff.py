"""`cascade diff --pr N`: a key-based data diff of a pull request's branch against main (embedded catalog)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from click.testing import CliRunner
from pyiceberg.types import StringType

from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.cli import cli
from cascade_ci.stages.diff import MARKDOWN_LIMIT, SAMPLES, compare, render_markdown
from tests.conftest import write_rows

SECRET = 987_654  # a value no report may show


def cascade(*args: str):
    return CliRunner().invoke(cli, list(args))


def glucose(ids: list[int], sgv: list[int]) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64()), "sgv": pa.array(sgv, pa.int64())})


def events(rows: list[tuple[str, int]]) -> pa.Table:
    return pa.table({"kind": pa.array([r[0] for r in rows]), "value": pa.array([r[1] for r in rows], pa.int64())})


def replace_rows(catalog: LocalBranchCatalog, ref: str, table: str, rows: pa.Table) -> None:
    catalog.tables(ref).load_table(table).overwrite(rows)


def test_diff_counts_rows_by_key_and_shows_only_keys(tmp_path: Path, catalog: LocalBranchCatalog) -> None:
    (tmp_path / "cascade.toml").write_text('[tables."raw.readings"]\nunique = ["id"]\n')
    write_rows(catalog, "main", "raw.readings", glucose([1, 2, 3, 4, 5], [100, 110, 120, 130, 140]))
    write_rows(catalog, "main", "raw.events", events([("a", 1), ("b", 2), ("b", 2)]))
    write_rows(catalog, "main", "raw.gone", glucose([1], [1]))
    write_rows(catalog, "main", "raw.same", glucose([1], [1]))
    assert cascade("branch", "--pr", "4").exit_code == 0

    # on the PR: 2 removed, 3 changed, 6 and 7 added, a column added; events: one "b" row changed
    replace_rows(catalog, "pr/4", "raw.readings", glucose([1, 3, 4, 5, 6, 7], [100, SECRET, 130, 140, 150, 160]))
    with catalog.tables("pr/4").load_table("raw.readings").update_schema() as update:
        update.add_column("note", StringType())
    replace_rows(catalog, "pr/4", "raw.events", events([("a", 1), ("b", 2), ("b", SECRET)]))
    write_rows(catalog, "pr/4", "raw.fresh", glucose([10, 11], [SECRET, SECRET]))
    catalog.tables("pr/4").drop_table("raw.gone")

    result = cascade("diff", "--pr", "4", "--json")
    assert result.exit_code == 0, result.output
    found = {t["table"]: t for t in json.loads(result.stdout)["tables"]}
    assert set(found) == {"raw.readings", "raw.events", "raw.fresh", "raw.gone"}  # raw.same is not read
    readings = found["raw.readings"]
    assert (readings["rows_added"], readings["rows_removed"], readings["rows_changed"]) == (2, 1, 1)
    assert readings["key"] == ["id"] and readings["columns_added"] == ["note"]
    assert readings["samples"] == {"added": [[6], [7]], "removed": [[2]], "changed": [[3]]}
    events_diff = found["raw.events"]  # no key: whole rows, and no sample keys to show
    assert (events_diff["rows_added"], events_diff["rows_removed"], events_diff["rows_changed"]) == (1, 1, None)
    assert "whole rows" in events_diff["note"] and events_diff["samples"] == {}
    assert (found["raw.fresh"]["change"], found["raw.fresh"]["rows_added"]) == ("added", 2)
    assert (found["raw.gone"]["change"], found["raw.gone"]["rows_removed"]) == ("removed", 1)

    reports = Path(tmp_path / "reports")
    markdown = (reports / "diff.md").read_text()
    assert "| `raw.readings` | modified | 2 | 1 | 1 | `id` |" in markdown
    assert "column `note` added" in markdown and "changed, e.g. `3`" in markdown
    for text in (markdown, (reports / "diff.json").read_text(), result.stdout):
        assert str(SECRET) not in text and "130" not in text  # keys and column names only


def test_diff_without_changes(catalog: LocalBranchCatalog) -> None:
    write_rows(catalog, "main", "raw.readings", glucose([1], [1]))
    assert cascade("branch", "--pr", "5").exit_code == 0
    result = cascade("diff", "--pr", "5")
    assert result.exit_code == 0, result.output
    assert "0 table(s) differ" in result.stdout


def test_samples_are_capped_and_markdown_is_escaped(catalog: LocalBranchCatalog) -> None:
    keys = [f"k|{i:02d}`<b>" for i in range(20)]
    write_rows(catalog, "main", "raw.tags", pa.table({"tag": pa.array(keys[:2])}))
    write_rows(catalog, "main", "raw.tags2", pa.table({"tag": pa.array(keys[:2])}))
    old = catalog.tables("main").load_table("raw.tags")
    write_rows(catalog, "main", "raw.tags", pa.table({"tag": pa.array(keys[2:])}))
    new = catalog.tables("main").load_table("raw.tags")
    diff = compare(old, new, ("tag",), "raw.tags", "modified")
    assert diff.rows_added == 18 and len(diff.samples["added"]) == SAMPLES
    from cascade_ci.stages.diff import DiffResult

    text = render_markdown(DiffResult("pr/1", "main", "a" * 64, "b" * 64, (diff,) * 500))
    assert len(text) <= MARKDOWN_LIMIT + 200 and "cut" in text
    assert "- `raw.tags`: added, e.g. ``k|02`<b>``, ``k|03`<b>``," in text  # each key one code span


def test_a_sensitive_key_gives_counts_without_sample_keys(tmp_path: Path, catalog: LocalBranchCatalog) -> None:
    (tmp_path / "cascade.toml").write_text('[tables."raw.rejects"]\nunique = ["record"]\nsensitive = ["record"]\n')
    write_rows(catalog, "main", "raw.rejects", pa.table({"record": pa.array(['{"sgv": 1}'])}))
    assert cascade("branch", "--pr", "6").exit_code == 0
    replace_rows(catalog, "pr/6", "raw.rejects", pa.table({"record": pa.array(['{"sgv": 1}', f'{{"sgv": {SECRET}}}'])}))

    result = cascade("diff", "--pr", "6", "--json")
    assert result.exit_code == 0, result.output
    (found,) = json.loads(result.stdout)["tables"]
    assert found["rows_added"] == 1 and found["samples"] == {} and "record" in found["note"]
    markdown = (tmp_path / "reports" / "diff.md").read_text()
    for text in (markdown, result.stdout):
        assert str(SECRET) not in text


def test_a_rejects_table_hides_its_records_when_its_table_has_sensitive_columns(tmp_path: Path) -> None:
    from cascade_ci.config import load_settings
    from cascade_ci.stages.diff import sensitive_columns

    (tmp_path / "cascade.toml").write_text('[tables."raw.readings"]\nsensitive = ["sgv"]\n[tables."raw.other"]\n')
    settings = load_settings(tmp_path / "cascade.toml")
    assert sensitive_columns(settings, "raw.readings__rejects") == ["record"]
    assert sensitive_columns(settings, "raw.other__rejects") == []
    assert sensitive_columns(settings, "raw.readings") == ["sgv"]
