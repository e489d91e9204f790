"""A small fake HTTP server on 127.0.0.1 for source tests: routes, canned sequences, recorded requests."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

# A handler answers (status, headers, body); body is bytes, str, None or anything JSON-serialisable.
Response = tuple[int, dict[str, str], Any]


@dataclass
class Request:
    """One request as the server saw it; header names are lower-cased."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    target: str = ""  # the raw request target, path and query as sent

    def param(self, name: str) -> str | None:
        """The last value of query parameter `name`, or None."""
        values = self.query.get(name)
        return values[-1] if values else None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Handler = Callable[[Request], Response]


@dataclass
class FakeServer:
    """`ThreadingHTTPServer` on 127.0.0.1:0 in a thread; use as a context manager and read `.url`."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> FakeServer:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:  # silence stderr
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- routes --------------------------------------------------------------------------------------

    def route(self, method: str, path: str, handler: Handler) -> Handler:
        """Register `handler` for exactly `method path` (query string ignored)."""
        self.routes[(method.upper(), path)] = handler
        return handler

    def reply(
        self, method: str, path: str, body: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        """Always answer the same response."""
        self.route(method, path, lambda _req: (status, dict(headers or {}), body))

    def sequence(self, method: str, path: str, responses: Iterable[Response]) -> None:
        """Answer `responses` in order; the last one repeats once the queue is drained."""
        queue = list(responses)
        assert queue, "need at least one response"
        lock = threading.Lock()

        def handler(_req: Request) -> Response:
            with lock:
                return queue.pop(0) if len(queue) > 1 else queue[0]

        self.route(method, path, handler)

    def fail_then(self, method: str, path: str, failures: int, response: Response, status: int = 500) -> None:
        """Answer `status` (a server error by default) `failures` times, then `response` for good."""
        error: Response = (status, {}, {"message": "Server Error"})
        self.sequence(method, path, [error] * failures + [response])

    def pages(self, path: str, items: list[Any], default_per_page: int = 30) -> None:
        """Serve `items` GitHub-style: `page`/`per_page` parameters and `Link` headers pointing back here."""

        def handler(req: Request) -> Response:
            per_page = int(req.param("per_page") or default_per_page)
            page = int(req.param("page") or 1)
            last = max(1, -(-len(items) // per_page))
            links = {"prev": page - 1, "next": page + 1, "last": last, "first": 1}
            shown = {rel: n for rel, n in links.items() if 1 <= n <= last and n != page}
            if page == last:
                shown.pop("last", None)
            if page == 1:
                shown.pop("first", None)
            headers = {}
            if shown:
                headers["Link"] = ", ".join(
                    f'<{self.url}{path}?{urlencode({"per_page": per_page, "page": n})}>; rel="{rel}"'
                    for rel, n in shown.items()
                )
            return 200, headers, items[(page - 1) * per_page : page * per_page]

        self.route("GET", path, handler)

    def requests_to(self, path: str) -> list[Request]:
        return [req for req in self.requests if req.path == path]

    # -- serving -------------------------------------------------------------------------------------

    def _serve(self, http: BaseHTTPRequestHandler) -> None:
        split = urlsplit(http.path)
        length = int(http.headers.get("Content-Length") or 0)
        request = Request(
            method=http.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in http.headers.items()},
            body=http.rfile.read(length) if length else b"",
            target=http.path,
        )
        with self._lock:
            self.requests.append(request)
        handler = self.routes.get((request.method, request.path))
        try:
            status, headers, body = handler(request) if handler else (404, {}, {"message": "Not Found"})
        except Exception as exc:  # a broken test handler shows up as a 500, not a hung client
            status, headers, body = 500, {}, {"message": f"fake handler failed: {exc!r}"}
        headers = dict(headers)
        if body is None:
            payload = b""
        elif isinstance(body, bytes):
            payload = body
        elif isinstance(body, str):
            payload = body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            payload = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        http.send_response(status)
        for name, value in headers.items():
            http.send_header(name, value)
        http.send_header("Content-Length", str(len(payload)))
        http.end_headers()
        if http.command != "HEAD" and payload:
            http.wfile.write(payload)


def unused_port() -> int:
    """A local port nothing listens on (bound then released), for connection-refused tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
