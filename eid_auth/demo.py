"""A tour of eid_auth on its embedded EmpowerID test server: ``python -m eid_auth.demo``.

It starts the loopback server with 4-second access tokens and rotating refresh
tokens, then makes requests with requests, httpx and httpx async across several
expiries, forces a 401, lets 50 threads and 200 tasks meet an expired token at
once, and has 4 processes share one token file. Each refresh is printed as it
happens (as a fingerprint: the demo prints no token).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import requests

from ._auth import EmpowerIDAuth
from ._token import Token
from .stores import FileTokenStore
from .testing import EmpowerIDTestServer

LIFETIME = 4


def _fingerprint(secret: str | None) -> str:
    if secret is None:
        return "-"
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def main() -> None:
    """Run the tour; takes about 25 seconds."""
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {text}", flush=True)

    with EmpowerIDTestServer(access_token_lifetime=LIFETIME) as server:
        say(
            f"EmpowerID test server at {server.url} "
            f"(tokens live {LIFETIME}s, refresh tokens rotate)"
        )

        def on_refresh(token: Token) -> None:
            say(
                f"  refresh grant #{server.refresh_grants}: "
                f"access token {_fingerprint(token.access_token)}, "
                f"refresh token {_fingerprint(token.refresh_token)}, "
                f"expires in {token.expires_in():.1f}s"
            )

        auth = EmpowerIDAuth(
            token_endpoint=server.token_endpoint,
            client_id=server.client_id,
            client_secret=server.client_secret,
            refresh_token=server.issue_grant(scope="openid")["refresh_token"],
            on_refresh=on_refresh,
        )
        say(f"auth = {auth!r}")
        url = server.api_url("/api/whoami")

        say("1. requests, httpx and httpx async share one auth object across expiries")
        session = requests.Session()
        session.auth = auth
        with httpx.Client(auth=auth) as client:
            for i in range(12):
                if i % 3 == 0:
                    status = session.get(url, timeout=10).status_code
                    via = "requests"
                elif i % 3 == 1:
                    status = client.get(url).status_code
                    via = "httpx"
                else:
                    status = asyncio.run(_async_get(auth, url))
                    via = "httpx async"
                say(f"  {via:<11} GET /api/whoami -> {status}")
                time.sleep(0.6)

        say("2. auth.refresh() forces a refresh; then the server revokes that token early:")
        say("   the next request gets a 401, and is re-sent once after one refresh")
        auth.refresh()
        server.expire_access_tokens()
        response = session.post(server.api_url("/api/orders"), json={"item": 42}, timeout=10)
        say(
            f"  POST /api/orders -> {response.status_code} "
            f"(history: {[r.status_code for r in response.history]})"
        )

        say(
            "3. the token expires early again; "
            "50 threads and 200 asyncio tasks all get a 401 at once"
        )
        server.expire_access_tokens()
        before = server.refresh_grants
        with ThreadPoolExecutor(51) as pool:
            tasks = pool.submit(asyncio.run, _many_async_gets(auth, url, 200))
            threads = [
                pool.submit(lambda: session.get(url, timeout=30).status_code) for _ in range(50)
            ]
            statuses = [f.result() for f in threads] + tasks.result()
        ok = statuses.count(200)
        say(
            f"  {ok} of {len(statuses)} requests succeeded with "
            f"{server.refresh_grants - before} refresh grant(s); "
            f"reused refresh tokens seen by the server: {server.reuse_detected}"
        )
        session.close()
        auth.close()

        say(
            "4. 4 processes x 3 threads share one FileTokenStore for 9 s; each token is "
            f"refreshed half-way through its {LIFETIME}s life, by whichever process comes first"
        )
        before = server.refresh_grants
        ok, failed = _processes_sharing_a_file(server, url, processes=4, seconds=9.0)
        say(
            f"  {ok} requests succeeded, {failed} failed, with "
            f"{server.refresh_grants - before} refresh grant(s) between the 4 processes; "
            f"reused refresh tokens seen by the server: {server.reuse_detected}"
        )
        say(
            f"done: {server.refresh_grants} refresh grants in all, "
            f"{server.reuse_detected} reuse detected"
        )


def _processes_sharing_a_file(
    server: EmpowerIDTestServer, url: str, processes: int, seconds: float
) -> tuple[int, int]:
    seed = server.issue_grant()["refresh_token"]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "token.json")
        args = (server.token_endpoint, server.client_id, server.client_secret, seed, path, url)
        children = [
            context.Process(target=_worker, args=(*args, seconds, results))
            for _ in range(processes)
        ]
        for child in children:
            child.start()
        outcomes = [results.get(timeout=seconds + 120) for _ in children]
        for child in children:
            child.join(30)
    return sum(o[0] for o in outcomes), sum(o[1] for o in outcomes)


def _worker(
    token_endpoint: str,
    client_id: str,
    client_secret: str,
    seed: str,
    path: str,
    url: str,
    seconds: float,
    results: Any,
) -> None:
    """One process: its own EmpowerIDAuth on the shared token file, 3 threads."""
    auth = EmpowerIDAuth(
        token_endpoint=token_endpoint,
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=seed,  # seeds the empty file; the others find the file's token
        store=FileTokenStore(path),
    )
    stop_at = time.monotonic() + seconds

    def loop() -> tuple[int, int]:
        ok = failed = 0
        with requests.Session() as session:
            session.auth = auth
            while time.monotonic() < stop_at:
                try:
                    good = session.get(url, timeout=30).status_code == 200
                except Exception:  # counted, as a user would see it
                    good = False
                ok, failed = ok + good, failed + (not good)
                time.sleep(0.05)
        return ok, failed

    with ThreadPoolExecutor(3) as pool:
        counts = list(pool.map(lambda _: loop(), range(3)))
    auth.close()
    results.put((sum(c[0] for c in counts), sum(c[1] for c in counts)))


async def _async_get(auth: EmpowerIDAuth, url: str) -> int:
    async with httpx.AsyncClient(auth=auth) as client:
        return (await client.get(url)).status_code


async def _many_async_gets(auth: EmpowerIDAuth, url: str, count: int) -> list[int]:
    async with httpx.AsyncClient(auth=auth, timeout=30) as client:
        responses = await asyncio.gather(*(client.get(url) for _ in range(count)))
    return [r.status_code for r in responses]


def cli(argv: list[str] | None = None) -> None:
    """``python -m eid_auth.demo [--help]``: the tour takes no other argument."""
    parser = argparse.ArgumentParser(
        prog="python -m eid_auth.demo",
        description=(
            "A tour of eid_auth on its embedded EmpowerID test server (loopback only, "
            "about 25 seconds): requests, httpx and httpx async sharing one auth across "
            "several token expiries, a forced 401, 250 concurrent requests meeting a "
            "revoked token with one refresh grant, and 4 processes sharing one token "
            "file. It prints each refresh as a fingerprint, never a token."
        ),
    )
    parser.parse_args(argv)
    main()


if __name__ == "__main__":
    cli()
