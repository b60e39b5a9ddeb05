"""Early refreshes run behind the requests: a still-valid token is never waited on.

In the first half of the refresh window, requests go out with the current
token while one refresh runs on a thread of its own; in the second half (the
token is about to expire) they wait for the new token.

A refresh that fails while the token is still valid fails no request: they go
on with that token, and the next attempt waits a while. Once the token has
expired, a failed refresh is the caller's error and the next request tries
again. ``close()`` and ``aclose()`` let a refresh in progress finish.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import httpx
import pytest
import requests

from eid_auth import EmpowerIDAuth, TokenEndpointUnavailableError
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import FLAVOURS, make_auth, send, wait_for

AuthFactory = Callable[..., EmpowerIDAuth]


def _token_due_in(server: EmpowerIDTestServer, seconds: float, **kwargs: object):  # type: ignore[no-untyped-def]
    grant = server.issue_grant()
    return grant, make_auth(
        server,
        access_token=grant["access_token"],
        refresh_token=grant["refresh_token"],
        expires_at=time.time() + seconds,
        **kwargs,
    )


def test_requests_in_the_early_window_do_not_wait_for_the_refresh(
    server: EmpowerIDTestServer,
) -> None:
    # 50 s left with a 60 s leeway: the first half of the window (60..30 s).
    grant, auth = _token_due_in(server, 50)
    server.fail_next(FaultSpec(status=200, delay=3.0))  # a slow, successful refresh
    go = threading.Barrier(20)
    sent: list[str | None] = []

    def one(i: int) -> None:
        go.wait(10)
        sent.append(
            send(
                FLAVOURS[i % len(FLAVOURS)], auth, "GET", server.api_url("/api/x")
            ).sent_authorization
        )

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert time.monotonic() - started < 2.5  # none waited out the 3 s refresh
    assert sent == [f"Bearer {grant['access_token']}"] * 20
    # One refresh for all of them, and later requests get its token.
    assert wait_for(
        lambda: auth.token is not None and auth.token.access_token != grant["access_token"]
    )
    assert server.token_requests == 1
    assert auth.token is not None
    new = send("requests", auth, "GET", server.api_url("/api/x")).sent_authorization
    assert new == f"Bearer {auth.token.access_token}"
    auth.close()


def test_requests_close_to_expiry_wait_for_the_new_token(server: EmpowerIDTestServer) -> None:
    # 10 s left: the second half of the window; going out now risks a 401.
    grant, auth = _token_due_in(server, 10)
    result = send("httpx", auth, "GET", server.api_url("/api/x"))
    assert result.sent_authorization != f"Bearer {grant['access_token']}"
    assert server.refresh_grants == 1
    auth.close()


def test_close_lets_a_refresh_in_progress_finish(server: EmpowerIDTestServer) -> None:
    grant, auth = _token_due_in(server, 50, timeout=10.0)
    server.fail_next(FaultSpec(status=200, delay=1.0))
    send("requests", auth, "GET", server.api_url("/api/x"))  # starts the refresh
    assert wait_for(lambda: server.token_requests == 1)
    auth.close()  # must not cut the refresh off after the server rotated the token
    assert server.refresh_grants == 1
    assert server.token_requests == 1
    assert server.reuse_detected == 0
    assert auth.token is not None
    assert auth.token.access_token != grant["access_token"]


def test_early_refreshes_are_spread_over_the_first_tenth_of_the_window() -> None:
    from eid_auth import Token
    from eid_auth._refresh import _make_state

    token = Token(access_token="at", refresh_token="rt", expires_at=10_000.0)
    starts = [_make_state(token, "rt", leeway=60).refresh_at for _ in range(200)]
    assert all(s is not None and 10_000 - 60 <= s <= 10_000 - 54 for s in starts)
    assert max(starts) - min(starts) > 3  # type: ignore[operator]  # spread, not one instant


def test_near_expiry_a_refused_refresh_does_not_fail_requests_on_a_valid_token(
    server: EmpowerIDTestServer,
) -> None:
    grant = server.issue_grant()
    auth = make_auth(
        server,
        access_token=grant["access_token"],
        refresh_token="a-refresh-token-the-server-never-issued",
        expires_at=time.time() + 20,  # the second half of the 60 s window
    )
    for flavour in FLAVOURS:
        result = send(flavour, auth, "GET", server.api_url("/api/x"))
        assert result.status == 200
        assert result.sent_authorization == f"Bearer {grant['access_token']}"
    assert server.token_requests == 1  # then the pause


def test_failed_early_refresh_keeps_using_the_valid_token(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    grant = server.issue_grant()
    auth = auth_factory(
        access_token=grant["access_token"],
        refresh_token=grant["refresh_token"],
        expires_at=time.time() + 50,  # inside the 60 s leeway, still valid
        max_retries=1,
    )
    server.fail_next(FaultSpec(status=503), count=2)
    for _ in range(3):
        result = send(flavour, auth, "GET", server.api_url("/api/x"))
        assert result.status == 200
        assert result.sent_authorization == f"Bearer {grant['access_token']}"
    # The refresh runs behind the requests: wait for its two attempts to end.
    wait_for(lambda: server.token_requests >= 2)
    for _ in range(3):
        result = send(flavour, auth, "GET", server.api_url("/api/x"))
        assert result.sent_authorization == f"Bearer {grant['access_token']}"
    # One early refresh (two attempts), then a pause instead of one per request.
    assert server.token_requests == 2
    assert server.refresh_grants == 0


def test_failed_refresh_of_an_expired_token_is_the_callers_error(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    grant = server.issue_grant()
    auth = auth_factory(
        access_token=grant["access_token"],
        refresh_token=grant["refresh_token"],
        expires_at=time.time() - 1,
        max_retries=0,
    )
    server.fail_next(FaultSpec(status=503), count=1)
    with pytest.raises(TokenEndpointUnavailableError):
        requests.get(server.api_url("/api/x"), auth=auth, timeout=10)
    # No pause for an expired token: the next request refreshes.
    assert requests.get(server.api_url("/api/x"), auth=auth, timeout=10).status_code == 200


def test_a_slow_refresh_in_the_last_second_warns_nobody(
    server: EmpowerIDTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    _, auth = _token_due_in(server, 0.9)
    server.fail_next(FaultSpec(status=200, delay=1.0))  # slow, then successful
    with caplog.at_level(logging.WARNING, logger="eid_auth"):
        for flavour in FLAVOURS:
            assert send(flavour, auth, "GET", server.api_url("/api/x")).status == 200
        assert wait_for(lambda: server.refresh_grants == 1)
        auth.close()
    assert caplog.records == []


def test_aclose_lets_a_refresh_in_progress_finish(server: EmpowerIDTestServer) -> None:
    grant, auth = _token_due_in(server, 50, timeout=10.0)
    server.fail_next(FaultSpec(status=200, delay=1.0))

    async def scenario() -> None:
        async with httpx.AsyncClient(auth=auth) as client:
            await client.get(server.api_url("/api/x"))  # starts the refresh
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        await auth.aclose()
        ticker.cancel()
        assert ticks > 5  # the event loop kept running while aclose() waited

    asyncio.run(scenario())
    assert (server.refresh_grants, server.token_requests, server.reuse_detected) == (1, 1, 0)
    assert auth.token is not None
    assert auth.token.access_token != grant["access_token"]
