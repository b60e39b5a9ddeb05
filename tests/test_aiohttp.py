"""aiohttp: ``auth.aiohttp_middleware()`` on real sessions against the loopback server,
and token requests sent through aiohttp (a private session, or ``token_client=``).

What the shared, flavour-parametrised suite checks for every client is checked
there; this file holds what only aiohttp has: its middleware forms, the way it
follows redirects (the middleware sees every hop), its payload kinds, its cookie
jar, several event loops at once, and the private event loop token requests run on.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest

from eid_auth import (
    ConfigurationError,
    EmpowerIDAuth,
    InvalidGrantError,
    InvalidTokenResponseError,
    Token,
    TokenEndpointUnavailableError,
    TokenResponseTooLargeError,
)
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import CLIENT_ID, CLIENT_SECRET, make_auth, wait_for
from .hostile_server import HostileServer, Wire, gzip_bomb

AuthFactory = Callable[..., EmpowerIDAuth]

API_KEY = "origin-a-api-key"
KEY_HEADER = "X-EmpowerID-API-Key"
# aiohttp 3.12.0 re-sends a file from where the first send ended; later versions
# rewind it and say which payloads can be sent again (Payload.consumed).
REWINDS_FILES = isinstance(getattr(aiohttp.payload.Payload, "consumed", None), property)


def _session(auth: EmpowerIDAuth, **kwargs: Any) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(middlewares=[auth.aiohttp_middleware()], **kwargs)


async def _get(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with session.get(url, **kwargs) as response:
        return response.status, await response.text()


def _bearer(auth: EmpowerIDAuth) -> str:
    assert auth.token is not None
    return f"Bearer {auth.token.access_token}"


# -- signing, renewal, the 401 rules -------------------------------------------------


def test_a_per_request_middleware_signs_too(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory()
    middleware = auth.aiohttp_middleware()

    async def go() -> list[int]:
        async with aiohttp.ClientSession() as session:
            signed, _ = await _get(session, server.api_url("/api/a"), middlewares=(middleware,))
            unsigned, _ = await _get(session, server.api_url("/api/b"))
            return [signed, unsigned]

    assert asyncio.run(go()) == [200, 401]
    first, second = server.api_requests
    assert first.header("Authorization") == _bearer(auth)
    assert second.header("Authorization") is None


def test_a_token_close_to_expiry_is_renewed_before_the_request(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    grant = server.issue_grant(expires_in=30)
    auth = auth_factory(
        token=Token(
            access_token=grant["access_token"],
            refresh_token=grant["refresh_token"],
            expires_at=time.time() + 30,  # within the 60 s leeway
        )
    )

    async def go() -> int:
        async with _session(auth) as session:
            return (await _get(session, server.api_url("/api/x")))[0]

    assert asyncio.run(go()) == 200
    assert server.refresh_grants == 1
    (received,) = server.api_requests  # no 401 on the way
    assert received.header("Authorization") == _bearer(auth)
    assert received.header("Authorization") != f"Bearer {grant['access_token']}"


def test_a_401_costs_one_refresh_and_one_resend_with_the_same_body(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory()

    async def go() -> tuple[int, dict[str, Any]]:
        async with _session(auth) as session:
            await _get(session, server.api_url("/api/warm-up"))
            server.expire_access_tokens()
            async with session.post(server.api_url("/api/items"), json={"n": 1}) as response:
                return response.status, await response.json()

    status, body = asyncio.run(go())
    assert status == 200
    assert json.loads(body["body"]) == {"n": 1}
    assert server.refresh_grants == 2  # the first token, then one refresh
    rejected, resent = server.api_requests[1:]
    assert rejected.body == resent.body
    assert resent.header("Authorization") == _bearer(auth) != rejected.header("Authorization")


async def _generated() -> AsyncIterator[bytes]:
    for part in (b"streamed ", b"body"):
        yield part


def _pipe_reader(data: bytes) -> io.BufferedReader:
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    return open(read_end, "rb")  # closed by aiohttp after the send


@pytest.mark.parametrize(
    "make_body",
    [lambda: _generated(), lambda: _pipe_reader(b"piped body")],
    ids=["async-generator", "pipe"],
)
def test_a_streamed_body_is_not_resent_the_401_is_returned(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, make_body: Callable[[], Any]
) -> None:
    auth = auth_factory()

    async def go() -> int:
        async with _session(auth) as session:
            await _get(session, server.api_url("/api/warm-up"))
            server.expire_access_tokens()
            async with session.post(server.api_url("/api/upload"), data=make_body()) as response:
                return response.status

    assert asyncio.run(go()) == 401
    assert [r.path for r in server.api_requests] == ["/api/warm-up", "/api/upload"]
    assert server.refresh_grants == 1  # no refresh for a request that cannot be re-sent


def test_a_seekable_file_is_resent_whole_or_not_at_all(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, tmp_path: Path
) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(b"0123456789" * 1000)
    auth = auth_factory()

    async def go() -> int:
        async with _session(auth) as session:
            await _get(session, server.api_url("/api/warm-up"))
            server.expire_access_tokens()
            with path.open("rb") as file:
                async with session.post(server.api_url("/api/upload"), data=file) as response:
                    return response.status

    status = asyncio.run(go())
    uploads = [r for r in server.api_requests if r.path == "/api/upload"]
    if REWINDS_FILES:
        assert status == 200
        assert [r.body for r in uploads] == [path.read_bytes()] * 2
    else:
        assert status == 401  # never an empty or partial re-send
        assert len(uploads) == 1


def test_an_api_that_rejects_fresh_tokens_gets_one_refresh_then_its_401s_back(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory()
    server.reject_all_access_tokens = True

    async def go() -> list[int]:
        async with _session(auth) as session:
            return [(await _get(session, server.api_url(f"/api/{i}")))[0] for i in range(3)]

    assert asyncio.run(go()) == [401, 401, 401]
    # The first token, one refresh after the first 401, then the pause: no more.
    assert server.refresh_grants == 2
    assert len(server.api_requests) == 4  # one re-send, for the first request only


def test_a_cookie_the_401_sets_goes_with_the_resend_when_the_jar_takes_it(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory()
    server.set_cookie_on_401 = "affinity=node-7"

    async def go(jar_class: type[aiohttp.abc.AbstractCookieJar], **options: Any) -> int:
        async with _session(auth, cookie_jar=jar_class(**options)) as session:
            await _get(session, server.api_url("/api/warm-up"))
            server.expire_access_tokens()
            return (await _get(session, server.api_url("/api/x")))[0]

    # The default jar refuses cookies of an IP address host such as 127.0.0.1.
    assert asyncio.run(go(aiohttp.CookieJar, unsafe=True)) == 200
    rejected, resent = server.api_requests[1:]
    assert rejected.header("Cookie") is None
    assert resent.header("Cookie") == "affinity=node-7"
    server.reset_counters()
    assert asyncio.run(go(aiohttp.DummyCookieJar)) == 200
    assert all(r.header("Cookie") is None for r in server.api_requests)


# -- the API key and redirects -------------------------------------------------------


class _OriginB(ThreadingHTTPServer):
    """Another origin: records what it gets; ``/redirect?to=<url>`` answers 302,
    ``/large-401`` a 401 with a body of 4 MiB the first time."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OriginBHandler)
        self.received: list[tuple[str, dict[str, str]]] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _OriginBHandler(BaseHTTPRequestHandler):
    server: _OriginB

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        parts = urlsplit(self.path)
        body = b"{}"
        if parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["to"][0])
        elif parts.path == "/large-401" and len(self.server.received) == 1:
            self.send_response(401)
            body = b" " * (4 << 20)
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def origin_b() -> Iterator[_OriginB]:
    recorder = _OriginB()
    thread = threading.Thread(target=recorder.serve_forever, daemon=True)
    thread.start()
    yield recorder
    recorder.shutdown()
    recorder.server_close()
    thread.join(10)


