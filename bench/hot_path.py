"""Hot-path overhead: what EmpowerIDAuth costs a request on a valid token.

Run by hand (not part of the test suite):

    .venv/bin/python bench/hot_path.py

Requests go through real ``requests.Session``, ``httpx.Client``,
``httpx.AsyncClient``, ``httpx2.Client`` and ``httpx2.AsyncClient`` objects,
but are answered in-process (a requests adapter that builds the response
itself, httpx's and httpx2's ``MockTransport``), so the figures are the
clients' own cost plus the auth's, with no network. Each client is timed with
EmpowerIDAuth and with a static ``Authorization`` header set once on the
client; rounds alternate between the two and the median is reported, with the
ratio (the goal: within 5% of the static header). authlib's ``OAuth2Client``
(an httpx2 client since authlib 1.8) is timed beside them on a valid token.

aiohttp has no in-process transport: its rows go to an aiohttp server on
loopback in the same event loop, so they include a real socket and are not
comparable with the rows above, only with each other: the static header,
``auth.aiohttp_middleware()``, and the token refresh middleware of aiohttp's
own documentation (client middleware cookbook) on a valid token.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from types import ModuleType
from typing import Any

import aiohttp
import httpx
import httpx2
import requests
from aiohttp import web
from coalescing import DocsTokenRefreshMiddleware  # this folder, run as a script
from requests.adapters import BaseAdapter

from eid_auth import EmpowerIDAuth

STATIC = "Bearer a-static-access-token"
URL = "https://api.example.com/v1/things"


class InMemoryAdapter(BaseAdapter):
    """Answers 200 without a socket."""

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        response.url = request.url or ""
        response.request = request
        response.headers["Content-Type"] = "application/json"
        return response

    def close(self) -> None:
        pass


def make_auth() -> EmpowerIDAuth:
    return EmpowerIDAuth(
        token_endpoint="https://eid.example.com/oauth/v2/token",
        client_id="bench",
        client_secret="s",
        access_token="a-valid-access-token",
        refresh_token="rt",
        expires_at=time.time() + 3600,
    )


def answering(library: ModuleType) -> Callable[[Any], Any]:
    """A MockTransport handler of httpx or httpx2 answering 200 ``{}``."""

    def ok(request: Any) -> Any:
        return library.Response(200, json={})

    return ok


def requests_session(auth: EmpowerIDAuth | None) -> Callable[[int], None]:
    session = requests.Session()
    # Without auth, requests looks for credentials in ~/.netrc on every request;
    # with trust_env off neither side pays for that, so the auth's cost shows.
    session.trust_env = False
    session.mount("https://", InMemoryAdapter())
    if auth is None:
        session.headers["Authorization"] = STATIC
    else:
        session.auth = auth

    def run(n: int) -> None:
        for _ in range(n):
            session.get(URL)

    return run


def sync_client(library: ModuleType) -> Callable[[EmpowerIDAuth | None], Callable[[int], None]]:
    """Rows for ``library.Client`` (httpx or httpx2: the same API)."""

    def make(auth: EmpowerIDAuth | None) -> Callable[[int], None]:
        headers = {"Authorization": STATIC} if auth is None else None
        transport = library.MockTransport(answering(library))
        client = library.Client(transport=transport, auth=auth, headers=headers)

        def run(n: int) -> None:
            for _ in range(n):
                client.get(URL)

        return run

    return make


def async_client(library: ModuleType) -> Callable[[EmpowerIDAuth | None], Callable[[int], None]]:
    """Rows for ``library.AsyncClient`` (httpx or httpx2)."""

    def make(auth: EmpowerIDAuth | None) -> Callable[[int], None]:
        headers = {"Authorization": STATIC} if auth is None else None
        transport = library.MockTransport(answering(library))
        client = library.AsyncClient(transport=transport, auth=auth, headers=headers)

        async def many(n: int) -> None:
            for _ in range(n):
                await client.get(URL)

        def run(n: int) -> None:
            asyncio.run(many(n))

        return run

    return make


def authlib_httpx2_client(auth: EmpowerIDAuth | None) -> Callable[[int], None]:
    """authlib's OAuth2Client on a valid token (``auth`` None: the static header)."""
    if auth is None:
        return sync_client(httpx2)(None)
    from authlib.integrations.httpx_client import OAuth2Client

    client = OAuth2Client(
        client_id="bench",
        client_secret="s",
        token={
            "access_token": "a-valid-access-token",
            "token_type": "Bearer",
            "refresh_token": "rt",
            "expires_at": int(time.time() + 3600),
        },
        token_endpoint="https://eid.example.com/oauth/v2/token",
        transport=httpx2.MockTransport(answering(httpx2)),
    )

    def run(n: int) -> None:
        for _ in range(n):
            client.get(URL)

    return run


