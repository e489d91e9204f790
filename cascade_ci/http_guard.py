"""Where credentials may travel: over https, or plain http to this machine only; never on to another host.

Used by every HTTP client that sends a secret (the GitHub REST clients, the example's Nightscout and GitHub
sources). `requests` drops `Authorization` when a redirect changes host, but keeps custom headers such as
Nightscout's `API-SECRET`; urllib's default redirect handler copies every header to any host. The handler
here drops each credential header whenever a redirect leaves the origin (scheme, host, port) it was sent to.
"""

from __future__ import annotations

import functools
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from cascade_ci.errors import ConfigError, safe_url

# Header names (lower case) that carry a credential; none of them follows a redirect to another origin.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "api-secret", "cookie", "x-api-key"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback(host: str | None) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1: plain http there never leaves the machine."""
    if not host:
        return False
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    import ipaddress  # only when a credential is about to be sent: keeps the CLI's start fast

    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_credential_url(url: str, what: str = "a credential") -> str:
    """Return `url` if `what` may be sent to it: https, or http to a loopback host; ConfigError otherwise."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https" and parts.hostname:
        return url
    if scheme == "http" and is_loopback(parts.hostname):
        return url
    raise ConfigError(
        f"refusing to send {what} to {safe_url(url) or repr(url)}: use an https:// URL "
        "(plain http:// only to localhost, 127.0.0.1 or ::1)"
    )


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").rstrip(".").lower(), port or _DEFAULT_PORTS.get(scheme)


def without_credentials(headers: dict[str, str]) -> dict[str, str]:
    """`headers` minus every credential header."""
    return {name: value for name, value in headers.items() if name.lower() not in CREDENTIAL_HEADERS}


class CredentialRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects as urllib does, but a redirect to another origin carries no credential header."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and origin(newurl) != origin(req.full_url):
            new.headers = without_credentials(new.headers)
            new.unredirected_hdrs = without_credentials(new.unredirected_hdrs)
        return new


def opener(*handlers: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
    """A urllib opener whose redirects never carry a credential to another origin."""
    return urllib.request.build_opener(CredentialRedirectHandler(), *handlers)


@functools.cache
def _shared() -> urllib.request.OpenerDirector:
    return opener()


def urlopen(request: urllib.request.Request | str, timeout: float | None = None) -> Any:
    """`urllib.request.urlopen` through one shared guarded opener (the Nessie clients use it)."""
    return _shared().open(request, timeout=timeout)