@pytest.fixture
def keyed_server() -> Iterator[EmpowerIDTestServer]:
    with EmpowerIDTestServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, api_key=API_KEY
    ) as keyed:
        yield keyed


def _redirect(server: EmpowerIDTestServer, to: str) -> str:
    return server.api_url("/api/redirect?to=" + quote(to, safe=""))


def _ours(headers: dict[str, str]) -> tuple[str | None, str | None]:
    return headers.get("authorization"), headers.get(KEY_HEADER.lower())


def test_a_same_origin_redirect_keeps_token_and_api_key(
    keyed_server: EmpowerIDTestServer,
) -> None:
    auth = make_auth(keyed_server, api_key=API_KEY)

    async def go() -> int:
        async with _session(auth) as session:
            return (await _get(session, _redirect(keyed_server, "/api/landing")))[0]

    assert asyncio.run(go()) == 200
    assert [r.path.split("?")[0] for r in keyed_server.api_requests] == [
        "/api/redirect",
        "/api/landing",
    ]
    for received in keyed_server.api_requests:
        assert received.header(KEY_HEADER) == API_KEY
        assert received.header("Authorization") == _bearer(auth)
    auth.close()


def test_a_hop_back_to_the_first_origin_goes_without_our_credentials(
    keyed_server: EmpowerIDTestServer, origin_b: _OriginB
) -> None:
    auth = make_auth(keyed_server, api_key=API_KEY)
    back = keyed_server.api_url("/api/back")
    via_b = origin_b.url("/redirect?to=" + quote(back, safe=""))

    async def go() -> int:
        async with _session(auth) as session:
            return (await _get(session, _redirect(keyed_server, via_b)))[0]

    # A's API refuses the unsigned hop back: the 401 is A's answer to no credentials.
    assert asyncio.run(go()) == 401
    first, hop_back = keyed_server.api_requests
    assert first.header(KEY_HEADER) == API_KEY
    assert (hop_back.header("Authorization"), hop_back.header(KEY_HEADER)) == (None, None)
    assert [_ours(headers) for _, headers in origin_b.received] == [(None, None)]
    assert keyed_server.refresh_grants == 1  # a 401 without our token costs no refresh
    auth.close()


