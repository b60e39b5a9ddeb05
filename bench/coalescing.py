"""Refresh coalescing under load: many callers meet one expired token at the same moment.

Run by hand (not part of the test suite):

    .venv/bin/pip install -r bench/requirements.txt && .venv/bin/python bench/coalescing.py

For each client (EmpowerIDAuth and the usual Python OAuth 2.0 clients, each set up as
its documentation says for automatic refresh with ``client_secret_post``) and each
load (1, 10 and 100 threads released by one barrier, or 1,000 asyncio tasks released
together for an asyncio client), every caller sends one API request through one
shared client whose access token has expired (in the past for the client, revoked at
the server), so each must refresh first. Every cell gets a fresh embedded EmpowerID
server with rotating refresh tokens and reuse detection, which revokes the whole
grant when a spent refresh token comes back; its first token request is answered
after 0.3 s (a slow but successful refresh), so that every caller finds the token
expired while that refresh is in flight. The limit is 1 refresh grant and 0 failed
requests per cell.

The table runs the server without the empty ``"error": ""`` and
``"error_description": "null"`` fields that EmpowerID adds to its successful token
answers, so that it measures coalescing alone; a header line says which clients
accept an answer with those fields (one request each). Every asyncio client has a
pool of 10 connections (see ASYNC_LIMITS for why not httpx's default).

aiohttp's row beside ``auth.aiohttp_middleware()`` is the token refresh middleware
of aiohttp's own documentation (client middleware cookbook), written here for this
server's refresh grant: one ``asyncio.Lock`` per middleware, expiry checked again
once the lock is held. authlib's httpx integration runs on httpx2 when httpx2 is
installed (authlib 1.8 and later); its rows name the library it ran on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from types import ModuleType
from typing import Any

import aiohttp
import httpx
import httpx2
import requests
from requests.adapters import HTTPAdapter

from eid_auth import EmpowerIDAuth
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

CLIENT_ID = "bench"
CLIENT_SECRET = "bench-secret"
THREAD_LOADS = (1, 10, 100)
TASK_LOAD = 1_000
SLOW_REFRESH = 0.3  # seconds the server holds the first token request
REQUEST_TIMEOUT = 10.0  # seconds, every API and token request
CELL_DEADLINE = 30.0  # seconds for all callers of one cell to finish
START_TIMEOUT = 30.0  # seconds for all threads to reach the barrier
# httpx's default pool (100 connections, 20 kept alive) stalls the event loop when
# 1,000 requests enter it at once: httpcore matches every queued request against
# every connection on each arrival, and most of them end in PoolTimeout (10 s) even
# with a static Authorization header and no auth at all. Every asyncio client gets
# this smaller pool, which carries the same 1,000 static-header requests in about 3 s
# without a failure.
ASYNC_LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=10)
ASYNC_LIMITS_2 = httpx2.Limits(max_connections=10, max_keepalive_connections=10)

DISTRIBUTIONS = (
    "eid-auth",
    "requests",
    "httpx",
    "httpx2",
    "aiohttp",
    "Authlib",
    "requests-oauth2client",
    "requests-oauthlib",
    "oauthlib",
    "httpx-auth",
)


@dataclass(frozen=True)
class Grant:
    """What a client starts from: an expired access token and a valid refresh token."""

    token_endpoint: str
    api_url: str
    access_token: str
    refresh_token: str
    expires_at: float  # Unix time, in the past

    def token_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "refresh_token": self.refresh_token,
            "expires_at": int(self.expires_at),
        }


@dataclass
class SyncClient:
    get: Callable[[], int]  # sends one API request, returns its status code
    close: Callable[[], None]


@dataclass
class AsyncClient:
    get: Callable[[], Awaitable[int]]
    close: Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Contender:
    library: str
    client: str
    sync: Callable[[Grant], SyncClient] | None = None
    asynchronous: Callable[[Grant], AsyncClient] | None = None
    unsupported: str | None = None  # why no load can run: shown in the table
    no_asyncio: str | None = None  # why there is no 1,000-task row, when the library has none


@dataclass
class Outcome:
    grants: int = 0
    token_requests: int = 0
    reuse: int = 0
    failed: int = 0
    seconds: float = 0.0
    setup_error: str | None = None


def describe(exc: BaseException) -> str:
    """An exception in one table cell: its type and the start of its message."""
    text = " ".join(str(exc).split())[:80].replace("|", "/")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def widened(session: requests.Session) -> requests.Session:
    """Give a session as many pooled connections as the largest thread load."""
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(THREAD_LOADS))
    session.mount("http://", adapter)
    return session


# -- the contenders ----------------------------------------------------------------------


def eid_auth_for(grant: Grant) -> EmpowerIDAuth:
    return EmpowerIDAuth(
        token_endpoint=grant.token_endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,  # client_secret_post is the default
        access_token=grant.access_token,
        refresh_token=grant.refresh_token,
        expires_at=grant.expires_at,
        timeout=REQUEST_TIMEOUT,
    )


def eid_requests(grant: Grant) -> SyncClient:
    auth = eid_auth_for(grant)
    session = widened(requests.Session())
    session.auth = auth

    def close() -> None:
        session.close()
        auth.close()

    return SyncClient(
        lambda: session.get(grant.api_url, timeout=REQUEST_TIMEOUT).status_code, close
    )


def eid_sync(library: ModuleType) -> Callable[[Grant], SyncClient]:
    """eid_auth on ``library.Client`` (httpx or httpx2: the same API)."""

    def make(grant: Grant) -> SyncClient:
        auth = eid_auth_for(grant)
        limits = library.Limits(max_connections=max(THREAD_LOADS))
        client = library.Client(auth=auth, timeout=REQUEST_TIMEOUT, limits=limits)

        def close() -> None:
            client.close()
            auth.close()

        return SyncClient(lambda: client.get(grant.api_url).status_code, close)

    return make


def eid_async(library: ModuleType) -> Callable[[Grant], AsyncClient]:
    """eid_auth on ``library.AsyncClient`` (httpx or httpx2), pooled as ASYNC_LIMITS says."""

    def make(grant: Grant) -> AsyncClient:
        auth = eid_auth_for(grant)
        limits = library.Limits(
            max_connections=ASYNC_LIMITS.max_connections,
            max_keepalive_connections=ASYNC_LIMITS.max_keepalive_connections,
        )
        client = library.AsyncClient(auth=auth, timeout=REQUEST_TIMEOUT, limits=limits)

        async def get() -> int:
            return (await client.get(grant.api_url)).status_code

        async def close() -> None:
            await client.aclose()
            auth.close()

        return AsyncClient(get, close)

    return make


def aiohttp_session(middleware: Any) -> aiohttp.ClientSession:
    """A session pooled like the other asyncio clients, with ``middleware``."""
    return aiohttp.ClientSession(
        middlewares=[middleware],
        connector=aiohttp.TCPConnector(limit=ASYNC_LIMITS.max_connections),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
    )


def eid_aiohttp(grant: Grant) -> AsyncClient:
    auth = eid_auth_for(grant)
    session = aiohttp_session(auth.aiohttp_middleware())

    async def get() -> int:
        async with session.get(grant.api_url) as response:
            await response.read()
            return response.status

    async def close() -> None:
        await session.close()
        await auth.aclose()

    return AsyncClient(get, close)


class DocsTokenRefreshMiddleware:
    """The token refresh middleware of aiohttp's client middleware cookbook, with
    the request its refresh sends written for an OAuth 2.0 refresh grant
    (form-encoded, client credentials in the body, the new refresh token kept)."""

    def __init__(
        self, token_endpoint: str, client_id: str, client_secret: str, refresh_token: str
    ) -> None:
        self.token_endpoint = token_endpoint
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.access_token: str | None = None
        self.token_expires_at: float | None = None
        self._refresh_lock = asyncio.Lock()

    async def _refresh_access_token(self, session: aiohttp.ClientSession) -> str | None:
        async with self._refresh_lock:
            # Another task may have refreshed while this one waited for the lock.
            if self.token_expires_at and time.time() < self.token_expires_at:
                return self.access_token
            form = {
                "grant_type": "refresh_token",
                "refresh_token": self.refresh_token,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            }
            # middlewares=(): the token request must not pass through this middleware.
            async with session.post(self.token_endpoint, data=form, middlewares=()) as resp:
                resp.raise_for_status()
                data = await resp.json()
            if "access_token" not in data:
                raise ValueError("No access_token in refresh response")
            self.access_token = data["access_token"]
            self.refresh_token = data.get("refresh_token", self.refresh_token)
            self.token_expires_at = time.time() + data.get("expires_in", 300) - 30
            return self.access_token

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if not self.access_token or (
            self.token_expires_at and time.time() >= self.token_expires_at
        ):
            await self._refresh_access_token(request.session)
        request.headers["Authorization"] = f"Bearer {self.access_token}"
        response = await handler(request)
        if response.status == 401:
            await self._refresh_access_token(request.session)
            request.headers["Authorization"] = f"Bearer {self.access_token}"
            response = await handler(request)
        return response


def aiohttp_docs_middleware(grant: Grant) -> AsyncClient:
    middleware = DocsTokenRefreshMiddleware(
        grant.token_endpoint, CLIENT_ID, CLIENT_SECRET, grant.refresh_token
    )
    middleware.access_token = grant.access_token
    middleware.token_expires_at = grant.expires_at
    session = aiohttp_session(middleware)

    async def get() -> int:
        async with session.get(grant.api_url) as response:
            await response.read()
            return response.status

    return AsyncClient(get, session.close)


def authlib_requests(grant: Grant) -> SyncClient:
    from authlib.integrations.requests_client import OAuth2Session

    session = OAuth2Session(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_endpoint_auth_method="client_secret_post",
        token=grant.token_dict(),
        token_endpoint=grant.token_endpoint,  # enables the refresh on expiry
        default_timeout=REQUEST_TIMEOUT,
    )
    widened(session)
    return SyncClient(
        lambda: session.get(grant.api_url, timeout=REQUEST_TIMEOUT).status_code, session.close
    )


def authlib_httpx(grant: Grant) -> SyncClient:
    from authlib.integrations.httpx_client import OAuth2Client

    client = OAuth2Client(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_endpoint_auth_method="client_secret_post",
        token=grant.token_dict(),
        token_endpoint=grant.token_endpoint,
        timeout=REQUEST_TIMEOUT,
    )
    return SyncClient(lambda: client.get(grant.api_url).status_code, client.close)


def authlib_httpx_async(grant: Grant) -> AsyncClient:
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    client = AsyncOAuth2Client(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_endpoint_auth_method="client_secret_post",
        token=grant.token_dict(),
        token_endpoint=grant.token_endpoint,
        timeout=REQUEST_TIMEOUT,
        limits=ASYNC_LIMITS_2 if authlib_httpx_library() == "httpx2" else ASYNC_LIMITS,
    )

    async def get() -> int:
        return int((await client.get(grant.api_url)).status_code)  # authlib is untyped

    return AsyncClient(get, client.aclose)


def requests_oauth2client(grant: Grant) -> SyncClient:
    from requests_oauth2client import (
        BearerToken,
        ClientSecretPost,
        OAuth2AccessTokenAuth,
        OAuth2Client,
    )

    oauth2 = OAuth2Client(
        token_endpoint=grant.token_endpoint,
        auth=ClientSecretPost(CLIENT_ID, CLIENT_SECRET),
        session=widened(requests.Session()),  # sends the token requests
        testing=True,  # allows the loopback server's http:// token endpoint
    )
    token = BearerToken(
        access_token=grant.access_token,
        expires_at=datetime.fromtimestamp(grant.expires_at, tz=timezone.utc),
        refresh_token=grant.refresh_token,
    )
    session = widened(requests.Session())
    session.auth = OAuth2AccessTokenAuth(oauth2, token)

    def close() -> None:
        session.close()
        oauth2.session.close()

    return SyncClient(
        lambda: session.get(grant.api_url, timeout=REQUEST_TIMEOUT).status_code, close
    )


def requests_oauthlib(grant: Grant) -> SyncClient:
    from requests_oauthlib import (  # type: ignore[import-untyped,unused-ignore]
        OAuth2Session,
    )

    # oauthlib refuses http:// URLs unless told this is a test; the server is loopback.
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    saved: list[dict[str, Any]] = []
    session = OAuth2Session(
        client_id=CLIENT_ID,
        token=grant.token_dict(),
        auto_refresh_url=grant.token_endpoint,
        auto_refresh_kwargs={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        token_updater=saved.append,
    )
    widened(session)
    return SyncClient(
        lambda: session.get(grant.api_url, timeout=REQUEST_TIMEOUT).status_code, session.close
    )


def authlib_httpx_library() -> str:
    """The library authlib's httpx integration runs on: httpx2 when installed
    (authlib 1.8 and later), else httpx."""
    try:
        from authlib.integrations.httpx_client import _compat  # type: ignore[attr-defined]
    except ImportError:
        return "httpx"
    return str(_compat.httpx2.__name__)


HTTPX_AUTH_REASON = (
    "not supported: its refresh runs only inside its own grant flows "
    "(authorization code, password); no public way to start from an existing refresh token"
)

CONTENDERS = (
    Contender("eid_auth", "requests.Session", sync=eid_requests),
    Contender("eid_auth", "httpx.Client", sync=eid_sync(httpx)),
    Contender("eid_auth", "httpx.AsyncClient", asynchronous=eid_async(httpx)),
    Contender("eid_auth", "httpx2.Client", sync=eid_sync(httpx2)),
    Contender("eid_auth", "httpx2.AsyncClient", asynchronous=eid_async(httpx2)),
    Contender("eid_auth", "aiohttp.ClientSession", asynchronous=eid_aiohttp),
    Contender(
        "aiohttp docs",
        "TokenRefreshMiddleware on aiohttp.ClientSession",
        asynchronous=aiohttp_docs_middleware,
    ),
    Contender("authlib", "requests_client.OAuth2Session", sync=authlib_requests),
    Contender(
        "authlib", f"httpx_client.OAuth2Client ({authlib_httpx_library()})", sync=authlib_httpx
    ),
    Contender(
        "authlib",
        f"httpx_client.AsyncOAuth2Client ({authlib_httpx_library()})",
        asynchronous=authlib_httpx_async,
    ),
    Contender(
        "requests-oauth2client",
        "OAuth2AccessTokenAuth on requests.Session",
        sync=requests_oauth2client,
        no_asyncio="not supported: requests only, no asyncio client",
    ),
    Contender(
        "requests-oauthlib",
        "OAuth2Session",
        sync=requests_oauthlib,
        no_asyncio="not supported: requests only, no asyncio client",
    ),
    Contender("httpx-auth", "httpx.Client", unsupported=HTTPX_AUTH_REASON),
    Contender("httpx-auth", "httpx.AsyncClient", unsupported=HTTPX_AUTH_REASON),
)


# -- one cell: a new server, one shared client, N callers at once ------------------------


def start_grant(server: EmpowerIDTestServer) -> Grant:
    issued = server.issue_grant()
    server.revoke_access_token(issued["access_token"])  # expired at the server too
    server.fail_next(FaultSpec(status=200, delay=SLOW_REFRESH))  # slow, then served
    return Grant(
        token_endpoint=server.token_endpoint,
        api_url=server.api_url("/api/bench"),
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=time.time() - 60,
    )


def run_threads(make: Callable[[Grant], SyncClient], n: int, grant: Grant) -> Outcome:
    outcome = Outcome()
    try:
        client = make(grant)
    except Exception as exc:
        outcome.setup_error = describe(exc)
        return outcome
    barrier = threading.Barrier(n + 1)  # the callers and the clock
    lock = threading.Lock()
    finished: list[tuple[bool, float]] = []  # (answered 200, when)

    def caller() -> None:
        try:
            barrier.wait(START_TIMEOUT)
        except threading.BrokenBarrierError:
            ok = False
        else:
            try:
                ok = client.get() == 200
            except Exception:
                ok = False
        with lock:
            finished.append((ok, time.perf_counter()))

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(n)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(START_TIMEOUT)
    started = time.perf_counter()
    deadline = time.monotonic() + CELL_DEADLINE
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        done = list(finished)  # a caller still stuck past the deadline counts as failed
    tally(outcome, done, n, started)
    with contextlib.suppress(Exception):
        client.close()
    return outcome


def tally(outcome: Outcome, done: list[tuple[bool, float]], n: int, started: float) -> None:
    """Failed requests and wall time, from the callers that finished in time."""
    stuck = n - len(done)
    outcome.failed = stuck + sum(not ok for ok, _ in done)
    last = max((when for _, when in done), default=started)
    outcome.seconds = (time.perf_counter() if stuck else last) - started


def run_tasks(make: Callable[[Grant], AsyncClient], n: int, grant: Grant) -> Outcome:
    return asyncio.run(_run_tasks(make, n, grant))


async def _run_tasks(make: Callable[[Grant], AsyncClient], n: int, grant: Grant) -> Outcome:
    outcome = Outcome()
    try:
        client = make(grant)
    except Exception as exc:
        outcome.setup_error = describe(exc)
        return outcome
    gate = asyncio.Event()
    finished: list[tuple[bool, float]] = []

    async def caller() -> None:
        await gate.wait()
        try:
            ok = await client.get() == 200
        except Exception:
            ok = False
        finished.append((ok, time.perf_counter()))

    gathered = asyncio.gather(*(caller() for _ in range(n)))
    await asyncio.sleep(0.1)  # every task is now waiting at the gate
    started = time.perf_counter()
    gate.set()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(gathered, CELL_DEADLINE)  # cancels the stuck ones
    tally(outcome, list(finished), n, started)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), 10)
    return outcome


def cell(contender: Contender, n: int, *, empowerid_fields: bool = False) -> Outcome:
    with EmpowerIDTestServer(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        rotate_refresh_tokens=True,
        reuse_detection=True,
        include_empty_error_fields=empowerid_fields,
    ) as server:
        grant = start_grant(server)
        if contender.sync is not None:
            outcome = run_threads(contender.sync, n, grant)
        else:
            assert contender.asynchronous is not None
            outcome = run_tasks(contender.asynchronous, n, grant)
        outcome.grants = server.refresh_grants
        outcome.token_requests = server.token_requests
        outcome.reuse = server.reuse_detected
    return outcome


# -- output ------------------------------------------------------------------------------


def version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def loads(contender: Contender) -> list[tuple[str, int]]:
    if contender.sync is not None:
        return [(f"{n:,} thread{'s' if n > 1 else ''}", n) for n in THREAD_LOADS]
    return [(f"{TASK_LOAD:,} tasks", TASK_LOAD)]


def row(*cells: object) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def empowerid_shape_line() -> str:
    """Which clients accept a success answer carrying ``"error": ""``, one request each."""
    verdicts = []
    for contender in CONTENDERS:
        if contender.unsupported is not None:
            continue
        outcome = cell(contender, 1, empowerid_fields=True)
        ok = outcome.setup_error is None and outcome.failed == 0
        verdicts.append(f"{contender.library} {contender.client} {'yes' if ok else 'NO'}")
    return "; ".join(verdicts)


def main() -> None:
    print(f"# eid-auth refresh coalescing under load, {time.strftime('%Y-%m-%d')}")
    print(
        f"# {platform.python_implementation()} {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    )
    print("# " + ", ".join(f"{d} {version(d)}" for d in DISTRIBUTIONS))
    print(
        "# every caller sends one request through one shared client holding an expired, "
        "revoked access token and a valid refresh token; a new server per cell (rotating "
        f"refresh tokens, reuse detection on), its first token request answered after "
        f"{SLOW_REFRESH:g} s; timeouts {REQUEST_TIMEOUT:g} s per request, "
        f"{CELL_DEADLINE:g} s per cell; asyncio clients pooled at "
        f"{ASYNC_LIMITS.max_connections} connections. "
        "Limit: 1 refresh grant, 0 failed requests."
    )
    print(
        '# accepts EmpowerID\'s success answer with "error": "" (1 request): '
        + empowerid_shape_line(),
        flush=True,
    )
    print()
    row(
        "library",
        "client",
        "load",
        "refresh grants",
        "token requests",
        "reuse detected",
        "failed requests",
        "seconds",
    )
    print("|---|---|---|---:|---:|---:|---:|---:|", flush=True)
    for contender in CONTENDERS:
        if contender.unsupported is not None:
            row(contender.library, contender.client, "any", contender.unsupported, "", "", "", "")
            continue
        for label, n in loads(contender):
            outcome = cell(contender, n)
            if outcome.setup_error is not None:
                reason = f"setup failed: {outcome.setup_error}"
                row(contender.library, contender.client, label, reason, "", "", "", "")
                continue
            row(
                contender.library,
                contender.client,
                label,
                outcome.grants,
                outcome.token_requests,
                outcome.reuse,
                outcome.failed,
                f"{outcome.seconds:.2f}",
            )
        if contender.no_asyncio is not None:
            row(
                contender.library,
                contender.client,
                f"{TASK_LOAD:,} tasks",
                contender.no_asyncio,
                "",
                "",
                "",
                "",
            )


if __name__ == "__main__":
    main()