def timed(run: Callable[[int], None], n: int) -> float:
    started = time.perf_counter()
    run(n)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    n, rounds = 5_000, 9
    print(f"# eid-auth hot path, {time.strftime('%Y-%m-%d')}")
    print(
        f"# {platform.python_implementation()} {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; requests "
        f"{requests.__version__}, httpx {httpx.__version__}, httpx2 {httpx2.__version__}, "
        f"aiohttp {aiohttp.__version__}, authlib {metadata.version('Authlib')}; {rounds} "
        f"alternating rounds of {n} requests, medians"
    )
    print()
    print(
        "| client | static header µs/request | EmpowerIDAuth µs/request | requests/s with "
        "EmpowerIDAuth | ratio |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, build in (
        ("requests.Session", requests_session),
        ("httpx.Client", sync_client(httpx)),
        ("httpx.AsyncClient", async_client(httpx)),
        ("httpx2.Client", sync_client(httpx2)),
        ("httpx2.AsyncClient", async_client(httpx2)),
        ("authlib OAuth2Client (httpx2.Client) instead", authlib_httpx2_client),
    ):
        static, ours = build(None), build(make_auth())
        static(200)  # warm up
        ours(200)
        a, b = [], []
        for _ in range(rounds):
            a.append(timed(static, n))
            b.append(timed(ours, n))
        sa, sb = statistics.median(a), statistics.median(b)
        print(f"| {name} | {sa:.1f} | {sb:.1f} | {1e6 / sb:,.0f} | {sb / sa:.3f} |")
    print()
    print(f"The auth's own step alone: {own_step_us():.2f} µs per request.")
    print()
    aiohttp_rows(n=2_000, rounds=rounds)


def aiohttp_rows(n: int, rounds: int) -> None:
    """aiohttp against a loopback aiohttp server: static header, our middleware and
    the documentation's middleware, alternating, medians."""
    print(f"aiohttp.ClientSession to a loopback aiohttp server, {rounds} rounds of {n}:")
    print()
    print("| middleware | µs/request | requests/s | ratio to the static header |")
    print("|---|---:|---:|---:|")
    print(*asyncio.run(_aiohttp_rows(n, rounds)), sep="\n")


async def _aiohttp_rows(n: int, rounds: int) -> list[str]:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v1/things", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/v1/things"
    docs = DocsTokenRefreshMiddleware(
        token_endpoint=f"http://127.0.0.1:{port}/oauth/v2/token",
        client_id="bench",
        client_secret="s",
        refresh_token="rt",
    )
    docs.access_token = "a-valid-access-token"
    docs.token_expires_at = time.time() + 3600
    sessions = {
        "static header": aiohttp.ClientSession(headers={"Authorization": STATIC}),
        "auth.aiohttp_middleware()": aiohttp.ClientSession(
            middlewares=[make_auth().aiohttp_middleware()]
        ),
        "aiohttp docs' TokenRefreshMiddleware": aiohttp.ClientSession(middlewares=[docs]),
    }

    async def timed_session(session: aiohttp.ClientSession, count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            async with session.get(url) as response:
                await response.read()
        return (time.perf_counter() - started) / count * 1e6

    try:
        results: dict[str, list[float]] = {name: [] for name in sessions}
        for session in sessions.values():
            await timed_session(session, 200)  # warm up
        for _ in range(rounds):
            for name, session in sessions.items():
                results[name].append(await timed_session(session, n))
    finally:
        for session in sessions.values():
            await session.close()
        await runner.cleanup()
    static = statistics.median(results["static header"])
    rows = []
    for name, values in results.items():
        us = statistics.median(values)
        rows.append(f"| {name} | {us:.1f} | {1e6 / us:,.0f} | {us / static:.3f} |")
    return rows


def own_step_us(calls: int = 200_000) -> float:
    """What the clients' numbers cannot resolve: one step of the auth's httpx
    flow (token lookup, header, no I/O), timed alone."""
    auth = make_auth()
    request = httpx.Request("GET", URL)
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            next(auth.sync_auth_flow(request))
        rounds.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(rounds)


if __name__ == "__main__":
    main()
