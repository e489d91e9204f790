"""Mark and sweep of warehouse files across every ref of a branching catalog.

Iceberg's own snapshot expiry and orphan-file removal see one table at a time; here a file one ref no
longer needs may be live on another ref or in a retained commit. So the live set is computed over the
catalog: every table pointer (Iceberg metadata location) of every retained commit of every ref, then,
with pyiceberg's readers, that metadata file, its statistics files, and for the snapshot the pointer makes
current (and any snapshot the table's own refs name): the manifest list, its manifests and every data and
delete file they hold. Older snapshots inside a metadata file are not followed: a version of a table is
live only as the current state of a retained commit, as Nessie's own GC has it.

A warehouse file is swept when it is not live and older than the cutoff: `now - grace`, moved back to the
start of every write known to be in progress (a workflow run in progress, a scratch branch staging a
write) less a margin for clock skew. Writers put their files in place before the commit that names them,
so files of a write in progress are always younger than its start. Before anything is deleted, refs that
moved since the mark are marked again.

The per-backend parts (listing every ref's head, reading table pointers, expiring history, the storage)
live in `sweep_local.py` and `sweep_nessie.py`; `backend_for` picks one by the catalog's class.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from cascade_ci.catalog.base import SCRATCH_PR, SCRATCH_PREFIX
from cascade_ci.errors import CatalogError

if TYPE_CHECKING:
    from pyiceberg.io import FileIO

    from cascade_ci.catalog.base import BranchCatalog

IN_PROGRESS_MARGIN = timedelta(minutes=5)  # clock skew between writers, the catalog and the storage
WORKERS = 16  # metadata reads and deletes in flight at once
PAGES = (64, 1000, None)  # how much history a walk reads at a time


@dataclass(frozen=True)
class Chain:
    """Commits of one ref that stay readable: the head first, then down its first-parent line."""

    ref: str
    hashes: tuple[str, ...]


@dataclass(frozen=True)
class Pointer:
    """One version of a table: its metadata file, and the snapshot the catalog names as current (if it does)."""

    location: str
    snapshot_id: int | None = None


@dataclass(frozen=True)
class StoredFile:
    key: str  # `key(uri)` of the file
    size: int
    mtime: datetime


class Storage(Protocol):
    """The warehouse: list every file under its roots, delete some."""

    def files(self) -> Iterator[StoredFile]: ...

    def delete(self, keys: Collection[str]) -> list[str]:
        """Delete files by key; return the keys that could not be deleted."""
        ...


class Backend(Protocol):
    """What a catalog contributes to a sweep."""

    def heads(self) -> dict[str, str]:
        """Every ref's head, staging refs included."""
        ...

    def expire(self, chains: list[Chain], dry_run: bool) -> int:
        """Make commits outside `chains` (and below refs' heads) unreachable as history; how many went."""
        ...

    def pointers(self, chains: list[Chain], everything: bool) -> tuple[set[Pointer], set[str]]:
        """Table pointers of every commit of `chains`, and the commits read (`everything`: each one stored)."""
        ...

    def file_io(self) -> FileIO: ...

    def storage(self, roots: Collection[str] | None) -> Storage: ...


@dataclass
class SweepReport:
    """What a sweep found and did. Bytes and files: `live` referenced, `young` unreferenced but newer than the
    cutoff, `freed` deleted (or, in a dry run, deletable)."""

    cutoff: datetime
    dry_run: bool
    in_progress: list[str] = field(default_factory=list)
    expired_commits: int = 0
    pointers: int = 0
    scanned_files: int = 0
    scanned_bytes: int = 0
    live_files: int = 0
    live_bytes: int = 0
    young_files: int = 0
    young_bytes: int = 0
    freed_files: int = 0
    freed_bytes: int = 0
    failed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def classify(self, stored: Iterable[StoredFile], live: Collection[str]) -> list[StoredFile]:
        """Count the files as live, young or neither; return the neither (to delete)."""
        doomed = []
        for item in stored:
            self.scanned_files += 1
            self.scanned_bytes += item.size
            if item.key in live:
                self.live_files += 1
                self.live_bytes += item.size
            elif item.mtime >= self.cutoff:
                self.young_files += 1
                self.young_bytes += item.size
            else:
                doomed.append(item)
        return doomed


