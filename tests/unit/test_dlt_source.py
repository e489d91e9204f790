"""The `dlt` source: real dlt resources beside a cascade.toml, run offline through the filesystem destination."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cascade_ci.config import Settings, SourceConfig, load_settings
from cascade_ci.errors import ConfigError, MissingExtraError, SourceError
from cascade_ci.sources.base import SourceContext, build_source
from cascade_ci.sources.dlt import DltSource

MODULE = """
import dlt


@dlt.resource(primary_key="id", write_disposition="merge")
def orders():
    line = {"sku": "A", "qty": 2, "serials": ["s1", "s2"]}
    yield {"id": 1, "customer": "Ann", "tags": ["new", "vip"], "lines": [line]}
    yield {
        "id": 2,
        "customer": "Bo",
        "tags": [],
        "lines": [{"sku": "B", "qty": 1, "serials": []}, {"sku": "C", "qty": 5, "serials": ["s3"]}],
    }


@dlt.resource
def events():
    yield {"kind": "click", "n": 1, "refs": ["r1"]}
    yield {"kind": "view", "n": 2, "refs": []}


@dlt.source
def shop(days: int = 1, currency: str = "EUR"):
    @dlt.resource(merge_key="day")
    def totals():
        for day in range(days):
            yield {"day": day, "currency": currency}

    return totals


@dlt.resource
def dupes():
    yield {"kind": "x", "refs": ["a"]}
    yield {"kind": "x", "refs": ["b"]}


@dlt.source(root_key=True)
def catalog():
    @dlt.resource(primary_key="sku")
    def products():
        yield {"sku": "A", "variants": [{"size": "S", "codes": ["a1", "a2"]}, {"size": "M", "codes": []}]}
        yield {"sku": "B", "variants": [{"size": "L", "codes": ["b1"]}]}

    return products


@dlt.resource
def flaky():
    yield {"id": 1}
    yield {"id": 2}
    raise RuntimeError("api went away after 2 records")


def plain_rows(**options):
    return [{"id": 1}]


