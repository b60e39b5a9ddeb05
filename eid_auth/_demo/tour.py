"""Parts 4 to 7 of the demo, the tour of renewal with the refresh grant: one auth
object shared by requests, httpx and httpx async across expiries, a forced 401,
250 concurrent requests meeting a revoked token, and processes sharing one token
file. Each refresh is printed as it happens, as fingerprints.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import requests

from .._auth import EmpowerIDAuth
from .._token import Token
from ..testing import EmpowerIDTestServer
from . import LIFETIME
from .fleet import processes_sharing_a_file
from .narration import Say, fingerprint

__all__ = ["tour"]


def tour(server: EmpowerIDTestServer, say: Say) -> None:
    """Parts 4 to 7, on ``server`` (whose tokens live ``LIFETIME`` seconds)."""

    def on_refresh(token: Token) -> None:
        say(
            f"  refresh grant #{server.refresh_grants}: "
            f"access token {fingerprint(token.access_token)}, "
            f"refresh token {fingerprint(token.refresh_token)}, "
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

    say("4. requests, httpx and httpx async share one auth object across expiries")
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

    say("5. auth.refresh() forces a refresh; then the server revokes that token early:")
    say("   the next request gets a 401, and is re-sent once after one refresh")
    auth.refresh()
    server.expire_access_tokens()
    response = session.post(server.api_url("/api/orders"), json={"item": 42}, timeout=10)
    say(
        f"  POST /api/orders -> {response.status_code} "
        f"(history: {[r.status_code for r in response.history]})"
    )

    say("6. the token expires early again; 50 threads and 200 asyncio tasks all get a 401 at once")
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
        "7. 4 processes x 3 threads share one FileTokenStore for 9 s; each token is "
        f"refreshed half-way through its {LIFETIME}s life, by whichever process comes first"
    )
    before = server.refresh_grants
    ok, failed = processes_sharing_a_file(
        server, url, grant="refresh_token", processes=4, seconds=9.0
    )
    say(
        f"  {ok} requests succeeded, {failed} failed, with "
        f"{server.refresh_grants - before} refresh grant(s) between the 4 processes; "
        f"reused refresh tokens seen by the server: {server.reuse_detected}"
    )


async def _async_get(auth: EmpowerIDAuth, url: str) -> int:
    async with httpx.AsyncClient(auth=auth) as client:
        return (await client.get(url)).status_code


async def _many_async_gets(auth: EmpowerIDAuth, url: str, count: int) -> list[int]:
    async with httpx.AsyncClient(auth=auth, timeout=30) as client:
        responses = await asyncio.gather(*(client.get(url) for _ in range(count)))
    return [r.status_code for r in responses]