def key(uri: str) -> str:
    """One spelling per file: `s3://bucket/key` for object stores, the absolute path for local files."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return parsed.path if parsed.scheme else uri
    scheme = "s3" if parsed.scheme in ("s3a", "s3n") else parsed.scheme
    return f"{scheme}://{parsed.netloc}{parsed.path}"


def backend_for(catalog: BranchCatalog) -> Backend:
    """The sweep backend of a catalog class; CatalogError for a backend that has none."""
    from cascade_ci.catalog.local import LocalBranchCatalog

    if isinstance(catalog, LocalBranchCatalog):
        from cascade_ci.catalog.sweep_local import LocalSweep

        return LocalSweep(catalog)
    from cascade_ci.catalog.nessie import NessieBranchCatalog  # after: it imports pyiceberg's REST client

    if isinstance(catalog, NessieBranchCatalog):
        from cascade_ci.catalog.sweep_nessie import NessieSweep

        return NessieSweep(catalog)
    raise CatalogError(f"{type(catalog).__name__} has no file sweep: only the embedded and Nessie catalogs do")


def chain_until(catalog: BranchCatalog, ref: str, head: str, stop: Collection[str]) -> Chain:
    """`head` and its first-parent ancestors down to the first commit in `stop` (kept), or to the root."""
    for limit in PAGES:
        history = catalog.log(head, limit=limit)
        hashes = []
        for commit in history:
            hashes.append(commit.hash)
            if commit.hash in stop:
                return Chain(ref, tuple(hashes))
        if limit is None or len(history) < limit:
            break
    return Chain(ref, tuple(hashes))


def scratch_since(name: str) -> datetime | None:
    """When a staging branch was made (its name says: `cascade-scratch/[pr-]<unix time>-<uuid>`)."""
    rest = name[len(SCRATCH_PREFIX) :].removeprefix(SCRATCH_PR) if name.startswith(SCRATCH_PREFIX) else ""
    stamp = rest.split("-", 1)[0]
    return datetime.fromtimestamp(int(stamp), UTC) if stamp.isdigit() else None


def sweep(
    catalog: BranchCatalog,
    chains: list[Chain],
    cutoff: datetime,
    *,
    dry_run: bool = False,
    roots: Collection[str] | None = None,
    exclude: Collection[str] = (),
    writes_since: Iterable[tuple[str, datetime]] = (),
    margin: timedelta = IN_PROGRESS_MARGIN,
) -> SweepReport:
    """Expire history outside `chains`, mark what they reference, delete what is neither live nor young.

    `chains` are the retained commits per ref; any other ref (a staging branch, one made meanwhile) is kept
    at its head, but those named in `exclude` (refs a dry run would delete). `writes_since` names writes in
    progress and their start: the cutoff moves back to the oldest, less `margin`. `roots` limit the sweep to
    parts of the warehouse (default: all of it).
    """
    clock = _Phases()
    backend = backend_for(catalog)
    heads = {name: head for name, head in backend.heads().items() if name not in exclude}
    planned = {chain.ref for chain in chains}
    chains = [*chains, *(Chain(name, (head,)) for name, head in heads.items() if name not in planned)]
    writes = [*writes_since, *((f"staging branch {n}", t) for n in heads if (t := scratch_since(n)) is not None)]
    report = SweepReport(min([cutoff, *(since - margin for _, since in writes)]), dry_run)
    report.in_progress = [f"{what} since {since.isoformat()}" for what, since in writes]
    report.expired_commits = backend.expire(chains, dry_run)
    clock.lap("expire")
    marker = _Marker(backend.file_io())
    pointers, covered = backend.pointers(chains, everything=not dry_run)
    marker.mark(pointers)
    clock.lap("mark")
    storage = backend.storage(roots)
    stored = list(storage.files())
    clock.lap("list")
    for _ in range(3):  # refs that moved while we marked: mark their new commits too, until they stand still
        moved = [
            chain_until(catalog, name, head, covered)
            for name, head in backend.heads().items()
            if head not in covered and name not in exclude
        ]
        if not moved:
            break
        more, newly = backend.pointers(moved, everything=False)
        covered |= newly
        pointers |= more
        marker.mark(more)
    clock.lap("mark again")
    doomed = report.classify(stored, marker.live)
    failed = set() if dry_run else set(storage.delete([item.key for item in doomed]))
    freed = [item for item in doomed if item.key not in failed]
    report.freed_files, report.freed_bytes = len(freed), sum(item.size for item in freed)
    report.pointers, report.failed, report.missing = len(pointers), sorted(failed), sorted(set(marker.missing))
    clock.lap("delete")
    report.phases, report.seconds = clock.phases, clock.total
    return report


class _Phases:
    """Seconds spent per phase of a sweep."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.phases: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = round(now - self.last, 3)
        self.last = now

    @property
    def total(self) -> float:
        return round(self.last - self.started, 3)


