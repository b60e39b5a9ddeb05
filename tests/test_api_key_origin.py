"""``X-EmpowerID-API-Key`` stays on the origin of the request it was added to.

Origin A is the package's loopback EmpowerID server; origin B is a small server
of these tests on another port that records what it received and redirects
wherever it is asked to. Each test checks what each origin received, for every
path a request can take: the first send, the re-send after a 401, the redirects
of either, hops sent by hand, and a hop back from B to A.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
import requests

from eid_auth import ConfigurationError, EmpowerIDAuth
from eid_auth.testing import EmpowerIDTestServer

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
    """Records each request; ``/redirect?to=<url>`` answers 302, anything else 200."""

    server: _Recorder

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        parts = urlsplit(self.path)
        if parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["to"][0])
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


def _get(
    flavour: str,
    auth: EmpowerIDAuth,
    url: str,
    *,
    follow: bool = True,
    guarded: bool = True,
) -> int:
    """GET ``url`` with ``auth`` through ``flavour``; httpx clients get
    ``auth.httpx_event_hooks()`` unless ``guarded`` is False."""
    if flavour == "requests":
        with requests.Session() as session:
            session.auth = auth
            return session.get(url, timeout=10, allow_redirects=follow).status_code
    hooks = auth.httpx_event_hooks() if guarded else {}
    if flavour == "httpx":
        with httpx.Client(
            auth=auth, timeout=10, follow_redirects=follow, event_hooks=hooks
        ) as client:
            return client.get(url).status_code

    async def go() -> int:
        async with httpx.AsyncClient(
            auth=auth, timeout=10, follow_redirects=follow, event_hooks=hooks
        ) as client:
            return (await client.get(url)).status_code

    return asyncio.run(go())


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
    elif flavour == "httpx":
        with httpx.Client(auth=auth, timeout=10) as client:
            hop = client.get(url).next_request
            assert hop is not None
            assert client.send(hop).status_code == 200
    else:

        async def go() -> None:
            async with httpx.AsyncClient(auth=auth, timeout=10) as client:
                hop = (await client.get(url)).next_request
                assert hop is not None
                assert (await client.send(hop)).status_code == 200

        asyncio.run(go())
    _assert_b_got_nothing_of_ours(origin_b)


def test_a_request_sent_again_after_its_redirect_left_the_origin_is_signed_again(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, origin_b: _Recorder
) -> None:
    """The chain belongs to one send: sending the same request again (a retry
    library, say) starts a new one."""
    auth = auth_factory(api_key=API_KEY)
    with httpx.Client(
        auth=auth, timeout=10, follow_redirects=True, event_hooks=auth.httpx_event_hooks()
    ) as client:
        request = client.build_request("GET", _redirect(server, origin_b.url("/landing")))
        client.send(request)
        client.send(request)
    assert [r.header(KEY_HEADER) for r in server.api_requests] == [API_KEY, API_KEY]
    assert all(r.header("Authorization") for r in server.api_requests)
    _assert_b_got_nothing_of_ours(origin_b, hops=2)


@pytest.mark.parametrize("flavour", ["httpx", "httpx_async"])
def test_an_httpx_client_following_redirects_without_the_hooks_is_refused(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, origin_b: _Recorder, flavour: str
) -> None:
    auth = auth_factory(api_key=API_KEY)
    assert _get(flavour, auth, server.api_url("/api/x"), guarded=False) == 200
    with pytest.raises(ConfigurationError, match=r"event_hooks=auth\.httpx_event_hooks\(\)$"):
        _get(flavour, auth, _redirect(server, "/api/landing"), guarded=False)
    # httpx gives the auth no moment before a hop it follows by itself: the
    # error then says where the key went.
    with pytest.raises(
        ConfigurationError, match="sent the API key to " + origin_b.url("")
    ) as caught:
        _get(flavour, auth, _redirect(server, origin_b.url("/landing")), guarded=False)
    assert API_KEY not in str(caught.value)
    # Not following redirects, the flow sees every hop: no hooks needed.
    assert _get(flavour, auth, _redirect(server, "/api/x"), follow=False, guarded=False) == 302


@pytest.mark.parametrize("flavour", ["httpx", "httpx_async"])
def test_without_an_api_key_no_hooks_are_needed(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, origin_b: _Recorder, flavour: str
) -> None:
    auth = auth_factory()
    assert _get(flavour, auth, _redirect(server, "/api/landing"), guarded=False) == 200
    assert _get(flavour, auth, _redirect(server, origin_b.url("/x")), guarded=False) == 200
    _assert_b_got_nothing_of_ours(origin_b)


def test_the_hooks_returned_are_fresh_lists_to_extend(auth_factory: AuthFactory) -> None:
    auth = auth_factory()
    hooks = auth.httpx_event_hooks()
    hooks["request"].append(print)
    assert len(auth.httpx_event_hooks()["request"]) == 1
    assert set(hooks) == {"request"}
