"""Sending one token request: a size cap on the answer, a deadline on the attempt.

requests and httpx read an answer whole and decode its ``Content-Encoding``
without limit, and their ``timeout`` bounds each socket read, not the request.
Here the answer is read as a stream of raw bytes and decoded here, with a cap
on the bytes read and on the bytes decoded; and the attempt runs on a thread of
its own that the caller stops waiting for at the deadline, because neither
library can be interrupted while it reads the status line and headers.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ._http_clients import HTTPClient, Opened, library_errors, open_response

__all__ = ["MAX_RESPONSE_BYTES", "Answer", "Failure", "HTTPClient", "send_token_request"]

logger = logging.getLogger("eid_auth")

# The most a token endpoint answer may take, on the wire and once decoded. An
# answer with an ID token of many claims is a few kB.
MAX_RESPONSE_BYTES = 256 * 1024

# Only what zlib decodes with a cap on its output (brotli and zstd have none).
_ACCEPT_ENCODING = "gzip, deflate"


@dataclass(frozen=True)
class Answer:
    """A complete answer; over the limit, its status and headers only (``too_large``)."""

    status: int
    retry_after: str | None
    content: bytes = field(repr=False)
    too_large: bool = False


@dataclass(frozen=True)
class Failure:
    """One failed attempt that a retry may fix.

    ``cause`` is a copy of the low-level error (``ConnectionRefusedError``,
    ``ssl.SSLCertVerificationError``...), cut from its chain and traceback: the
    requests/httpx errors around it hold the token request, client secret included.
    """

    reason: str
    status_code: int | None = None
    retry_after: float | None = None
    cause: BaseException | None = field(default=None, repr=False, compare=False)


def send_token_request(
    client: HTTPClient,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float,
    method: str = "POST",
) -> Answer | Failure:
    """POST ``body`` to ``url`` (or send another ``method``: the discovery document
    and userinfo are GETs) and read the answer, all within ``timeout`` seconds.

    At the deadline the attempt is abandoned: its thread may still hold a
    connection until the server stops sending, and a token the server issues
    then is lost, as with any timeout.
    """
    attempt = _Attempt(
        client, method, url, {**headers, "Accept-Encoding": _ACCEPT_ENCODING}, body, timeout
    )
    try:
        threading.Thread(target=attempt.run, name="eid_auth-token-request", daemon=True).start()
    except RuntimeError:  # no new threads at interpreter shutdown: the checks between reads only
        attempt.run()
    return attempt.outcome()


class _TooLarge(Exception):
    pass


class _DeadlinePassed(Exception):
    pass


class _Attempt:
    """One token request on a thread of its own, and the caller's wait for it."""

    def __init__(
        self,
        client: HTTPClient,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        timeout: float,
    ) -> None:
        self._client = client
        self._method = method
        self._url = url
        self._headers = headers
        self._body = body
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._result: Answer | Failure | None = None
        self._error: BaseException | None = None
        self._response: Opened | None = None
        self._abandoned = False

    def outcome(self) -> Answer | Failure:
        self._done.wait(max(0.0, self._deadline - time.monotonic()))
        with self._lock:
            # Decided under the lock: an answer that lands now is used, not dropped.
            self._abandoned = not self._done.is_set()
            response = self._response
        if self._abandoned:
            if response is not None:
                response.shut_down()
            return self._timeout_failure()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def run(self) -> None:
        result: Answer | Failure | None = None
        error: BaseException | None = None
        try:
            result = self._send()
        except _DeadlinePassed:
            result = self._timeout_failure()
        except _transport_errors() as exc:
            result = Failure(_describe(exc, self._url, self._timeout), cause=_cause_of(exc))
        except zlib.error:
            result = Failure("the answer's body could not be decompressed")
        except BaseException as exc:  # a bug, a misuse, an interrupt: the caller raises it
            error = exc
        with self._lock:
            self._result, self._error = result, error
            abandoned = self._abandoned
            self._done.set()
        if abandoned and isinstance(result, Answer):
            logger.warning(
                "token endpoint %s answered HTTP %d after the %gs deadline; the answer "
                "was dropped (a refresh token it rotated is lost)",
                self._url,
                result.status,
                self._timeout,
            )

    def _timeout_failure(self) -> Failure:
        return Failure(
            f"timed out after {self._timeout:g}s (deadline for the whole token request)",
            cause=TimeoutError(f"no complete answer within {self._timeout:g}s"),
        )

    def _hold(self, response: Opened) -> None:
        # Lets the caller shut the connection down at the deadline.
        with self._lock:
            self._response = response
            if self._abandoned:
                raise _DeadlinePassed

    def _send(self) -> Answer:
        response = open_response(
            self._client, self._method, self._url, self._headers, self._body, self._timeout
        )
        try:
            self._hold(response)
            return self._answer(response.status, response.headers, response.chunks)
        finally:
            response.close()

    def _answer(
        self,
        status: int,
        headers: Mapping[str, str],
        chunks: Iterable[bytes],
    ) -> Answer:
        retry_after = headers.get("Retry-After")
        try:
            content = _read_capped(
                chunks,
                headers.get("Content-Encoding"),
                headers.get("Content-Length"),
                self._deadline,
            )
        except _TooLarge:
            return Answer(status, retry_after, b"", too_large=True)
        return Answer(status, retry_after, content)


