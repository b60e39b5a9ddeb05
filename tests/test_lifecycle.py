"""An auth's life: ``with`` and ``async with`` close it, the way httpx clients close;
``help()`` shows this package's own methods; the demo answers ``--help``."""

from __future__ import annotations

import asyncio
import pydoc
import subprocess
import sys
import time

import httpx
import pytest
import requests

from eid_auth import EmpowerIDAuth
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import library, make_auth, wait_for


def _auth_due_in(server: EmpowerIDTestServer, seconds: float) -> tuple[str, EmpowerIDAuth]:
    grant = server.issue_grant()
    auth = make_auth(
        server,
        access_token=grant["access_token"],
        refresh_token=grant["refresh_token"],
        expires_at=time.time() + seconds,
        timeout=10.0,
    )
    return grant["access_token"], auth


def test_with_closes_the_auth_after_a_refresh_in_progress(server: EmpowerIDTestServer) -> None:
    # 50 s left of a 60 s leeway: the request starts a slow refresh behind itself.
    old, auth = _auth_due_in(server, 50)
    server.fail_next(FaultSpec(status=200, delay=1.0))
    with auth as entered, requests.Session() as session:
        assert entered is auth
        assert session.get(server.api_url("/api/x"), auth=auth).status_code == 200
        assert wait_for(lambda: server.token_requests == 1)
    # Leaving the block is close(): it waited for the refresh instead of cutting it off.
    assert server.refresh_grants == 1
    assert auth.token is not None
    assert auth.token.access_token != old
    assert server.reuse_detected == 0


def test_async_with_closes_the_auth_without_blocking_the_loop(
    server: EmpowerIDTestServer,
) -> None:
    old, auth = _auth_due_in(server, 50)
    server.fail_next(FaultSpec(status=200, delay=1.0))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    async def scenario() -> None:
        async with auth as entered:
            assert entered is auth
            async with httpx.AsyncClient(auth=auth) as client:
                assert (await client.get(server.api_url("/api/x"))).status_code == 200
            ticker = asyncio.ensure_future(tick())
        ticker.cancel()

    asyncio.run(scenario())
    assert server.refresh_grants == 1
    assert auth.token is not None
    assert auth.token.access_token != old
    assert ticks > 5  # aclose() waited for the refresh on the event loop, not blocking it


def test_with_lets_errors_through(server: EmpowerIDTestServer) -> None:
    auth = make_auth(server, refresh_token=server.issue_grant()["refresh_token"])

    class Boom(Exception):
        pass

    with pytest.raises(Boom), auth:
        raise Boom


def test_demo_help_prints_usage_and_starts_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "eid_auth.demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m eid_auth.demo")
    assert "test server at" not in done.stdout  # the tour did not run
    wrong = subprocess.run(
        [sys.executable, "-m", "eid_auth.demo", "--bogus"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert wrong.returncode == 2
    assert "unrecognized arguments: --bogus" in wrong.stderr


def test_help_shows_this_packages_methods_not_httpx_internals() -> None:
    text = pydoc.render_doc(EmpowerIDAuth, renderer=pydoc.plaintext)
    own = text.index("Methods defined here")
    inherited = text.find("inherited from")
    assert own < inherited
    for name in ("refresh(", "arefresh(", "close(", "aclose(", "token", "store"):
        assert name in text[:inherited], name
    # httpx's own explanation of how to write an auth flow is not ours to show.
    assert "Execute the authentication flow" not in text
    # Each method the clients call has a docstring of ours.
    for name in ("sync_auth_flow", "async_auth_flow", "auth_flow", "__call__"):
        assert getattr(EmpowerIDAuth, name).__doc__.startswith(("Sign", "Like", "Unused")), name


def test_help_has_words_for_init_repr_and_the_with_blocks() -> None:
    text = pydoc.render_doc(EmpowerIDAuth, renderer=pydoc.plaintext)
    assert "Initialize self" not in text
    for name in ("__init__", "__exit__", "__aexit__", "__repr__"):
        doc = getattr(EmpowerIDAuth, name).__doc__
        assert doc, name
        assert doc.strip() in text, name


@pytest.mark.parametrize("name", ["httpx", "httpx2"])
def test_auth_flow_driven_by_hand_signs_like_sync_auth_flow(
    server: EmpowerIDTestServer, name: str
) -> None:
    auth = make_auth(server)
    flow = auth.auth_flow(library(name).Request("GET", server.api_url("/api/x")))
    request = next(flow)
    assert request.headers["Authorization"].startswith("Bearer ")
    auth.close()
