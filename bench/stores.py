"""Token stores under load: many processes, one grant, one refresh per expiry.

Run by hand (not part of the test suite):

    .venv/bin/python bench/stores.py            # memory, file and Redis stores
    .venv/bin/python bench/stores.py --quick    # fewer processes, shorter runs

For 1, 4 and 16 processes (4 threads each) hammering the embedded EmpowerID
test server (rotating refresh tokens, reuse detection on) while every access
token is revoked at regular intervals, it prints requests served and failed,
refresh grants per expiry (the limit is 1) and reuses the server detected.
The same for EmpowerIDAuth.client_credentials(): with a private store each
process fetches its own token per expiry; with a shared one the fleet shares
one. Then it measures what a store adds to a request on a valid token: the auth's
own work per request, in-process, with no network.

Redis: set EID_AUTH_TEST_REDIS_URL, or have redis-server on PATH (started on
a free loopback port for the run).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

from eid_auth import EmpowerIDAuth
from eid_auth.stores import FileTokenStore, MemoryTokenStore, RedisTokenStore, TokenStore
from eid_auth.testing import EmpowerIDTestServer

SPAWN = multiprocessing.get_context("spawn")
THREADS = 4


@dataclass(frozen=True)
class Job:
    kind: str  # memory, file, redis
    where: str
    token_endpoint: str
    api_url: str
    seed: str
    seconds: float
    grant: str = "refresh_token"  # or "client_credentials"


def build_store(kind: str, where: str) -> TokenStore:
    if kind == "memory":
        return MemoryTokenStore()  # private to each process: nothing shared
    if kind == "file":
        return FileTokenStore(where)
    return RedisTokenStore.from_url(where, key="bench")


def worker(job: Job, barrier: Any, results: Any) -> None:
    if job.grant == "client_credentials":
        auth = EmpowerIDAuth.client_credentials(
            token_endpoint=job.token_endpoint,
            client_id="bench",
            client_secret="bench-secret",
            store=build_store(job.kind, job.where),
            timeout=10,
        )
    else:
        auth = EmpowerIDAuth(
            token_endpoint=job.token_endpoint,
            client_id="bench",
            client_secret="bench-secret",
            refresh_token=job.seed,
            store=build_store(job.kind, job.where),
            timeout=10,
        )
    served = failed = 0
    lock = threading.Lock()
    barrier.wait(120)
    stop_at = time.monotonic() + job.seconds

    def loop() -> None:
        nonlocal served, failed
        with requests.Session() as session:
            session.auth = auth
            while time.monotonic() < stop_at:
                try:
                    ok = session.get(job.api_url, timeout=30).status_code == 200
                except Exception:
                    ok = False
                with lock:
                    served += ok
                    failed += not ok
                if not ok:
                    time.sleep(0.01)  # failures are fast: do not spin

    threads = [threading.Thread(target=loop) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    auth.close()
    results.put((served, failed))


def fleet(
    kind: str,
    where: str,
    processes: int,
    seconds: float,
    every: float,
    grant: str = "refresh_token",
) -> dict[str, Any]:
    with EmpowerIDTestServer(client_id="bench", client_secret="bench-secret") as server:
        job = Job(
            kind,
            where,
            server.token_endpoint,
            server.api_url("/api/bench"),
            server.issue_grant()["refresh_token"],
            seconds,
            grant,
        )
        barrier = SPAWN.Barrier(processes + 1)
        results = SPAWN.Queue()
        children = [
            SPAWN.Process(target=worker, args=(job, barrier, results)) for _ in range(processes)
        ]
        for child in children:
            child.start()
        barrier.wait(120)
        # Revoke every access token at a steady pace: each is one expiry.
        expiries = 1  # the seed's first redemption, or the first token
        deadline = time.monotonic() + seconds
        while time.monotonic() + every < deadline:
            time.sleep(every)
            server.expire_access_tokens()
            expiries += 1
        outcomes = [results.get(timeout=seconds + 120) for _ in children]
        for child in children:
            child.join(60)
        return {
            "served": sum(o[0] for o in outcomes),
            "failed": sum(o[1] for o in outcomes),
            "grants": server.grants_served.get(grant, 0),
            "expiries": expiries,
            "reuse": server.reuse_detected,
        }


def hot_path_us(store: TokenStore | None, calls: int) -> float:
    """Microseconds of the auth's own work per request on a valid token."""
    auth = EmpowerIDAuth(
        token_endpoint="https://eid.example.com/oauth/v2/token",
        client_id="bench",
        client_secret="s",
        access_token="a-valid-access-token",
        refresh_token="rt",
        expires_at=time.time() + 3600,
        store=store,
    )
    if store is not None:
        store.clear()
        # Load the token once (the first request reads the store).
        auth.sync_auth_flow(_request()).__next__()
    rounds = []
    for _ in range(5):
        request = _request()
        started = time.perf_counter()
        for _ in range(calls):
            flow = auth.sync_auth_flow(request)
            next(flow)
        rounds.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(rounds)


