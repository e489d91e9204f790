"""What a branch did to a table, read from Iceberg snapshot lineage (metadata only, no data files)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot


@dataclass(frozen=True)
class Lineage:
    """The snapshots a table gained since a base snapshot (oldest first), or None if not a descendant."""

    snapshots: tuple[Snapshot, ...]

    def _summed(self, key: str) -> int:
        total = 0
        for snapshot in self.snapshots:
            summary = snapshot.summary.additional_properties if snapshot.summary else {}
            total += int(summary.get(key, 0))
        return total

    @property
    def rows_added(self) -> int:
        return self._summed("added-records")

    @property
    def rows_deleted(self) -> int:
        return self._summed("deleted-records")

    @property
    def append_only(self) -> bool:
        """Every new snapshot only appended data (no delete, overwrite or replace)."""
        return all(s.summary is not None and s.summary.operation.value == "append" for s in self.snapshots)


def lineage_since(table: Table, base_snapshot_id: int | None) -> Lineage | None:
    """Snapshots from `base_snapshot_id` (exclusive) to the current one; None if the base is not an ancestor."""
    chain: list[Snapshot] = []
    snapshot = table.current_snapshot()
    while snapshot is not None and snapshot.snapshot_id != base_snapshot_id:
        chain.append(snapshot)
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    if base_snapshot_id is not None and snapshot is None:
        return None
    return Lineage(tuple(reversed(chain)))


def read_added_rows(table: Table, base_snapshot_id: int | None, columns: tuple[str, ...] = ("*",)) -> pa.Table:
    """Rows in data files the current snapshot has and the base snapshot had not (for append-only lineage)."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan

    current = table.current_snapshot()
    scan = table.scan(selected_fields=columns)
    tasks = list(scan.plan_files()) if current is not None else []
    if base_snapshot_id is not None:
        old = {task.file.file_path for task in table.scan(snapshot_id=base_snapshot_id).plan_files()}
        tasks = [task for task in tasks if task.file.file_path not in old]
    projected = scan.projection()
    return ArrowScan(table.metadata, table.io, projected, AlwaysTrue()).to_table(tasks)


def added_files(table: Table, since: Snapshot | None) -> set[str]:
    """The data files that manifests new to the current snapshot (not in `since`'s) list as added.

    Reads only those manifests, and needs no snapshot lineage: Nessie keeps a table's current snapshot only.
    """
    from pyiceberg.manifest import ManifestEntryStatus

    current = table.current_snapshot()
    if current is None:
        return set()
    old = {manifest.manifest_path for manifest in since.manifests(table.io)} if since else set()
    return {
        entry.data_file.file_path
        for manifest in current.manifests(table.io)
        if manifest.manifest_path not in old
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
        if entry.status == ManifestEntryStatus.ADDED
    }