class _Marker:
    """Live files of table pointers; each metadata file, manifest list and manifest is read once."""

    def __init__(self, io: FileIO) -> None:
        self.io = io
        self.live: set[str] = set()
        self.missing: list[str] = []

    def _fresh(self, paths: Iterable[str]) -> list[str]:
        """The paths not yet live, now made live."""
        fresh = [path for path in dict.fromkeys(paths) if key(path) not in self.live]
        self.live.update(key(path) for path in fresh)
        return fresh

    def _read(self, read: Callable[[str], list[Any]], paths: list[str]) -> Iterator[tuple[str, list[Any]]]:
        """(path, what `read` found in it) for each path, read in parallel; a missing file is noted and skipped."""

        def one(path: str) -> list[Any] | None:
            try:
                return read(path)
            except FileNotFoundError:  # a version already unreadable: nothing of it can be kept alive
                self.missing.append(path)
                return None

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            for path, found in zip(paths, pool.map(one, paths), strict=True):
                if found is not None:
                    yield path, found

    def mark(self, pointers: Iterable[Pointer]) -> None:
        """Make live every file the pointers' table versions need."""
        from pyiceberg.manifest import read_manifest_list
        from pyiceberg.serializers import FromInputFile

        named: dict[str, set[int]] = {}
        for pointer in pointers:
            named.setdefault(pointer.location, set()).update(
                () if pointer.snapshot_id is None else (pointer.snapshot_id,)
            )
        locations = self._fresh(named)
        metadata = self._read(lambda path: [FromInputFile.table_metadata(self.io.new_input(path))], locations)
        lists = []
        for location, (table,) in metadata:
            stats, manifest_lists = _snapshot_files(table, named[location])
            self._fresh(stats)
            lists += self._fresh(manifest_lists)
        manifests: dict[str, Any] = {}
        for _, found in self._read(lambda path: list(read_manifest_list(self.io.new_input(path))), lists):
            manifests.update((m.manifest_path, m) for m in found)
        fresh = self._fresh(manifests)
        for _, files in self._read(lambda path: _files_of(manifests[path], self.io), fresh):
            self._fresh(files)


def _files_of(manifest: Any, io: FileIO) -> list[str]:
    """The data and delete files a manifest holds (deleted entries left out)."""
    return [entry.data_file.file_path for entry in manifest.fetch_manifest_entry(io, discard_deleted=True)]


def _snapshot_files(metadata: Any, named: set[int]) -> tuple[list[str], list[str]]:
    """(statistics files, manifest lists) of the current snapshot, the table refs' ones and `named` ones."""
    ids = {ref.snapshot_id for ref in metadata.refs.values()} | named
    if metadata.current_snapshot_id is not None:
        ids.add(metadata.current_snapshot_id)
    stats = [s.statistics_path for s in metadata.statistics] + [
        s.statistics_path for s in metadata.partition_statistics
    ]
    return stats, [s.manifest_list for s in metadata.snapshots if s.snapshot_id in ids and s.manifest_list]
