"""The embedded catalog's part of a sweep: its commit store, its history expiry, its warehouse folder.

Expiry really removes history here: in one write transaction (the catalog's own lock, so no commit or ref
move interleaves), every commit outside the retained chains and below no ref's head is deleted, and a
retained commit whose parent went becomes a root (its parent link is cleared, as in a shallow clone). What
remains is exactly what `log`, `diff`, `restore` and reads by hash can reach; the mark then reads every
commit that remains, so nothing a remaining commit names is swept.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cascade_ci.catalog.local_store import Contents
from cascade_ci.catalog.sweep import Chain, Pointer, StoredFile, key

if TYPE_CHECKING:
    from pyiceberg.io import FileIO

    from cascade_ci.catalog.local import LocalBranchCatalog

_BATCH = 500  # hashes per DELETE / SELECT statement


class LocalStorage:
    """Files under folders of the local file system."""

    def __init__(self, roots: Collection[Path]) -> None:
        self.roots = [Path(root) for root in roots]

    def files(self) -> Iterator[StoredFile]:
        for root in self.roots:
            for folder, _, names in os.walk(root):
                for name in names:
                    path = os.path.join(folder, name)
                    try:
                        stat = os.lstat(path)
                    except FileNotFoundError:  # deleted while we listed
                        continue
                    if not os.path.islink(path):
                        yield StoredFile(path, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))

    def delete(self, keys: Collection[str]) -> list[str]:
        failed = []
        for path in keys:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError:
                failed.append(path)
        return failed


class LocalSweep:
    """Sweep backend of `LocalBranchCatalog`: its SQLite store through a connection of its own."""

    def __init__(self, catalog: LocalBranchCatalog) -> None:
        self.catalog = catalog

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.catalog.path, timeout=60, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=60000")
            db.execute("PRAGMA foreign_keys=ON")  # a commit a ref points at cannot be deleted
            yield db
        finally:
            db.close()

    def heads(self) -> dict[str, str]:
        with self._db() as db:
            return dict(db.execute("SELECT name, hash FROM cascade_refs").fetchall())

    @staticmethod
    def _keep(db: sqlite3.Connection, chains: list[Chain], heads: bool) -> tuple[set[str], set[str]]:
        """(commits to keep, every commit): the chains' commits, and with `heads` each ref's head down to a kept
        commit or the root (a ref made or moved since the chains were read)."""
        parents: dict[str, str | None] = dict(db.execute("SELECT hash, parent FROM cascade_commits").fetchall())
        keep = {commit for chain in chains for commit in chain.hashes if commit in parents}
        for (head,) in db.execute("SELECT hash FROM cascade_refs").fetchall() if heads else []:
            commit: str | None = head
            while commit is not None and commit not in keep:
                keep.add(commit)
                commit = parents.get(commit)
        return keep, set(parents)

    def expire(self, chains: list[Chain], dry_run: bool) -> int:
        """Delete the commits no chain and no ref needs; clear parent links into what went. How many went."""
        with self._db() as db:
            if dry_run:
                keep, every = self._keep(db, chains, heads=False)  # the chains name every ref a dry run keeps
                return len(every - keep)
            db.execute("BEGIN IMMEDIATE")
            try:
                keep, every = self._keep(db, chains, heads=True)
                gone = sorted(every - keep)
                db.executemany("DELETE FROM cascade_commits WHERE hash = ?", ((commit,) for commit in gone))
                for column in ("parent", "merge_parent"):
                    db.execute(
                        f"UPDATE cascade_commits SET {column} = NULL WHERE {column} IS NOT NULL "  # noqa: S608 (constant)
                        f"AND {column} NOT IN (SELECT hash FROM cascade_commits)"
                    )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return len(gone)

    def pointers(self, chains: list[Chain], everything: bool) -> tuple[set[Pointer], set[str]]:
        with self._db() as db:
            if everything:
                rows = db.execute("SELECT hash, contents FROM cascade_commits").fetchall()
            else:
                wanted = sorted({commit for chain in chains for commit in chain.hashes})
                rows = []
                for start in range(0, len(wanted), _BATCH):
                    batch = wanted[start : start + _BATCH]
                    marks = ",".join("?" * len(batch))
                    query = f"SELECT hash, contents FROM cascade_commits WHERE hash IN ({marks})"  # noqa: S608
                    rows += db.execute(query, batch).fetchall()
        locations = {location for _, body in rows for location in Contents.from_json(body).tables.values()}
        return {Pointer(location) for location in locations}, {commit for commit, _ in rows}

    def file_io(self) -> FileIO:
        from pyiceberg.io.pyarrow import PyArrowFileIO

        return PyArrowFileIO()

    def storage(self, roots: Collection[str] | None) -> LocalStorage:
        """The warehouse folder, or the given folders (or `file:` URIs) in it."""
        return LocalStorage([Path(key(root)) for root in roots] if roots else [self.catalog.warehouse])
