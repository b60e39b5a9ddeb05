"""``X-EmpowerID-API-Key`` stays on the origin of the request it was added to.

Origin A is the package's loopback EmpowerID server; origin B is a small server
of these tests on another port that records what it received and redirects
wherever it is asked to. Each test checks what each origin received, for every
path a request can take: the first send, the re-send after a 401, the redirects
of either, hops sent by hand, and a hop back from B to A. httpx and httpx2
clients get no setup of any kind: the flow's ``trace`` extension (httpcore's,
httpcore2's for httpx2) guards the hops the client follows by itself, through a
forwarding proxy too, and a transport that is not httpcore's is refused once a
hop went out unguarded.
"""

from __future__ import annotations

import asyncio
import http.client
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
import requests

from eid_auth import ConfigurationError, EmpowerIDAuth
from eid_auth.testing import EmpowerIDTestServer

from .conftest import HTTPX_FLAVOURS, is_async, library, send

AuthFactory = Callable[..., EmpowerIDAuth]

API_KEY = "origin-a-api-key"
KEY_HEADER = "X-EmpowerID-API-Key"


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.received: list[tuple[str, dict[str, str]]] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _RecordingHandler(BaseHTTPRequestHandler):
    """Records each request; ``/redirect?to=<url>`` answers 302, so does
    ``/flip?to=<url>`` (to ``/landing`` after its first time); anything else 200."""

    server: _Recorder

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        parts = urlsplit(self.path)
        flips = sum(path.startswith("/flip") for path, _ in self.server.received)
        if parts.path == "/redirect" or (parts.path == "/flip" and flips == 1):
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["to"][0])
        elif parts.path == "/flip":
            self.send_response(302)
            self.send_header("Location", "/landing")
        else:
            self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def origin_b() -> Iterator[_Recorder]:
    recorder = _Recorder()
    thread = threading.Thread(target=recorder.serve_forever, daemon=True)
    thread.start()
    yield recorder
    recorder.shutdown()
    recorder.server_close()
    thread.join(10)


def _redirect(server: EmpowerIDTestServer, to: str) -> str:
    """An address on A that redirects (302) to ``to``."""
    return server.api_url("/api/redirect?to=" + quote(to, safe=""))


def _get(flavour: str, auth: EmpowerIDAuth, url: str, *, follow: bool = True) -> int:
    """GET ``url`` with ``auth`` through ``flavour``, with no other setup."""
    return send(flavour, auth, "GET", url, follow_redirects=follow).status


def _credentials(headers: dict[str, str]) -> tuple[str | None, str | None]:
    lower = {k.lower(): v for k, v in headers.items()}
    return lower.get("authorization"), lower.get(KEY_HEADER.lower())


def _assert_b_got_nothing_of_ours(origin_b: _Recorder, hops: int = 1) -> None:
    assert len(origin_b.received) == hops
    for _path, headers in origin_b.received:
        assert _credentials(headers) == (None, None)


def _expire_tokens_after(server: EmpowerIDTestServer, hops: int) -> None:
    """The first ``hops`` requests to A's API pass; the token has expired by the next one."""
    calls: list[int] = []

    def hook() -> None:
        calls.append(1)
        if len(calls) == hops + 1:
            server.expire_access_tokens()

    server.on_api_request = hook


def test_a_redirect_to_another_origin_carries_neither_token_nor_api_key(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, origin_b: _Recorder, flavour: str
) -> None:
    auth = auth_factory(api_key=API_KEY)
    assert _get(flavour, auth, _redirect(server, origin_b.url("/landing"))) == 200
    (first,) = server.api_requests
    assert first.header(KEY_HEADER) == API_KEY
    _assert_b_got_nothing_of_ours(origin_b)


