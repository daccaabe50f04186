"""A fault-injecting HTTP proxy in front of a real registry, for the reliability tests.

``FaultyProxy(upstream)`` listens on 127.0.0.1 (a thread per connection) and forwards every request to ``upstream``
(``host:port`` of a real ``docker-registry``), keeping the ``Host`` header so the registry's upload ``Location`` URLs
point back at the proxy. With ``rate`` > 0 it replaces a seeded share of the exchanges with a fault:

    503        answered by the proxy, the request never reaches the registry
    429        the same, with ``Retry-After: 0``
    reset      the request IS forwarded (the registry did the work), then the answer is cut: the connection is reset
               after the status line and half the body (before anything, for HEAD and empty answers): a lost ack
    truncated  GET of a blob or manifest only: forwarded, then answered with half the body and a Content-Length
               that matches it, so only a digest check can tell

``status`` forces one answer for every request (``401`` with a Basic challenge, ``500`` forever...). Counts of what
was done are in ``counts`` (fault kind or "ok") and ``requests``.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import struct
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

FAULTS = ("503", "429", "reset", "truncated")
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "content-length",
}  # fmt: skip


class FaultyProxy:
    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.0,
        seed: int = 0,
        faults: tuple[str, ...] = FAULTS,
        status: int | None = None,
    ) -> None:
        self.upstream = upstream
        self.rate = rate
        self.faults = faults
        self.status = status
        self.counts: Counter[str] = Counter()
        self.requests: list[tuple[str, str, str]] = []  # (method, path, what happened)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self._server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def faults_injected(self) -> int:
        return sum(count for kind, count in self.counts.items() if kind in FAULTS)

    def _decide(self, method: str, path: str) -> str:
        """One seeded roll per exchange; a GET of a blob or manifest is truncated half the time it is hit."""
        checkable = method == "GET" and ("/blobs/" in path or "/manifests/" in path)
        kinds = [kind for kind in self.faults if kind != "truncated" or checkable]
        if checkable and "truncated" in kinds:
            kinds += ["truncated"] * (len(kinds) - 2)  # truncated: 1/2 of the faults of such a GET
        with self._lock:
            roll, pick = self._random.random(), self._random.choice(kinds)
            kind = pick if roll < self.rate else "ok"
            self.counts[kind] += 1
            self.requests.append((method, path, kind))
            return kind


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self) -> None:
        proxy: FaultyProxy = self.server.proxy  # type: ignore[attr-defined]
        self.close_connection = True
        body = self._read_body()
        if proxy.status is not None:
            with proxy._lock:
                proxy.counts[str(proxy.status)] += 1
                proxy.requests.append((self.command, self.path, str(proxy.status)))
            challenge = {"WWW-Authenticate": 'Basic realm="faulty-proxy"'} if proxy.status == 401 else {}
            return self._answer(proxy.status, challenge, _error_body(proxy.status))
        kind = proxy._decide(self.command, self.path)
        if kind == "503":
            return self._answer(503, {}, _error_body(503))
        if kind == "429":
            return self._answer(429, {"Retry-After": "0"}, _error_body(429))
        status, headers, data = self._forward(proxy.upstream, body)
        if kind == "reset":
            return self._reset(status, headers, data)
        if kind == "truncated":
            data = data[: len(data) // 2]
        self._answer(status, headers, data, content_length=None if self.command != "HEAD" else _length(headers))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, upstream: str, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {key: value for key, value in self.headers.items() if key.lower() not in _HOP_BY_HOP}
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        connection = http.client.HTTPConnection(upstream, timeout=60)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, response.getheaders(), data
        finally:
            connection.close()

    def _answer(
        self,
        status: int,
        headers: list[tuple[str, str]] | dict[str, str],
        data: bytes,
        content_length: str | None = None,
    ) -> None:
        self.send_response(status)
        items = headers.items() if isinstance(headers, dict) else headers
        for key, value in items:
            if key.lower() not in _HOP_BY_HOP and key.lower() not in ("server", "date"):
                self.send_header(key, value)
        self.send_header("Content-Length", content_length if content_length is not None else str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _reset(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        if self.command != "HEAD" and data:
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in _HOP_BY_HOP and key.lower() not in ("server", "date"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
        # SO_LINGER 0: close() sends RST instead of FIN, as a crashed middlebox would.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


def _length(headers: list[tuple[str, str]]) -> str | None:
    return next((value for key, value in headers if key.lower() == "content-length"), None)


def _error_body(status: int) -> bytes:
    code = {401: "UNAUTHORIZED", 429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}.get(status, "UNKNOWN")
    return json.dumps({"errors": [{"code": code, "message": f"injected by the faulty proxy ({status})"}]}).encode()
