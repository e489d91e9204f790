"""One error hierarchy; each class carries the exit code the CLI maps it to.

Exit codes: 0 success, 1 a decision (blocked, refused), 2 usage, configuration or infrastructure.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit


def safe_url(url: str) -> str:
    """`url` fit for a message: no user or password in its authority, no query or fragment (tokens travel there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))


# `scheme://user:password@` (or `scheme://token@`) anywhere in a text: the part before `@` is a credential.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#'\"<>]+@")


def redact_urls(text: str) -> str:
    """`text` with the user and password of every URL in it replaced by `***`."""
    return _URL_USERINFO.sub(r"\1***@", str(text))


class CascadeError(Exception):
    """Root of every error cascade-ci raises on purpose."""

    exit_code = 2


class Terminal:
    """Marker: retrying cannot help."""


class Transient:
    """Marker: the same call may succeed later (connection refused, 5xx, timeout)."""


class ConfigError(CascadeError, Terminal):
    """A setting or option has a bad value."""


class InvalidNameError(ConfigError):
    """A run id, branch or tag name that must not reach a catalog, engine or shell."""


class CatalogError(CascadeError):
    """The catalog refused or failed an operation."""


class ServiceUnavailableError(CatalogError, Transient):
    """A backend service did not answer or answered with a server error."""


class NotFoundError(CatalogError, Terminal):
    """A ref, commit or table does not exist."""


class AlreadyExistsError(CatalogError, Terminal):
    """A ref with that name already exists."""


class ConflictError(CatalogError, Terminal):
    """A compare-and-swap lost: the ref's head is not the expected hash."""

    exit_code = 1


class MovedError(CascadeError, Transient):
    """A ref moved under a command that had judged or staged on its head: running the command again resolves it."""


class NotFastForwardError(ConflictError):
    """The target's head is not an ancestor of the source's head."""


class MergeConflictError(ConflictError):
    """Both sides changed the same table since they forked."""

    def __init__(self, message: str, tables: list[str]) -> None:
        super().__init__(message)
        self.tables = tables


class AccessDeniedError(CatalogError, Terminal):
    """The catalog's authorization rules deny this identity the operation."""


class ReadOnlyRefError(CatalogError, Terminal):
    """Tags and detached hashes cannot be written."""


class MissingExtraError(ConfigError):
    """An optional dependency is not installed."""


class RefusedError(CascadeError, Terminal):
    """A stage decided not to act (nothing validated, verdict blocked, main moved)."""

    exit_code = 1


class SourceError(CascadeError, Terminal):
    """A source answered with data that cannot be ingested (the message names the record)."""


class SourceUnavailableError(SourceError, Transient):
    """A source API did not answer, answered 5xx, or kept answering 202 (still computing)."""


# Faults of other libraries that mean "try again later": connection refused, 5xx, timeouts.
_TRANSIENT_NAMES = frozenset({"ServerError", "ServiceUnavailableError", "ConnectTimeout", "ReadTimeout"})


def is_transient(error: BaseException) -> bool:
    """True for faults a retry may cure; never for data or usage errors."""
    if isinstance(error, Transient | ConnectionError | TimeoutError):
        return True
    return type(error).__name__ in _TRANSIENT_NAMES and not isinstance(error, Terminal)
