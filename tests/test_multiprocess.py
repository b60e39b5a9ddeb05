"""Many processes, many threads each, one token store: one refresh grant per expiry.

The loopback server rotates refresh tokens and revokes the whole grant when a
spent one comes back, so any second refresh of the same token shows up as a
reuse and as failed requests.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from eid_auth.testing import EmpowerIDTestServer

from .conftest import CLIENT_ID, CLIENT_SECRET, make_auth
from .workers import Fleet, Report, StoreSpec, hold_lock, run_for_a_while, run_rounds

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(params=["file", "redis"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    if request.param == "file":
        return StoreSpec("file", str(tmp_path / "token.json"))
    url = request.getfixturevalue("redis_server_url")
    return StoreSpec("redis", url, key=f"test-{uuid.uuid4().hex}")


def fleet_for(server: EmpowerIDTestServer, store: StoreSpec, **kwargs: object) -> Fleet:
    return Fleet(
        store=store,
        token_endpoint=server.token_endpoint,
        api_url=server.api_url("/api/whoami"),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        seed_refresh_token=server.issue_grant()["refresh_token"],
        **kwargs,  # type: ignore[arg-type]
    )


def token_request_story(server: EmpowerIDTestServer) -> str:
    """The token requests, for the message of a failed assertion."""
    log = server.token_request_log
    t0 = log[0].time if log else 0.0
    seen: set[str] = set()
    lines = []
    for r in log:
        presented = r.form.get("refresh_token", "?")
        lines.append(
            f"{r.time - t0:8.3f}s {presented[:6]} {r.header('user-agent')}"
            f"{' REUSED' if presented in seen else ''}"
        )
        seen.add(presented)
    return "\n".join(lines)


def start(target: object, fleet: Fleet, processes: int) -> tuple[list, object, object]:  # type: ignore[type-arg]
    barrier = SPAWN.Barrier(processes + 1)
    results = SPAWN.Queue()
    children = [
        SPAWN.Process(target=target, args=(fleet, i, barrier, results))  # type: ignore[arg-type]
        for i in range(processes)
    ]
    for child in children:
        child.start()
    return children, barrier, results


def collect(children: list, results: object) -> list[Report]:  # type: ignore[type-arg]
    reports = [results.get(timeout=180) for _ in children]  # type: ignore[attr-defined]
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    return reports


@pytest.mark.parametrize("processes", [4])
def test_processes_and_threads_refresh_once_per_expiry(
    server: EmpowerIDTestServer, store_spec: StoreSpec, processes: int
) -> None:
    rounds, threads = 4, 8
    fleet = fleet_for(server, store_spec, threads=threads, rounds=rounds)
    children, barrier, results = start(run_rounds, fleet, processes)
    grants_after_round = []
    for round_ in range(rounds):
        if round_:
            server.expire_access_tokens()  # every process's token now gets a 401
        barrier.wait(120)  # type: ignore[attr-defined]
        barrier.wait(180)  # type: ignore[attr-defined]
        grants_after_round.append(server.refresh_grants)
    reports = collect(children, results)

    assert [f for r in reports for f in r.failed] == []
    assert sum(r.ok for r in reports) == processes * threads * rounds
    # Round 0 redeems the seed; each later round follows one expiry.
    assert grants_after_round == [1, 2, 3, 4], token_request_story(server)
    assert server.reuse_detected == 0, token_request_story(server)
    # on_refresh ran once per refresh, in whichever process did it.
    assert sum(r.on_refresh_calls for r in reports) == rounds


def test_tokens_expiring_by_the_clock_are_refreshed_once_each(
    store_spec: StoreSpec,
) -> None:
    # 2 s tokens are refreshed 1 s after issue (half their lifetime), by the
    # first process to notice; the others find the new token in the store.
    with EmpowerIDTestServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, access_token_lifetime=2
    ) as server:
        fleet = fleet_for(server, store_spec, threads=4, seconds=6.0)
        children, barrier, results = start(run_for_a_while, fleet, 4)
        barrier.wait(120)  # type: ignore[attr-defined]
        started = time.monotonic()
        reports = collect(children, results)
        elapsed = time.monotonic() - started

    assert [f for r in reports for f in r.failed] == []
    assert sum(r.ok for r in reports) > 100
    assert server.reuse_detected == 0, token_request_story(server)
    # At most one refresh per second of running (one per token), plus the seed.
    assert 2 <= server.refresh_grants <= elapsed + 2
    assert sum(r.on_refresh_calls for r in reports) == server.refresh_grants


def test_a_killed_lock_holder_does_not_block_the_others(
    server: EmpowerIDTestServer, tmp_path: Path
) -> None:
    spec = StoreSpec("file", str(tmp_path / "token.json"))
    held = SPAWN.Event()
    holder = SPAWN.Process(target=hold_lock, args=(spec, held))
    holder.start()
    try:
        assert held.wait(60)
        auth = make_auth(server, store=spec.build(), timeout=0.2, max_retries=0)
        # The lock is really held: taking it times out.
        with pytest.raises(Exception, match="stayed locked"), spec.build().lock(timeout=0.3):
            pass
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        holder.join(30)
        # The kernel released the dead holder's lock: the refresh goes through.
        auth.refresh()
        assert server.refresh_grants == 1
        auth.close()
    finally:
        if holder.is_alive():
            holder.kill()
            holder.join(30)


@pytest.fixture
def killed_redis_holder(redis_server_url: str) -> Iterator[StoreSpec]:
    spec = StoreSpec("redis", redis_server_url, key=f"test-{uuid.uuid4().hex}", lock_timeout=1.5)
    held = SPAWN.Event()
    holder = SPAWN.Process(target=hold_lock, args=(spec, held))
    holder.start()
    try:
        assert held.wait(60)
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        holder.join(30)
        yield spec
    finally:
        if holder.is_alive():
            holder.kill()
            holder.join(30)


def test_a_killed_redis_lock_holder_is_taken_over_after_lock_timeout(
    server: EmpowerIDTestServer, killed_redis_holder: StoreSpec
) -> None:
    store = killed_redis_holder.build()
    auth = make_auth(server, store=store)
    started = time.monotonic()
    auth.refresh()
    waited = time.monotonic() - started
    assert server.refresh_grants == 1
    # The lock outlived its holder (renewed every 0.5 s, it had at least 1 s
    # left at the kill) until lock_timeout, and not much longer.
    assert 0.5 < waited < 1.5 + 10
    auth.close()
    store.close()


def test_an_auth_refuses_pickling_with_what_to_do_instead(server: EmpowerIDTestServer) -> None:
    # multiprocessing pickles what it sends to a worker: the error must say how
    # processes share a token instead.
    import copy
    import pickle

    auth = make_auth(server)
    try:
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            with pytest.raises(TypeError, match="share the token through a store"):
                pickle.dumps(auth, protocol)
        with pytest.raises(TypeError, match="share the token through a store"):
            copy.deepcopy(auth)
        twin = copy.copy(auth)  # a second handle on the same token and flight
        assert twin.refresh() == auth.token
    finally:
        auth.close()
