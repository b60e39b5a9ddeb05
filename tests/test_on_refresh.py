"""The ``on_refresh`` callback, where an application saves each new token.

It is called with every new token, before any request goes out with it, and
in the order the tokens were issued, even when a 401 brings a newer one while
it runs. One that raises loses no token; one interrupted (KeyboardInterrupt)
strands no caller waiting for the same refresh. It may send requests with the
very auth that called it. (An async function is refused at construction: see
test_config.py.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests

from eid_auth import EmpowerIDAuth, Token
from eid_auth.testing import EmpowerIDTestServer

from .conftest import send

AuthFactory = Callable[..., EmpowerIDAuth]


def test_on_refresh_gets_every_new_token(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    seen: list[Token] = []
    auth = auth_factory(on_refresh=seen.append)
    send(flavour, auth, "GET", server.api_url("/api/x"))
    server.expire_access_tokens()
    send(flavour, auth, "GET", server.api_url("/api/x"))
    assert len(seen) == 2
    assert seen[-1] == auth.token


def test_on_refresh_sees_a_token_before_anyone_uses_it(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    used_before_saved: list[bool] = []

    def slow_save(token: Token) -> None:
        time.sleep(0.3)  # a slow write to a vault
        sent = [r.header("Authorization") for r in server.api_requests]
        used_before_saved.append(f"Bearer {token.access_token}" in sent)

    auth = auth_factory(on_refresh=slow_save)
    url = server.api_url("/api/x")
    threads = [
        threading.Thread(target=lambda: requests.get(url, auth=auth, timeout=30))
        for _ in range(10)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert used_before_saved == [False]
    assert len(server.api_requests) == 10


def test_saved_tokens_follow_issue_order_when_a_401_hits_during_on_refresh(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    saved: list[Token] = []
    first_call = threading.Event()

    def save(token: Token) -> None:
        if not first_call.is_set():
            first_call.set()
            time.sleep(0.5)
        saved.append(token)

    auth = auth_factory(on_refresh=save)
    url = server.api_url("/api/x")
    first = threading.Thread(target=lambda: requests.get(url, auth=auth, timeout=30))
    first.start()
    assert first_call.wait(10)
    # While the first on_refresh runs, the server rejects everything issued so far.
    server.expire_access_tokens()
    assert requests.get(url, auth=auth, timeout=30).status_code == 200
    first.join(30)
    assert saved[-1] == auth.token  # the newest token is the one saved last
    assert server.reuse_detected == 0


def test_on_refresh_that_raises_does_not_lose_the_token(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    def broken(token: Token) -> None:
        raise OSError("disk full")

    auth = auth_factory(on_refresh=broken)
    assert send(flavour, auth, "GET", server.api_url("/api/x")).status == 200
    assert auth.token is not None
    assert send(flavour, auth, "GET", server.api_url("/api/x")).status == 200
    assert server.refresh_grants == 1


def test_keyboard_interrupt_in_on_refresh_does_not_strand_waiters(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    entered = threading.Event()

    def interrupted(token: Token) -> None:
        entered.set()
        time.sleep(0.2)
        raise KeyboardInterrupt

    auth = auth_factory(on_refresh=interrupted)
    leader_saw: list[BaseException] = []

    def leader() -> None:
        try:
            auth.refresh()
        except BaseException as exc:  # the point of the test
            leader_saw.append(exc)

    lead = threading.Thread(target=leader)
    lead.start()
    # Join only once the other thread leads, so the interrupt is never ours.
    assert entered.wait(10)
    statuses = [requests.get(server.api_url("/api/x"), auth=auth, timeout=30).status_code]
    lead.join(10)
    assert [type(e) for e in leader_saw] == [KeyboardInterrupt]
    assert statuses == [200]  # the waiter got the new token
    assert server.refresh_grants == 1


def test_on_refresh_may_use_the_same_auth(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    statuses: list[int] = []
    holder: list[EmpowerIDAuth] = []

    def save_through_the_api(token: Token) -> None:
        # e.g. storing the token in a vault reached with this very auth
        vault = requests.put(server.api_url("/api/vault"), auth=holder[0], timeout=10)
        statuses.append(vault.status_code)

    auth = auth_factory(on_refresh=save_through_the_api)
    holder.append(auth)
    started = time.monotonic()
    assert requests.get(server.api_url("/api/x"), auth=auth, timeout=10).status_code == 200
    assert time.monotonic() - started < 5  # no wait for its own refresh
    # Now a refresh caused by a 401: the old token still looks valid locally.
    server.expire_access_tokens()
    assert requests.get(server.api_url("/api/x"), auth=auth, timeout=10).status_code == 200
    assert statuses == [200, 200]
    assert server.refresh_grants == 2
    vault = [r for r in server.api_requests if r.path == "/api/vault"]
    assert auth.token is not None
    # Each save went out once, with the token being saved.
    assert len(vault) == 2
    assert vault[-1].header("Authorization") == f"Bearer {auth.token.access_token}"
