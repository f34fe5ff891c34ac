"""A fault-injecting HTTP proxy on loopback, in front of the moto S3 server or Azurite.

The faults are the ones a cloud store really produces, where a client cannot tell what happened:

    error_after_commit   the request is forwarded and the store commits it, then the client gets a 500
    drop_after_commit    the request is forwarded and committed, then the connection is closed unanswered
    busy_before          the client gets a 503 (S3 ServiceUnavailable, Azure ServerBusy); nothing is forwarded
    latency              every forwarded request waits this long first (widens the races between writers)

Each is a probability per eligible request (after-commit faults hit writes, PUT; 503s any request), drawn
from a seeded generator. The proxy counts what it injected. Everything else is relayed byte for byte, so
the SDKs talk to the real emulator behind it (Azurite's shared-key signatures do not cover the port).
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers", "transfer-encoding", "upgrade", "expect"}
_ERRORS = {
    "s3": {
        500: ("InternalError", "We encountered an internal error. Please try again."),
        503: ("ServiceUnavailable", "Please reduce your request rate."),
    },
    "azure": {
        500: ("InternalError", "The server encountered an internal error. Please retry the request."),
        503: ("ServerBusy", "The server is currently unable to receive requests. Please retry your request."),
    },
}


@dataclass
class Faults:
    """What the proxy injects, as probabilities per eligible request (see the module docstring)."""

    error_after_commit: float = 0.0
    drop_after_commit: float = 0.0
    busy_before: float = 0.0
    latency: float = 0.0
    seed: int = 0
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Inject nothing from now on (the counts stay)."""
        with self._lock:
            self.error_after_commit = self.drop_after_commit = self.busy_before = self.latency = 0.0

    def draw(self, method: str) -> str | None:
        """The fault for one request (None: relay it), counted."""
        with self._lock:
            roll = self._random.random()
            fault = None
            if roll < self.busy_before:
                fault = "busy_before"
            elif method == "PUT":
                roll = self._random.random()
                if roll < self.error_after_commit:
                    fault = "error_after_commit"
                elif roll < self.error_after_commit + self.drop_after_commit:
                    fault = "drop_after_commit"
            if fault is not None:
                self.injected[fault] += 1
            return fault


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body leave in separate writes: with Nagle on, the client's delayed ACK stalls each answer
    disable_nagle_algorithm = True
    server: _Server
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass  # the test output stays readable

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _error(self, status: int) -> None:
        code, message = _ERRORS[self.server.flavor][status]
        body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        if self.server.flavor == "azure":
            self.send_header("x-ms-error-code", code)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _relay(self) -> None:
        body = self._body()
        faults = self.server.faults
        fault = faults.draw(self.command)
        if faults.latency:
            time.sleep(faults.latency)
        if fault == "busy_before":
            self._error(503)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        response, data = self._forward(body, headers)
        committed = 200 <= response.status < 300
        if fault == "error_after_commit" and committed:
            self._error(500)
            return
        if fault == "drop_after_commit" and committed:
            # the store has it; the client never hears so
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length if length is not None else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _forward(self, body: bytes, headers: dict[str, str]) -> tuple[http.client.HTTPResponse, bytes]:
        """Send the request upstream on this client connection's own kept-alive connection."""
        for attempt in (1, 2):
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(self.server.upstream_host, self.server.upstream_port, timeout=60)
            try:
                self._upstream.request(self.command, self.path, body=body, headers=headers)
                response = self._upstream.getresponse()
                return response, response.read()
            except (http.client.HTTPException, OSError):
                self._upstream.close()
                self._upstream = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def finish(self) -> None:
        super().finish()
        if self._upstream is not None:
            self._upstream.close()

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _relay


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    faults: Faults
    flavor: str
    upstream_host: str
    upstream_port: int

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients closing their kept-alive connections are no error (nothing to print)."""


@contextlib.contextmanager
def fault_proxy(upstream: str, flavor: str, faults: Faults) -> Iterator[str]:
    """A proxy on a free loopback port relaying to `upstream` (http://host:port) with `faults`; yields its URL.

    `flavor` ("s3" or "azure") shapes the injected errors as that service's."""
    parts = urlsplit(upstream)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.faults, server.flavor = faults, flavor
    server.upstream_host, server.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
    thread = threading.Thread(target=server.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
