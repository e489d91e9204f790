"""Nessie's part of a sweep: table pointers from its commit log, files from S3.

The cheapest REST v2 reading of "every table's metadata location at every retained commit" is two calls
per chain, not one per commit: the contents at the chain's oldest commit (`GET /trees/@{hash}/entries
?content=true`, paged) and the log from its head down to it with the operations of each commit
(`GET /trees/@{head}/history?fetch=ALL`, paged): every PUT of an Iceberg table in between is a version
some retained commit has. The head's contents are read too (a merge commit may not list operations).

Nessie's history cannot be rewritten, so nothing is expired here: commits past retention stay in the
log (`cascade log` lists them, their metadata locations stay readable in diffs), but files only they
need are swept, so reading their tables fails. A commit's files stay alive only while a ref's retained
history holds it: tag a commit to keep it readable.

Nessie's own GC tool (`nessie-gc`, same mark-and-sweep idea, current snapshot per live commit) is not
used: Maven Central serves no `nessie-gc-tool` of the server's version 0.99.0 (upstream ships it as a
GitHub release asset), it needs a JVM and a JDBC database for its live sets, knows nothing of cascade's
retention (promotions, protected tags) and covers Nessie only, not the embedded catalog.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode
from urllib.request import Request

from cascade_ci.catalog.sweep import WORKERS, Chain, Pointer, StoredFile
from cascade_ci.errors import CatalogError
from cascade_ci.http_guard import urlopen  # redirects never carry a credential to another host

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem
    from pyiceberg.io import FileIO

    from cascade_ci.catalog.nessie import NessieBranchCatalog

NESSIE_THREADS = 8  # REST calls in flight at once


def _pointer(content: Mapping[str, Any] | None) -> Pointer | None:
    """The table version a Nessie content object names, if it is an Iceberg table."""
    if not content or content.get("type") != "ICEBERG_TABLE" or not content.get("metadataLocation"):
        return None
    snapshot = content.get("snapshotId")
    return Pointer(content["metadataLocation"], snapshot if isinstance(snapshot, int) and snapshot >= 0 else None)


class S3Storage:
    """Objects under `s3://bucket/prefix` roots, through pyarrow's S3 file system."""

    def __init__(self, fs: FileSystem, roots: Collection[str]) -> None:
        self.fs = fs
        self.roots = [root.split("://", 1)[-1].rstrip("/") for root in roots]

    def files(self) -> Iterator[StoredFile]:
        from pyarrow.fs import FileSelector, FileType

        for root in self.roots:
            for info in self.fs.get_file_info(FileSelector(root, recursive=True, allow_not_found=True)):
                if info.type == FileType.File and info.mtime is not None:
                    mtime = info.mtime if info.mtime.tzinfo else info.mtime.replace(tzinfo=UTC)
                    yield StoredFile(f"s3://{info.path}", info.size or 0, mtime)

    def delete(self, keys: Collection[str]) -> list[str]:
        def one(key: str) -> str | None:
            try:
                self.fs.delete_file(key.split("://", 1)[1])
            except FileNotFoundError:
                return None
            except OSError:
                return key
            return None

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            return [key for key in pool.map(one, keys) if key is not None]


class NessieSweep:
    """Sweep backend of `NessieBranchCatalog`."""

    def __init__(self, catalog: NessieBranchCatalog) -> None:
        self.catalog = catalog

    def heads(self) -> dict[str, str]:
        return {data["name"]: data["hash"] for data in self.catalog._pages("/trees", "references")}

    def expire(self, chains: list[Chain], dry_run: bool) -> int:
        """Nothing: Nessie's log is append-only (see the module's docstring)."""
        return 0

    def _entries(self, commit: str) -> set[Pointer]:
        found = set()
        for entry in self.catalog._pages(f"/trees/@{commit}/entries", "entries", {"content": "true"}):
            pointer = _pointer(entry.get("content"))
            if pointer is not None:
                found.add(pointer)
        return found

    def _chain(self, chain: Chain) -> set[Pointer]:
        found = self._entries(chain.hashes[-1])
        if len(chain.hashes) > 1:
            found |= self._entries(chain.hashes[0])
            oldest = chain.hashes[-1]
            for entry in self.catalog._pages(f"/trees/@{chain.hashes[0]}/history", "logEntries", {"fetch": "ALL"}):
                if entry["commitMeta"]["hash"] == oldest:
                    break
                for operation in entry.get("operations") or []:
                    pointer = _pointer(operation.get("content")) if operation.get("type") == "PUT" else None
                    if pointer is not None:
                        found.add(pointer)
        return found

    def pointers(self, chains: list[Chain], everything: bool) -> tuple[set[Pointer], set[str]]:
        """`everything` changes nothing: Nessie holds every commit ever made; only retained ones count."""
        with ThreadPoolExecutor(max_workers=NESSIE_THREADS) as pool:
            found = set().union(*pool.map(self._chain, chains))
        return found, {commit for chain in chains for commit in chain.hashes}

    @cached_property
    def warehouse(self) -> str:
        """The warehouse location Nessie's Iceberg endpoint serves (e.g. `s3://bucket/prefix`)."""
        if "://" in self.catalog.warehouse:
            return self.catalog.warehouse
        query = urlencode({"warehouse": self.catalog.warehouse})
        url = f"{self.catalog.uri}/iceberg/v1/config?{query}"
        request = self.catalog.auth.sign(Request(url, headers={"Accept": "application/json"}))  # noqa: S310
        with urlopen(request, timeout=self.catalog._timeout) as resp:
            config = json.loads(resp.read())
        location = {**config.get("defaults", {}), **config.get("overrides", {})}.get("warehouse", "")
        if "://" not in location:
            raise CatalogError(
                f"Nessie at {self.catalog.uri} names no location for warehouse {quote(self.catalog.warehouse)}"
            )
        return location

    def file_io(self) -> FileIO:
        from pyiceberg.io.pyarrow import PyArrowFileIO

        return PyArrowFileIO({**self.catalog.s3_defaults, **self.catalog.s3_options})

    def storage(self, roots: Collection[str] | None) -> S3Storage:
        """The warehouse location, or the given `s3://` roots in it."""
        roots = list(roots or [self.warehouse])
        if not all(root.startswith(("s3://", "s3a://")) for root in roots):
            raise CatalogError(f"only S3 warehouses can be swept, not {', '.join(roots)}")
        io = self.file_io()
        bucket = roots[0].split("://", 1)[1].split("/", 1)[0]
        return S3Storage(io.fs_by_scheme("s3", bucket), roots)  # type: ignore[attr-defined]
