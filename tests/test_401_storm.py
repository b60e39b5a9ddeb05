"""An API that answers 401 to every token (a wrong API key, audience or scope)
costs a bounded number of refresh grants, not one per request.

The rule: when a request re-sent with the token that a refresh caused by its
401 brought is answered 401 again, 401s for that token are returned to the
caller without refreshing for ``REJECTED_TOKEN_PAUSE`` seconds. Refreshes on
expiry, and 401s for any other token (one the API accepted at first, say),
are unaffected.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from eid_auth import EmpowerIDAuth
from eid_auth.stores import FileTokenStore
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import after_a_resend, is_async, library, send

AuthFactory = Callable[..., EmpowerIDAuth]


def _pause_warnings(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [
        r
        for r in records
        if r.levelno == logging.WARNING and "returned without refreshing" in r.getMessage()
    ]


def _burst(flavour: str, auth: EmpowerIDAuth, url: str, count: int) -> list[int]:
    """``count`` requests at once: threads for the sync clients, tasks on one
    AsyncClient (or aiohttp session) for the async ones."""
    if flavour == "aiohttp":
        aiohttp = library("aiohttp")

        async def on_aiohttp() -> list[int]:
            async with aiohttp.ClientSession(middlewares=[auth.aiohttp_middleware()]) as session:

                async def one() -> int:
                    async with session.get(url) as response:
                        await response.read()
                        return int(response.status)

                return list(await asyncio.gather(*(one() for _ in range(count))))

        return asyncio.run(on_aiohttp())
    if is_async(flavour):

        async def main() -> list[int]:
            async with library(flavour).AsyncClient(auth=auth, timeout=10) as client:
                responses = await asyncio.gather(*(client.get(url) for _ in range(count)))
            return [r.status_code for r in responses]

        return asyncio.run(main())
    go = threading.Barrier(count, timeout=10)
    statuses: list[int] = []

    def one() -> None:
        go.wait()
        statuses.append(send(flavour, auth, "GET", url).status)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return statuses


def test_twenty_requests_to_an_api_that_rejects_every_token_cost_one_refresh(
    server: EmpowerIDTestServer,
    auth_factory: AuthFactory,
    flavour: str,
    eid_logs: list[logging.LogRecord],
) -> None:
    auth = auth_factory()
    auth.refresh()
    server.reject_all_access_tokens = True
    results = [send(flavour, auth, "GET", server.api_url("/api/x")) for _ in range(20)]
    assert [r.status for r in results] == [401] * 20
    # The first request refreshed and was re-sent once; the others went out once.
    assert results[0].history == after_a_resend(flavour)
    assert all(r.history == [] for r in results[1:])
    assert len(server.api_requests) == 21
    assert server.refresh_grants == 2  # auth.refresh(), then the one after the first 401
    assert len(_pause_warnings(eid_logs)) == 1


def test_twenty_concurrent_requests_to_an_api_that_rejects_every_token_cost_one_refresh(
    server: EmpowerIDTestServer,
    auth_factory: AuthFactory,
    flavour: str,
    eid_logs: list[logging.LogRecord],
) -> None:
    auth = auth_factory()
    auth.refresh()
    server.reject_all_access_tokens = True
    # A slow refresh: every request meets its 401 while the refresh is in flight.
    server.fail_next(FaultSpec(status=200, delay=0.5))
    url = server.api_url("/api/x")
    assert _burst(flavour, auth, url, 20) == [401] * 20
    assert server.refresh_grants == 2
    # A second burst meets the refreshed token's 401s: no grant at all.
    assert _burst(flavour, auth, url, 20) == [401] * 20
    assert server.refresh_grants == 2
    assert server.reuse_detected == 0
    assert len(_pause_warnings(eid_logs)) == 1


def test_after_the_pause_a_401_refreshes_once_more(
    server: EmpowerIDTestServer,
    auth_factory: AuthFactory,
    flavour: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("eid_auth._refresh.REJECTED_TOKEN_PAUSE", 1.0)
    auth = auth_factory()
    auth.refresh()
    server.reject_all_access_tokens = True
    url = server.api_url("/api/x")
    for _ in range(3):
        assert send(flavour, auth, "GET", url).status == 401
    assert server.refresh_grants == 2
    time.sleep(1.1)  # the pause ends: the API may have been fixed
    first = send(flavour, auth, "GET", url)
    assert (first.status, first.history) == (401, after_a_resend(flavour))
    assert server.refresh_grants == 3
    # ... and the new token's 401s start a new pause.
    for _ in range(3):
        assert send(flavour, auth, "GET", url).status == 401
    assert server.refresh_grants == 3


def test_a_401_for_a_token_refreshed_on_expiry_still_refreshes(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    grant = server.issue_grant()
    auth = auth_factory(
        access_token=grant["access_token"],
        refresh_token=grant["refresh_token"],
        expires_at=time.time() - 1,
    )
    url = server.api_url("/api/x")
    assert send(flavour, auth, "GET", url).status == 200  # refreshed on expiry first
    assert server.refresh_grants == 1
    server.expire_access_tokens()  # the API now rejects it, a second later
    result = send(flavour, auth, "GET", url)
    assert (result.status, result.history) == (200, after_a_resend(flavour))
    assert server.refresh_grants == 2


def test_tokens_the_api_accepts_and_then_revokes_are_refreshed_every_time(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory()
    auth.refresh()
    url = server.api_url("/api/x")
    # Each refreshed token is accepted by the re-send, then revoked a moment
    # later: no storm, so every 401 still refreshes.
    for grants in (2, 3, 4):
        server.expire_access_tokens()
        result = send(flavour, auth, "GET", url)
        assert (result.status, result.history) == (200, after_a_resend(flavour))
        assert server.refresh_grants == grants


def test_a_401_for_a_token_another_process_refreshed_still_refreshes(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str, tmp_path: Path
) -> None:
    # Two auths on one file store stand for two processes.
    path = tmp_path / "token.json"
    refresh_token = server.issue_grant()["refresh_token"]
    one = auth_factory(refresh_token=refresh_token, store=FileTokenStore(path))
    other = auth_factory(refresh_token=refresh_token, store=FileTokenStore(path))
    server.reject_all_access_tokens = True
    url = server.api_url("/api/x")
    assert send(flavour, one, "GET", url).status == 401
    assert server.refresh_grants == 2  # the first token, then one refresh after its 401
    # The other process starts with the token the first one refreshed; the API
    # rejects it, and this process has not refreshed it: it refreshes once.
    assert send(flavour, other, "GET", url).status == 401
    assert server.refresh_grants == 3
    # Then each process returns its 401s without refreshing.
    for _ in range(3):
        assert send(flavour, one, "GET", url).status == 401
        assert send(flavour, other, "GET", url).status == 401
    assert server.refresh_grants == 3
    assert server.reuse_detected == 0
