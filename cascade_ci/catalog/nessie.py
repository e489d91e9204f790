"""The production backend: refs and commits in Project Nessie (REST API v2), tables through its Iceberg REST API.

Nessie's own expected-hash check on commits and merges is relaxed: a stale hash is accepted when the keys
do not conflict. The one strict compare-and-swap it offers is reassignment, `PUT /trees/{ref}@{expected}`.
So every mutation here is staged on a private scratch branch forked at the expected hash (whose head is
therefore exactly that hash), then published with that strict reassignment, and the scratch branch dropped.
A commit onto a scratch branch itself (a command staging its own work there) needs no second one: no other
writer knows its name.
HTTP is the standard library's urllib; only transient faults are retried.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode
from urllib.request import Request

from cascade_ci.catalog.base import (
    SCRATCH_PREFIX,
    Capabilities,
    ChangeKind,
    Commit,
    Ref,
    RefKind,
    TableChange,
    scratch_name,
    stale_scratch,
)
from cascade_ci.catalog.nessie_auth import NessieAuth
from cascade_ci.catalog.nessie_tables import NessieRefCatalog
from cascade_ci.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    CascadeError,
    CatalogError,
    ConfigError,
    ConflictError,
    InvalidNameError,
    MergeConflictError,
    NotFastForwardError,
    NotFoundError,
    ReadOnlyRefError,
    ServiceUnavailableError,
    safe_url,
)
from cascade_ci.http_guard import urlopen  # redirects never carry a credential to another host
from cascade_ci.naming import validate_hash, validate_ref_name

if TYPE_CHECKING:
    from cascade_ci.config import Settings

# A key no table or namespace uses: an UNCHANGED operation on it lets a commit change nothing
# (Nessie refuses commits with an empty operation list).
META_KEY = {"elements": ["cascade-meta"]}
_FULL_HASH = re.compile(r"[0-9a-f]{64}")
_SHORT_HASH = re.compile(r"[0-9a-fA-F]{8,63}")
_FRACTION = re.compile(r"(\.\d{6})\d+")
_ERRORS: dict[int, type[CatalogError]] = {404: NotFoundError, 409: ConflictError}
_RETRY_STATUS = {502, 503, 504}


def _ref_path(name: str | None, commit: str | None = None) -> str:
    """A REST v2 path element: `main`, `pipeline/run-1@`, `main@<hash>`, `@<hash>` (detached)."""
    if name is not None:
        validate_ref_name(name)  # Nessie's ref-name rule: no "..", no "@", no leading "/" ...
    if commit is not None:
        validate_hash(commit)
    spec = quote(name or "", safe="/")
    if commit:
        return f"{spec}@{commit}"
    return f"{spec}@" if "/" in spec else spec


def _table_name(key: Mapping[str, Any]) -> str:
    return ".".join(key["elements"])


def _restores(entry: Mapping[str, Any], tables: Collection[str]) -> bool:
    """True for a diff entry of one of `tables`, or of a namespace one of them needs and the head lacks."""
    name = _table_name(entry["key"])
    if name in tables:
        return True
    added_namespace = entry.get("from") is None and (entry.get("to") or {}).get("type") == "NAMESPACE"
    return added_namespace and any(table.startswith(f"{name}.") for table in tables)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00")))


class NessieBranchCatalog:
    """BranchCatalog on Nessie; `tables(ref)` is a pyiceberg REST catalog of Nessie's Iceberg endpoint."""

    capabilities = Capabilities(native_fast_forward=False, cross_process_safe=True, concurrent_calls=True)

    def __init__(
        self,
        uri: str,
        warehouse: str = "warehouse",
        default_branch: str = "main",
        s3_options: Mapping[str, str] | None = None,
        s3_defaults: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        auth: NessieAuth | None = None,
    ) -> None:
        self.uri = uri.rstrip("/")
        self.auth = auth or NessieAuth()
        self.warehouse = warehouse
        self.default_branch = default_branch
        self.s3_options = dict(s3_options or {})  # the user's settings: they win over what Nessie advertises
        self.s3_defaults = dict(s3_defaults or {})  # beaten by Nessie's config overrides and each table's config
        self._api = f"{self.uri}/api/v2"
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._root: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> NessieBranchCatalog:
        """Build from `NESSIE_URI`, `NESSIE_WAREHOUSE`, `S3_*` and the AWS keys."""
        s3 = {}
        if settings.s3_endpoint:
            s3["s3.endpoint"] = settings.s3_endpoint
        if settings.s3_access_key_id and settings.s3_secret_access_key:
            s3["s3.access-key-id"] = settings.s3_access_key_id.get_secret_value()
            s3["s3.secret-access-key"] = settings.s3_secret_access_key.get_secret_value()
        defaults = {"s3.region": settings.s3_region, "s3.path-style-access": "true"}
        return cls(
            settings.nessie_uri,
            settings.nessie_warehouse,
            settings.main_branch,
            s3_options=s3,
            s3_defaults=defaults,
            timeout=settings.nessie_timeout,
            auth=NessieAuth.from_settings(settings),
        )

    # -- HTTP -----------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        errors: Mapping[int, type[CatalogError]] | None = None,
    ) -> Any:
        """One REST v2 call; HTTP errors become cascade errors (`errors` overrides the status mapping).

        Retried: connection refused (nothing was sent), and for GET also timeouts and 502/503/504.
        """
        url = self._api + path + (f"?{urlencode(query, doseq=True)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                request = self.auth.sign(Request(url, data, headers, method=method))  # noqa: S310
                with urlopen(request, timeout=self._timeout) as resp:
                    raw = resp.read()
                return json.loads(raw) if raw else None
            except HTTPError as e:
                if e.code in _RETRY_STATUS and method == "GET" and not last:
                    time.sleep(self._backoff * 2**attempt)
                    continue
                raise self._error(e, method, url, errors) from e
            except (URLError, TimeoutError, ConnectionError) as e:
                reason = getattr(e, "reason", e)
                refused = isinstance(reason, ConnectionRefusedError)
                if (refused or method == "GET") and not last:
                    time.sleep(self._backoff * 2**attempt)
                    continue
                where = f"Nessie at {safe_url(self.uri)}"
                raise ServiceUnavailableError(f"{where} did not answer {method} {safe_url(url)}: {reason}") from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(
        self, e: HTTPError, method: str, url: str, errors: Mapping[int, type[CatalogError]] | None
    ) -> CascadeError:
        try:
            payload = json.loads(e.read() or b"{}")
        except ValueError:
            payload = {}
        message = payload.get("message") or e.reason
        code = payload.get("errorCode", "")
        if e.code >= 500:
            where = f"Nessie at {safe_url(self.uri)}"
            return ServiceUnavailableError(f"{where} failed {method} {safe_url(url)}: HTTP {e.code} {message}")
        if e.code == 401:
            hint = "set NESSIE_AUTH and its credentials" if not self.auth.enabled else "check the credentials"
            return ConfigError(f"Nessie at {safe_url(self.uri)} refused the credentials (HTTP 401): {hint}")
        if e.code == 403:
            return AccessDeniedError(f"Nessie denied {method} {safe_url(url)}: {message}")
        if code == "REFERENCE_ALREADY_EXISTS":
            return AlreadyExistsError(message)
        if e.code == 400 and "must be a branch" in message:
            return ReadOnlyRefError(message)
        kind = {**_ERRORS, **(errors or {})}.get(e.code, CatalogError)
        return kind(f"Nessie refused {method} {safe_url(url)}: {message}" if kind is CatalogError else message)

    def _pages(self, path: str, key: str, query: Mapping[str, Any] | None = None) -> Iterator[Any]:
        params = dict(query or {})
        while True:
            page = self._call("GET", path, query=params)
            yield from page.get(key) or []
            if not page.get("hasMore") or not page.get("token"):
                return
            params["page-token"] = page["token"]

    # -- refs and hashes ------------------------------------------------------------------------

    @staticmethod
    def _to_ref(data: Mapping[str, Any]) -> Ref:
        return Ref(data["name"], RefKind(data["type"].lower()), data["hash"])

    def _commit_hash(self, commit: str, on: str | None = None) -> str:
        """Check that commit `commit` exists (on ref `on`, if given); return its full hash."""
        path = f"/trees/{_ref_path(on, commit)}/history"
        entries = self._call("GET", path, query={"max-records": 1}, errors={400: NotFoundError})["logEntries"]
        return entries[0]["commitMeta"]["hash"] if entries else commit

    def _resolve(self, ref_or_hash: str) -> tuple[Ref | None, str]:
        """A ref name, a commit hash or `ref@hash` -> (the ref, if just a name) and the commit hash."""
        if "@" in ref_or_hash:
            name, _, commit = ref_or_hash.rpartition("@")
            return None, self._commit_hash(commit, on=name or None)
        if _FULL_HASH.fullmatch(ref_or_hash):
            return None, self._commit_hash(ref_or_hash)
        try:
            ref = self.get_ref(ref_or_hash)
        except (NotFoundError, InvalidNameError):
            if _SHORT_HASH.fullmatch(ref_or_hash):
                return None, self._commit_hash(ref_or_hash)
            raise
        return ref, ref.hash

    def _pinned(self, ref_or_hash: str) -> str:
        ref, commit = self._resolve(ref_or_hash)
        return _ref_path(ref.name if ref else None, commit)

    def _branch(self, name: str, expected_hash: str) -> Ref:
        ref = self.get_ref(name)
        if ref.kind is not RefKind.BRANCH:
            raise ReadOnlyRefError(f"{name!r} is a {ref.kind}; only branches take commits")
        if ref.hash != expected_hash:
            raise ConflictError(f"branch {name!r} moved: head is {ref.hash}, expected {expected_hash}")
        return ref

    def _publish(self, name: str, expected_hash: str, new_hash: str) -> Ref:
        """Strict compare-and-swap: point `name` at `new_hash` only if its head is still `expected_hash`."""
        try:
            data = self._call("PUT", f"/trees/{_ref_path(name, expected_hash)}", {"type": "DETACHED", "hash": new_hash})
        except ConflictError as e:
            raise ConflictError(f"ref {name!r} moved: head is no longer {expected_hash} ({e})") from e
        return self._to_ref(data["reference"])

    @contextmanager
    def _scratch(self, at_hash: str, for_branch: str) -> Iterator[str]:
        """A private branch at `at_hash` for staging one commit or merge to `for_branch`; dropped afterwards."""
        name = scratch_name(for_branch)
        self._call("POST", "/trees", {"type": "DETACHED", "hash": at_hash}, query={"name": name, "type": "BRANCH"})
        try:
            yield name
        finally:
            with suppress(CatalogError):
                head = self.get_ref(name).hash
                self._call("DELETE", f"/trees/{_ref_path(name, head)}")

    def _strict_commit(
        self,
        branch: str,
        expected_hash: str,
        operations: list[dict[str, Any]],
        message: str,
        properties: Mapping[str, str],
    ) -> Ref:
        meta = {"message": message, "properties": dict(properties)}
        if branch.startswith(SCRATCH_PREFIX):  # a private staging branch: no other writer, nothing to stage it on
            body = {"commitMeta": meta, "operations": operations or [{"type": "UNCHANGED", "key": META_KEY}]}
            done = self._call("POST", f"/trees/{_ref_path(branch, expected_hash)}/history/commit", body)
            return self._to_ref(done["targetBranch"])
        with self._scratch(expected_hash, branch) as scratch:
            done = self._call(
                "POST",
                f"/trees/{_ref_path(scratch, expected_hash)}/history/commit",
                {"commitMeta": meta, "operations": operations or [{"type": "UNCHANGED", "key": META_KEY}]},
            )
        return self._publish(branch, expected_hash, done["targetBranch"]["hash"])

    def _is_root(self, commit: str) -> bool:
        """True for Nessie's "no ancestor" hash: the empty start of every history (not a commit of its own)."""
        if self._root is None:
            self._root = self._call("GET", "/config")["noAncestorHash"]
        return commit == self._root

    def _merge_base(self, into: str, expected_hash: str, from_hash: str) -> tuple[str | None, str]:
        """Dry-run merge of `from_hash` into branch `into`: (common ancestor or None, the head it merged onto).

        The wire names are `isDryRun`/`isReturnConflictAsResult` (Nessie's OpenAPI text says `dryRun`, a
        name the server silently ignores, merging for real).
        """
        if self._is_root(from_hash):
            return from_hash, expected_hash
        if self._is_root(expected_hash):
            return expected_hash, expected_hash  # publishing still checks that the head did not move
        body = {"fromRefName": "DETACHED", "fromHash": from_hash, "isDryRun": True, "isReturnConflictAsResult": True}
        try:
            result = self._call("POST", f"/trees/{_ref_path(into, expected_hash)}/history/merge", body)
        except NotFoundError as e:
            if "common ancestor" not in str(e):
                raise
            return None, expected_hash
        if result.get("wasApplied"):
            raise CatalogError(f"Nessie at {safe_url(self.uri)} applied a merge that was sent as a dry run")
        return result["commonAncestor"], result["effectiveTargetHash"]

    # -- BranchCatalog --------------------------------------------------------------------------

    def create_ref(self, name: str, from_ref: str, kind: RefKind = RefKind.BRANCH) -> Ref:
        validate_ref_name(name)
        _, commit = self._resolve(from_ref)
        data = self._call(
            "POST", "/trees", {"type": "DETACHED", "hash": commit}, query={"name": name, "type": kind.upper()}
        )
        return self._to_ref(data["reference"])

    def get_ref(self, name: str) -> Ref:
        return self._to_ref(self._call("GET", f"/trees/{_ref_path(name)}", errors={400: NotFoundError})["reference"])

    def list_refs(self, prefix: str = "") -> list[Ref]:
        refs = (self._to_ref(data) for data in self._pages("/trees", "references"))
        return sorted(
            (r for r in refs if r.name.startswith(prefix) and not r.name.startswith(SCRATCH_PREFIX)),
            key=lambda r: r.name,
        )

    def sweep_leftovers(self, now: datetime) -> list[Ref]:
        """Delete scratch branches older than SCRATCH_MAX_AGE: a killed command left them (they hold no data)."""
        swept = []
        for data in self._pages("/trees", "references"):
            name = data["name"]
            if not stale_scratch(name, now):
                continue
            with suppress(ConflictError, NotFoundError):
                self._call("DELETE", f"/trees/{_ref_path(name, data['hash'])}")
                swept.append(Ref(name, RefKind.BRANCH, data["hash"]))
        return swept

    def log(self, ref: str, limit: int | None = None) -> list[Commit]:
        query = {"max-records": min(limit, 250)} if limit else {}
        commits: list[Commit] = []
        for entry in self._pages(f"/trees/{self._pinned(ref)}/history", "logEntries", query):
            meta = entry["commitMeta"]
            properties = {k: v[-1] for k, v in (meta.get("allProperties") or {}).items() if v}
            commits.append(
                Commit(
                    hash=meta["hash"],
                    parents=tuple(meta.get("parentCommitHashes") or ()),
                    time=_parse_time(meta["commitTime"]),
                    message=meta.get("message", ""),
                    properties=properties or dict(meta.get("properties") or {}),
                )
            )
            if limit and len(commits) >= limit:
                break
        return commits

    def is_ancestor(self, ancestor: str, ref: str) -> bool:
        _, ancestor_hash = self._resolve(ancestor)
        _, head = self._resolve(ref)
        if ancestor_hash == head:
            return True
        with self._scratch(head, ref) as scratch:
            base, _ = self._merge_base(scratch, head, ancestor_hash)
        return base == ancestor_hash

    def diff(self, from_ref: str, to_ref: str) -> list[TableChange]:
        changes = []
        path = f"/trees/{self._pinned(from_ref)}/diff/{self._pinned(to_ref)}"
        for entry in self._pages(path, "diffs"):
            old, new = entry.get("from"), entry.get("to")
            if "ICEBERG_TABLE" not in {(old or {}).get("type"), (new or {}).get("type")}:
                continue
            before, after = (old or {}).get("metadataLocation"), (new or {}).get("metadataLocation")
            if before == after:
                continue
            kind = ChangeKind.ADDED if old is None else ChangeKind.REMOVED if new is None else ChangeKind.MODIFIED
            changes.append(TableChange(_table_name(entry["key"]), kind, before, after))
        return sorted(changes, key=lambda c: c.table)

    def commit_meta(self, branch: str, message: str, properties: Mapping[str, str], expected_hash: str) -> Ref:
        self._branch(branch, expected_hash)
        return self._strict_commit(branch, expected_hash, [], message, properties)

    def fast_forward(self, target: str, source_hash: str, expected_target_hash: str) -> Ref:
        head = self._branch(target, expected_target_hash)
        _, source = self._resolve(source_hash)
        if source == head.hash:
            return head
        base, merged_onto = self._merge_base(target, expected_target_hash, source)
        if merged_onto != expected_target_hash:
            raise ConflictError(f"branch {target!r} moved: head is {merged_onto}, expected {expected_target_hash}")
        if base != expected_target_hash:
            raise NotFastForwardError(
                f"cannot fast-forward {target!r} to {source}: its head {expected_target_hash} is not an ancestor"
            )
        return self._publish(target, expected_target_hash, source)

    def merge(self, source: str, target: str, expected_target_hash: str, message: str) -> Ref:
        head = self._branch(target, expected_target_hash)
        ref, incoming = self._resolve(source)
        meta = {"message": message, "properties": {"cascade.merged-from": source}}
        with self._scratch(expected_target_hash, target) as scratch:
            result = self._call(
                "POST",
                f"/trees/{_ref_path(scratch, expected_target_hash)}/history/merge",
                {
                    "fromRefName": ref.name if ref else "DETACHED",
                    "fromHash": incoming,
                    "commitMeta": meta,
                    "isReturnConflictAsResult": True,
                },
            )
        if not result.get("wasSuccessful", False):
            tables = sorted(_table_name(d["key"]) for d in result.get("details") or [] if d.get("conflict"))
            raise MergeConflictError(
                f"cannot merge {source!r} into {target!r}: changed on both sides: {', '.join(tables)}", tables
            )
        if not result.get("wasApplied", False):
            return head
        return self._publish(target, expected_target_hash, result["resultantTargetHash"])

    def restore(
        self,
        branch: str,
        to_hash: str,
        expected_hash: str,
        message: str,
        properties: Mapping[str, str],
        tables: Collection[str] | None = None,
    ) -> Ref:
        self._branch(branch, expected_hash)
        _, target = self._resolve(to_hash)
        operations = []
        path = f"/trees/{_ref_path(branch, expected_hash)}/diff/{_ref_path(None, target)}"
        for entry in self._pages(path, "diffs"):
            old, new = entry.get("from"), entry.get("to")
            if tables is not None and not _restores(entry, tables):
                continue
            if new is None:
                operations.append({"type": "DELETE", "key": entry["key"]})
            else:  # a key the head lacks takes new content: Nessie refuses a content id for it
                content = new if old is not None else {k: v for k, v in new.items() if k != "id"}
                operations.append({"type": "PUT", "key": entry["key"], "content": content})
        return self._strict_commit(branch, expected_hash, operations, message, properties)

    def assign(self, name: str, to_hash: str, expected_hash: str) -> Ref:
        _ref_path(name, expected_hash)  # both checked before any request
        _, commit = self._resolve(to_hash)
        return self._publish(name, expected_hash, commit)

    def delete_ref(self, name: str, expected_hash: str) -> None:
        if name == self.default_branch:
            raise CatalogError(f"the default branch {name!r} cannot be deleted")
        try:
            self._call("DELETE", f"/trees/{_ref_path(name, expected_hash)}")
        except ConflictError as e:
            raise ConflictError(f"ref {name!r} moved: head is no longer {expected_hash} ({e})") from e

    def tables(self, ref: str) -> NessieRefCatalog:
        resolved, commit = self._resolve(ref)
        spec = resolved.name.replace("/", "\x1f") if resolved else f"@{commit}"
        writable = resolved is not None and resolved.kind is RefKind.BRANCH
        properties = {
            "uri": f"{self.uri}/iceberg/",
            "warehouse": self.warehouse,
            # Nessie's prefix is `{ref}|{warehouse}`, URL-encoded; a `/` in a ref name travels as U+001F.
            "prefix": quote(f"{spec}|{self.warehouse}", safe=""),
            **self.s3_defaults,
        }
        return NessieRefCatalog(ref, read_only=not writable, client_io=self.s3_options, auth=self.auth, **properties)

    def close(self) -> None:
        """Nothing to release: every call opens its own connection."""

    def __enter__(self) -> NessieBranchCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
