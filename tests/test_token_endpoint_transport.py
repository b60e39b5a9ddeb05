"""Whether an answer comes back from the token endpoint at all, whole and in time.

Timeouts: a deadline per attempt that a trickle of bytes cannot outlast, even
with a ``token_client`` of the user's own or a caller who set none, and a bound
on the whole refresh with its retries. A size cap on answers (gzip bombs,
endless or oversize bodies). Connections refused or closed, hosts that do not
resolve, certificates not trusted: each error names its low-level cause as a
bare copy, chained to nothing that holds the token request and its client
secret. And ``token_client=``: the user's own session or client.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import httpx
import httpx2
import pytest
import requests

from eid_auth import (
    EmpowerIDAuth,
    InvalidTokenResponseError,
    TokenEndpointUnavailableError,
    TokenResponseTooLargeError,
)
from eid_auth._libraries import Library
from eid_auth._token_endpoint import TokenEndpoint
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import CLIENT_ID, CLIENT_SECRET, FLAVOURS, library, send, wait_for
from .hostile_server import HostileServer, Script, Wire, gzip_bomb, self_signed_tls

AuthFactory = Callable[..., EmpowerIDAuth]


@pytest.fixture(params=[f for f in FLAVOURS if f != "httpx2_async"])
def flavour(request: pytest.FixtureRequest) -> str:
    """Every flavour but httpx2 async: what is tested here is the token request,
    which httpx2's AsyncClient sends exactly as its Client does (through an
    httpx2.Client, from a thread), and these tests wait out deadlines."""
    return str(request.param)


HOSTILE_REFRESH_TOKEN = "hostile-refresh-token-value"
SECRETS = (CLIENT_SECRET, HOSTILE_REFRESH_TOKEN)
MIB = 1 << 20


def test_slow_token_endpoint_times_out_then_recovers(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory(timeout=0.3, max_retries=1)
    server.fail_next(FaultSpec(delay=2.0), count=1)
    token = auth.refresh()
    assert token.access_token
    assert server.token_requests == 2


def test_timeout_applies_even_when_the_caller_set_none(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory(timeout=0.3, max_retries=0)
    server.fail_next(FaultSpec(delay=3.0), count=1)
    started = time.monotonic()
    with pytest.raises(TokenEndpointUnavailableError, match=r"timed out after 0\.3s"):
        send(flavour, auth, "GET", server.api_url("/api/x"))
    assert time.monotonic() - started < 2.5


def test_connection_closed_without_answer_is_retried(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory(max_retries=1)
    server.fail_next(FaultSpec(close_connection=True), count=1)
    assert auth.refresh().access_token
    assert server.refresh_grants == 1


def test_dead_server_is_a_clear_error(flavour: str) -> None:
    port = _free_port()  # nothing listens there
    auth = EmpowerIDAuth(
        token_endpoint=f"http://127.0.0.1:{port}/oauth/v2/token",
        client_id=CLIENT_ID,
        client_secret="a-client-secret",
        refresh_token="a-refresh-token",
        max_retries=1,
        backoff_factor=0.01,
    )
    with pytest.raises(TokenEndpointUnavailableError) as caught:
        send(flavour, auth, "GET", f"http://127.0.0.1:{port}/api/x")
    assert caught.value.status_code is None
    assert caught.value.attempts == 2
    assert f"127.0.0.1:{port}" in str(caught.value)
    auth.close()


def test_unreachable_token_endpoint_message_says_how_to_configure_the_client() -> None:
    auth = EmpowerIDAuth(
        token_endpoint="http://127.0.0.1:9/oauth/v2/token",
        client_id=CLIENT_ID,
        client_secret="a-client-secret",
        refresh_token="a-refresh-token",
        max_retries=0,
    )
    with pytest.raises(TokenEndpointUnavailableError, match="token_client="):
        auth.refresh()
    auth.close()


@pytest.mark.parametrize("lib", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_token_client_httpx_with_a_mock_transport(
    server: EmpowerIDTestServer, lib: ModuleType
) -> None:
    seen: list[Any] = []

    def handler(request: Any) -> Any:
        seen.append(request)
        return lib.Response(
            200, json={"access_token": "from-the-mock", "token_type": "Bearer", "expires_in": 60}
        )

    with lib.Client(transport=lib.MockTransport(handler)) as token_client:
        auth = EmpowerIDAuth(
            token_endpoint="https://eid.example.com/oauth/v2/token",
            client_id=CLIENT_ID,
            client_secret="a-client-secret",
            refresh_token="a-refresh-token",
            token_client=token_client,
        )
        assert auth.refresh().access_token == "from-the-mock"
        assert asyncio.run(auth.arefresh()).access_token == "from-the-mock"
    assert [str(r.url) for r in seen] == ["https://eid.example.com/oauth/v2/token"] * 2
    assert b"client_secret=a-client-secret" in seen[0].read()


def test_token_client_session_own_auth_and_adapters(server: EmpowerIDTestServer) -> None:
    # A session that already carries this very auth object: the token request
    # must not be signed with it (that would recurse) nor with netrc.
    session = requests.Session()
    auth = EmpowerIDAuth(
        token_endpoint=server.token_endpoint,
        client_id=CLIENT_ID,
        client_secret="test-client-secret",
        refresh_token=server.issue_grant()["refresh_token"],
        token_client=session,
    )
    session.auth = auth
    response = session.get(server.api_url("/api/x"), timeout=10)
    assert response.status_code == 200
    (token_request,) = server.token_request_log
    assert token_request.header("Authorization") is None
    session.close()


# -- hostile servers: size caps, deadlines, causes ---------------------------


def _hostile_auth(url: str, **kwargs: Any) -> EmpowerIDAuth:
    kwargs.setdefault("backoff_factor", 0.01)
    kwargs.setdefault("max_retries", 0)
    return EmpowerIDAuth(
        token_endpoint=url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=HOSTILE_REFRESH_TOKEN,
        **kwargs,
    )


def _answer(
    status: int, headers: dict[str, str], body: Callable[[], Iterable[bytes]] = tuple
) -> Script:
    """A script: the status line and headers at once, then ``body()`` chunk by chunk."""

    def script(wire: Wire) -> None:
        head = f"HTTP/1.1 {status} Whatever\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        wire.send((head + "Connection: close\r\n\r\n").encode())
        for chunk in body():
            wire.send(chunk)

    return script


def _endless_chunked_body() -> Iterator[bytes]:
    # Bounded so that a client that never stops fails the test instead of hanging it.
    chunk = b"4000\r\n" + b"{" * 0x4000 + b"\r\n"
    for _ in range(64 * MIB // 0x4000):
        yield chunk


def _token_body(padding: int = 0) -> bytes:
    body = {"access_token": "hostile-access-token", "token_type": "Bearer", "expires_in": 60}
    return json.dumps(body).encode() + b" " * padding


def _chain(error: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        todo += [current.__cause__, current.__context__]
    return found


_REQUESTS_AND_RESPONSES = (
    requests.PreparedRequest,
    requests.Response,
    httpx.Request,
    httpx.Response,
    httpx2.Request,
    httpx2.Response,
)


def _assert_chain_holds_no_request(error: BaseException) -> None:
    """Neither the error nor anything chained to it carries a secret or a request."""
    for linked in _chain(error):
        values = [linked, *linked.args, *vars(linked).values()]
        text = " ".join(f"{v!s} {v!r}" for v in values)
        assert not any(secret in text for secret in SECRETS)
        assert not any(isinstance(v, _REQUESTS_AND_RESPONSES) for v in values)
        if linked is not error:
            # A traceback's frames would hold the token request in their locals.
            assert linked.__traceback__ is None


@pytest.mark.parametrize("decoded_mib", [1024, 200])  # ~1 MB and ~200 kB on the wire
def test_gzip_bomb_is_refused_at_the_limit(flavour: str, decoded_mib: int) -> None:
    answer = _answer(
        200,
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        lambda: gzip_bomb(decoded_mib),
    )
    with HostileServer(answer) as hostile:
        auth = _hostile_auth(hostile.url(), max_retries=2)
        with pytest.raises(TokenResponseTooLargeError, match="over 262144 bytes") as caught:
            send(flavour, auth, "GET", hostile.url("/api/x"))
        assert isinstance(caught.value, InvalidTokenResponseError)
        assert hostile.requests == 1  # not retried
        auth.close()


def test_endless_chunked_body_is_refused(flavour: str) -> None:
    answer = _answer(
        200,
        {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        _endless_chunked_body,
    )
    with HostileServer(answer) as hostile:
        auth = _hostile_auth(hostile.url())
        with pytest.raises(TokenResponseTooLargeError, match=r"256 KiB"):
            send(flavour, auth, "GET", hostile.url("/api/x"))
        # The client hung up long before the end; what it left unread sat in
        # socket buffers (a few MB on loopback at most).
        assert wait_for(hostile.hung_up.is_set)
        assert hostile.bytes_sent < 32 * MIB
        auth.close()


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
@pytest.mark.parametrize("status", [200, 400])
def test_oversize_plain_body_is_refused(status: int, declared: bool, flavour: str) -> None:
    size = 8 * MIB
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(size)
    answer = _answer(status, headers, lambda: (b" " * MIB for _ in range(size // MIB)))
    with HostileServer(answer) as hostile:
        auth = _hostile_auth(hostile.url(), max_retries=2)
        with pytest.raises(TokenResponseTooLargeError, match=f"HTTP {status}"):
            send(flavour, auth, "GET", hostile.url("/api/x"))
        assert hostile.requests == 1
        auth.close()


def test_oversize_5xx_is_retried_as_its_status_says() -> None:
    answer = _answer(503, {}, lambda: (b"x" * MIB for _ in range(8)))
    with HostileServer(answer) as hostile:
        auth = _hostile_auth(hostile.url(), max_retries=1)
        with pytest.raises(TokenEndpointUnavailableError) as caught:
            auth.refresh()
        assert caught.value.status_code == 503
        assert caught.value.attempts == 2
        assert hostile.requests == 2
        auth.close()


def _deflate(data: bytes, wbits: int) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("identity", lambda body: body),
        ("gzip", gzip.compress),
        ("deflate", lambda body: _deflate(body, zlib.MAX_WBITS)),
        ("deflate", lambda body: _deflate(body, -zlib.MAX_WBITS)),  # raw, as IIS once sent
        ("gzip", lambda body: gzip.compress(body[:100]) + gzip.compress(body[100:])),
    ],
    ids=["identity", "gzip", "deflate", "raw-deflate", "two-gzip-members"],
)
def test_an_answer_under_the_limit_is_read_whole(
    flavour: str, encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    body = encode(_token_body(padding=200 * 1024))
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    with HostileServer(_answer(200, headers, lambda: [body])) as hostile:
        auth = _hostile_auth(hostile.url())
        # The API call gets the same answer; only the refresh matters here.
        assert send(flavour, auth, "GET", hostile.url("/api/x")).status == 200
        assert auth.token is not None
        assert auth.token.access_token == "hostile-access-token"
        auth.close()


def _trickled_headers(wire: Wire) -> None:
    # 30 s of header bytes: a per-read timeout of 1 s never fires.
    wire.trickle(b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 300, interval=0.1)


def _trickled_body(wire: Wire) -> None:
    wire.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n")
    wire.trickle(b" " * 300, interval=0.1)


@pytest.mark.parametrize("script", [_trickled_headers, _trickled_body], ids=["headers", "body"])
def test_a_trickle_ends_at_the_deadline(flavour: str, script: Script) -> None:
    with HostileServer(script) as hostile:
        auth = _hostile_auth(hostile.url(), timeout=1)
        started = time.monotonic()
        with pytest.raises(TokenEndpointUnavailableError) as caught:
            send(flavour, auth, "GET", hostile.url("/api/x"))
        # Under 5 s where a per-read timeout waited the whole 30 s trickle out.
        assert time.monotonic() - started < 5
        assert "timed out after 1s (deadline" in str(caught.value)
        _assert_chain_holds_no_request(caught.value)
        auth.close()
        error = _endpoint_error(flavour, url=hostile.url(), timeout=1.0)
        assert isinstance(error.__cause__, TimeoutError)
        _assert_chain_holds_no_request(error)


@pytest.mark.parametrize("kind", ["requests", "httpx", "httpx2"])
def test_the_deadline_holds_with_a_token_client(kind: str) -> None:
    token_client: requests.Session | httpx.Client | httpx2.Client = (
        requests.Session() if kind == "requests" else library(kind).Client()
    )
    with HostileServer(_trickled_headers) as hostile, token_client:
        auth = _hostile_auth(hostile.url(), timeout=1, token_client=token_client)
        started = time.monotonic()
        with pytest.raises(TokenEndpointUnavailableError, match="timed out after 1s"):
            auth.refresh()
        assert time.monotonic() - started < 5
        auth.close()


def test_the_whole_refresh_is_bounded_with_retries() -> None:
    with HostileServer(_trickled_headers) as hostile:
        auth = _hostile_auth(hostile.url(), timeout=0.5, max_retries=2, backoff_factor=0.05)
        started = time.monotonic()
        with pytest.raises(TokenEndpointUnavailableError) as caught:
            auth.refresh()
        elapsed = time.monotonic() - started
        # 3 attempts of 0.5 s and at most 0.15 s of backoff; the bug took 90 s.
        assert elapsed < 4
        assert caught.value.attempts == 3
        assert hostile.requests == 3
        auth.close()


def _endpoint(**kwargs: Any) -> TokenEndpoint:
    """A TokenEndpoint with EmpowerIDAuth's defaults, overridden by ``kwargs``."""
    settings: dict[str, Any] = {
        "url": "https://eid.example.com/oauth/v2/token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "client_auth": "client_secret_post",
        "scope": None,
        "api_key": None,
        "timeout": 30.0,
        "max_retries": 2,
        "backoff_factor": 0.5,
        "token_client": None,
    }
    return TokenEndpoint(**{**settings, **kwargs})


