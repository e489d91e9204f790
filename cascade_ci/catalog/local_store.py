"""What the embedded catalog's table view needs of its store: a commit's contents, read and written per ref.

`local.py` (refs and commits in SQLite) implements the store; `local_tables.py` (a pyiceberg Catalog of one
ref) uses it through this contract only, so the two never import each other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass
class Contents:
    """What a commit holds: namespaces with their properties, and table pointers keyed `ns.table`."""

    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"namespaces": self.namespaces, "tables": self.tables}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Contents:
        data = json.loads(text)
        return cls(namespaces=data["namespaces"], tables=data["tables"])

    def restored(self, target: Contents, tables: Collection[str]) -> Contents:
        """These contents with `tables` as `target` has them (absent there: removed) and the namespaces they need."""
        for table in tables:
            namespace = table.rsplit(".", 1)[0]
            if namespace not in self.namespaces and namespace in target.namespaces:
                self.namespaces[namespace] = target.namespaces[namespace]
            if table in target.tables:
                self.tables[table] = target.tables[table]
            else:
                self.tables.pop(table, None)
        return self


class ContentStore(Protocol):
    """Commits of table pointers per ref, as the table view reads and writes them."""

    warehouse: Path

    def read_contents(self, ref_or_hash: str) -> Contents:
        """The contents at a ref's head or at a commit."""
        ...

    def write_contents(self, ref: str, change: Callable[[Contents], None], message: str) -> object:
        """Apply `change` to the branch head's contents as one new commit (compare-and-swap)."""
        ...

    def is_writable(self, ref: str) -> bool:
        """True if `ref` names a branch."""
        ...
