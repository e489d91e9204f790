"""Replay one side's appends onto another version of the same table: the same data files, one new fast append.

When a table changed on both sides since a branch forked and both sides only added rows, the branch's new
data files can be committed again, as they are, on top of main's current version: no file is rewritten or
copied, and main's version stays the new one's parent. `reconcile` says whether that is possible and, when
it is not, what each side did, in words a conflict message carries.

"Only added rows" is judged from the data files, not from snapshot lineage: every data file live at the
fork is still live, and no delete file was added. Nessie serves table metadata with the current snapshot
only (its commits are the history), so lineage cannot tell there; the files tell on every backend. Only
the manifests one version has and the other has not are read (for fast appends: the new ones). Metadata
only: no data file is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyiceberg.manifest import DataFile, ManifestFile
    from pyiceberg.table import Table


@dataclass(frozen=True)
class Side:
    """What one side did to a table since the fork: in words, and (rows only added) the data files it added."""

    did: str
    appends: bool = False
    files: Mapping[str, DataFile] = field(default_factory=dict)  # path -> data file


@dataclass(frozen=True)
class Replay:
    """The branch's added data files, to be appended again onto main's version of the table."""

    files: tuple[DataFile, ...]

    @property
    def rows(self) -> int:
        return sum(data_file.record_count for data_file in self.files)


@dataclass(frozen=True)
class Conflict:
    """Why the two sides cannot be reconciled: what the branch did and what main did."""

    branch: str
    main: str


def _plural(count: int, word: str) -> str:
    return f"{count:,d} {word}{'' if count == 1 else 's'}"


def _manifests(table: Table | None) -> dict[str, ManifestFile]:
    snapshot = table.current_snapshot() if table is not None else None
    if table is None or snapshot is None:
        return {}
    return {manifest.manifest_path: manifest for manifest in snapshot.manifests(table.io)}


def _live(table: Table, manifests: Iterable[ManifestFile]) -> tuple[dict[str, DataFile], bool]:
    """The live data files these manifests list (path -> file), and whether any lists a delete file."""
    from pyiceberg.manifest import DataFileContent

    files, deletes = {}, False
    for manifest in manifests:
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            if entry.data_file.content == DataFileContent.DATA:
                files[entry.data_file.file_path] = entry.data_file
            else:
                deletes = True
    return files, deletes


def side(before: Table | None, after: Table | None) -> Side:
    """What happened to a table between its version at the fork (`before`, None: absent) and `after`."""
    if after is None:
        return Side("removed the table")
    if before is not None and after.metadata.table_uuid != before.metadata.table_uuid:
        return Side("replaced the table (dropped it and created it again)")
    old, new = _manifests(before), _manifests(after)
    gone, _ = _live(before, (m for path, m in old.items() if path not in new)) if before else ({}, False)
    came, deletes = _live(after, (m for path, m in new.items() if path not in old))
    removed = gone.keys() - came.keys()
    added = {path: data_file for path, data_file in came.items() if path not in gone}
    prefix = "created the table and " if before is None else ""
    if removed or deletes:
        snapshot = after.current_snapshot()
        last = snapshot.summary.operation.value if snapshot and snapshot.summary else "unknown"
        what = [f"{_plural(len(removed), 'data file')} of the fork's gone"] if removed else []
        what += ["delete files added"] if deletes else []
        return Side(f"{prefix}deleted or rewrote rows ({', '.join(what)}; its last snapshot: {last})")
    rows = sum(data_file.record_count for data_file in added.values())
    return Side(f"{prefix}appended {_plural(rows, 'row')}", True, added)


def _same_layout(ours: Table, theirs: Table) -> bool:
    """The same format version, and every partition spec of `ours` means the same in `theirs`."""
    specs = theirs.specs()
    return ours.format_version == theirs.format_version and all(
        specs.get(spec_id) == spec for spec_id, spec in ours.specs().items()
    )


def reconcile(base: Table | None, branch: Table | None, main: Table | None) -> Replay | Conflict:
    """How the branch's version of a table changed on both sides lands on main's: a replay, or a conflict.

    Files the branch added that main has too (the branch took them from main) are not replayed.
    """
    ours, theirs = side(base, branch), side(base, main)
    if not (ours.appends and theirs.appends) or branch is None or main is None:
        return Conflict(ours.did, theirs.did)
    if base is not None and branch.schema().as_struct() != base.schema().as_struct():
        return Conflict(f"{ours.did} and changed its schema", theirs.did)
    if base is None and branch.schema().as_struct() != main.schema().as_struct():
        return Conflict(ours.did, f"{theirs.did}, with another schema")
    files = tuple(data_file for path, data_file in ours.files.items() if path not in theirs.files)
    if not _same_layout(branch, main) or any(f.spec_id != main.spec().spec_id for f in files):
        return Conflict(ours.did, f"{theirs.did}, with another format version or partitioning")
    return Replay(files)


def replay(table: Table, files: Sequence[DataFile], properties: Mapping[str, str]) -> None:
    """Append `files` to `table` as they are: one fast-append snapshot carrying `properties`; none for no file."""
    if not files:
        return
    with table.transaction() as tx, tx.update_snapshot(snapshot_properties=dict(properties)).fast_append() as append:
        for data_file in files:
            append.append_data_file(data_file)
