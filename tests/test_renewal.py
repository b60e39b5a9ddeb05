"""Tokens without a refresh token: ``EmpowerIDAuth.client_credentials()`` and
``EmpowerIDAuth.password()`` run their grant again when the token is missing,
expires or gets a 401 (the refresh grant first where the answer carried a
refresh token), with the refresh path's promises: one grant per expiry across
threads, tasks, processes and machines, and secrets never printed or stored."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from eid_auth import (
    ConfigurationError,
    EmpowerIDAuth,
    EmpowerIDClient,
    InvalidGrantError,
    TokenStoreError,
)
from eid_auth.stores import FileTokenStore, MemoryTokenStore
from eid_auth.testing import EmpowerIDTestServer

from .conftest import CLIENT_ID, CLIENT_SECRET, after_a_resend, send
from .test_multiprocess import collect, start, token_request_story
from .workers import Fleet, StoreSpec, run_rounds

PASSWORD = "correct horse battery staple"  # the test server's user jdoe


def cc_auth(server: EmpowerIDTestServer, **kwargs: Any) -> EmpowerIDAuth:
    kwargs.setdefault("backoff_factor", 0.01)
    kwargs.setdefault("timeout", 5.0)
    return EmpowerIDAuth.client_credentials(
        token_endpoint=server.token_endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        **kwargs,
    )


def password_auth(server: EmpowerIDTestServer, **kwargs: Any) -> EmpowerIDAuth:
    kwargs.setdefault("backoff_factor", 0.01)
    kwargs.setdefault("timeout", 5.0)
    kwargs.setdefault("username", "jdoe")
    kwargs.setdefault("password", PASSWORD)
    return EmpowerIDAuth.password(
        token_endpoint=server.token_endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        **kwargs,
    )


@pytest.fixture
def short_lived() -> Iterator[EmpowerIDTestServer]:
    with EmpowerIDTestServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, access_token_lifetime=1
    ) as server:
        yield server


def test_client_credentials_first_request_gets_a_token_and_a_401_renews_it_once(
    server: EmpowerIDTestServer, flavour: str
) -> None:
    auth = cc_auth(server, scope="api")
    url = server.api_url("/api/whoami")
    first = send(flavour, auth, "GET", url)
    assert first.status == 200
    assert server.grants_served == {"client_credentials": 1}
    assert server.token_request_log[0].form.get("scope") == "api"

    server.expire_access_tokens()
    second = send(flavour, auth, "GET", url)
    assert second.status == 200
    assert second.history == after_a_resend(flavour)
    assert second.sent_authorization != first.sent_authorization
    assert server.grants_served == {"client_credentials": 2}
    auth.close()


def test_client_credentials_renew_by_the_clock_without_a_401(
    short_lived: EmpowerIDTestServer, flavour: str
) -> None:
    auth = cc_auth(short_lived)
    url = short_lived.api_url("/api/x")
    assert send(flavour, auth, "GET", url).status == 200
    time.sleep(1.2)  # the 1 s token has expired
    result = send(flavour, auth, "GET", url)
    assert result.status == 200
    assert result.history == []  # renewed before sending, not after a 401
    assert short_lived.grants_served == {"client_credentials": 2}
    auth.close()


def test_password_renews_with_the_refresh_grant_first_then_the_password_grant(
    server: EmpowerIDTestServer, flavour: str
) -> None:
    auth = password_auth(server)
    url = server.api_url("/api/whoami")
    assert send(flavour, auth, "GET", url).status == 200
    assert server.grants_served == {"password": 1}

    server.expire_access_tokens()
    assert send(flavour, auth, "GET", url).status == 200
    assert server.grants_served == {"password": 1, "refresh_token": 1}

    # The refresh token is refused: the password grant runs instead.
    assert auth.token is not None
    assert auth.token.refresh_token is not None
    server.revoke_grant(auth.token.refresh_token)
    server.expire_access_tokens()
    result = send(flavour, auth, "GET", url)
    assert result.status == 200
    assert result.history == after_a_resend(flavour)
    assert server.grants_served == {"password": 2, "refresh_token": 1}
    auth.close()


def test_client_credentials_without_a_refresh_token_never_sends_the_refresh_grant(
    server: EmpowerIDTestServer,
) -> None:
    auth = cc_auth(server)
    for _ in range(3):
        auth.refresh()
    assert server.grants_served == {"client_credentials": 3}
    assert all(r.form.get("grant_type") == "client_credentials" for r in server.token_request_log)


def test_fifty_threads_and_two_hundred_tasks_on_an_expired_token_cost_one_grant(
    server: EmpowerIDTestServer,
) -> None:
    auth = cc_auth(server)
    url = server.api_url("/api/x")
    assert send("httpx", auth, "GET", url).status == 200
    server.expire_access_tokens()  # every caller gets a 401 at once
    go = threading.Barrier(51)
    statuses: list[int] = []

    def one_thread() -> None:
        go.wait(30)
        with requests.Session() as session:
            session.auth = auth
            statuses.append(session.get(url, timeout=30).status_code)

    async def tasks() -> None:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            go.wait(30)  # blocks the loop on purpose: every task starts together
            answers = await asyncio.gather(*(client.get(url) for _ in range(200)))
        statuses.extend(a.status_code for a in answers)

    threads = [threading.Thread(target=one_thread) for _ in range(50)]
    threads.append(threading.Thread(target=lambda: asyncio.run(tasks())))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [200] * 250
    assert server.grants_served == {"client_credentials": 2}
    auth.close()


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_processes_sharing_a_store_share_one_client_credentials_token_per_expiry(
    server: EmpowerIDTestServer, kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "file":
        spec = StoreSpec("file", str(tmp_path / "token.json"))
    else:
        url = request.getfixturevalue("redis_server_url")
        spec = StoreSpec("redis", url, key=f"test-{uuid.uuid4().hex}")
    processes, rounds, threads = 4, 3, 6
    fleet = Fleet(
        store=spec,
        token_endpoint=server.token_endpoint,
        api_url=server.api_url("/api/whoami"),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        seed_refresh_token="",
        threads=threads,
        rounds=rounds,
        grant="client_credentials",
    )
    children, barrier, results = start(run_rounds, fleet, processes)
    grants_after_round = []
    for round_ in range(rounds):
        if round_:
            server.expire_access_tokens()  # every process's token now gets a 401
        barrier.wait(120)  # type: ignore[attr-defined]
        barrier.wait(180)  # type: ignore[attr-defined]
        grants_after_round.append(server.grants_served.get("client_credentials", 0))
    reports = collect(children, results)

    assert [f for r in reports for f in r.failed] == []
    assert sum(r.ok for r in reports) == processes * threads * rounds
    # Round 0 fetches the first token; each later round follows one expiry.
    assert grants_after_round == [1, 2, 3], token_request_story(server)
    assert sum(r.on_refresh_calls for r in reports) == rounds


def test_the_password_never_reaches_the_store_or_a_message(
    server: EmpowerIDTestServer, tmp_path: Path
) -> None:
    path = tmp_path / "token.json"
    auth = password_auth(server, store=FileTokenStore(path))
    url = server.api_url("/api/whoami")
    assert send("requests", auth, "GET", url).status == 200
    server.expire_access_tokens()
    assert send("httpx", auth, "GET", url).status == 200
    basic = base64.b64encode(f"jdoe:{PASSWORD}".encode()).decode()
    stored = path.read_text()
    assert "access_token" in stored
    assert PASSWORD not in stored
    assert basic not in stored
    assert PASSWORD not in repr(auth)
    assert PASSWORD not in repr(auth._renewal)
    auth.close()

    wrong = password_auth(server, password="not " + PASSWORD)
    with pytest.raises(InvalidGrantError) as caught:
        wrong.refresh()
    assert PASSWORD not in str(caught.value)


def test_a_refused_password_is_not_sent_again_for_a_while(
    server: EmpowerIDTestServer,
) -> None:
    store = MemoryTokenStore()
    wrong = password_auth(server, password="wrong password", store=store)
    with pytest.raises(InvalidGrantError):
        wrong.refresh()
    sent = server.token_requests
    # Another auth sharing the store does not try it either: no account lockout.
    other = password_auth(server, password="wrong password", store=store)
    for auth in (wrong, other):
        with pytest.raises(InvalidGrantError, match="not sent again"):
            auth.refresh()
    assert server.token_requests == sent


def test_a_store_holding_another_persons_token_is_refused(server: EmpowerIDTestServer) -> None:
    store = MemoryTokenStore()
    app = cc_auth(server, store=store)
    app.refresh()
    person = cc_auth(server, store=store, username="jdoe")
    with pytest.raises(TokenStoreError, match="own store"):
        person.refresh()
    assert server.grants_served == {"client_credentials": 1}
    refresh = EmpowerIDAuth(
        token_endpoint=server.token_endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        store=store,
    )
    with pytest.raises(TokenStoreError, match="own store"):
        refresh.refresh()


def test_auth_from_an_empowerid_client(server: EmpowerIDTestServer, flavour: str) -> None:
    eid = EmpowerIDClient(
        token_endpoint=server.token_endpoint, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    refresh = EmpowerIDAuth(client=eid, refresh_token=server.issue_grant()["refresh_token"])
    assert send(flavour, refresh, "GET", server.api_url("/api/x")).status == 200
    assert server.refresh_grants == 1
    cc = EmpowerIDAuth.client_credentials(client=eid, scope="api")
    assert send(flavour, cc, "GET", server.api_url("/api/x")).status == 200
    assert server.grants_served["client_credentials"] == 1
    with pytest.raises(ConfigurationError, match="client_id="):
        EmpowerIDAuth(client=eid, client_id=CLIENT_ID, refresh_token="rt")


def test_a_public_client_may_refresh_but_not_use_client_credentials(
    server: EmpowerIDTestServer,
) -> None:
    public = EmpowerIDClient(token_endpoint=server.token_endpoint, client_id=CLIENT_ID)
    auth = EmpowerIDAuth(client=public, refresh_token="rt")
    assert repr(auth).endswith("client_auth='none', token=None)")
    with pytest.raises(ConfigurationError, match="confidential client"):
        EmpowerIDAuth.client_credentials(client=public)
