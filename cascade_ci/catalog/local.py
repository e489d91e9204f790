"""The embedded backend: refs, commits and table pointers in one SQLite file; data in a local warehouse.

A commit stores the full map of table pointers (Iceberg metadata locations) and namespaces of its
branch, so a branch is one row pointing at a commit: creating it copies no data and no pointers.
Every mutation is one `BEGIN IMMEDIATE` transaction, which serialises writers across processes;
heads move only by compare-and-swap.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cascade_ci.catalog.base import (
    SCRATCH_PREFIX,
    Capabilities,
    ChangeKind,
    Commit,
    Ref,
    RefKind,
    TableChange,
    stale_scratch,
)
from cascade_ci.catalog.local_store import Contents
from cascade_ci.errors import (
    AlreadyExistsError,
    CatalogError,
    ConflictError,
    MergeConflictError,
    NotFastForwardError,
    NotFoundError,
    ReadOnlyRefError,
    ServiceUnavailableError,
)
from cascade_ci.naming import validate_ref_name

if TYPE_CHECKING:
    from cascade_ci.catalog.local_tables import LocalRefCatalog
    from cascade_ci.config import Settings

_HASH = re.compile(r"[0-9a-f]{40}")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS cascade_commits (
    hash TEXT PRIMARY KEY,
    parent TEXT,
    merge_parent TEXT,
    committed_at TEXT NOT NULL,
    message TEXT NOT NULL,
    properties TEXT NOT NULL,
    contents TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cascade_refs (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('branch', 'tag')),
    hash TEXT NOT NULL REFERENCES cascade_commits (hash)
);
"""
# Constant SQL: the parts joined with it below are literals, never input.
_ANCESTORS = """
WITH RECURSIVE anc(h) AS (
    SELECT :start
    UNION SELECT c.parent FROM cascade_commits c JOIN anc ON c.hash = anc.h WHERE c.parent IS NOT NULL
    UNION SELECT c.merge_parent FROM cascade_commits c JOIN anc ON c.hash = anc.h WHERE c.merge_parent IS NOT NULL
)
"""


def _now() -> datetime:
    return datetime.now(UTC)