def _read_capped(
    chunks: Iterable[bytes],
    content_encoding: str | None,
    content_length: str | None,
    deadline: float,
) -> bytes:
    """The decoded body; ``_TooLarge`` once the wire or decoded bytes pass the cap."""
    declared = (content_length or "").strip()
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise _TooLarge
    decoder = _Decoder(content_encoding)
    received = 0
    decoded: list[bytes] = []
    decoded_bytes = 0
    for chunk in chunks:
        received += len(chunk)
        if received > MAX_RESPONSE_BYTES:
            raise _TooLarge
        for piece in decoder.decode(chunk, MAX_RESPONSE_BYTES - decoded_bytes):
            decoded_bytes += len(piece)
            if decoded_bytes > MAX_RESPONSE_BYTES:
                raise _TooLarge
            decoded.append(piece)
        if time.monotonic() > deadline:
            raise _DeadlinePassed
    return b"".join(decoded)


class _Decoder:
    """``Content-Encoding`` gzip or deflate, decoded with a bound on the output."""

    def __init__(self, content_encoding: str | None) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        self._wbits: int | None
        if not codings:
            self._wbits = None
        elif codings in (["gzip"], ["x-gzip"]):
            self._wbits = 16 + zlib.MAX_WBITS
        elif codings == ["deflate"]:
            self._wbits = zlib.MAX_WBITS  # zlib-wrapped, as RFC 9110 says; raw as a fallback
        else:
            raise zlib.error(f"unsupported Content-Encoding {content_encoding!r}")
        self._raw_fallback = codings == ["deflate"]
        self._started = False
        self._z = zlib.decompressobj(self._wbits) if self._wbits is not None else None

    def decode(self, data: bytes, room: int) -> Iterator[bytes]:
        """Decoded pieces of ``data``, stopping once more than ``room`` bytes came out."""
        if self._z is None:
            yield data
            return
        produced = 0
        while data and produced <= room:
            try:
                # max_length bounds each piece; what is left waits in unconsumed_tail.
                piece = self._z.decompress(data, room + 1 - produced)
            except zlib.error:
                if self._started or not self._raw_fallback:
                    raise
                self._raw_fallback = False
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._started = True
            produced += len(piece)
            yield piece
            data = self._z.unconsumed_tail
            if not data and self._z.eof and self._z.unused_data:
                # Another gzip member follows.
                data = self._z.unused_data
                assert self._wbits is not None
                self._z = zlib.decompressobj(self._wbits)


def _transport_errors() -> tuple[type[BaseException], ...]:
    # The failure path only: these modules are not loaded by import eid_auth.
    import http.client

    return (
        *library_errors(
            "requests.RequestException",
            "urllib3.exceptions.HTTPError",  # raw reads are not wrapped by requests
            "httpx.HTTPError",
            "httpx2.HTTPError",
        ),
        http.client.HTTPException,
        OSError,
    )


_LOW_LEVEL_MODULES = frozenset({"builtins", "socket", "ssl", "http.client"})


def _low_level(exc: BaseException) -> BaseException | None:
    """The first standard-library error found under a requests/httpx/urllib3 one."""
    queue: list[BaseException] = [exc]
    seen: set[int] = set()
    while queue and len(seen) < 32:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if current is not exc and type(current).__module__ in _LOW_LEVEL_MODULES:
            return current
        # urllib3 keeps the error under ``reason``; requests under ``args``.
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(current.args)
        queue.extend(e for e in linked if isinstance(e, BaseException))
    return exc if type(exc).__module__ in _LOW_LEVEL_MODULES else None


def _cause_of(exc: BaseException) -> BaseException | None:
    low = _low_level(exc)
    if low is None:
        return None
    # A copy keeps the type, args and attributes (verify_message...), but not the
    # traceback or chain, whose frames hold the token request.
    clone = copy.copy(low)
    clone.__traceback__ = clone.__cause__ = clone.__context__ = None
    return clone


def _describe(exc: BaseException, url: str, timeout: float) -> str:
    """A short reason that names the cause and holds no secret."""
    import http.client
    import socket
    import ssl

    low = _low_level(exc)
    if isinstance(low, socket.gaierror) or isinstance(
        exc, library_errors("urllib3.exceptions.NameResolutionError")
    ):
        return f"name resolution failed for host {urlsplit(url).hostname}"
    if isinstance(low, ssl.SSLCertVerificationError):
        return f"TLS certificate verify failed: {low.verify_message or low.reason}"
    if isinstance(low, ssl.SSLError):
        return f"TLS failed: {low.reason or low.strerror or type(low).__name__}"
    if isinstance(low, ConnectionRefusedError):
        return "connection refused"
    if isinstance(low, http.client.RemoteDisconnected):
        return "connection closed without an answer"
    if isinstance(low, ConnectionResetError):
        return "connection reset"
    timeouts = library_errors(
        "requests.Timeout",
        "httpx.TimeoutException",
        "httpx2.TimeoutException",
        "urllib3.exceptions.TimeoutError",
    )
    if isinstance(low or exc, (TimeoutError, *timeouts)) or isinstance(exc, timeouts):
        return f"timed out after {timeout:g}s"
    if isinstance(low, OSError) and low.strerror:
        return low.strerror[:1].lower() + low.strerror[1:]
    if isinstance(
        exc,
        library_errors(
            "httpx.RemoteProtocolError",
            "httpx2.RemoteProtocolError",
            "requests.exceptions.ChunkedEncodingError",
            "urllib3.exceptions.ProtocolError",
        ),
    ):
        return "connection closed or broken before a complete answer"
    return f"{type(exc).__name__} (no usable answer)"
