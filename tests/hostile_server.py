"""A loopback server that answers every HTTP request with a scripted hostile answer.

A script writes raw bytes (a gzip bomb, an endless chunked body, a status line
trickled one byte at a time); the server counts the bytes it got out before the
client hung up. Everything is bounded: sends stop when the client hangs up, when
the server stops, or at the script's own limit.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

Script = Callable[["Wire"], None]


class HungUp(Exception):
    """The client closed the connection (or the server is stopping)."""


class Wire:
    """One connection, as a script sees it."""

    def __init__(self, conn: socket.socket, server: HostileServer) -> None:
        self._conn = conn
        self._server = server

    def send(self, data: bytes) -> None:
        if self._server.stopping.is_set():
            raise HungUp
        try:
            self._conn.sendall(data)
        except OSError as exc:
            self._server.hung_up.set()
            raise HungUp from exc
        self._server.count(len(data))

    def trickle(self, data: bytes, interval: float) -> None:
        """Send ``data`` one byte every ``interval`` seconds."""
        for i in range(len(data)):
            self.send(data[i : i + 1])
            if self._server.stopping.wait(interval):
                raise HungUp


class HostileServer:
    """Serves ``script`` on 127.0.0.1, over TLS when given a server context.

    Example:
        >>> with HostileServer(lambda wire: wire.send(b"HTTP/1.1 204 \\r\\n\\r\\n")) as s:
        ...     s.url()
    """

    def __init__(self, script: Script, *, tls: ssl.SSLContext | None = None) -> None:
        self._script = script
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.stopping = threading.Event()
        self.hung_up = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.requests = 0
        self.bytes_sent = 0

    def url(self, path: str = "/oauth/v2/token") -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def count(self, sent: int) -> None:
        with self._lock:
            self.bytes_sent += sent

    def __enter__(self) -> HostileServer:
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopping.set()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            # Ends the client's wait too, so no thread outlives the test for long.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for thread in list(self._threads):
            thread.join(10)
        self._listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._connections.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            _read_request(conn)
            with self._lock:
                self.requests += 1
            self._script(Wire(conn, self))
        except (HungUp, OSError):
            pass
        finally:
            conn.close()


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise HungUp
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise HungUp
        body += chunk


# One MiB of zeros, deflated once and byte-aligned by a full flush: the block
# repeats to make a gzip stream of any size without compressing it all.
_MIB = 1 << 20
_deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
_ZEROS_BLOCK = _deflate.compress(bytes(_MIB)) + _deflate.flush(zlib.Z_FULL_FLUSH)
_END_BLOCK = _deflate.flush()
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"


def gzip_bomb(decoded_mib: int) -> Iterator[bytes]:
    """A gzip stream of ``decoded_mib`` MiB of zeros, about 1 kB per MiB."""
    yield _GZIP_HEADER
    crc = 0
    zeros = bytes(_MIB)
    for _ in range(decoded_mib):
        crc = zlib.crc32(zeros, crc)
        yield _ZEROS_BLOCK
    yield _END_BLOCK + struct.pack("<II", crc, (decoded_mib * _MIB) & 0xFFFFFFFF)


def gzip_bomb_size(decoded_mib: int) -> int:
    return len(_GZIP_HEADER) + decoded_mib * len(_ZEROS_BLOCK) + len(_END_BLOCK) + 8


def self_signed_tls(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context
