"""The `files` source: real CSV, Parquet and JSON-lines files written into tmp_path, read back exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cascade_ci.config import SourceConfig, load_settings
from cascade_ci.errors import ConfigError, SourceError
from cascade_ci.sources.base import SourceContext, build_source
from cascade_ci.sources.files import FileSource, read_file

BOM = b"\xef\xbb\xbf"


def context(root: Path, name: str = "orders") -> SourceContext:
    until = datetime(2024, 5, 2, tzinfo=UTC)
    return SourceContext(name, datetime(2024, 5, 1, tzinfo=UTC), until, "run-1", root)


def read(tmp_path: Path, **config: Any) -> dict[str, pa.Table]:
    source = FileSource(SourceConfig(**config), load_settings())
    return dict(source.read(context(tmp_path)))


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def test_csv_with_bom_and_quoted_commas(tmp_path: Path) -> None:
    write(tmp_path / "data" / "orders.csv", BOM + b'order_id,customer,note\n1,"Smith, Jane","a, b"\n2,Bo,plain\n')
    tables = read(tmp_path, files="data/*.csv")
    assert list(tables) == ["orders"]
    orders = tables["orders"]
    assert orders.column_names == ["order_id", "customer", "note"]  # no BOM glued to the first name
    assert orders.to_pylist() == [
        {"order_id": 1, "customer": "Smith, Jane", "note": "a, b"},
        {"order_id": 2, "customer": "Bo", "note": "plain"},
    ]
    assert orders.schema.field("order_id").type == pa.int64()


def test_parquet_is_read_with_its_types(tmp_path: Path) -> None:
    written = pa.table(
        {
            "id": pa.array([1, 2], pa.int32()),
            "at": pa.array([datetime(2024, 5, 1, tzinfo=UTC), None], pa.timestamp("us", "UTC")),
        }
    )
    (tmp_path / "in").mkdir()
    pq.write_table(written, tmp_path / "in" / "events.parquet")
    tables = read(tmp_path, files="in/*.parquet")
    assert tables["events"].equals(written)
    assert tables["events"].schema == written.schema


def test_json_lines_with_bom(tmp_path: Path) -> None:
    write(
        tmp_path / "logs.jsonl", BOM + b'{"id": 1, "tags": ["a"], "ok": true}\n\n{"id": 2, "tags": [], "ok": false}\n'
    )
    tables = read(tmp_path, files="*.jsonl")
    assert tables["logs"].column_names == ["id", "tags", "ok"]
    assert tables["logs"].to_pylist() == [{"id": 1, "tags": ["a"], "ok": True}, {"id": 2, "tags": [], "ok": False}]


def test_each_file_is_its_own_table_by_stem_and_suffix(tmp_path: Path) -> None:
    write(tmp_path / "d" / "a.csv", "x\n1\n")
    write(tmp_path / "d" / "b.ndjson", '{"y": "two"}\n')
    pq.write_table(pa.table({"z": [3.5]}), tmp_path / "d" / "c.pq")
    tables = read(tmp_path, files="d/*")
    assert {name: table.to_pylist() for name, table in tables.items()} == {
        "a": [{"x": 1}],
        "b": [{"y": "two"}],
        "c": [{"z": 3.5}],
    }


def test_files_of_one_table_concatenate_in_sorted_order_with_a_new_column(tmp_path: Path) -> None:
    write(tmp_path / "orders" / "2024-05-02.csv", "order_id,amount,currency\n3,7.5,EUR\n")  # written first
    write(tmp_path / "orders" / "2024-05-01.csv", "order_id,amount\n1,10\n2,20\n")
    tables = read(tmp_path, files="orders/*.csv", table="orders")
    assert list(tables) == ["orders"]
    orders = tables["orders"]
    assert orders.column_names == ["order_id", "amount", "currency"]
    assert orders.schema.field("amount").type == pa.float64()  # int64 of the first file promoted
    assert orders.to_pylist() == [
        {"order_id": 1, "amount": 10.0, "currency": None},
        {"order_id": 2, "amount": 20.0, "currency": None},
        {"order_id": 3, "amount": 7.5, "currency": "EUR"},
    ]


def test_recursive_glob_and_format_override(tmp_path: Path) -> None:
    write(tmp_path / "exports" / "2024" / "05" / "sales.txt", "id,v\n1,x\n")
    write(tmp_path / "exports" / "2024" / "04" / "sales.txt", "id,v\n0,w\n")
    write(tmp_path / "exports" / "top.txt", "id,v\n5,t\n")
    tables = read(tmp_path, files="exports/**/*.txt", format="csv", table="sales")
    assert tables["sales"].to_pylist() == [{"id": 0, "v": "w"}, {"id": 1, "v": "x"}, {"id": 5, "v": "t"}]


def test_glob_relative_to_the_config_folder_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    write(project / "cascade.toml", '[sources.orders]\nfiles = "data/*.csv"\n')
    write(project / "data" / "orders.csv", "id\n1\n")
    write(tmp_path / "data" / "decoy.csv", "id\n9\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(project / "cascade.toml")
    source = build_source("orders", settings.sources["orders"], settings)
    assert isinstance(source, FileSource)
    tables = source.read(context(project))
    assert {name: table.to_pylist() for name, table in tables.items()} == {"orders": [{"id": 1}]}


def test_no_match_names_the_glob_and_the_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(SourceError) as raised:
        read(tmp_path, files="data/*.csv")
    assert str(raised.value) == f"no file matches 'data/*.csv' (resolved against {tmp_path.resolve()})"
    assert raised.value.exit_code == 2


def test_a_folder_matching_the_glob_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "data" / "dir.csv").mkdir(parents=True)
    with pytest.raises(SourceError, match="no file matches"):
        read(tmp_path, files="data/*.csv")


def read_with_rejects(tmp_path: Path, **config: Any) -> tuple[dict[str, pa.Table], list[tuple[str, str, str]]]:
    """The tables a files source reads, and what it rejected: (table, record, reason)."""
    source = FileSource(SourceConfig(**config), load_settings())
    ctx = context(tmp_path)
    tables = dict(source.read(ctx))
    return tables, [(r.table, r.record, r.reason) for r in ctx.rejected]


def test_a_row_with_the_wrong_number_of_fields_is_rejected_alone(tmp_path: Path) -> None:
    write(tmp_path / "data" / "a.csv", "id,name\n1,a\n")
    write(tmp_path / "data" / "b.csv", "id,name\n1,a\n2,b,extra\n3,c\n")
    tables, rejected = read_with_rejects(tmp_path, files="data/*.csv")
    assert tables["b"].to_pylist() == [{"id": 1, "name": "a"}, {"id": 3, "name": "c"}]
    ((table, record, reason),) = rejected
    assert table == "b"
    assert json.loads(record) == {"file": "data/b.csv", "line": 3, "text": "2,b,extra"}
    assert (
        reason == "data/b.csv: line 3: 3 fields where the header has 2; fix the row (quote a value that holds a comma)"
    )


def test_a_value_that_does_not_fit_its_declared_type_is_rejected(tmp_path: Path) -> None:
    write(
        tmp_path / "pay.csv",
        "id,amount,at,note\n1,10,2024-05-01T00:00:00Z,\n2,ten,2024-05-01T01:00:00Z,x\n3,,soon,y\n4,7,,\n",
    )
    types = {"amount": "int64", "at": "timestamp[us, tz=UTC]"}
    tables, rejected = read_with_rejects(tmp_path, files="*.csv", types=types)
    pay = tables["pay"]
    assert (pay.schema.field("amount").type, pay.schema.field("at").type) == (pa.int64(), pa.timestamp("us", "UTC"))
    assert pay.column("id").to_pylist() == [1, 4]  # an empty field is a null, not a misfit
    assert pay.column("amount").to_pylist() == [10, 7]
    assert [json.loads(record) for _, record, _ in rejected] == [
        {"file": "pay.csv", "row": 2, "id": 2, "amount": "ten", "at": "2024-05-01T01:00:00Z", "note": "x"},
        {"file": "pay.csv", "row": 3, "id": 3, "amount": None, "at": "soon", "note": "y"},
    ]
    assert [reason for _, _, reason in rejected] == [
        "pay.csv: row 2: amount 'ten' is not int64; fix the value or leave it empty",
        "pay.csv: row 3: at 'soon' is not timestamp[us, tz=UTC]; fix the value or leave it empty",
    ]


def test_json_values_are_coerced_to_their_declared_type_or_rejected(tmp_path: Path) -> None:
    write(tmp_path / "e.jsonl", '{"id": 1, "n": "12"}\n{"id": 2, "n": 3}\n{"id": 3, "n": "many"}\n')
    tables, rejected = read_with_rejects(tmp_path, files="*.jsonl", types={"n": "int32"})
    assert tables["e"].schema.field("n").type == pa.int32()
    assert tables["e"].to_pylist() == [{"id": 1, "n": 12}, {"id": 2, "n": 3}]
    assert rejected == [("e", '{"id": 3, "n": "many"}', "e.jsonl: line 3: n 'many' is not int32; fix the value")]


def test_an_unknown_declared_type_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^types\.amount: unknown type 'money'; use int64"):
        read(tmp_path, files="*.csv", types={"amount": "money"})


def test_without_a_reject_callback_a_bad_row_still_fails_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", "id,name\n2,b,extra\n")
    with pytest.raises(SourceError, match=r"^b\.csv: cannot read as CSV: CSV parse error: .*Expected 2 columns, got 3"):
        read_file(path, "csv", "b.csv")


def test_empty_csv_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "empty.csv", "")
    with pytest.raises(SourceError, match=r"^empty\.csv: cannot read as CSV: Empty CSV file; is it CSV with a header"):
        read(tmp_path, files="*.csv")


def test_a_line_that_is_not_json_is_rejected_alone(tmp_path: Path) -> None:
    write(tmp_path / "events.jsonl", '{"id": 1}\n{"id": 2\n[3]\n{"id": 4}\n')
    tables, rejected = read_with_rejects(tmp_path, files="*.jsonl")
    assert tables["events"].to_pylist() == [{"id": 1}, {"id": 4}]
    assert rejected == [
        ("events", '{"id": 2', "events.jsonl: line 2: Expecting ',' delimiter; fix the line or remove it"),
        ("events", "[3]", "events.jsonl: line 3: a list, not a JSON object"),
    ]


def test_json_array_file_says_what_json_lines_are(tmp_path: Path) -> None:
    write(tmp_path / "events.json", '[{"id": 1}]\n')
    with pytest.raises(SourceError) as raised:
        read(tmp_path, files="*.json")
    assert str(raised.value) == (
        "events.json: cannot read as JSON lines: line 1: a list, not a JSON object; "
        "write one JSON object per line, or set `format` on the source"
    )


def test_a_json_line_that_changes_a_columns_type_is_rejected(tmp_path: Path) -> None:
    write(tmp_path / "events.jsonl", '{"id": 1, "ok": true}\n{"id": "x"}\n{"id": 3, "ok": null}\n')
    tables, rejected = read_with_rejects(tmp_path, files="*.jsonl")
    assert tables["events"].to_pylist() == [{"id": 1, "ok": True}, {"id": 3, "ok": None}]
    assert rejected == [
        ("events", '{"id": "x"}', "events.jsonl: line 2: id is text, not a number as on line 1; fix the value")
    ]


def test_a_file_that_is_not_utf8_fails_whole(tmp_path: Path) -> None:
    write(tmp_path / "events.jsonl", b'{"id": 1}\n{"id": "\xff\xfe"}\n')
    with pytest.raises(SourceError, match=r"^events\.jsonl: cannot read as JSON lines: .*utf-8.*; write one JSON"):
        read(tmp_path, files="*.jsonl")


def test_corrupt_parquet_names_the_file(tmp_path: Path) -> None:
    write(tmp_path / "t.parquet", b"PAR1 not really")
    with pytest.raises(SourceError, match=r"^t\.parquet: cannot read as Parquet: .*Parquet") as raised:
        read(tmp_path, files="*.parquet")
    assert "Traceback" not in str(raised.value)


def test_incompatible_files_name_the_one_that_does_not_fit(tmp_path: Path) -> None:
    write(tmp_path / "p" / "1.csv", "id\n1\n")
    write(tmp_path / "p" / "2.csv", "id\nabc\n")
    with pytest.raises(SourceError) as raised:
        read(tmp_path, files="p/*.csv", table="p")
    assert str(raised.value).startswith("p/2.csv: does not fit table 'p' of the files before it: ")
    assert "int64 vs string" in str(raised.value)


def test_unknown_suffix_without_format_is_a_config_error(tmp_path: Path) -> None:
    write(tmp_path / "notes.txt", "a\n")
    with pytest.raises(ConfigError) as raised:
        read(tmp_path, files="*.txt")
    assert str(raised.value) == (
        "notes.txt: cannot tell the format from the suffix '.txt'; set `format` (csv, parquet or jsonl) on the source"
    )


def test_misfits_are_found_across_blocks_of_a_large_file(tmp_path: Path) -> None:
    bad = {0, 4095, 4096, 9999}  # the first row, either side of a block edge, the last row
    lines = [f"{i},{'x' if i in bad else i}" for i in range(10_000)]
    write(tmp_path / "big.csv", "id,n\n" + "\n".join(lines) + "\n")
    tables, rejected = read_with_rejects(tmp_path, files="*.csv", types={"n": "int64"})
    assert sorted(json.loads(record)["id"] for _, record, _ in rejected) == sorted(bad)
    assert tables["big"].num_rows == 10_000 - len(bad)
    assert tables["big"].column("n").to_pylist() == [i for i in range(10_000) if i not in bad]
