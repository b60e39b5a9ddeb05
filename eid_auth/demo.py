"""A tour of eid_auth on its embedded EmpowerID test server: ``python -m eid_auth.demo``.

It starts the loopback server with 4-second access tokens and rotating refresh
tokens, then makes requests with requests, httpx and httpx async across several
expiries, forces a 401, and lets 50 threads and 200 tasks meet an expired
token at once. Each refresh is printed as it happens (as a fingerprint: the
demo prints no token).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import requests

from ._auth import EmpowerIDAuth
from ._token import Token
from .testing import EmpowerIDTestServer

LIFETIME = 4


def _fingerprint(secret: str | None) -> str:
    if secret is None:
        return "-"
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def main() -> None:
    """Run the tour; takes about 15 seconds."""
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
            f"done: {server.refresh_grants} refresh grants in all, "
            f"{server.reuse_detected} reuse detected"
        )


async def _async_get(auth: EmpowerIDAuth, url: str) -> int:
    async with httpx.AsyncClient(auth=auth) as client:
        return (await client.get(url)).status_code


async def _many_async_gets(auth: EmpowerIDAuth, url: str, count: int) -> list[int]:
    async with httpx.AsyncClient(auth=auth, timeout=30) as client:
        responses = await asyncio.gather(*(client.get(url) for _ in range(count)))
    return [r.status_code for r in responses]


if __name__ == "__main__":
    main()