def test_a_same_origin_redirect_keeps_token_and_api_key(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory(api_key=API_KEY)
    assert _get(flavour, auth, _redirect(server, "/api/landing")) == 200
    assert [r.path for r in server.api_requests][-1] == "/api/landing"
    for received in server.api_requests:
        assert received.header(KEY_HEADER) == API_KEY
        assert received.header("Authorization") is not None


def test_the_api_key_stays_on_the_origin_through_a_chain_of_hops(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, origin_b: _Recorder, flavour: str
) -> None:
    auth = auth_factory(api_key=API_KEY)
    # A -> A -> B -> B
    url = _redirect(server, "/api/redirect?to=" + quote(origin_b.url("/redirect?to=/landing")))
    assert _get(flavour, auth, url) == 200
    assert [r.header(KEY_HEADER) for r in server.api_requests] == [API_KEY, API_KEY]
    _assert_b_got_nothing_of_ours(origin_b, hops=2)


def test_a_hop_back_from_another_origin_carries_neither_token_nor_api_key(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, origin_b: _Recorder, flavour: str
) -> None:
    auth = auth_factory(api_key=API_KEY)
    # A -> B -> A: B chose where the hop back leads, so it goes as B's hop did.
    back = server.api_url("/api/landing")
    status = _get(flavour, auth, _redirect(server, origin_b.url("/redirect?to=" + quote(back))))
    assert status == 401  # A does not serve a request without a token
    _assert_b_got_nothing_of_ours(origin_b)
    first, last = server.api_requests
    assert first.header(KEY_HEADER) == API_KEY
    assert (last.path, last.header("Authorization"), last.header(KEY_HEADER)) == (
        "/api/landing",
        None,
        None,
    )
    assert server.refresh_grants == 1  # that 401 is not about our token


def test_a_resend_after_a_401_redirected_to_another_origin_carries_neither(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, origin_b: _Recorder, flavour: str
) -> None:
    auth = auth_factory(api_key=API_KEY)
    auth.refresh()
    server.expire_access_tokens()
    assert _get(flavour, auth, _redirect(server, origin_b.url("/landing"))) == 200
    assert server.refresh_grants == 2
    # The 401, then the re-send with the new token and the key; then B.
    assert [r.header(KEY_HEADER) for r in server.api_requests] == [API_KEY, API_KEY]
    _assert_b_got_nothing_of_ours(origin_b)


def test_a_resend_of_a_later_hop_redirected_to_another_origin_carries_neither(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, origin_b: _Recorder, flavour: str
) -> None:
    auth = auth_factory(api_key=API_KEY)
    auth.refresh()
    _expire_tokens_after(server, hops=1)
    # A -> A (401, refresh, re-send) -> B
    url = _redirect(server, "/api/redirect?to=" + quote(origin_b.url("/landing")))
    assert _get(flavour, auth, url) == 200
    assert server.refresh_grants == 2
    assert len(server.api_requests) == 3
    assert all(r.header(KEY_HEADER) == API_KEY for r in server.api_requests)
    _assert_b_got_nothing_of_ours(origin_b)


def test_a_hop_to_another_origin_sent_by_hand_carries_neither(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, origin_b: _Recorder, flavour: str
) -> None:
    auth = auth_factory(api_key=API_KEY)
    url = _redirect(server, origin_b.url("/landing"))
    if flavour == "requests":
        with requests.Session() as session:
            session.auth = auth
            first = session.get(url, timeout=10, allow_redirects=False)
            assert first.next is not None
            assert session.send(first.next, timeout=10).status_code == 200
    elif flavour == "aiohttp":
        aiohttp = library("aiohttp")

        async def by_hand() -> None:
            middlewares = [auth.aiohttp_middleware()]
            async with aiohttp.ClientSession(middlewares=middlewares) as session:
                async with session.get(url, allow_redirects=False) as first:
                    location = first.headers["Location"]
                async with session.get(location) as hop:
                    assert hop.status == 200

        asyncio.run(by_hand())
    elif not is_async(flavour):
        with library(flavour).Client(auth=auth, timeout=10) as client:
            hop = client.get(url).next_request
            assert hop is not None
            assert client.send(hop).status_code == 200
    else:

        async def go() -> None:
            async with library(flavour).AsyncClient(auth=auth, timeout=10) as client:
                hop = (await client.get(url)).next_request
                assert hop is not None
                assert (await client.send(hop)).status_code == 200

        asyncio.run(go())
    _assert_b_got_nothing_of_ours(origin_b)


@pytest.fixture(params=["httpx", "httpx2"])
def httpx_library(request: pytest.FixtureRequest) -> ModuleType:
    """httpx, then httpx2: the tests of what only httpx's API has run through both."""
    return library(str(request.param))


def test_a_request_sent_again_after_its_redirect_left_the_origin_is_signed_again(
    server: EmpowerIDTestServer,
    auth_factory: AuthFactory,
    origin_b: _Recorder,
    httpx_library: ModuleType,
) -> None:
    """The chain belongs to one send: sending the same request again (a retry
    library, say) starts a new one."""
    auth = auth_factory(api_key=API_KEY)
    with httpx_library.Client(auth=auth, timeout=10, follow_redirects=True) as client:
        request = client.build_request("GET", _redirect(server, origin_b.url("/landing")))
        client.send(request)
        client.send(request)
    assert [r.header(KEY_HEADER) for r in server.api_requests] == [API_KEY, API_KEY]
    assert all(r.header("Authorization") for r in server.api_requests)
    _assert_b_got_nothing_of_ours(origin_b, hops=2)


def _hops_to(flavour: str, auth: EmpowerIDAuth, url: str, **client: Any) -> Any:
    """GET ``url`` with an httpx or httpx2 client of ``flavour`` that follows
    redirects; the response (of that library)."""
    lib = library(flavour)
    if not is_async(flavour):
        with lib.Client(auth=auth, timeout=10, follow_redirects=True, **client) as c:
            return c.get(url)

    async def go() -> Any:
        async with lib.AsyncClient(auth=auth, timeout=10, follow_redirects=True, **client) as c:
            return await c.get(url)

    return asyncio.run(go())


@pytest.mark.parametrize("flavour", HTTPX_FLAVOURS)
def test_httpx_history_shows_each_hop_as_it_was_sent(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, origin_b: _Recorder, flavour: str
) -> None:
    auth = auth_factory(api_key=API_KEY)
    back = server.api_url("/api/landing")
    # A -> A -> B -> A
    url = _redirect(server, "/api/redirect?to=" + quote(origin_b.url("/redirect?to=" + back)))
    response = _hops_to(flavour, auth, url)
    sent = [hop.request for hop in [*response.history, response]]
    assert [r.headers.get(KEY_HEADER) for r in sent] == [API_KEY, API_KEY, None, None]
    assert [r.header(KEY_HEADER) for r in server.api_requests] == [API_KEY, API_KEY, None]
    _assert_b_got_nothing_of_ours(origin_b)


def test_the_callers_trace_extension_sees_each_hop_as_it_goes_out(
    server: EmpowerIDTestServer,
    auth_factory: AuthFactory,
    origin_b: _Recorder,
    httpx_library: ModuleType,
) -> None:
    auth = auth_factory(api_key=API_KEY)
    url = _redirect(server, origin_b.url("/landing"))
    seen: list[tuple[str, dict[bytes, bytes]]] = []

    def trace(name: str, info: dict[str, Any]) -> None:
        if name == "http11.send_request_headers.started":
            request = info["request"]
            seen.append((request.url.target.decode(), dict(request.headers)))
        else:
            seen.append((name, {}))

    async def atrace(name: str, info: dict[str, Any]) -> None:
        trace(name, info)

    with httpx_library.Client(auth=auth, timeout=10, follow_redirects=True) as client:
        assert client.get(url, extensions={"trace": trace}).status_code == 200
    sync_seen = list(seen)
    seen.clear()

    async def go() -> None:
        async with httpx_library.AsyncClient(
            auth=auth, timeout=10, follow_redirects=True
        ) as client:
            assert (await client.get(url, extensions={"trace": atrace})).status_code == 200

    asyncio.run(go())
    assert seen == sync_seen
    sent = [(target, headers) for target, headers in seen if target.startswith("/")]
    parts = urlsplit(url)
    assert [target for target, _ in sent] == [f"{parts.path}?{parts.query}", "/landing"]
    assert sent[0][1][KEY_HEADER.encode()] == API_KEY.encode()
    assert KEY_HEADER.encode() not in sent[1][1]
    assert b"Authorization" not in sent[1][1]
    # Every other event reaches the caller's trace too.
    assert ("http11.receive_response_headers.complete", {}) in seen
    _assert_b_got_nothing_of_ours(origin_b, hops=2)


class _ForwardingProxy(ThreadingHTTPServer):
    """A plain HTTP proxy: records each request it forwards, redirects untouched."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ForwardingHandler)
        self.received: list[tuple[str, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ForwardingHandler(BaseHTTPRequestHandler):
    server: _ForwardingProxy

    def do_GET(self) -> None:
        self.server.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        target = urlsplit(self.path)  # absolute form: http://host:port/path?query
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
        connection = http.client.HTTPConnection(target.netloc, timeout=10)
        try:
            connection.request(
                "GET", target.path + ("?" + target.query if target.query else ""), headers=headers
            )
            answer = connection.getresponse()
            body = answer.read()
        finally:
            connection.close()
        self.send_response(answer.status)
        if answer.getheader("Location"):
            self.send_header("Location", answer.getheader("Location") or "")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _through_proxy(flavour: str, auth: EmpowerIDAuth, url: str, proxy: str) -> int:
    """GET ``url`` through a forwarding ``proxy``, following redirects; the status."""
    if flavour != "aiohttp":
        return int(_hops_to(flavour, auth, url, proxy=proxy).status_code)
    aiohttp = library("aiohttp")

    async def go() -> int:
        async with (
            aiohttp.ClientSession(middlewares=[auth.aiohttp_middleware()]) as session,
            session.get(url, proxy=proxy) as response,
        ):
            return int(response.status)

    return asyncio.run(go())


@pytest.mark.parametrize("flavour", [*HTTPX_FLAVOURS, "aiohttp"])
def test_through_a_forwarding_proxy_the_api_key_stays_on_its_origin(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, origin_b: _Recorder, flavour: str
) -> None:
    proxy = _ForwardingProxy()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        auth = auth_factory(api_key=API_KEY)
        # A -> A -> B, each hop through the proxy (a request in absolute form).
        url = _redirect(server, "/api/redirect?to=" + quote(origin_b.url("/landing")))
        assert _through_proxy(flavour, auth, url, proxy.url) == 200
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(10)
    assert [r.header(KEY_HEADER) for r in server.api_requests] == [API_KEY, API_KEY]
    _assert_b_got_nothing_of_ours(origin_b)
    to_proxy = [(path, _credentials(headers)) for path, headers in proxy.received]
    assert len(to_proxy) == 3
    assert unquote(to_proxy[0][0]) == unquote(url)  # aiohttp quotes "/" and "?" less
    assert to_proxy[-1] == (origin_b.url("/landing"), (None, None))
    assert all(key == API_KEY for _, (_, key) in to_proxy[:2])


def _loopback_transport(lib: ModuleType) -> Any:
    """A transport of ``lib`` (httpx or httpx2) that is not httpcore's: it hands
    each request to the loopback servers through http.client, so no trace
    extension ever runs."""

    class LoopbackTransport(lib.BaseTransport):  # type: ignore[name-defined,misc]
        def handle_request(self, request: Any) -> Any:
            connection = http.client.HTTPConnection(request.url.netloc.decode(), timeout=10)
            try:
                connection.request(
                    request.method,
                    request.url.raw_path.decode(),
                    body=request.read(),
                    headers=dict(request.headers),
                )
                answer = connection.getresponse()
                return lib.Response(
                    answer.status, headers=answer.getheaders(), content=answer.read()
                )
            finally:
                connection.close()

    return LoopbackTransport()


def test_a_transport_that_is_not_httpcores_is_refused_naming_the_origin_only(
    server: EmpowerIDTestServer,
    auth_factory: AuthFactory,
    origin_b: _Recorder,
    httpx_library: ModuleType,
) -> None:
    auth = auth_factory(api_key=API_KEY)
    transport = _loopback_transport(httpx_library)
    with httpx_library.Client(auth=auth, transport=transport, follow_redirects=True) as client:
        assert client.get(_redirect(server, "/api/landing")).status_code == 200
        with pytest.raises(ConfigurationError, match="API key went to " + origin_b.url("")) as e:
            client.get(_redirect(server, origin_b.url("/landing")))
    assert API_KEY not in str(e.value)
    # Following redirects by hand, the flow sees each hop: B gets nothing of ours.
    with httpx_library.Client(auth=auth, transport=transport) as client:
        hop = client.get(_redirect(server, origin_b.url("/again"))).next_request
        assert hop is not None
        assert client.send(hop).status_code == 200
    assert origin_b.received[-1][0] == "/again"
    assert _credentials(origin_b.received[-1][1]) == (None, None)
    # Without an API key, httpx's own rule (no Authorization elsewhere) is all it takes.
    plain = auth_factory()
    with httpx_library.Client(auth=plain, transport=transport, follow_redirects=True) as client:
        assert client.get(_redirect(server, origin_b.url("/plain"))).status_code == 200
    assert _credentials(origin_b.received[-1][1]) == (None, None)


def test_a_hop_built_by_a_client_and_sent_through_an_async_client_is_guarded(
    server: EmpowerIDTestServer,
    auth_factory: AuthFactory,
    origin_b: _Recorder,
    httpx_library: ModuleType,
) -> None:
    auth = auth_factory(api_key=API_KEY)
    # A -> A (built by a Client) -> B (followed by an AsyncClient)
    url = _redirect(server, "/api/redirect?to=" + quote(origin_b.url("/landing")))
    with httpx_library.Client(auth=auth, timeout=10) as client:
        hop = client.get(url).next_request
    assert hop is not None

    async def go() -> int:
        async with httpx_library.AsyncClient(
            auth=auth, timeout=10, follow_redirects=True
        ) as client:
            return (await client.send(hop)).status_code

    assert asyncio.run(go()) == 200
    assert [r.header(KEY_HEADER) for r in server.api_requests] == [API_KEY, API_KEY]
    _assert_b_got_nothing_of_ours(origin_b)


@pytest.mark.parametrize("flavour", HTTPX_FLAVOURS)
def test_a_request_sent_again_keeps_the_callers_trace_and_a_fresh_chain(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, origin_b: _Recorder, flavour: str
) -> None:
    """Here the first request goes to B, so the key belongs to B: its first send
    is redirected to A (which answers 401 to a request with neither), its second
    to B again (the key goes)."""
    auth = auth_factory(api_key=API_KEY)
    events: list[str] = []

    def trace(name: str, info: dict[str, Any]) -> None:
        events.append(name)

    async def atrace(name: str, info: dict[str, Any]) -> None:
        events.append(name)

    url = origin_b.url("/flip?to=" + quote(server.api_url("/api/landing"), safe=""))

    def count_sent() -> int:
        return events.count("http11.send_request_headers.started")

    lib = library(flavour)
    if not is_async(flavour):
        with lib.Client(auth=auth, timeout=10, follow_redirects=True) as client:
            request = client.build_request("GET", url, extensions={"trace": trace})
            assert client.send(request).status_code == 401  # A wants a token
            assert count_sent() == 2
            assert client.send(request).status_code == 200
    else:

        async def go() -> None:
            async with lib.AsyncClient(auth=auth, timeout=10, follow_redirects=True) as client:
                request = client.build_request("GET", url, extensions={"trace": atrace})
                assert (await client.send(request)).status_code == 401  # A wants a token
                assert count_sent() == 2
                assert (await client.send(request)).status_code == 200

        asyncio.run(go())
    assert count_sent() == 4  # each hop reached the caller's trace once
    (at_a,) = server.api_requests
    assert (at_a.header("Authorization"), at_a.header(KEY_HEADER)) == (None, None)
    keys = [_credentials(headers)[1] for _, headers in origin_b.received]
    assert keys == [API_KEY, API_KEY, API_KEY]  # /flip, /flip again, then /landing


@pytest.mark.parametrize("flavour", HTTPX_FLAVOURS)
def test_our_bearer_token_put_back_on_a_hop_to_another_origin_is_taken_off(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, origin_b: _Recorder, flavour: str
) -> None:
    """An event hook of the caller's that copies Authorization onto every hop
    (httpx drops it at the other origin) cannot send our token there."""
    auth = auth_factory(api_key=API_KEY)
    first: dict[str, str] = {}

    def keep_authorization(request: Any) -> None:
        first.setdefault("authorization", request.headers.get("Authorization", ""))
        request.headers["Authorization"] = first["authorization"]

    async def akeep_authorization(request: Any) -> None:
        keep_authorization(request)

    hook = akeep_authorization if is_async(flavour) else keep_authorization
    url = _redirect(server, origin_b.url("/landing"))
    assert _hops_to(flavour, auth, url, event_hooks={"request": [hook]}).status_code == 200
    _assert_b_got_nothing_of_ours(origin_b)
