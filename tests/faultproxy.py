"""A loopback HTTP proxy that loses replies on purpose, for fault tests against a real server.

``FaultProxy(upstream)`` listens on 127.0.0.1, forwards every request to ``upstream`` (a real
``mlflow server``), and hands the reply back, except for requests matching a rule set with
:meth:`FaultProxy.drop_response`: those are forwarded and fully processed by the server (it
commits), and then the client's connection is closed without a reply. That is what a crash
or a network cut right after a commit looks like to the client; MLflow's client then retries
the request, and a non-idempotent write happens twice.

A request body that has had its reply dropped once is never dropped again, so a rule models
"the first reply of each such write is lost" and the client recovers on its first retry.
:meth:`FaultProxy.refuse_request` instead cuts the connection before forwarding (the server
never sees the request), for a write that fails outright when the client does not retry.

Standard library only (``http.server`` + ``http.client``); one thread per client connection.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}


@dataclass
class DropRule:
    """Drop the reply of the next ``times`` requests with this method and path (or, with
    ``forward=False``, the request itself)."""

    method: str
    path: str
    times: int = 1
    body_contains: str | None = None
    forward: bool = True
    dropped: int = 0

    def matches(self, method: str, path: str, body: bytes, forward: bool) -> bool:
        return (
            self.dropped < self.times
            and self.forward == forward
            and method == self.method
            and path == self.path
            and (self.body_contains is None or self.body_contains.encode() in body)
        )


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    status: int
    dropped: bool
    body: bytes = field(repr=False, default=b"")


class FaultProxy:
    """Forward to ``upstream``; drop chosen replies after the server has processed them."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.rules: list[DropRule] = []
        self.exchanges: list[Exchange] = []
        self._dropped_bodies: set[tuple[str, str, bytes]] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def drop_response(
        self, method: str, path: str, times: int = 1, body_contains: str | None = None
    ) -> DropRule:
        """Lose the reply of the next ``times`` distinct ``method path`` requests."""
        rule = DropRule(method.upper(), path, times, body_contains)
        with self._lock:
            self.rules.append(rule)
        return rule

    def refuse_request(
        self, method: str, path: str, times: int = 1, body_contains: str | None = None
    ) -> DropRule:
        """Cut the connection of the next ``times`` such requests before the server sees them."""
        rule = DropRule(method.upper(), path, times, body_contains, forward=False)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.exchanges.clear()
            self._dropped_bodies.clear()

    def dropped(self) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if e.dropped]

    def requests(self, method: str, path: str) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if (e.method, e.path) == (method.upper(), path)]

    def _should_drop(self, method: str, path: str, body: bytes, forward: bool = True) -> bool:
        with self._lock:
            key = (method, path, body)
            if key in self._dropped_bodies:
                return False  # the client's retry of a dropped request goes through
            for rule in self.rules:
                if rule.matches(method, path, body, forward):
                    rule.dropped += 1
                    self._dropped_bodies.add(key)
                    return True
            return False

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass  # the test reads proxy.exchanges instead

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _forward(self) -> None:
                method = self.command
                path = self.path.split("?", 1)[0]
                body = self._read_body()
                if proxy._should_drop(method, path, body, forward=False):
                    proxy._record(Exchange(method, path, 0, True, body))
                    self.close_connection = True
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["Host"] = f"{proxy.upstream_host}:{proxy.upstream_port}"
                if body or method in ("POST", "PUT", "PATCH"):
                    headers["Content-Length"] = str(len(body))
                upstream = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=300
                )
                try:
                    upstream.request(method, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    status, reason = response.status, response.reason
                    reply_headers = response.getheaders()
                finally:
                    upstream.close()
                if proxy._should_drop(method, path, body):
                    # The server has committed; the client never hears about it.
                    proxy._record(Exchange(method, path, status, True, body))
                    self.close_connection = True
                    return
                proxy._record(Exchange(method, path, status, False, body))
                self.send_response_only(status, reason)
                for key, value in reply_headers:
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

        return Handler

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