def _endpoint_error(flavour: str, **kwargs: Any) -> TokenEndpointUnavailableError:
    """The error of one refresh grant sent by the token endpoint client itself."""
    endpoint = _endpoint(max_retries=0, **kwargs)
    adapter = cast(Library, library(flavour).__name__)
    try:
        with pytest.raises(TokenEndpointUnavailableError) as caught:
            endpoint.refresh(HOSTILE_REFRESH_TOKEN, adapter)
    finally:
        endpoint.close()
    return caught.value


def test_longest_refresh_is_the_stated_bound() -> None:
    def longest(**kwargs: Any) -> float:
        return _endpoint(**kwargs).longest_refresh

    # 3 attempts of 30 s, 2 waits of up to 30 s (Retry-After), 1 s of margin.
    assert longest() == 151.0
    # Backoff beyond 30 s: 4 attempts of 10 s, then waits of 30, 40 and 80 s.
    assert longest(timeout=10.0, max_retries=3, backoff_factor=20.0) == 40 + 150 + 1
    assert longest(max_retries=0) == 31.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_connection_names_its_cause(flavour: str) -> None:
    url = f"http://127.0.0.1:{_free_port()}/oauth/v2/token"
    auth = _hostile_auth(url)
    with pytest.raises(TokenEndpointUnavailableError, match="last: connection refused") as caught:
        send(flavour, auth, "GET", url)
    _assert_chain_holds_no_request(caught.value)
    auth.close()
    error = _endpoint_error(flavour, url=url)
    assert isinstance(error.__cause__, ConnectionRefusedError)
    _assert_chain_holds_no_request(error)