NOT_A_SOURCE = 42
"""

MODULE_NAME = "dlt_fixture"


@pytest.fixture
def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., DltSource]]:
    """Build a DltSource for `dlt_fixture:<attr>`; the module sits beside a cascade.toml in tmp_path."""
    (tmp_path / f"{MODULE_NAME}.py").write_text(MODULE)
    (tmp_path / "cascade.toml").write_text(f'[sources.shop]\ndlt = "{MODULE_NAME}:shop"\noptions = {{ days = 3 }}\n')
    monkeypatch.setattr(sys, "path", list(sys.path))  # import_attr puts the project root first

    def build(attr: str, **config: Any) -> DltSource:
        return DltSource(SourceConfig(dlt=f"{MODULE_NAME}:{attr}", **config), load_settings())

    yield build
    sys.modules.pop(MODULE_NAME, None)


def context(root: Path, name: str = "shop", **options: Any) -> SourceContext:
    until = datetime(2024, 5, 2, tzinfo=UTC)
    return SourceContext(name, datetime(2024, 5, 1, tzinfo=UTC), until, "run-1", root, options)


def rows(table: pa.Table, *columns: str) -> list[dict[str, Any]]:
    return table.select(list(columns)).to_pylist()


def test_resource_with_nested_lists(
    make: Callable[..., DltSource], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    source = make("orders")
    tables = source.read(context(tmp_path, "orders"))
    assert "Falling back to `append`" not in capfd.readouterr().err  # cascade upserts; dlt's warning would mislead
    assert sorted(tables) == ["orders", "orders__lines", "orders__lines__serials", "orders__tags"]
    orders, tags = tables["orders"], tables["orders__tags"]
    lines, serials = tables["orders__lines"], tables["orders__lines__serials"]
    assert orders.column_names == ["id", "customer", "_dlt_id"]  # no _dlt_load_id, nested lists moved out
    assert tags.column_names == ["value", "_dlt_parent_id", "_dlt_list_idx", "_dlt_id"]
    assert lines.column_names == ["sku", "qty", "_dlt_parent_id", "_dlt_list_idx", "_dlt_id"]
    assert serials.column_names == ["value", "_dlt_parent_id", "_dlt_list_idx", "_dlt_id"]
    assert rows(orders, "id", "customer") == [{"id": 1, "customer": "Ann"}, {"id": 2, "customer": "Bo"}]

    # Every nested row links to its parent through the ids that are kept.
    order_of = dict(zip(orders.column("_dlt_id").to_pylist(), orders.column("id").to_pylist(), strict=True))
    assert [(order_of[row["_dlt_parent_id"]], row["_dlt_list_idx"], row["value"]) for row in tags.to_pylist()] == [
        (1, 0, "new"),
        (1, 1, "vip"),
    ]
    line_of = {row["_dlt_id"]: (order_of[row["_dlt_parent_id"]], row["sku"]) for row in lines.to_pylist()}
    assert [(*line_of[row["_dlt_parent_id"]], row["_dlt_list_idx"], row["value"]) for row in serials.to_pylist()] == [
        (1, "A", 0, "s1"),
        (1, "A", 1, "s2"),
        (2, "C", 0, "s3"),
    ]
    assert rows(lines, "sku", "qty", "_dlt_list_idx") == [
        {"sku": "A", "qty": 2, "_dlt_list_idx": 0},
        {"sku": "B", "qty": 1, "_dlt_list_idx": 0},
        {"sku": "C", "qty": 5, "_dlt_list_idx": 1},
    ]
    for table in tables.values():  # ids are unique per table
        assert len(set(table.column("_dlt_id").to_pylist())) == table.num_rows

    assert source.keys("orders") == ["id"]
    assert source.keys("orders__tags") == ["_dlt_id"]
    assert source.keys("orders__lines__serials") == ["_dlt_id"]


def test_ids_are_the_same_on_every_run(make: Callable[..., DltSource], tmp_path: Path) -> None:
    first = make("orders").read(context(tmp_path, "orders"))
    second = make("orders").read(context(tmp_path, "orders"))
    assert sorted(first) == sorted(second)
    for name, table in first.items():
        assert table.equals(second[name]), name


def test_source_called_with_options_and_merge_key(make: Callable[..., DltSource], tmp_path: Path) -> None:
    source = make("shop")
    tables = source.read(context(tmp_path, days=3, currency="USD"))
    assert list(tables) == ["totals"]
    assert tables["totals"].column_names == ["day", "currency", "_dlt_id"]
    assert rows(tables["totals"], "day", "currency") == [
        {"day": 0, "currency": "USD"},
        {"day": 1, "currency": "USD"},
        {"day": 2, "currency": "USD"},
    ]
    assert source.keys("totals") == ["day"]


def test_built_from_cascade_toml(make: Callable[..., DltSource], tmp_path: Path) -> None:
    settings: Settings = load_settings()
    config = settings.sources["shop"]
    source = build_source("shop", config, settings)
    assert isinstance(source, DltSource)
    tables = source.read(context(tmp_path, **config.options))
    assert rows(tables["totals"], "day", "currency") == [
        {"day": 0, "currency": "EUR"},
        {"day": 1, "currency": "EUR"},
        {"day": 2, "currency": "EUR"},
    ]


def test_keyless_resource_has_no_keys(make: Callable[..., DltSource], tmp_path: Path) -> None:
    source = make("events")
    tables = source.read(context(tmp_path, "events"))
    assert rows(tables["events"], "kind", "n") == [{"kind": "click", "n": 1}, {"kind": "view", "n": 2}]
    assert rows(tables["events__refs"], "value", "_dlt_list_idx") == [{"value": "r1", "_dlt_list_idx": 0}]
    assert source.keys("events") == []
    assert source.keys("events__refs") == []  # a position under a row without identity is no key
    assert source.keys("unknown") == []


def test_config_keys_identify_rows_dlt_declares_no_key_for(make: Callable[..., DltSource], tmp_path: Path) -> None:
    source = make("events", keys={"events": ["kind"]})
    tables = source.read(context(tmp_path, "events"))
    assert source.keys("events") == []  # ingest takes the config's keys itself
    assert source.keys("events__refs") == ["_dlt_id"]
    again = make("events", keys={"events": ["kind"]}).read(context(tmp_path, "events"))
    assert tables["events__refs"].equals(again["events__refs"])


def test_repeated_rows_keep_their_nested_rows_apart(make: Callable[..., DltSource], tmp_path: Path) -> None:
    tables = make("dupes").read(context(tmp_path, "dupes"))
    parents = tables["dupes"].column("_dlt_id").to_pylist()
    assert len(set(parents)) == 2
    refs = tables["dupes__refs"].to_pylist()
    assert [(parents.index(row["_dlt_parent_id"]), row["value"]) for row in refs] == [(0, "a"), (1, "b")]


def test_root_key_propagation_follows_the_new_ids(make: Callable[..., DltSource], tmp_path: Path) -> None:
    source = make("catalog")
    tables = source.read(context(tmp_path, "catalog"))
    assert sorted(tables) == ["products", "products__variants", "products__variants__codes"]
    products = tables["products"].to_pylist()
    sku_of = {row["_dlt_id"]: row["sku"] for row in products}
    codes = tables["products__variants__codes"]
    assert "_dlt_root_id" in codes.column_names
    assert [(sku_of[row["_dlt_root_id"]], row["value"]) for row in codes.to_pylist()] == [
        ("A", "a1"),
        ("A", "a2"),
        ("B", "b1"),
    ]
    variants = tables["products__variants"]
    assert [sku_of[root] for root in variants.column("_dlt_root_id").to_pylist()] == ["A", "A", "B"]
    assert variants.column("_dlt_root_id").to_pylist() == variants.column("_dlt_parent_id").to_pylist()
    assert source.keys("products") == ["sku"]


def test_extraction_error_is_a_source_error(make: Callable[..., DltSource], tmp_path: Path) -> None:
    with pytest.raises(SourceError) as raised:
        make("flaky").read(context(tmp_path, "flaky"))
    message = str(raised.value)
    assert message.startswith("dlt source 'flaky' failed in its extract step: ")
    assert message.endswith("api went away after 2 records")
    assert raised.value.exit_code == 2


def test_unknown_option_is_a_config_error(make: Callable[..., DltSource], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^'dlt_fixture:shop' does not take the options \['weeks'\]: "):
        make("shop").read(context(tmp_path, weeks=2))


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("NOT_A_SOURCE", "'dlt_fixture:NOT_A_SOURCE' is a int, not a dlt source or resource"),
        ("plain_rows", "'dlt_fixture:plain_rows' returned a list, not a dlt source or resource"),
    ],
)
def test_not_a_dlt_source(make: Callable[..., DltSource], tmp_path: Path, attr: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make(attr).read(context(tmp_path, attr))
    assert str(raised.value) == message


def test_nothing_leaks_outside_the_temporary_folder(
    make: Callable[..., DltSource], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home_dlt = Path.home() / ".dlt"
    had_home_dlt = home_dlt.exists()
    monkeypatch.delenv("RUNTIME__DLTHUB_TELEMETRY", raising=False)
    before = sorted(path.name for path in tmp_path.iterdir())
    make("orders").read(context(tmp_path, "orders"))
    assert sorted(path.name for path in tmp_path.iterdir() if path.name != "__pycache__") == before
    assert home_dlt.exists() == had_home_dlt
    assert "RUNTIME__DLTHUB_TELEMETRY" not in os.environ  # set only while dlt runs


def test_missing_dlt_asks_for_the_extra(
    make: Callable[..., DltSource], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "dlt", None)  # `import dlt` now raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'cascade-ci\[dlt\]'"):
        make("orders").read(context(tmp_path, "orders"))