def test_after_a_401_the_resent_request_redirects_without_the_key_too(
    keyed_server: EmpowerIDTestServer, origin_b: _OriginB
) -> None:
    auth = make_auth(keyed_server, api_key=API_KEY)

    async def go() -> int:
        async with _session(auth) as session:
            await _get(session, keyed_server.api_url("/api/warm-up"))
            keyed_server.expire_access_tokens()
            return (await _get(session, _redirect(keyed_server, origin_b.url("/landing"))))[0]

    assert asyncio.run(go()) == 200
    assert keyed_server.refresh_grants == 2
    assert [_ours(headers) for _, headers in origin_b.received] == [(None, None)]
    auth.close()


def test_the_key_set_as_a_session_header_is_taken_off_hops_to_another_origin(
    keyed_server: EmpowerIDTestServer, origin_b: _OriginB
) -> None:
    auth = make_auth(keyed_server, api_key=API_KEY)

    async def go() -> int:
        async with _session(auth, headers={KEY_HEADER: API_KEY}) as session:
            return (await _get(session, _redirect(keyed_server, origin_b.url("/landing"))))[0]

    assert asyncio.run(go()) == 200
    assert [_ours(headers) for _, headers in origin_b.received] == [(None, None)]
    auth.close()


def test_a_hop_followed_by_hand_goes_without_our_credentials_and_new_requests_are_signed(
    keyed_server: EmpowerIDTestServer, origin_b: _OriginB
) -> None:
    auth = make_auth(keyed_server, api_key=API_KEY)

    async def go() -> list[int]:
        async with _session(auth) as session:
            url = _redirect(keyed_server, origin_b.url("/landing"))
            async with session.get(url, allow_redirects=False) as response:
                location = response.headers["Location"]
                statuses = [response.status]
            statuses.append((await _get(session, location))[0])  # the hop, sent by hand
            statuses.append((await _get(session, origin_b.url("/direct")))[0])
            statuses.append((await _get(session, keyed_server.api_url("/api/again")))[0])
            return statuses

    assert asyncio.run(go()) == [302, 200, 200, 200]
    (landing, hop), (direct, asked) = origin_b.received
    assert landing == "/landing"
    assert _ours(hop) == (None, None)
    # A request the caller makes to another origin is signed, as with every client.
    assert direct == "/direct"
    assert _ours(asked) == (_bearer(auth), API_KEY)
    assert keyed_server.api_requests[-1].header(KEY_HEADER) == API_KEY
    auth.close()