def test_errors_carry_no_chained_exception(flavour: str) -> None:
    auth = EmpowerIDAuth(
        token_endpoint="http://127.0.0.1:9/oauth/v2/token",  # discard port: refused
        client_id=CLIENT_ID,
        client_secret="chain-secret-value",
        refresh_token="chain-refresh-token",
        api_key="chain-api-key",
        max_retries=0,
    )
    with pytest.raises(TokenEndpointUnavailableError) as caught:
        send(flavour, auth, "GET", "http://127.0.0.1:9/api/x")
    error: BaseException | None = caught.value
    # No requests/httpx/httpx2 error in the chain: it would hold the token request,
    # with the client secret in its body. At most a bare copy of the low-level
    # cause, with no traceback (whose frames hold the request) and no chain.
    assert error is not None
    assert error.__context__ is None
    cause = error.__cause__
    assert isinstance(cause, ConnectionRefusedError)  # why it failed, for the caller
    if cause is not None:
        assert cause.__traceback__ is None
        assert cause.__cause__ is None
        assert cause.__context__ is None
    auth.close()


def test_unresolvable_host_names_its_cause(flavour: str) -> None:
    # .invalid never resolves (RFC 6761), without asking any network.
    url = "https://eid.example.invalid/oauth/v2/token"
    auth = _hostile_auth(url, timeout=10)
    with pytest.raises(
        TokenEndpointUnavailableError,
        match=r"name resolution failed for host eid\.example\.invalid",
    ) as caught:
        send(flavour, auth, "GET", url)
    _assert_chain_holds_no_request(caught.value)
    auth.close()
    error = _endpoint_error(flavour, url=url, timeout=10.0)
    assert isinstance(error.__cause__, socket.gaierror)
    _assert_chain_holds_no_request(error)


def test_untrusted_certificate_names_its_cause(flavour: str, tmp_path: Path) -> None:
    with HostileServer(_answer(200, {}), tls=self_signed_tls(tmp_path)) as hostile:
        auth = _hostile_auth(hostile.url())
        with pytest.raises(
            TokenEndpointUnavailableError, match=r"TLS certificate verify failed: self.signed"
        ) as caught:
            send(flavour, auth, "GET", hostile.url("/api/x"))
        _assert_chain_holds_no_request(caught.value)
        auth.close()
        error = _endpoint_error(flavour, url=hostile.url())
        assert isinstance(error.__cause__, ssl.SSLCertVerificationError)
        assert error.__cause__.verify_message
        _assert_chain_holds_no_request(error)
        assert hostile.requests == 0  # the handshake failed: nothing was sent