class LocalBranchCatalog:
    """BranchCatalog on SQLite + a local warehouse folder."""

    capabilities = Capabilities(native_fast_forward=True, cross_process_safe=True)

    def __init__(
        self,
        home: Path,
        default_branch: str = "main",
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.home = Path(home).resolve()
        self.default_branch = default_branch
        self.warehouse = self.home / "warehouse"
        self._clock = clock
        self._lock = threading.RLock()
        self.home.mkdir(parents=True, exist_ok=True)
        self.warehouse.mkdir(exist_ok=True)
        self.path = self.home / "catalog.db"
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        with self._reading():
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=60000")
            self._db.execute("PRAGMA foreign_keys=ON")
            if not self._initialized():
                with self._tx() as db:  # the write lock only when the catalog is new
                    for statement in filter(str.strip, _SCHEMA.split(";")):
                        db.execute(statement)
                    if db.execute("SELECT 1 FROM cascade_refs WHERE name = ?", (default_branch,)).fetchone() is None:
                        root = self._insert_commit(db, None, None, "initialize catalog", {}, Contents())
                        db.execute("INSERT INTO cascade_refs VALUES (?, 'branch', ?)", (default_branch, root))

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalBranchCatalog:
        """The embedded catalog in CASCADE_HOME (resolved against the project root)."""
        return cls(settings.path(settings.home), default_branch=settings.main_branch)

    def _initialized(self) -> bool:
        try:
            query = "SELECT 1 FROM cascade_refs WHERE name = ?"
            return self._db.execute(query, (self.default_branch,)).fetchone() is not None
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return False
            raise

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Serialise use of the connection; a locked or unreadable database becomes ServiceUnavailableError."""
        with self._lock:
            try:
                yield
            except sqlite3.OperationalError as e:
                raise ServiceUnavailableError(f"the embedded catalog {self.path} is unavailable: {e}") from e

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front, so reads inside are current."""
        with self._reading():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _insert_commit(
        self,
        db: sqlite3.Connection,
        parent: str | None,
        merge_parent: str | None,
        message: str,
        properties: Mapping[str, str],
        contents: Contents,
    ) -> str:
        at = self._clock().astimezone(UTC).isoformat()
        props = json.dumps(dict(properties), sort_keys=True)
        body = contents.to_json()
        digest = hashlib.sha256(json.dumps([parent, merge_parent, at, message, props, body]).encode()).hexdigest()
        commit_hash = digest[:40]
        db.execute(
            "INSERT OR IGNORE INTO cascade_commits VALUES (?, ?, ?, ?, ?, ?, ?)",
            (commit_hash, parent, merge_parent, at, message, props, body),
        )
        return commit_hash

    def _head(self, db: sqlite3.Connection, name: str) -> Ref:
        row = db.execute("SELECT name, kind, hash FROM cascade_refs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"ref {name!r} does not exist")
        return Ref(row[0], RefKind(row[1]), row[2])

    def _resolve(self, db: sqlite3.Connection, ref_or_hash: str) -> str:
        """A ref name or a commit hash -> commit hash."""
        if (
            _HASH.fullmatch(ref_or_hash)
            and db.execute("SELECT 1 FROM cascade_commits WHERE hash = ?", (ref_or_hash,)).fetchone()
        ):
            return ref_or_hash
        return self._head(db, ref_or_hash).hash

    def _contents(self, db: sqlite3.Connection, commit_hash: str) -> Contents:
        row = db.execute("SELECT contents FROM cascade_commits WHERE hash = ?", (commit_hash,)).fetchone()
        if row is None:
            raise NotFoundError(f"commit {commit_hash} does not exist")
        return Contents.from_json(row[0])

    def _branch_head(self, db: sqlite3.Connection, name: str, expected_hash: str | None) -> str:
        head = self._head(db, name)
        if head.kind is not RefKind.BRANCH:
            raise ReadOnlyRefError(f"{name!r} is a {head.kind}; only branches take commits")
        if expected_hash is not None and head.hash != expected_hash:
            raise ConflictError(f"branch {name!r} moved: head is {head.hash}, expected {expected_hash}")
        return head.hash

    def _move(self, db: sqlite3.Connection, name: str, to_hash: str, expected_hash: str) -> Ref:
        updated = db.execute(
            "UPDATE cascade_refs SET hash = ? WHERE name = ? AND hash = ?", (to_hash, name, expected_hash)
        ).rowcount
        if updated != 1:
            current = self._head(db, name)
            raise ConflictError(f"ref {name!r} moved: head is {current.hash}, expected {expected_hash}")
        return self._head(db, name)

    def _is_ancestor(self, db: sqlite3.Connection, ancestor: str, descendant: str) -> bool:
        query = _ANCESTORS + "SELECT 1 FROM anc WHERE h = :target LIMIT 1"  # noqa: S608 (constant SQL)
        return db.execute(query, {"start": descendant, "target": ancestor}).fetchone() is not None

    def _merge_base(self, db: sqlite3.Connection, a: str, b: str) -> str | None:
        ancestors_of_a = {row[0] for row in db.execute(_ANCESTORS + "SELECT h FROM anc", {"start": a})}  # noqa: S608
        frontier, seen = [b], set()
        while frontier:
            following: list[str] = []
            for commit_hash in frontier:
                if commit_hash in ancestors_of_a:
                    return commit_hash
                if commit_hash in seen:
                    continue
                seen.add(commit_hash)
                row = db.execute(
                    "SELECT parent, merge_parent FROM cascade_commits WHERE hash = ?", (commit_hash,)
                ).fetchone()
                following.extend(p for p in row if p)
            frontier = following
        return None

    def write_contents(
        self,
        ref: str,
        change: Callable[[Contents], None],
        message: str,
        properties: Mapping[str, str] | None = None,
    ) -> Ref:
        """Apply `change` to the branch's contents as one new commit, atomically.

        `change` mutates the Contents in place and raises to abort (its checks run under the write lock).
        """
        with self._tx() as db:
            head = self._branch_head(db, ref, None)
            contents = self._contents(db, head)
            change(contents)
            new = self._insert_commit(db, head, None, message, properties or {}, contents)
            return self._move(db, ref, new, head)

    def read_contents(self, ref_or_hash: str) -> Contents:
        """The contents at a ref's head or at a commit."""
        with self._reading():
            return self._contents(self._db, self._resolve(self._db, ref_or_hash))

    def is_writable(self, ref: str) -> bool:
        """True if `ref` names a branch (tags and hashes are read-only)."""
        with self._reading():
            row = self._db.execute("SELECT kind FROM cascade_refs WHERE name = ?", (ref,)).fetchone()
        return row is not None and row[0] == RefKind.BRANCH

    # -- BranchCatalog --------------------------------------------------------------------------

    def create_ref(self, name: str, from_ref: str, kind: RefKind = RefKind.BRANCH) -> Ref:
        validate_ref_name(name)
        with self._tx() as db:
            source = self._resolve(db, from_ref)
            try:
                db.execute("INSERT INTO cascade_refs VALUES (?, ?, ?)", (name, str(kind), source))
            except sqlite3.IntegrityError as e:
                raise AlreadyExistsError(f"ref {name!r} already exists") from e
            return Ref(name, kind, source)

    def get_ref(self, name: str) -> Ref:
        with self._reading():
            return self._head(self._db, name)

    def list_refs(self, prefix: str = "") -> list[Ref]:
        with self._reading():
            rows = self._db.execute(
                "SELECT name, kind, hash FROM cascade_refs WHERE substr(name, 1, ?) = ? ORDER BY name",
                (len(prefix), prefix),
            ).fetchall()
        return [
            Ref(name, RefKind(kind), commit_hash)
            for name, kind, commit_hash in rows
            if not name.startswith(SCRATCH_PREFIX)
        ]

    def log(self, ref: str, limit: int | None = None) -> list[Commit]:
        query = """
        WITH RECURSIVE chain(h, n) AS (
            SELECT :start, 0
            UNION ALL SELECT c.parent, chain.n + 1 FROM cascade_commits c JOIN chain ON c.hash = chain.h
            WHERE c.parent IS NOT NULL AND chain.n + 1 < :limit
        )
        SELECT c.hash, c.parent, c.merge_parent, c.committed_at, c.message, c.properties
        FROM chain JOIN cascade_commits c ON c.hash = chain.h ORDER BY chain.n
        """
        with self._reading():
            start = self._resolve(self._db, ref)
            rows = self._db.execute(query, {"start": start, "limit": limit if limit else 2**62}).fetchall()
        return [
            Commit(
                hash=row[0],
                parents=tuple(p for p in (row[1], row[2]) if p),
                time=datetime.fromisoformat(row[3]),
                message=row[4],
                properties=json.loads(row[5]),
            )
            for row in rows
        ]

    def is_ancestor(self, ancestor: str, ref: str) -> bool:
        with self._reading():
            return self._is_ancestor(self._db, ancestor, self._resolve(self._db, ref))

    def diff(self, from_ref: str, to_ref: str) -> list[TableChange]:
        before, after = self.read_contents(from_ref).tables, self.read_contents(to_ref).tables
        changes = []
        for table in sorted(before.keys() | after.keys()):
            old, new = before.get(table), after.get(table)
            if old == new:
                continue
            kind = ChangeKind.ADDED if old is None else ChangeKind.REMOVED if new is None else ChangeKind.MODIFIED
            changes.append(TableChange(table, kind, old, new))
        return changes

    def commit_meta(self, branch: str, message: str, properties: Mapping[str, str], expected_hash: str) -> Ref:
        with self._tx() as db:
            head = self._branch_head(db, branch, expected_hash)
            new = self._insert_commit(db, head, None, message, properties, self._contents(db, head))
            return self._move(db, branch, new, head)

    def fast_forward(self, target: str, source_hash: str, expected_target_hash: str) -> Ref:
        with self._tx() as db:
            head = self._branch_head(db, target, expected_target_hash)
            source = self._resolve(db, source_hash)
            if not self._is_ancestor(db, head, source):
                raise NotFastForwardError(
                    f"cannot fast-forward {target!r} to {source}: its head {head} is not an ancestor"
                )
            return self._move(db, target, source, head)

    def merge(self, source: str, target: str, expected_target_hash: str, message: str) -> Ref:
        with self._tx() as db:
            head = self._branch_head(db, target, expected_target_hash)
            incoming = self._resolve(db, source)
            if self._is_ancestor(db, incoming, head):
                return self._head(db, target)
            base = self._merge_base(db, head, incoming)
            theirs, ours = self._contents(db, incoming), self._contents(db, head)
            common = self._contents(db, base) if base else Contents()
            merged, conflicts = _three_way(common, ours, theirs)
            if conflicts:
                raise MergeConflictError(
                    f"cannot merge {source!r} into {target!r}: changed on both sides: {', '.join(conflicts)}",
                    conflicts,
                )
            new = self._insert_commit(db, head, incoming, message, {"cascade.merged-from": source}, merged)
            return self._move(db, target, new, head)

    def restore(
        self,
        branch: str,
        to_hash: str,
        expected_hash: str,
        message: str,
        properties: Mapping[str, str],
        tables: Collection[str] | None = None,
    ) -> Ref:
        with self._tx() as db:
            head = self._branch_head(db, branch, expected_hash)
            contents = self._contents(db, self._resolve(db, to_hash))
            if tables is not None:
                contents = self._contents(db, head).restored(contents, tables)
            new = self._insert_commit(db, head, None, message, properties, contents)
            return self._move(db, branch, new, head)

    def assign(self, name: str, to_hash: str, expected_hash: str) -> Ref:
        with self._tx() as db:
            return self._move(db, name, self._resolve(db, to_hash), expected_hash)

    def delete_ref(self, name: str, expected_hash: str) -> None:
        if name == self.default_branch:
            raise CatalogError(f"the default branch {name!r} cannot be deleted")
        with self._tx() as db:
            deleted = db.execute("DELETE FROM cascade_refs WHERE name = ? AND hash = ?", (name, expected_hash)).rowcount
            if deleted != 1:
                current = self._head(db, name)
                raise ConflictError(f"ref {name!r} moved: head is {current.hash}, expected {expected_hash}")

    def sweep_leftovers(self, now: datetime) -> list[Ref]:
        """Delete scratch branches older than SCRATCH_MAX_AGE (a killed `update` stages on one; writes here are
        otherwise single transactions, which a killed process rolls back)."""
        with self._reading():
            rows = self._db.execute("SELECT name, kind, hash FROM cascade_refs").fetchall()
        swept = []
        for name, kind, head in rows:
            if stale_scratch(name, now):
                with suppress(ConflictError, NotFoundError):  # written or dropped meanwhile: not ours to sweep
                    self.delete_ref(name, head)
                    swept.append(Ref(name, RefKind(kind), head))
        return swept

    def tables(self, ref: str) -> LocalRefCatalog:
        from cascade_ci.catalog.local_tables import LocalRefCatalog

        self.read_contents(ref)  # fail early on an unknown ref
        return LocalRefCatalog(ref, store=self)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> LocalBranchCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _three_way(base: Contents, ours: Contents, theirs: Contents) -> tuple[Contents, list[str]]:
    """Merge table pointers and namespaces; a key changed differently on both sides is a conflict."""
    merged, conflicts = Contents(), []
    for attr in ("tables", "namespaces"):
        old, mine, other = getattr(base, attr), getattr(ours, attr), getattr(theirs, attr)
        result = getattr(merged, attr)
        for key in sorted(old.keys() | mine.keys() | other.keys()):
            b, o, t = old.get(key), mine.get(key), other.get(key)
            if o == t or t == b:
                value = o
            elif o == b:
                value = t
            else:
                conflicts.append(key)
                continue
            if value is not None:
                result[key] = value
    return merged, conflicts
