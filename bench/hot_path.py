"""Hot-path overhead: what EmpowerIDAuth costs a request on a valid token.

Run by hand (not part of the test suite):

    .venv/bin/python bench/hot_path.py

Requests go through real ``requests.Session``, ``httpx.Client`` and
``httpx.AsyncClient`` objects, but are answered in-process (a requests
adapter that builds the response itself, httpx's ``MockTransport``), so the
figures are the clients' own cost plus the auth's, with no network. Each
client is timed with EmpowerIDAuth and with a static ``Authorization`` header
set once on the client; rounds alternate between the two and the median is
reported, with the ratio (the goal: within 5% of the static header).
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import time
from collections.abc import Callable

import httpx
import requests
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


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={})


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


def httpx_client(auth: EmpowerIDAuth | None) -> Callable[[int], None]:
    headers = {"Authorization": STATIC} if auth is None else None
    client = httpx.Client(transport=httpx.MockTransport(ok), auth=auth, headers=headers)

    def run(n: int) -> None:
        for _ in range(n):
            client.get(URL)

    return run


def httpx_async_client(auth: EmpowerIDAuth | None) -> Callable[[int], None]:
    headers = {"Authorization": STATIC} if auth is None else None
    client = httpx.AsyncClient(transport=httpx.MockTransport(ok), auth=auth, headers=headers)

    async def many(n: int) -> None:
        for _ in range(n):
            await client.get(URL)

    def run(n: int) -> None:
        asyncio.run(many(n))

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
        f"{requests.__version__}, httpx {httpx.__version__}; {rounds} alternating rounds "
        f"of {n} requests, medians"
    )
    print()
    print(
        "| client | static header µs/request | EmpowerIDAuth µs/request | requests/s with "
        "EmpowerIDAuth | ratio |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, build in (
        ("requests.Session", requests_session),
        ("httpx.Client", httpx_client),
        ("httpx.AsyncClient", httpx_async_client),
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