def test_tasks_redirected_at_once_keep_their_own_chains(
    keyed_server: EmpowerIDTestServer, origin_b: _OriginB
) -> None:
    auth = make_auth(keyed_server, api_key=API_KEY)

    async def go() -> list[int]:
        async with _session(auth) as session:
            away = _redirect(keyed_server, origin_b.url("/landing"))
            home = _redirect(keyed_server, "/api/home")
            results = await asyncio.gather(
                *(_get(session, away if i % 2 else home) for i in range(20))
            )
            return [status for status, _ in results]

    assert asyncio.run(go()) == [200] * 20
    assert len(origin_b.received) == 10
    assert all(_ours(headers) == (None, None) for _, headers in origin_b.received)
    homes = [r for r in keyed_server.api_requests if r.path == "/api/home"]
    assert len(homes) == 10
    assert all(r.header(KEY_HEADER) == API_KEY for r in homes)
    auth.close()


class _DropsReusedConnections(BaseHTTPRequestHandler):
    """Another origin that answers the first request on a connection, keeps the
    connection open, and closes it without an answer when a second request
    comes on it: a keep-alive connection the server dropped while it sat in
    the client's pool, which aiohttp meets by sending the request again."""

    protocol_version = "HTTP/1.1"
    server: _OriginB

    def do_GET(self) -> None:
        self.server.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.answered = getattr(self, "answered", 0) + 1
        if self.answered > 1:
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_hop_that_aiohttp_sends_again_on_a_new_connection_stays_unsigned(
    keyed_server: EmpowerIDTestServer,
) -> None:
    auth = make_auth(keyed_server, api_key=API_KEY)
    origin_c = _OriginB()
    origin_c.RequestHandlerClass = _DropsReusedConnections
    thread = threading.Thread(target=origin_c.serve_forever, daemon=True)
    thread.start()

    async def go() -> list[int]:
        async with _session(auth) as session:
            first = await _get(session, _redirect(keyed_server, origin_c.url("/one")))
            # The pooled connection to C is dropped: aiohttp sends the hop again.
            second = await _get(session, _redirect(keyed_server, origin_c.url("/two")))
            return [first[0], second[0]]

    try:
        assert asyncio.run(go()) == [200, 200]
    finally:
        origin_c.shutdown()
        origin_c.server_close()
        thread.join(10)
        auth.close()
    assert [path for path, _ in origin_c.received] == ["/one", "/two", "/two"]
    assert [_ours(headers) for _, headers in origin_c.received] == [(None, None)] * 3


# -- concurrency ---------------------------------------------------------------------


