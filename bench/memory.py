"""Memory: 200,000 requests through one auth object across 100 token expiries.

Run by hand (not part of the test suite):

    .venv/bin/python bench/memory.py

The API and the token endpoint are answered in-process (httpx ``MockTransport``
for both, a requests adapter without a socket), so nothing but the clients and
the auth allocate. Every 2,000 requests the API starts refusing the current
access token: the next request gets a 401, the auth refreshes (with a rotated
refresh token) and re-sends. Resident memory is read after a warm-up and at
the end; it must not grow with the number of requests or refreshes.
"""

from __future__ import annotations

import gc
import itertools
import os
import platform
import time
from typing import Any

import httpx
import requests
from requests.adapters import BaseAdapter

from eid_auth import EmpowerIDAuth

REQUESTS = 200_000
EXPIRIES = 100
URL = "https://api.example.com/v1/things"


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class FakeServer:
    """Issues rotating tokens and accepts only the newest access token."""

    def __init__(self) -> None:
        self.counter = itertools.count(1)
        self.valid_access: str | None = None
        self.refresh_token = "rt-0"
        self.grants = 0

    def token(self, request: httpx.Request) -> httpx.Response:
        form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
        if form.get("refresh_token") != self.refresh_token:
            return httpx.Response(400, json={"error": "invalid_grant"})
        n = next(self.counter)
        self.grants += 1
        self.valid_access, self.refresh_token = f"at-{n}", f"rt-{n}"
        return httpx.Response(
            200,
            json={
                "access_token": self.valid_access,
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": self.refresh_token,
            },
        )

    def api_status(self, authorization: str | None) -> int:
        return 200 if authorization == f"Bearer {self.valid_access}" else 401

    def api(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(self.api_status(request.headers.get("authorization")), json={})


class InMemoryAdapter(BaseAdapter):
    def __init__(self, server: FakeServer) -> None:
        super().__init__()
        self.server = server

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = self.server.api_status(request.headers.get("Authorization"))
        response._content = b"{}"
        response.url = request.url or ""
        response.request = request
        response.connection = self  # the 401 hook re-sends through it
        return response

    def close(self) -> None:
        pass


def run(kind: str) -> tuple[float, float, int, int]:
    server = FakeServer()
    token_client = httpx.Client(transport=httpx.MockTransport(server.token))
    auth = EmpowerIDAuth(
        token_endpoint="https://eid.example.com/oauth/v2/token",
        client_id="bench",
        client_secret="s",
        refresh_token=server.refresh_token,
        token_client=token_client,
    )
    if kind == "requests":
        session = requests.Session()
        session.trust_env = False
        session.mount("https://", InMemoryAdapter(server))
        session.auth = auth

        def get() -> int:
            return session.get(URL).status_code
    else:
        client = httpx.Client(transport=httpx.MockTransport(server.api), auth=auth)

        def get() -> int:
            return client.get(URL).status_code

    every = REQUESTS // EXPIRIES
    failed = 0
    warm = 0.0
    for i in range(REQUESTS):
        if i and i % every == 0:
            server.valid_access = None  # the current token is refused from now on
        if get() != 200:
            failed += 1
        if i == 2 * every:
            gc.collect()
            warm = rss_mib()
    gc.collect()
    return warm, rss_mib(), server.grants, failed


def main() -> None:
    print(f"# eid-auth memory, {time.strftime('%Y-%m-%d')}")
    print(
        f"# {platform.python_implementation()} {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}; {REQUESTS:,} requests and "
        f"{EXPIRIES} expiries per client, one auth object"
    )
    print()
    print(
        "| client | RSS after 4,000 requests (MiB) | RSS at the end (MiB) | growth (MiB) "
        "| refresh grants | failed requests |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for kind in ("httpx", "requests"):
        warm, end, grants, failed = run(kind)
        print(f"| {kind} | {warm:.1f} | {end:.1f} | {end - warm:+.1f} | {grants} | {failed} |")


if __name__ == "__main__":
    main()
