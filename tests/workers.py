"""Code run in child processes by the multi-process tests (started with spawn,
so it lives in an importable module, not inside a test)."""

from __future__ import annotations

import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import httpx
import requests

from eid_auth import EmpowerIDAuth, Token
from eid_auth.stores import FileTokenStore, RedisTokenStore, TokenStore


@dataclass(frozen=True)
class StoreSpec:
    """How a child builds the shared store: ("file", path) or ("redis", url, key)."""

    kind: str
    where: str
    key: str = ""
    lock_timeout: float = 30.0

    def build(self) -> TokenStore:
        if self.kind == "file":
            return FileTokenStore(self.where)
        return RedisTokenStore.from_url(self.where, key=self.key, lock_timeout=self.lock_timeout)


@dataclass(frozen=True)
class Fleet:
    """What every worker of a multi-process test shares."""

    store: StoreSpec
    token_endpoint: str
    api_url: str
    client_id: str
    client_secret: str
    seed_refresh_token: str
    threads: int
    rounds: int = 0
    seconds: float = 0.0
    # "refresh_token" (seeded with seed_refresh_token) or "client_credentials".
    grant: str = "refresh_token"


@dataclass
class Report:
    pid: int
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    on_refresh_calls: int = 0


def make_auth(fleet: Fleet, report: Report) -> EmpowerIDAuth:
    def on_refresh(token: Token) -> None:
        report.on_refresh_calls += 1  # on the refreshing thread, one at a time

    if fleet.grant == "client_credentials":
        return EmpowerIDAuth.client_credentials(
            token_endpoint=fleet.token_endpoint,
            client_id=fleet.client_id,
            client_secret=fleet.client_secret,
            store=fleet.store.build(),
            on_refresh=on_refresh,
            timeout=10,
            backoff_factor=0.05,
        )
    return EmpowerIDAuth(
        token_endpoint=fleet.token_endpoint,
        client_id=fleet.client_id,
        client_secret=fleet.client_secret,
        refresh_token=fleet.seed_refresh_token,
        store=fleet.store.build(),
        on_refresh=on_refresh,
        timeout=10,
        backoff_factor=0.05,
    )


def _request(auth: EmpowerIDAuth, url: str, use_httpx: bool, report: Report) -> None:
    try:
        if use_httpx:
            with httpx.Client(auth=auth, timeout=30) as client:
                status = client.get(url).status_code
        else:
            with requests.Session() as session:
                session.auth = auth
                status = session.get(url, timeout=30).status_code
    except Exception as exc:  # reported to the parent, which fails the test
        report.failed.append(f"{type(exc).__name__}: {exc}")
        return
    if status == 200:
        report.ok += 1
    else:
        report.failed.append(f"HTTP {status}")


def run_rounds(fleet: Fleet, index: int, barrier: Any, results: Any) -> None:
    """Each round: wait for everyone (the parent expires the tokens first), then
    ``fleet.threads`` threads send one request each, all at once."""
    report = Report(os.getpid())
    try:
        auth = make_auth(fleet, report)
        for _ in range(fleet.rounds):
            barrier.wait(60)
            go = threading.Barrier(fleet.threads)

            def one(i: int, go: threading.Barrier = go) -> None:
                go.wait(30)
                _request(auth, fleet.api_url, (index + i) % 2 == 1, report)

            workers = [threading.Thread(target=one, args=(i,)) for i in range(fleet.threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(120)
            barrier.wait(60)
        auth.close()
    except Exception:
        report.failed.append(traceback.format_exc())
    results.put(report)


def run_for_a_while(fleet: Fleet, index: int, barrier: Any, results: Any) -> None:
    """``fleet.threads`` threads send requests back to back for ``fleet.seconds``."""
    report = Report(os.getpid())
    try:
        auth = make_auth(fleet, report)
        barrier.wait(60)
        stop_at = time.monotonic() + fleet.seconds

        def loop(i: int) -> None:
            while time.monotonic() < stop_at:
                _request(auth, fleet.api_url, (index + i) % 2 == 1, report)
                time.sleep(0.01)

        workers = [threading.Thread(target=loop, args=(i,)) for i in range(fleet.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(fleet.seconds + 120)
        auth.close()
    except Exception:
        report.failed.append(traceback.format_exc())
    results.put(report)


def hold_lock(store: StoreSpec, held: Any) -> None:
    """Take the store's lock, say so, and hang (until the parent kills us)."""
    with store.build().lock(timeout=30):
        held.set()
        time.sleep(300)


def hold_lock_and_fork(store: StoreSpec, held: Any, pid_file: str) -> None:
    """Take the store's lock, fork a child that outlives us, say so, and hang."""
    with store.build().lock(timeout=30):
        pid = os.fork()
        if pid == 0:  # the grandchild: live on, knowing nothing of the lock
            time.sleep(60)
            os._exit(0)
        with open(pid_file, "w") as f:
            f.write(str(pid))
        held.set()
        time.sleep(300)


def write_forever(store: StoreSpec, record_json: bytes, started: Any) -> None:
    """Rewrite the record as fast as possible (until the parent kills us)."""
    from eid_auth.stores import StoredToken

    built = store.build()
    record = StoredToken.from_json(record_json, "the test")
    started.set()
    generation = record.generation
    while True:
        generation += 1
        built.write(
            StoredToken(
                client_id=record.client_id,
                token_endpoint=record.token_endpoint,
                generation=generation,
                token=record.token,
                refresh_token=record.refresh_token,
            )
        )
