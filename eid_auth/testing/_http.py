"""The HTTP side of the test server: a threaded HTTP/1.1 server on 127.0.0.1.

It reads each request (``Content-Length`` or chunked bodies, with a size cap), turns it into
a `RecordedRequest`, asks a ``respond`` function for the `Answer` and sends it, always framed
by ``Content-Length`` so keep-alive works. It knows nothing of OAuth: routing and endpoints
live in `eid_auth.testing.endpoints`.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl

from eid_auth.testing._messages import Answer, RecordedRequest

__all__ = ["MAX_BODY_BYTES", "LoopbackHTTPServer", "Respond"]

# Request bodies beyond this are refused: a test server has no business buffering more.
MAX_BODY_BYTES = 16 * 1024 * 1024
_MAX_LINE = 65536

Respond = Callable[[RecordedRequest], Answer | None]
"""Answers one request; None closes the connection without an answer."""


class _BadRequestBody(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer on an ephemeral port of 127.0.0.1, served from its own thread,
    that cuts its open keep-alive connections when it stops."""

    daemon_threads = True
    # Tests open a hundred connections at once; the default backlog of 5 would drop some.
    request_queue_size = 1024

    def __init__(self, respond: Respond, on_error: Callable[[BaseException], None]) -> None:
        self.respond = respond
        self.on_error = on_error
        self._thread: threading.Thread | None = None
        self._conn_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        super().__init__(("127.0.0.1", 0), _Handler)

    def start(self) -> None:
        """Serve from a background thread until `stop`."""
        # A short poll interval keeps stop() (and so every test's teardown) fast.
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="EmpowerIDTestServer",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop serving, close the listening socket and every open connection."""
        if self._thread is None:
            return
        self.shutdown()
        self._thread.join(timeout)
        self.server_close()
        self.close_connections(timeout)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), which can stall.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"EmpowerIDTestServer-conn-{client_address[1]}",
            daemon=True,
        )
        with self._conn_lock:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._connections.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients dropping connections (timeouts, pools closing) is normal here: stay quiet.
        pass

    def close_connections(self, timeout: float) -> None:
        """Shut down every open client connection and wait for its handler thread."""
        with self._conn_lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for _, thread in connections:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "EmpowerIDTestServer"
    # Headers and body go out as two writes; without this, Nagle + delayed ACK add ~40 ms
    # to every keep-alive request.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: the default logs to stderr, and request lines could carry tokens.
        pass

    def _dispatch(self) -> None:
        server = cast(LoopbackHTTPServer, self.server)
        arrived = time.time()
        try:
            body = self._read_body()
        except _BadRequestBody as exc:
            self.close_connection = True  # the framing is broken; the stream can't be reused
            self._send(
                Answer.json(
                    exc.status, {"error": "invalid_request", "error_description": exc.description}
                )
            )
            return
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        form: dict[str, str] = {}
        if content_type == "application/x-www-form-urlencoded":
            try:
                form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                form = {}
        record = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=headers,
            body=body,
            form=form,
            time=arrived,
        )
        try:
            answer = server.respond(record)
        except Exception as exc:
            # A bug in the test server must not look like a network fault to the client.
            server.on_error(exc)
            answer = Answer.json(500, {"error": "server_error"})
        if answer is None:
            self.close_connection = True
            return
        self._send(answer)

    do_GET = _dispatch
    do_HEAD = _dispatch
    do_POST = _dispatch
    do_PUT = _dispatch
    do_PATCH = _dispatch
    do_DELETE = _dispatch
    do_OPTIONS = _dispatch

    def _read_body(self) -> bytes:
        transfer_encoding = (self.headers.get("Transfer-Encoding") or "").lower()
        if transfer_encoding:
            # Transfer-Encoding wins over Content-Length (RFC 9112, section 6.3).
            if transfer_encoding.split(",")[-1].strip() != "chunked":
                raise _BadRequestBody(501, "only chunked transfer coding is supported")
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise _BadRequestBody(400, "invalid Content-Length") from None
        if length < 0:
            raise _BadRequestBody(400, "invalid Content-Length")
        if length > MAX_BODY_BYTES:
            raise _BadRequestBody(413, "request body too large")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BadRequestBody(400, "request body shorter than Content-Length")
        return body

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(_MAX_LINE)
            if not line.endswith(b"\n"):
                raise _BadRequestBody(400, "truncated chunk size line")
            size_text = line.split(b";", 1)[0].strip()  # drop chunk extensions
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _BadRequestBody(400, "invalid chunk size") from None
            if size < 0:
                raise _BadRequestBody(400, "invalid chunk size")
            if size == 0:
                break
            total += size
            if total > MAX_BODY_BYTES:
                raise _BadRequestBody(413, "request body too large")
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n"):
                raise _BadRequestBody(400, "malformed chunk")
            parts.append(chunk)
        # Skip trailer fields up to the empty line that ends the message.
        while True:
            trailer = self.rfile.readline(_MAX_LINE)
            if trailer in (b"\r\n", b"\n"):
                break
            if not trailer.endswith(b"\n"):
                raise _BadRequestBody(400, "truncated chunked trailer")
        return b"".join(parts)

    def _send(self, answer: Answer) -> None:
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            # Always framed by Content-Length so HTTP/1.1 keep-alive works.
            self.send_header("Content-Length", str(len(answer.body)))
            for name, value in answer.headers:
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)
        except OSError:
            # The client went away (e.g. it timed out); nothing left to tell it.
            self.close_connection = True
