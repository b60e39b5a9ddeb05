"""Shared fixtures: a loopback EmpowerID server, auth objects, and one way to send a
request through each client flavour (requests, httpx and httpx2, each sync and
async, and aiohttp)."""

from __future__ import annotations

import asyncio
import copy
import importlib
import logging
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
import requests

from eid_auth import EmpowerIDAuth, Token
from eid_auth.stores import StoredToken
from eid_auth.testing import EmpowerIDTestServer

from .redis_server import redis_url as _redis_url

# A flavour is a client library and the way it is driven: "<library>" for its
# synchronous client, "<library>_async" for its asyncio client; aiohttp has
# only the one (a session with auth.aiohttp_middleware()).
FLAVOURS = ["requests", "httpx", "httpx_async", "httpx2", "httpx2_async", "aiohttp"]
# The flavours of httpx's API (httpx, and httpx2 which keeps it under another name).
HTTPX_FLAVOURS = ["httpx", "httpx_async", "httpx2", "httpx2_async"]
CLIENT_ID = "test-client"
CLIENT_SECRET = "test-client-secret"


@pytest.fixture
def server() -> Iterator[EmpowerIDTestServer]:
    with EmpowerIDTestServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as s:
        yield s


# Every EmpowerIDTestServer started in this test session, so that each test's
# log records can be checked against every secret any server issued.
_started_servers: list[EmpowerIDTestServer] = []
_original_start = EmpowerIDTestServer.start


def _start_and_remember(self: EmpowerIDTestServer) -> None:
    _started_servers.append(self)
    _original_start(self)


EmpowerIDTestServer.start = _start_and_remember  # type: ignore[method-assign]

# Secrets tests hand to eid_auth other than through a server.
OTHER_SECRETS = ["hunter2-redis-password"]


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Formatted now, tracebacks included, as a log file would hold them.
        self.lines.append(self.format(record))


@pytest.fixture(autouse=True)
def no_secret_in_any_log_record() -> Iterator[None]:
    """Every test: no record of the ``eid_auth`` logger, at any level, holds a
    token or secret that any test server issued or any test handed over."""
    logger = logging.getLogger("eid_auth")
    keep = _Keep()
    level = logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.DEBUG)
    # Every record is made, even while a test raises the level (caplog.at_level):
    # handlers still filter by their own level, ours takes them all.
    logger.isEnabledFor = lambda _level: True  # type: ignore[method-assign]
    try:
        yield
        # Refreshes still running behind the test log too: wait for them.
        for thread in threading.enumerate():
            if thread.name == "eid_auth-refresh":
                thread.join(60)
    finally:
        del logger.isEnabledFor
        logger.removeHandler(keep)
        logger.setLevel(level)
    secrets = {CLIENT_SECRET, *OTHER_SECRETS}
    for started in _started_servers:
        secrets |= started.issued_secrets
    leaks = [
        (number, line.count("\n") + 1)
        for number, line in enumerate(keep.lines)
        if any(secret in line for secret in secrets if len(secret) >= 6)
    ]
    # Says which record leaked, never the secret itself.
    assert not leaks, f"log records (index, lines) holding a secret: {leaks}"


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """The URL of a real redis-server on loopback (see tests/redis_server.py)."""
    with _redis_url() as url:
        yield url


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def library(flavour: str) -> ModuleType:
    """The client library of ``flavour``: ``library("httpx2_async")`` is ``httpx2``."""
    return importlib.import_module(flavour.removesuffix("_async"))


def is_async(flavour: str) -> bool:
    """True for the flavours that drive an asyncio client."""
    return flavour.endswith("_async") or flavour == "aiohttp"


def after_a_resend(flavour: str) -> list[int]:
    """``Result.history`` of a request that met a 401 and was re-sent: the 401,
    except through aiohttp, whose ``history`` holds redirects only (a
    middleware's re-send is not one); the server's record shows the re-send."""
    return [] if flavour == "aiohttp" else [401]


