"""Helpers for the Nessie fault tests: every ref as Nessie lists it (scratch branches too), rows at a ref."""

from __future__ import annotations

from cascade_ci.catalog.base import BranchCatalog
from cascade_ci.catalog.nessie import SCRATCH_PREFIX, NessieBranchCatalog
from cascade_ci.config import load_settings


def open_nessie() -> NessieBranchCatalog:
    """The catalog the `cascade` CLI opens with the test's environment (set by the `nessie_backend` fixture)."""
    return NessieBranchCatalog.from_settings(load_settings())


def all_refs(catalog: NessieBranchCatalog) -> dict[str, str]:
    """Every ref on the server, name -> hash, including the `cascade-scratch/` branches `list_refs` hides."""
    return {ref["name"]: ref["hash"] for ref in catalog._pages("/trees", "references")}


def scratch_branches(catalog: NessieBranchCatalog) -> dict[str, str]:
    return {name: head for name, head in all_refs(catalog).items() if name.startswith(SCRATCH_PREFIX)}


def ids_at(catalog: BranchCatalog, ref: str, table: str) -> list[int]:
    """The `id` column of `table` at `ref` (a ref name or hash), sorted; [] when the table does not exist there."""
    tables = catalog.tables(ref)
    if not tables.table_exists(table):
        return []
    return sorted(tables.load_table(table).scan(selected_fields=("id",)).to_arrow()["id"].to_pylist())