def test_sixty_tasks_on_one_session_send_one_refresh_grant_per_expiry(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory()

    async def burst(session: aiohttp.ClientSession) -> list[int]:
        results = await asyncio.gather(
            *(_get(session, server.api_url(f"/api/{i}")) for i in range(60))
        )
        return [status for status, _ in results]

    async def go() -> None:
        async with _session(auth) as session:
            assert await burst(session) == [200] * 60  # no token yet: one grant
            assert server.refresh_grants == 1
            server.expire_access_tokens()
            assert await burst(session) == [200] * 60  # 60 401s: one grant
            assert server.refresh_grants == 2

    asyncio.run(go())
    assert server.reuse_detected == 0


def test_aiohttp_httpx_and_httpx2_tasks_share_one_grant(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    httpx = pytest.importorskip("httpx")
    httpx2 = pytest.importorskip("httpx2")
    auth = auth_factory()

    async def go() -> list[int]:
        async with (
            _session(auth) as session,
            httpx.AsyncClient(auth=auth, timeout=10) as one,
            httpx2.AsyncClient(auth=auth, timeout=10) as two,
        ):

            async def through_httpx(client: Any, url: str) -> int:
                return int((await client.get(url)).status_code)

            async def burst() -> list[int]:
                calls = []
                for i in range(20):
                    calls.append(_get(session, server.api_url(f"/api/aiohttp/{i}")))
                    calls.append(through_httpx(one, server.api_url(f"/api/httpx/{i}")))
                    calls.append(through_httpx(two, server.api_url(f"/api/httpx2/{i}")))
                results = await asyncio.gather(*calls)
                return [r[0] if isinstance(r, tuple) else r for r in results]

            statuses = await burst()
            server.expire_access_tokens()
            return statuses + await burst()

    assert asyncio.run(go()) == [200] * 120
    assert server.refresh_grants == 2  # the first token, then one refresh after the 401s
    assert server.reuse_detected == 0


def test_event_loops_in_threads_share_one_auth_and_one_grant(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory()
    loops = 4
    start = threading.Barrier(loops)
    statuses: list[int] = []

    async def one_loop() -> list[int]:
        async with _session(auth) as session:
            start.wait(10)
            results = await asyncio.gather(
                *(_get(session, server.api_url(f"/api/{i}")) for i in range(15))
            )
            return [status for status, _ in results]

    def run() -> None:
        statuses.extend(asyncio.run(one_loop()))

    threads = [threading.Thread(target=run) for _ in range(loops)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [200] * 60
    assert server.refresh_grants == 1


def test_the_401_is_read_and_released_before_the_resend_needs_a_connection(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, origin_b: _OriginB
) -> None:
    auth = auth_factory()

    async def go() -> int:
        # One connection in all, and a 401 too large to arrive whole on its own:
        # the re-send gets the connection only once the 401 gave it back.
        connector = aiohttp.TCPConnector(limit=1)
        timeout = aiohttp.ClientTimeout(total=10)
        async with _session(auth, connector=connector, timeout=timeout) as session:
            return (await _get(session, origin_b.url("/large-401")))[0]

    assert asyncio.run(go()) == 200
    assert [path for path, _ in origin_b.received] == ["/large-401"] * 2
    assert server.refresh_grants == 2  # the first token, then the refresh after the 401


def test_a_cancelled_waiting_task_leaks_nothing(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory()
    server.fail_next(FaultSpec(status=200, delay=1.0))  # a slow, successful refresh

    async def go() -> None:
        async with _session(auth) as session:
            tasks = [
                asyncio.ensure_future(_get(session, server.api_url(f"/api/{i}")))
                for i in range(10)
            ]
            # Every task waits for the one refresh, which the server holds for a second.
            await asyncio.to_thread(wait_for, lambda: server.token_requests == 1)
            for task in tasks[:5]:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(r, asyncio.CancelledError) for r in results[:5])
            assert [r[0] for r in results[5:] if isinstance(r, tuple)] == [200] * 5
            # The flight finished for everyone; the next request needs no refresh.
            assert (await _get(session, server.api_url("/api/after")))[0] == 200

    asyncio.run(go())
    assert server.refresh_grants == 1
    assert auth._coordinator._flight is None


# -- token requests through aiohttp --------------------------------------------------


def test_token_requests_go_through_a_token_client_session(
    server: EmpowerIDTestServer,
) -> None:
    sent: list[str] = []

    async def on_request_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        sent.append(params.url.path)

    async def go() -> int:
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(on_request_start)
        # One session for both: token requests skip its middlewares (no recursion).
        async with aiohttp.ClientSession(trace_configs=[trace]) as token_client:
            auth = make_auth(server, token_client=token_client)
            async with _session(auth) as session:
                status = (await _get(session, server.api_url("/api/x")))[0]
                server.expire_access_tokens()
                await _get(session, server.api_url("/api/y"))
            await auth.aclose()
            assert not token_client.closed  # never closed by the auth
            return status

    assert asyncio.run(go()) == 200
    assert sent == ["/oauth/v2/token"] * 2
    assert server.refresh_grants == 2


def test_a_session_with_our_middleware_can_be_the_token_client(
    server: EmpowerIDTestServer,
) -> None:
    async def go() -> int:
        auth: EmpowerIDAuth | None = None
        middlewares: list[Any] = []
        async with aiohttp.ClientSession(middlewares=middlewares) as session:
            auth = make_auth(server, token_client=session)
            middlewares.append(auth.aiohttp_middleware())  # read per request by aiohttp
            status = (await _get(session, server.api_url("/api/x")))[0]
            await auth.aclose()
            return status

    assert asyncio.run(go()) == 200
    (token_request,) = server.token_request_log
    assert token_request.header("Authorization") is None  # not signed by the middleware


def test_token_client_sessions_that_cannot_work_are_refused(
    server: EmpowerIDTestServer,
) -> None:
    async def make() -> aiohttp.ClientSession:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # auth= is, from aiohttp 3.14
            return aiohttp.ClientSession(auth=aiohttp.BasicAuth("user", "pass"))

    async def close(session: aiohttp.ClientSession) -> None:
        await session.close()

    with_auth = asyncio.run(make())
    with pytest.raises(ConfigurationError, match="without auth="):
        make_auth(server, token_client=with_auth)
    asyncio.run(close(with_auth))
    with pytest.raises(ConfigurationError, match=r"closed aiohttp\.ClientSession"):
        make_auth(server, token_client=with_auth)


def test_a_token_client_whose_loop_is_not_running_gets_a_clear_error(
    server: EmpowerIDTestServer,
) -> None:
    loop = asyncio.new_event_loop()
    try:
        session = loop.run_until_complete(_new_plain_session())
        auth = make_auth(server, token_client=session)
        with pytest.raises(ConfigurationError, match="event loop is not running"):
            auth.refresh()
        loop.run_until_complete(session.close())
    finally:
        loop.close()


async def _new_plain_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


def test_token_client_accepts_four_libraries_and_says_so() -> None:
    with pytest.raises(ConfigurationError) as caught:
        EmpowerIDAuth(
            token_endpoint="http://127.0.0.1:1/oauth/v2/token",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh_token="rt",
            token_client=object(),  # type: ignore[arg-type]
        )
    assert "an aiohttp.ClientSession" in str(caught.value)


def test_the_private_session_takes_its_proxy_from_the_environment(
    server: EmpowerIDTestServer, origin_b: _OriginB, monkeypatch: pytest.MonkeyPatch
) -> None:
    # origin_b plays a forwarding proxy that answers 200 "{}" itself: not a token.
    proxy = origin_b.url("").replace("http://", "http://proxy-user:proxy%20pw@")
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", proxy)
    auth = make_auth(server, max_retries=0)
    with pytest.raises(InvalidTokenResponseError):
        _through_aiohttp(auth, server.api_url("/api/x"))
    ((target, headers),) = origin_b.received
    assert target == server.token_endpoint  # the absolute form a proxy gets
    assert headers["proxy-authorization"] == "Basic cHJveHktdXNlcjpwcm94eSBwdw=="
    assert server.token_requests == 0
    auth.close()
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    auth = make_auth(server)
    assert _through_aiohttp(auth, server.api_url("/api/x")) == 200
    assert len(origin_b.received) == 1
    auth.close()


def test_close_closes_the_private_session(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory()

    async def go() -> None:
        async with _session(auth) as session:
            await _get(session, server.api_url("/api/x"))
        private = auth._endpoint._own_clients["aiohttp"]
        (own,) = [private.session()[0]]
        await auth.aclose()
        assert own.closed
        with pytest.raises(ConfigurationError, match="session for token requests was closed"):
            private.session()

    asyncio.run(go())


_ONLY_AIOHTTP = textwrap.dedent(
    """
    import asyncio, sys
    import aiohttp
    from eid_auth import EmpowerIDAuth
    from eid_auth.testing import EmpowerIDTestServer

    async def main(server):
        auth = EmpowerIDAuth(
            token_endpoint=server.token_endpoint, client_id="test-client",
            client_secret="test-client-secret",
            refresh_token=server.issue_grant()["refresh_token"],
        )
        async with aiohttp.ClientSession(middlewares=[auth.aiohttp_middleware()]) as s:
            statuses = [(await s.get(server.api_url("/api/a"))).status]
            server.expire_access_tokens()
            statuses.append((await s.get(server.api_url("/api/b"))).status)
        return statuses, server.refresh_grants  # auth left open: closed at exit

    with EmpowerIDTestServer() as server:
        print(asyncio.run(main(server)))
    print(sorted({m.split(".")[0] for m in sys.modules} & {"requests", "httpx", "httpx2"}))
    """
)


def test_an_aiohttp_program_never_imports_requests_or_httpx_and_exits_quietly() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _ONLY_AIOHTTP],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["([200, 200], 2)", "[]"]
    assert "Unclosed" not in done.stderr


_DROPPED = textwrap.dedent(
    """
    import asyncio, gc, time, warnings
    import aiohttp
    from eid_auth import EmpowerIDAuth
    from eid_auth.testing import EmpowerIDTestServer

    warnings.simplefilter("always", ResourceWarning)

    def sessions():
        gc.collect()
        return sum(isinstance(o, aiohttp.ClientSession) for o in gc.get_objects())

    async def one(server):  # an auth made per job and dropped without close()
        auth = EmpowerIDAuth(
            token_endpoint=server.token_endpoint, client_id="test-client",
            client_secret="test-client-secret",
            refresh_token=server.issue_grant()["refresh_token"],
        )
        async with aiohttp.ClientSession(middlewares=[auth.aiohttp_middleware()]) as s:
            async with s.get(server.api_url("/api/x")) as r:
                return r.status

    with EmpowerIDTestServer() as server:
        statuses = {asyncio.run(one(server)) for _ in range(20)}
        left = sessions()
        for _ in range(100):  # closing runs on eid_auth's loop: give it a moment
            if left == 0:
                break
            time.sleep(0.05)
            left = sessions()
        print(statuses, left, server.refresh_grants)
    """
)


def test_the_private_sessions_of_dropped_auths_are_closed_and_freed() -> None:
    # A service that makes an auth per job must not keep a ClientSession (and
    # its connection pool) per auth it ever made.
    done = subprocess.run(
        [sys.executable, "-c", _DROPPED],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["{200} 0 20"]
    assert "Unclosed" not in done.stderr


_FORKED = textwrap.dedent(
    """
    import asyncio, atexit, os
    import aiohttp
    import eid_auth._aiohttp_transport
    from eid_auth import EmpowerIDAuth
    from eid_auth.testing import EmpowerIDTestServer

    async def get(auth, url):
        async with aiohttp.ClientSession(middlewares=[auth.aiohttp_middleware()]) as s:
            async with s.get(url) as r:
                return r.status

    with EmpowerIDTestServer() as server:
        auth = EmpowerIDAuth(
            token_endpoint=server.token_endpoint, client_id="test-client",
            client_secret="test-client-secret",
            refresh_token=server.issue_grant()["refresh_token"], timeout=5, max_retries=0,
        )
        print("parent", asyncio.run(get(auth, server.api_url("/api/a"))), flush=True)
        server.expire_access_tokens()  # the server runs in the parent
        pid = os.fork()
        if pid == 0:  # the child: a 401, a refresh on a private loop of its own, an exit
            print("child", asyncio.run(get(auth, server.api_url("/api/b"))), flush=True)
            # A wait on the parent's loop (not running here) would now outlast the test.
            eid_auth._aiohttp_transport._CLOSE_SECONDS = 600
            # What exiting runs; not through the with block: the server is the parent's.
            atexit._run_exitfuncs()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status), server.refresh_grants)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_sends_token_requests_on_a_private_loop_of_its_own() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", _FORKED],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["parent 200", "child 200", "child exit 0 2"]
    assert "Unclosed" not in done.stderr


# -- a hostile token endpoint, through aiohttp ---------------------------------------


def _hostile_auth(url: str, **kwargs: Any) -> EmpowerIDAuth:
    kwargs.setdefault("backoff_factor", 0.01)
    kwargs.setdefault("max_retries", 0)
    return EmpowerIDAuth(
        token_endpoint=url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token="hostile-refresh-token-value",
        **kwargs,
    )


def _through_aiohttp(auth: EmpowerIDAuth, url: str) -> int:
    async def go() -> int:
        async with _session(auth) as session:
            return (await _get(session, url))[0]

    return asyncio.run(go())


def _gzip_bomb_answer(wire: Wire) -> None:
    wire.send(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Encoding: gzip\r\nConnection: close\r\n\r\n"
    )
    for chunk in gzip_bomb(1024):  # 1 GiB decoded, about 1 MB on the wire
        wire.send(chunk)


def test_a_gzip_bomb_is_refused_at_the_limit() -> None:
    with HostileServer(_gzip_bomb_answer) as hostile:
        auth = _hostile_auth(hostile.url(), max_retries=2)
        with pytest.raises(TokenResponseTooLargeError, match="over 262144 bytes"):
            _through_aiohttp(auth, hostile.url("/api/x"))
        assert hostile.requests == 1  # not retried
        auth.close()


def _trickle(wire: Wire) -> None:
    wire.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n")
    wire.trickle(b" " * 300, interval=0.1)  # 30 s of body


def _trickled_headers(wire: Wire) -> None:
    wire.trickle(b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 300, interval=0.1)  # 30 s of headers


@pytest.mark.parametrize("script", [_trickle, _trickled_headers], ids=["body", "headers"])
def test_a_trickling_answer_ends_at_the_deadline(script: Callable[[Wire], None]) -> None:
    with HostileServer(script) as hostile:
        auth = _hostile_auth(hostile.url(), timeout=1)
        with pytest.raises(TokenEndpointUnavailableError, match=r"timed out after 1s \(deadline"):
            _through_aiohttp(auth, hostile.url("/api/x"))
        # The connection was dropped well before the trickle ended.
        assert wait_for(hostile.hung_up.is_set)
        assert hostile.bytes_sent < 250
        auth.close()


def test_a_refused_connection_names_its_cause() -> None:
    with HostileServer(_trickle) as hostile:
        url = hostile.url()
    auth = _hostile_auth(url)  # nothing listens there any more
    with pytest.raises(TokenEndpointUnavailableError, match="last: connection refused") as caught:
        _through_aiohttp(auth, url.replace("/oauth/v2/token", "/api/x"))
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert CLIENT_SECRET not in repr(vars(caught.value))
    auth.close()


def test_a_token_client_that_raises_for_status_still_gets_the_servers_answer(
    server: EmpowerIDTestServer,
) -> None:
    # raise_for_status=True is the session's rule for the application's own
    # requests: a refused refresh token is still invalid_grant, sent once.
    async def go() -> BaseException | None:
        async with aiohttp.ClientSession(raise_for_status=True) as token_client:
            auth = make_auth(server, token_client=token_client, refresh_token="never-issued")
            try:
                await auth.arefresh()
            except Exception as exc:  # what the caller gets
                return exc
            finally:
                await auth.aclose()
        return None

    error = asyncio.run(go())
    assert isinstance(error, InvalidGrantError), repr(error)
    assert server.token_requests == 1  # not retried as if the server were down


def test_a_token_client_that_would_add_a_netrc_login_is_refused_before_sending(
    server: EmpowerIDTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # trust_env=True makes aiohttp add the netrc login for a host to every request
    # there: that password is for the application's own requests, and no request
    # option turns it off. Without a login for the host, the session is fine.
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)

    async def refresh(client_auth: str) -> None:
        async with aiohttp.ClientSession(trust_env=True) as token_client:
            auth = make_auth(server, token_client=token_client, client_auth=client_auth)
            try:
                await auth.arefresh()
            finally:
                await auth.aclose()

    netrc.write_text("machine eid.example.com login netrc-user password netrc-password\n")
    netrc.chmod(0o600)
    asyncio.run(refresh("client_secret_post"))
    asyncio.run(refresh("client_secret_basic"))
    post, basic = server.token_request_log
    assert post.header("Authorization") is None
    assert basic.header("Authorization") == "Basic " + base64.b64encode(
        f"{CLIENT_ID}:{CLIENT_SECRET}".encode()
    ).decode("ascii")

    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-password\n")
    for client_auth in ("client_secret_post", "client_secret_basic"):
        refused = r"trust_env=True.*login for 127\.0\.0\.1"
        with pytest.raises(ConfigurationError, match=refused) as caught:
            asyncio.run(refresh(client_auth))
        assert "netrc-password" not in str(caught.value)
    assert server.token_requests == 2  # the two before the login was added
