"""Processes sharing one token file: part 3 of the demo (client credentials) and the
last part of the tour (the refresh grant) run the same fleet with another grant.

Each process has its own ``EmpowerIDAuth`` on one ``FileTokenStore`` and 3 threads
making requests; whichever process first finds the token due renews it, and the
others read the new one from the file.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import requests

from .._auth import EmpowerIDAuth
from ..stores import FileTokenStore
from ..testing import EmpowerIDTestServer
from . import LIFETIME
from .narration import Say

__all__ = ["client_credentials_fleet", "processes_sharing_a_file"]

Grant = Literal["refresh_token", "client_credentials"]
THREADS = 3


@dataclass(frozen=True)
class _Fleet:
    """What each process needs (sent to it pickled: spawned processes share nothing)."""

    grant: Grant
    token_endpoint: str
    client_id: str
    client_secret: str | None
    seed: str | None  # the refresh grant's first refresh token
    path: str
    url: str
    seconds: float


def client_credentials_fleet(
    server: EmpowerIDTestServer, say: Say, processes: int = 4, seconds: float = 9.0
) -> None:
    """Part 3: one client credentials token for the fleet, one grant per expiry."""
    say(
        f"3. a service's client credentials token, shared by {processes} processes x "
        f"{THREADS} threads through one FileTokenStore for {seconds:g} s: with no refresh "
        "token, the grant runs again half-way through each token's "
        f"{LIFETIME}s life, by whichever process comes first"
    )
    grant: Grant = "client_credentials"
    before = server.grants_served.get(grant, 0)
    since = time.time()
    ok, failed = processes_sharing_a_file(
        server, server.api_url("/api/whoami"), grant=grant, processes=processes, seconds=seconds
    )
    grants = server.grants_served.get(grant, 0) - before
    sent = [
        r.time
        for r in server.token_request_log
        if r.time >= since and r.form.get("grant_type") == grant
    ]
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    # A grant sooner than a quarter of a token's life after the one before came
    # while the stored token was still fresh: it was not for an expiry.
    expiries = sum(gap >= LIFETIME / 4 for gap in gaps)
    extra = len(gaps) - expiries
    spread = f", the grants {min(gaps):.1f}-{max(gaps):.1f}s apart" if gaps else ""
    verdict = (
        "one grant per expiry"
        if extra == 0
        else f"{extra} more grant(s) came while the stored token was fresh"
    )
    say(
        f"  {ok} requests succeeded, {failed} failed; {grants} client_credentials grant(s) "
        f"between the {processes} processes = 1 first token + {expiries} expiries "
        f"({verdict}{spread})"
    )


def processes_sharing_a_file(
    server: EmpowerIDTestServer, url: str, *, grant: Grant, processes: int, seconds: float
) -> tuple[int, int]:
    """Run ``processes`` processes on one token file for ``seconds``, each with
    ``THREADS`` threads requesting ``url``; return the requests that succeeded
    and failed."""
    seed = server.issue_grant()["refresh_token"] if grant == "refresh_token" else None
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    with tempfile.TemporaryDirectory() as directory:
        fleet = _Fleet(
            grant=grant,
            token_endpoint=server.token_endpoint,
            client_id=server.client_id,
            client_secret=server.client_secret,
            seed=seed,
            path=os.path.join(directory, "token.json"),
            url=url,
            seconds=seconds,
        )
        children = [
            context.Process(target=_worker, args=(fleet, results)) for _ in range(processes)
        ]
        for child in children:
            child.start()
        outcomes = [results.get(timeout=seconds + 120) for _ in children]
        for child in children:
            child.join(30)
    return sum(o[0] for o in outcomes), sum(o[1] for o in outcomes)


def _auth(fleet: _Fleet) -> EmpowerIDAuth:
    store = FileTokenStore(fleet.path)
    if fleet.grant == "client_credentials":
        return EmpowerIDAuth.client_credentials(
            token_endpoint=fleet.token_endpoint,
            client_id=fleet.client_id,
            client_secret=fleet.client_secret,
            scope="api",
            store=store,
        )
    return EmpowerIDAuth(
        token_endpoint=fleet.token_endpoint,
        client_id=fleet.client_id,
        client_secret=fleet.client_secret,
        refresh_token=fleet.seed,  # seeds the empty file; the others find the file's token
        store=store,
    )


def _worker(fleet: _Fleet, results: Any) -> None:
    """One process: its own EmpowerIDAuth on the shared token file, ``THREADS`` threads."""
    auth = _auth(fleet)
    stop_at = time.monotonic() + fleet.seconds

    def loop() -> tuple[int, int]:
        ok = failed = 0
        with requests.Session() as session:
            session.auth = auth
            while time.monotonic() < stop_at:
                try:
                    good = session.get(fleet.url, timeout=30).status_code == 200
                except Exception:  # counted, as a user would see it
                    good = False
                ok, failed = ok + good, failed + (not good)
                time.sleep(0.05)
        return ok, failed

    with ThreadPoolExecutor(THREADS) as pool:
        counts = list(pool.map(lambda _: loop(), range(THREADS)))
    auth.close()
    results.put((sum(c[0] for c in counts), sum(c[1] for c in counts)))
