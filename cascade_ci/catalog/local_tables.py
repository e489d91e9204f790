"""A pyiceberg Catalog over one ref of the embedded store: every table change is a commit on that ref."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyiceberg.catalog import Catalog, MetastoreCatalog, PropertiesUpdateSummary
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NamespaceNotEmptyError,
    NoSuchNamespaceError,
    NoSuchTableError,
    NoSuchViewError,
    TableAlreadyExistsError,
)
from pyiceberg.io import PY_IO_IMPL, load_file_io
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionSpec
from pyiceberg.serializers import FromInputFile
from pyiceberg.table import CommitTableResponse, Table
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import new_table_metadata
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER, SortOrder
from pyiceberg.typedef import EMPTY_DICT, Identifier, Properties

from cascade_ci.errors import ReadOnlyRefError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.schema import Schema
    from pyiceberg.table.update import TableRequirement, TableUpdate
    from pyiceberg.view import View

    from cascade_ci.catalog.local_store import Contents, ContentStore


def _key(identifier: str | Identifier) -> tuple[str, str]:
    """`("raw", "glucose")` or `"raw.glucose"` -> (`"raw"`, `"raw.glucose"`)."""
    namespace = Catalog.namespace_to_string(Catalog.namespace_from(identifier))
    return namespace, f"{namespace}.{Catalog.table_name_from(identifier)}"


class LocalRefCatalog(MetastoreCatalog):
    """pyiceberg Catalog named after a ref. Reads see the ref's head at call time."""

    def __init__(self, ref: str, store: ContentStore, **properties: str) -> None:
        io = {PY_IO_IMPL: "cascade_ci.catalog.local_io.LocalFileIO"}  # metadata without pyarrow's dataset layer
        super().__init__(ref, warehouse=store.warehouse.as_uri(), **{**io, **properties})
        self.ref = ref
        self.store = store

    # -- helpers --------------------------------------------------------------------------------

    def _write(self, change: Any, message: str) -> None:
        if not self.store.is_writable(self.ref):
            raise ReadOnlyRefError(f"{self.ref!r} is not a branch; tables can only be changed on a branch")
        self.store.write_contents(self.ref, change, message)

    def _table_from(self, identifier: str | Identifier, metadata_location: str) -> Table:
        io = load_file_io(properties=self.properties, location=metadata_location)
        metadata = FromInputFile.table_metadata(io.new_input(metadata_location))
        return Table(
            identifier=Catalog.identifier_to_tuple(identifier),
            metadata=metadata,
            metadata_location=metadata_location,
            io=self._load_file_io(metadata.properties, metadata_location),
            catalog=self,
        )

    @staticmethod
    def _require_namespace(contents: Contents, namespace: str) -> None:
        if namespace not in contents.namespaces:
            raise NoSuchNamespaceError(f"Namespace does not exist: {namespace}")

    def _put_table(self, identifier: str | Identifier, metadata_location: str, verb: str) -> Table:
        namespace, key = _key(identifier)

        def change(contents: Contents) -> None:
            self._require_namespace(contents, namespace)
            if key in contents.tables:
                raise TableAlreadyExistsError(f"Table {key} already exists")
            contents.tables[key] = metadata_location

        self._write(change, f"{verb} table {key}")
        return self._table_from(identifier, metadata_location)

    # -- tables ---------------------------------------------------------------------------------

    def create_table(
        self,
        identifier: str | Identifier,
        schema: Schema | pa.Schema,
        location: str | None = None,
        partition_spec: PartitionSpec = UNPARTITIONED_PARTITION_SPEC,
        sort_order: SortOrder = UNSORTED_SORT_ORDER,
        properties: Properties = EMPTY_DICT,
    ) -> Table:
        """Create an Iceberg table on this branch (one commit)."""
        namespace, _ = _key(identifier)
        if not self.namespace_exists(namespace):
            raise NoSuchNamespaceError(f"Namespace does not exist: {namespace}")
        iceberg_schema = self._convert_schema_if_needed(schema, int(properties.get("format-version", 2)))
        table_location = self._resolve_table_location(location, namespace, Catalog.table_name_from(identifier))
        provider = load_location_provider(table_location=table_location, table_properties=properties)
        metadata_location = provider.new_table_metadata_file_location()
        metadata = new_table_metadata(
            location=table_location,
            schema=iceberg_schema,
            partition_spec=partition_spec,
            sort_order=sort_order,
            properties=properties,
        )
        self._write_metadata(metadata, load_file_io(self.properties, metadata_location), metadata_location)
        return self._put_table(identifier, metadata_location, "create")

    def register_table(self, identifier: str | Identifier, metadata_location: str, overwrite: bool = False) -> Table:
        """Point a new table name at existing metadata."""
        if overwrite:
            raise NotImplementedError("`overwrite` isn't supported")
        return self._put_table(identifier, metadata_location, "register")

    def load_table(self, identifier: str | Identifier) -> Table:
        """The table as of this ref's head."""
        _, key = _key(identifier)
        location = self.store.read_contents(self.ref).tables.get(key)
        if location is None:
            raise NoSuchTableError(f"Table does not exist: {key} on {self.ref!r}")
        return self._table_from(identifier, location)

    def drop_table(self, identifier: str | Identifier) -> None:
        """Remove the table from this branch; its files stay (other refs may point at them)."""
        _, key = _key(identifier)

        def change(contents: Contents) -> None:
            if contents.tables.pop(key, None) is None:
                raise NoSuchTableError(f"Table does not exist: {key}")

        self._write(change, f"drop table {key}")

    def rename_table(self, from_identifier: str | Identifier, to_identifier: str | Identifier) -> Table:
        """Rename within this branch (one commit)."""
        _, old = _key(from_identifier)
        new_namespace, new = _key(to_identifier)

        def change(contents: Contents) -> None:
            self._require_namespace(contents, new_namespace)
            if old not in contents.tables:
                raise NoSuchTableError(f"Table does not exist: {old}")
            if new in contents.tables:
                raise TableAlreadyExistsError(f"Table {new} already exists")
            contents.tables[new] = contents.tables.pop(old)

        self._write(change, f"rename table {old} to {new}")
        return self.load_table(to_identifier)

    def commit_table(
        self, table: Table, requirements: tuple[TableRequirement, ...], updates: tuple[TableUpdate, ...]
    ) -> CommitTableResponse:
        """Write new metadata, then swap the pointer if the branch still has the version we read."""
        namespace, key = _key(table.name())
        try:
            current: Table | None = self.load_table(table.name())
        except NoSuchTableError:
            current = None
        staged = self._update_and_stage_table(current, table.name(), requirements, updates)
        if current is not None and staged.metadata == current.metadata:
            return CommitTableResponse(metadata=current.metadata, metadata_location=current.metadata_location)
        self._write_metadata(staged.metadata, staged.io, staged.metadata_location)
        expected = current.metadata_location if current else None

        def change(contents: Contents) -> None:
            self._require_namespace(contents, namespace)
            if contents.tables.get(key) != expected:
                raise CommitFailedException(f"Table has been updated by another process: {key}")
            contents.tables[key] = staged.metadata_location

        self._write(change, f"{'update' if current else 'create'} table {key}")
        return CommitTableResponse(metadata=staged.metadata, metadata_location=staged.metadata_location)

    def list_tables(self, namespace: str | Identifier) -> list[Identifier]:
        """Tables directly in `namespace`."""
        name = Catalog.namespace_to_string(namespace)
        contents = self.store.read_contents(self.ref)
        self._require_namespace(contents, name)
        return [Catalog.identifier_to_tuple(key) for key in sorted(contents.tables) if key.rsplit(".", 1)[0] == name]

    # -- namespaces -----------------------------------------------------------------------------

    def create_namespace(self, namespace: str | Identifier, properties: Properties = EMPTY_DICT) -> None:
        """Create a namespace on this branch."""
        name = Catalog.namespace_to_string(namespace)

        def change(contents: Contents) -> None:
            if name in contents.namespaces:
                raise NamespaceAlreadyExistsError(f"Namespace {name} already exists")
            contents.namespaces[name] = {"exists": "true", **properties}

        self._write(change, f"create namespace {name}")

    def drop_namespace(self, namespace: str | Identifier) -> None:
        """Drop an empty namespace."""
        name = Catalog.namespace_to_string(namespace)

        def change(contents: Contents) -> None:
            self._require_namespace(contents, name)
            if any(key.rsplit(".", 1)[0] == name for key in contents.tables):
                raise NamespaceNotEmptyError(f"Namespace {name} is not empty")
            del contents.namespaces[name]

        self._write(change, f"drop namespace {name}")

    def list_namespaces(self, namespace: str | Identifier = ()) -> list[Identifier]:
        """Namespaces one level below `namespace` (top level by default)."""
        parent = Catalog.identifier_to_tuple(namespace)
        found = set()
        for name in self.store.read_contents(self.ref).namespaces:
            parts = Catalog.identifier_to_tuple(name)
            if len(parts) > len(parent) and parts[: len(parent)] == parent:
                found.add(parts[: len(parent) + 1])
        return sorted(found)

    def load_namespace_properties(self, namespace: str | Identifier) -> Properties:
        """Properties of a namespace."""
        name = Catalog.namespace_to_string(namespace)
        contents = self.store.read_contents(self.ref)
        self._require_namespace(contents, name)
        return dict(contents.namespaces[name])

    def update_namespace_properties(
        self, namespace: str | Identifier, removals: set[str] | None = None, updates: Properties = EMPTY_DICT
    ) -> PropertiesUpdateSummary:
        """Set and remove namespace properties (one commit)."""
        name = Catalog.namespace_to_string(namespace)
        self._check_for_overlap(removals=removals, updates=updates)
        summary: list[PropertiesUpdateSummary] = []

        def change(contents: Contents) -> None:
            self._require_namespace(contents, name)
            current = contents.namespaces[name]
            missing = sorted((removals or set()) - current.keys())
            removed = sorted((removals or set()) & current.keys())
            for key in removed:
                del current[key]
            current.update(updates)
            summary.append(PropertiesUpdateSummary(removed=removed, updated=sorted(updates), missing=missing))

        self._write(change, f"update namespace {name}")
        return summary[0]

    # -- views are not part of the pipeline -----------------------------------------------------

    def list_views(self, namespace: str | Identifier) -> list[Identifier]:
        return []

    def view_exists(self, identifier: str | Identifier) -> bool:
        return False

    def load_view(self, identifier: str | Identifier) -> View:
        raise NoSuchViewError(f"View does not exist: {identifier}")

    def drop_view(self, identifier: str | Identifier) -> None:
        raise NoSuchViewError(f"View does not exist: {identifier}")

    def register_view(self, identifier: str | Identifier, metadata_location: str) -> View:
        raise NotImplementedError("views are not supported by the embedded catalog")

    def create_view(self, *args: Any, **kwargs: Any) -> View:
        raise NotImplementedError("views are not supported by the embedded catalog")
