"""A pyiceberg REST catalog of one Nessie ref: read-only on tags and hashes, commits adapted to Nessie."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.typedef import EMPTY_DICT, Properties

from cascade_ci.errors import AccessDeniedError, ConfigError, ReadOnlyRefError, ServiceUnavailableError, safe_url

if TYPE_CHECKING:
    from pyiceberg.io import FileIO
    from requests import Response, Session

    from cascade_ci.catalog.nessie_auth import NessieAuth


# What a server's vended credentials add to its keys; meaningless (and refused by S3) with other keys.
VENDED_SESSION = tuple(f"{scope}.{name}" for scope in ("s3", "client") for name in ("session-token", "role-arn"))


class NessieRefCatalog(RestCatalog):
    """pyiceberg REST catalog of one Nessie ref; writes on a tag or a commit hash raise ReadOnlyRefError.

    `client_io` holds the storage settings the user gave explicitly (S3 endpoint, keys). They win over
    what the server advertises (Nessie's config overrides and each table's `config`): a Nessie in a
    container may name an endpoint only reachable from inside its network.
    """

    def __init__(
        self,
        name: str,
        read_only: bool,
        client_io: Mapping[str, str] = EMPTY_DICT,
        auth: NessieAuth | None = None,
        **properties: str,
    ) -> None:
        self.read_only = read_only
        self.client_io = dict(client_io)
        self.auth = auth
        super().__init__(name, **properties)

    def _load_file_io(self, properties: Properties = EMPTY_DICT, location: str | None = None) -> FileIO:
        io = super()._load_file_io({**properties, **self.client_io}, location)
        if "s3.access-key-id" in self.client_io:  # a session Nessie vends belongs to its keys, not the user's
            for key in VENDED_SESSION:
                io.properties.pop(key, None)
        return io

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyRefError(f"{self.name!r} is not a branch; tables can only be changed on a branch")

    def _create_session(self) -> Session:
        """pyiceberg's session with cascade's Nessie credentials, and table commits adapted to Nessie's endpoint."""
        session = super()._create_session()
        if self.auth is not None and self.auth.enabled:
            session.auth = self.auth.requests_auth()
        session.hooks["response"].append(refused_credentials)
        post = session.post

        def post_for_nessie(url: str | bytes, data: Any = None, **kwargs: Any) -> Any:
            return post(url, data=with_last_column_id(data) if isinstance(data, bytes) else data, **kwargs)

        session.post = post_for_nessie  # type: ignore[method-assign]
        return session


def refused_credentials(response: Response, *args: Any, **kwargs: Any) -> Response:
    """A refusal from the Iceberg REST endpoint as cascade's error with Nessie's reason (a requests hook).

    401: no or bad credentials. 403, or a 500 whose message is an `AccessCheckException` (how Nessie 0.99
    answers a table commit its authorization rules deny): the identity may not do this.
    """
    if response.status_code not in (401, 403, 500):
        return response
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    reason = str(error.get("message") or response.reason)
    denied = response.status_code == 403 or error.get("type") == "AccessCheckException"
    if response.status_code == 500 and not denied:
        return response
    where = f"{response.request.method if response.request else ''} {safe_url(str(response.url))}".strip()
    if response.status_code == 401:
        raise ConfigError(f"Nessie refused the credentials (HTTP 401) for {where}: set NESSIE_AUTH and its credentials")
    raise AccessDeniedError(f"Nessie denied {where}: {reason}")


def _max_field_id(node: Any) -> int:
    """The highest field id anywhere in an Iceberg JSON schema or type."""
    if isinstance(node, list):
        return max((_max_field_id(item) for item in node), default=0)
    if not isinstance(node, dict):
        return 0
    own = [v for k, v in node.items() if k in ("id", "element-id", "key-id", "value-id") and isinstance(v, int)]
    nested = [_max_field_id(v) for k, v in node.items() if k in ("fields", "type", "element", "key", "value")]
    return max([0, *own, *nested])


def with_last_column_id(body: bytes) -> bytes:
    """Put `last-column-id` back on add-schema updates: Nessie 0.99 requires it, pyiceberg 0.12 omits it.

    The value is what Iceberg's own clients send: the higher of the table's last assigned field id (from
    the commit's `assert-last-assigned-field-id` requirement) and the new schema's highest field id.
    """
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    updates = payload.get("updates") if isinstance(payload, dict) else None
    if not updates or not any(u.get("action") == "add-schema" for u in updates):
        return body
    assigned = [
        r.get("last-assigned-field-id", 0)
        for r in payload.get("requirements", [])
        if r.get("type") == "assert-last-assigned-field-id"
    ]
    for update in updates:
        if update.get("action") == "add-schema" and "last-column-id" not in update:
            update["last-column-id"] = max([*assigned, _max_field_id(update.get("schema"))])
    return json.dumps(payload).encode()


def _nessie_fault(error: Exception) -> bool:
    """True for a fault of the Nessie server itself: no answer (connection refused or dropped), or a 5xx."""
    from pyiceberg.exceptions import CommitStateUnknownException, ServerError
    from requests import RequestException

    return isinstance(error, RequestException | ServerError | CommitStateUnknownException)


def _guard(name: str, writes: bool = True) -> Callable[..., Any]:
    """RestCatalog's `name`, refused on a read-only ref (if it `writes`), with Nessie's faults named as Nessie's."""
    call = getattr(RestCatalog, name)

    @functools.wraps(call)
    def guarded(self: NessieRefCatalog, *args: Any, **kwargs: Any) -> Any:
        if writes:
            self._check_writable()
        try:
            return call(self, *args, **kwargs)
        except Exception as e:
            if not _nessie_fault(e):
                raise
            uri = safe_url(self.properties.get("uri", ""))
            raise ServiceUnavailableError(f"Nessie at {uri} failed {name} on {self.name!r}: {e}") from e

    return guarded


# Every pyiceberg call that writes goes through one of these (Table.append/overwrite end in commit_table).
for _name in (
    "create_namespace",
    "drop_namespace",
    "update_namespace_properties",
    "create_table",
    "create_table_transaction",
    "register_table",
    "drop_table",
    "purge_table",
    "rename_table",
    "commit_table",
):
    setattr(NessieRefCatalog, _name, _guard(_name))
for _name in ("load_table", "table_exists", "namespace_exists", "list_namespaces", "list_tables"):
    setattr(NessieRefCatalog, _name, _guard(_name, writes=False))
