"""A tiny HTTP proxy on 127.0.0.1 in front of a real service, whose faults a test switches on and off.

    with HttpProxy("http://127.0.0.1:19120") as proxy:   # point NESSIE_URI at proxy.url
        proxy.fail(503)            # answer 503 to every request, forward nothing
        proxy.fail(503, times=2)   # answer 503 to the next 2 requests, then forward again
        proxy.hang()               # accept requests and never answer (until the proxy stops)
        proxy.forward()            # pass requests through again
        proxy.rewrite = {b"http://127.0.0.1:9000/": b"http://127.0.0.1:1/"}   # edit response bodies

Each request opens its own upstream connection; hop-by-hop headers are dropped, `Accept-Encoding` too (so
bodies can be rewritten). `requests` records (method, path, what the proxy did) for every request.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


class HttpProxy:
    def __init__(self, upstream: str, timeout: float = 60.0) -> None:
        target = urlsplit(upstream)
        self.upstream_host = target.hostname or "127.0.0.1"
        self.upstream_port = target.port or 80
        self.timeout = timeout
        self.rewrite: dict[bytes, bytes] = {}
        self.requests: list[tuple[str, str, str]] = []
        self._mode = "forward"
        self._status = 503
        self._times: int | None = None
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # -- faults -------------------------------------------------------------------------------------

    def forward(self) -> None:
        with self._lock:
            self._mode, self._times = "forward", None

    def fail(self, status: int = 503, times: int | None = None) -> None:
        with self._lock:
            self._mode, self._status, self._times = "fail", status, times

    def hang(self) -> None:
        with self._lock:
            self._mode, self._times = "hang", None

    def _next_action(self) -> str:
        with self._lock:
            action = self._mode
            if self._times is not None:
                self._times -= 1
                if self._times <= 0:
                    self._mode, self._times = "forward", None
            return action

    # -- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> HttpProxy:
        proxy = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                proxy._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()  # hung requests end (their connections are closed unanswered)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "proxy not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- serving ------------------------------------------------------------------------------------

    def _serve(self, client: BaseHTTPRequestHandler) -> None:
        length = int(client.headers.get("Content-Length") or 0)
        body = client.rfile.read(length) if length else None
        action = self._next_action()
        with self._lock:
            self.requests.append((client.command, client.path, action))
        if action == "hang":
            self._released.wait(self.timeout)
            client.close_connection = True
            return
        if action == "fail":
            payload = b'{"message": "injected by the test proxy", "status": %d}' % self._status
            client.send_response(self._status)
            client.send_header("Content-Type", "application/json")
            client.send_header("Content-Length", str(len(payload)))
            client.send_header("Connection", "close")
            client.end_headers()
            client.wfile.write(payload)
            client.close_connection = True
            return
        headers = {k: v for k, v in client.headers.items() if k.lower() not in _HOP_BY_HOP | {"accept-encoding"}}
        upstream = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=self.timeout)
        try:
            upstream.request(client.command, client.path, body=body, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
            status, reason, answer_headers = answer.status, answer.reason, answer.getheaders()
        finally:
            upstream.close()
        for old, new in self.rewrite.items():
            payload = payload.replace(old, new)
        client.send_response(status, reason)
        for name, value in answer_headers:
            if name.lower() not in _HOP_BY_HOP:
                client.send_header(name, value)
        client.send_header("Content-Length", str(len(payload)))
        client.end_headers()
        if client.command != "HEAD":
            client.wfile.write(payload)