def wait_for(condition: Callable[[], object], seconds: float = 10.0) -> bool:
    """Poll ``condition`` until it is true or ``seconds`` pass (bounded, no sleep-and-hope)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def make_auth(server: EmpowerIDTestServer, **kwargs: Any) -> EmpowerIDAuth:
    """An auth object holding only a fresh grant's refresh token (so the first
    request redeems it), with fast retries so fault tests stay quick."""
    if "refresh_token" not in kwargs and "token" not in kwargs and "access_token" not in kwargs:
        kwargs["refresh_token"] = server.issue_grant()["refresh_token"]
    kwargs.setdefault("backoff_factor", 0.01)
    kwargs.setdefault("timeout", 5.0)
    return EmpowerIDAuth(
        token_endpoint=server.token_endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        **kwargs,
    )


def stored_record(generation: int = 1, **kwargs: Any) -> StoredToken:
    """A store's record for this client: a token valid until 2033, refresh token ``rt``."""
    kwargs.setdefault("token", Token(access_token="at", refresh_token="rt", expires_at=2e9))
    kwargs.setdefault("refresh_token", "rt")
    return StoredToken(
        client_id=CLIENT_ID,
        token_endpoint="http://127.0.0.1:1/oauth/v2/token",
        generation=generation,
        **kwargs,
    )


def copies(value: Any) -> list[Any]:
    """``value`` through pickle (every protocol), ``copy.copy`` and ``copy.deepcopy``."""
    pickled = [
        pickle.loads(pickle.dumps(value, protocol))  # noqa: S301 - our own bytes
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1)
    ]
    return [*pickled, copy.copy(value), copy.deepcopy(value)]


@pytest.fixture
def auth_factory(server: EmpowerIDTestServer) -> Iterator[Callable[..., EmpowerIDAuth]]:
    made: list[EmpowerIDAuth] = []

    def factory(**kwargs: Any) -> EmpowerIDAuth:
        auth = make_auth(server, **kwargs)
        made.append(auth)
        return auth

    yield factory
    for auth in made:
        auth.close()


@dataclass
class Result:
    status: int
    body: Any
    history: list[int]
    sent_authorization: str | None


def _body(text: str) -> Any:
    try:
        import json

        return json.loads(text)
    except ValueError:
        return text


def send(
    flavour: str,
    auth: EmpowerIDAuth,
    method: str,
    url: str,
    *,
    form: dict[str, str] | None = None,
    json: Any = None,
    content: Any = None,
    follow_redirects: bool = True,
) -> Result:
    """Send one request with ``auth`` through the client named by ``flavour``."""
    if flavour == "requests":
        with requests.Session() as session:
            session.auth = auth
            r = session.request(
                method,
                url,
                data=form if form is not None else content,
                json=json,
                timeout=10,
                allow_redirects=follow_redirects,
            )
            return Result(
                r.status_code,
                _body(r.text),
                [h.status_code for h in r.history],
                r.request.headers.get("Authorization"),
            )
    if flavour == "aiohttp":
        return _send_with_aiohttp(
            auth,
            method,
            url,
            data=form if form is not None else content,
            json=json,
            follow_redirects=follow_redirects,
        )
    kwargs: dict[str, Any] = {"data": form, "json": json, "content": content}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    lib = library(flavour)  # httpx or httpx2: the same API
    if not is_async(flavour):
        with lib.Client(auth=auth, timeout=10, follow_redirects=follow_redirects) as client:
            resp = client.request(method, url, **kwargs)
    else:

        async def go() -> Any:
            async with lib.AsyncClient(
                auth=auth, timeout=10, follow_redirects=follow_redirects
            ) as client:
                response = await client.request(method, url, **kwargs)
                await response.aread()
                return response

        resp = asyncio.run(go())
    return Result(
        resp.status_code,
        _body(resp.text),
        [h.status_code for h in resp.history],
        resp.request.headers.get("Authorization"),
    )


def _send_with_aiohttp(
    auth: EmpowerIDAuth, method: str, url: str, *, follow_redirects: bool, **kwargs: Any
) -> Result:
    aiohttp = library("aiohttp")

    async def go() -> Result:
        async with (
            aiohttp.ClientSession(
                middlewares=[auth.aiohttp_middleware()],
                timeout=aiohttp.ClientTimeout(total=10),
                # The loopback servers are IP addresses, whose cookies aiohttp's
                # default jar refuses; requests and httpx keep them.
                cookie_jar=aiohttp.CookieJar(unsafe=True),
            ) as session,
            session.request(method, url, allow_redirects=follow_redirects, **kwargs) as resp,
        ):
            text = await resp.text()
            return Result(
                resp.status,
                _body(text),
                [h.status for h in resp.history],
                # What went out with the last request sent (a re-send included).
                resp.request_info.headers.get("Authorization"),
            )

    return asyncio.run(go())


class _RecordAll(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def eid_logs() -> Iterator[list[logging.LogRecord]]:
    """Every record the ``eid_auth`` logger emits during the test, at DEBUG and up."""
    handler = _RecordAll()
    logger = logging.getLogger("eid_auth")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(old_level)