def _request() -> Any:
    import httpx

    return httpx.Request("GET", "https://eid.example.com/api/x")


@contextmanager
def redis_url() -> Iterator[str | None]:
    if os.environ.get("EID_AUTH_TEST_REDIS_URL"):
        yield os.environ["EID_AUTH_TEST_REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", workdir],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 4 processes, short runs")
    args = parser.parse_args()
    counts = [1, 4] if args.quick else [1, 4, 16]
    seconds, every = (4.0, 1.0) if args.quick else (8.0, 1.5)

    print(f"# eid-auth token stores, {time.strftime('%Y-%m-%d')}")
    print(
        f"# {platform.python_implementation()} {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{THREADS} threads per process, {seconds:g} s per run, "
        f"all access tokens revoked every {every:g} s"
    )
    with redis_url() as url, tempfile.TemporaryDirectory() as tmp:
        kinds = [("memory", ""), ("file", "")]
        if url is None:
            print("# Redis skipped: no redis-server on PATH and no EID_AUTH_TEST_REDIS_URL")
        else:
            kinds.append(("redis", url))
        print()
        print(
            "| store | processes | requests served | failed | refresh grants | expiries "
            "| grants per expiry | reuse detected |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for kind, where in kinds:
            for n in counts:
                if kind == "file":
                    where = os.path.join(tmp, f"token-{n}.json")
                if kind == "redis" and url is not None:
                    RedisTokenStore.from_url(url, key="bench").clear()
                r = fleet(kind, where, n, seconds, every)
                print(
                    f"| {kind} | {n} | {r['served']} | {r['failed']} | {r['grants']} | "
                    f"{r['expiries']} | {r['grants'] / r['expiries']:.2f} | {r['reuse']} |"
                )
                sys.stdout.flush()

        print()
        print(
            "| client credentials, store | processes | requests served | failed "
            "| token requests | expiries | token requests per expiry |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for kind, where in kinds:
            for n in counts:
                if kind == "file":
                    where = os.path.join(tmp, f"cc-token-{n}.json")
                if kind == "redis" and url is not None:
                    RedisTokenStore.from_url(url, key="bench").clear()
                r = fleet(kind, where, n, seconds, every, grant="client_credentials")
                label = "private memory (each its own)" if kind == "memory" else kind
                print(
                    f"| {label} | {n} | {r['served']} | {r['failed']} | {r['grants']} | "
                    f"{r['expiries']} | {r['grants'] / r['expiries']:.2f} |"
                )
                sys.stdout.flush()

        print()
        calls = 20_000
        base = hot_path_us(None, calls)
        print("| store | µs per request on a valid token (auth's own work) | vs. private memory |")
        print("|---|---:|---:|")
        print(f"| private memory (default) | {base:.2f} | 1.00 |")
        stores: list[tuple[str, TokenStore]] = [
            ("shared memory", MemoryTokenStore()),
            ("file", FileTokenStore(os.path.join(tmp, "hot.json"))),
        ]
        if url is not None:
            stores.append(("redis", RedisTokenStore.from_url(url, key="bench-hot")))
        for name, store in stores:
            us = hot_path_us(store, calls)
            print(f"| {name} | {us:.2f} | {us / base:.2f} |")


if __name__ == "__main__":
    main()
