"""Credentials for Nessie: none, a bearer token, or an OAuth2 client-credentials grant.

One `NessieAuth` serves every client of a Nessie server: the REST v2 calls (urllib), the Iceberg REST
catalogs (pyiceberg's requests session), `cascade doctor` and the sweep. An OAuth2 token is fetched once,
shared, and fetched again shortly before it expires. Credentials only go over HTTPS, or plain HTTP to a
loopback address; the Authorization header is never sent after a redirect (urllib's unredirected
header; requests drops it on a redirect to another host), and the token endpoint's redirects are not
followed at all. Secrets never appear in a message or a repr.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from typing import TYPE_CHECKING, Any, Literal
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit
from urllib.request import HTTPRedirectHandler, Request, build_opener

from cascade_ci.errors import ConfigError, ServiceUnavailableError, safe_url

if TYPE_CHECKING:
    from requests import PreparedRequest

    from cascade_ci.config import Settings

AuthMode = Literal["none", "bearer", "oauth2"]
REFRESH_MARGIN_S = 60  # a token is replaced this long before it expires
DEFAULT_LIFETIME_S = 300  # when the issuer does not say


def is_loopback(url: str) -> bool:
    """True when `url`'s host is localhost or a loopback address."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(url: str, what: str) -> None:
    """ConfigError unless credentials may travel to `url`: HTTPS, or plain HTTP to loopback."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "https" or (scheme == "http" and is_loopback(url)):
        return
    raise ConfigError(
        f"{what} would go over plain {scheme or 'http'} to {safe_url(url)}: use https (plain http only to localhost)"
    )


class _NoRedirect(HTTPRedirectHandler):
    """The token endpoint's redirects are refused: the client secret must not follow one."""

    def redirect_request(self, req: Request, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise HTTPError(req.full_url, code, f"redirect to {safe_url(newurl)} refused", headers, fp)


class NessieAuth:
    """The Authorization header for Nessie, and the checks that keep it from the wrong places."""

    def __init__(
        self,
        mode: AuthMode = "none",
        token: str | None = None,
        token_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        scope: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if mode == "bearer" and not token:
            raise ConfigError("NESSIE_AUTH=bearer needs NESSIE_TOKEN")
        if mode == "oauth2":
            missing = [
                name
                for name, value in (
                    ("NESSIE_OAUTH2_TOKEN_URL", token_url),
                    ("NESSIE_OAUTH2_CLIENT_ID", client_id),
                    ("NESSIE_OAUTH2_CLIENT_SECRET", client_secret),
                )
                if not value
            ]
            if missing:
                raise ConfigError(f"NESSIE_AUTH=oauth2 needs {', '.join(missing)}")
            check_transport(str(token_url), "the OAuth2 client secret")
        self.mode = mode
        self.token_url = token_url
        self.client_id = client_id
        self.scope = scope
        self._static = token
        self._secret = client_secret
        self._timeout = timeout
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.fetches = 0  # tokens fetched so far (the tests count them)

    @classmethod
    def from_settings(cls, settings: Settings) -> NessieAuth:
        """From NESSIE_AUTH, NESSIE_TOKEN and NESSIE_OAUTH2_* (secrets from the environment)."""
        return cls(
            settings.nessie_auth,
            token=settings.nessie_token.get_secret_value() if settings.nessie_token else None,
            token_url=settings.nessie_oauth2_token_url,
            client_id=settings.nessie_oauth2_client_id,
            client_secret=secret.get_secret_value() if (secret := settings.nessie_oauth2_client_secret) else None,
            scope=settings.nessie_oauth2_scope,
            timeout=settings.nessie_timeout,
        )

    def __repr__(self) -> str:
        return f"NessieAuth(mode={self.mode!r}, client_id={self.client_id!r})"

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def header(self, url: str) -> str | None:
        """`Bearer <token>` for a request to `url`, or None without credentials; ConfigError if `url` is unsafe."""
        if self.mode == "none":
            return None
        check_transport(url, "the Nessie token")
        if self.mode == "bearer":
            return f"Bearer {self._static}"
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                self._token, lifetime = self._fetch()
                self._expires_at = time.monotonic() + max(lifetime - REFRESH_MARGIN_S, lifetime / 2)
            return f"Bearer {self._token}"

    def sign(self, request: Request) -> Request:
        """`request` with the Authorization header, as one urllib drops on any redirect."""
        value = self.header(request.full_url)
        if value is not None:
            request.add_unredirected_header("Authorization", value)
        return request

    def requests_auth(self) -> _RequestsAuth:
        """The same credentials for a requests session (pyiceberg's)."""
        return _RequestsAuth(self)

    def _fetch(self) -> tuple[str, float]:
        """A new access token and its lifetime in seconds, from the client-credentials grant."""
        form = {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self._secret}
        if self.scope:
            form["scope"] = self.scope
        url = str(self.token_url)
        request = Request(  # noqa: S310 (check_transport allowed only http(s))
            url,
            urlencode(form).encode(),
            {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        where = f"the token issuer at {safe_url(url)}"
        try:
            with build_opener(_NoRedirect).open(request, timeout=self._timeout) as response:
                payload = json.loads(response.read() or b"{}")
        except HTTPError as e:
            try:
                error = json.loads(e.read() or b"{}")
            except ValueError:
                error = {}
            reason = error.get("error_description") or error.get("error") or e.reason
            if e.code >= 500:
                raise ServiceUnavailableError(f"{where} failed: HTTP {e.code} {reason}") from None
            raise ConfigError(
                f"{where} refused client {self.client_id!r}: HTTP {e.code} {reason} "
                "(check NESSIE_OAUTH2_CLIENT_ID and NESSIE_OAUTH2_CLIENT_SECRET)"
            ) from None
        except (URLError, TimeoutError, ConnectionError) as e:
            raise ServiceUnavailableError(f"{where} did not answer: {getattr(e, 'reason', e)}") from None
        except ValueError:
            raise ServiceUnavailableError(f"{where} did not answer JSON") from None
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not token:
            raise ServiceUnavailableError(f"{where} answered without an access_token")
        self.fetches += 1
        return str(token), float(payload.get("expires_in") or DEFAULT_LIFETIME_S)


class _RequestsAuth:
    """requests' auth hook: the header on each request (requests strips it on a redirect to another host)."""

    def __init__(self, auth: NessieAuth) -> None:
        self.auth = auth

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        value = self.auth.header(str(request.url))
        if value is not None:
            request.headers["Authorization"] = value
        return request
