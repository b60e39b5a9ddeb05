"""Single flight: many threads, many tasks, both at once, one refresh grant per expiry.

The server rotates refresh tokens and revokes the grant when a used one comes
back, so a second refresh would not just be counted: it would fail requests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import requests

from eid_auth import EmpowerIDAuth
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

AuthFactory = Callable[..., EmpowerIDAuth]

THREADS = 50
TASKS = 500


def _expired_auth(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, **kwargs: object
) -> EmpowerIDAuth:
    grant = server.issue_grant()
    return auth_factory(
        access_token=grant["access_token"],
        refresh_token=grant["refresh_token"],
        expires_at=time.time() - 1,
        **kwargs,
    )


def _run_threads(count: int, work: Callable[[], int]) -> list[int]:
    barrier = threading.Barrier(count, timeout=30)

    def one() -> int:
        barrier.wait()
        return work()

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(one) for _ in range(count)]
        return [f.result(timeout=60) for f in futures]


@pytest.mark.parametrize("library", ["requests", "httpx"])
def test_threads_sharing_one_auth_refresh_once(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, library: str
) -> None:
    auth = _expired_auth(server, auth_factory)
    # Slow the refresh down so every thread arrives while it is in flight.
    server.fail_next(FaultSpec(status=200, delay=0.3), count=1)
    url = server.api_url("/api/x")
    if library == "requests":
        session = requests.Session()
        session.auth = auth
        statuses = _run_threads(THREADS, lambda: session.get(url, timeout=30).status_code)
        session.close()
    else:
        with httpx.Client(auth=auth, timeout=30, limits=httpx.Limits(max_connections=200)) as c:
            statuses = _run_threads(THREADS, lambda: c.get(url).status_code)
    assert statuses == [200] * THREADS
    assert server.refresh_grants == 1
    assert server.token_requests == 1
    assert server.reuse_detected == 0


def test_tasks_sharing_one_async_client_refresh_once(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = _expired_auth(server, auth_factory)
    server.fail_next(FaultSpec(status=200, delay=0.3), count=1)

    async def main() -> list[int]:
        async with httpx.AsyncClient(auth=auth, timeout=60) as client:
            responses = await asyncio.gather(
                *(client.get(server.api_url("/api/x")) for _ in range(TASKS))
            )
        return [r.status_code for r in responses]

    assert asyncio.run(main()) == [200] * TASKS
    assert server.refresh_grants == 1
    assert server.token_requests == 1


def test_threads_and_an_event_loop_at_once_refresh_once(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = _expired_auth(server, auth_factory)
    server.fail_next(FaultSpec(status=200, delay=0.3), count=1)
    url = server.api_url("/api/x")
    start = threading.Event()

    async def tasks() -> list[int]:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            start.wait(10)
            responses = await asyncio.gather(*(client.get(url) for _ in range(100)))
        return [r.status_code for r in responses]

    def thread_work() -> int:
        start.wait(10)
        return requests.get(url, auth=auth, timeout=30).status_code

    with ThreadPoolExecutor(21) as pool:
        loop_result = pool.submit(asyncio.run, tasks())
        thread_results = [pool.submit(thread_work) for _ in range(20)]
        start.set()
        assert [f.result(timeout=60) for f in thread_results] == [200] * 20
        assert loop_result.result(timeout=60) == [200] * 100
    assert server.refresh_grants == 1


def test_burst_of_401s_causes_one_refresh(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory()
    auth.refresh()
    server.expire_access_tokens()  # every thread will meet a 401
    url = server.api_url("/api/x")
    session = requests.Session()
    session.auth = auth
    statuses = _run_threads(THREADS, lambda: session.get(url, timeout=30).status_code)
    session.close()
    assert statuses == [200] * THREADS
    assert server.refresh_grants == 2
    assert server.reuse_detected == 0


def test_async_401_burst_with_a_tiny_pool_does_not_starve(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory()
    auth.refresh()
    server.expire_access_tokens()

    async def main() -> list[int]:
        limits = httpx.Limits(max_connections=2)
        timeout = httpx.Timeout(10, pool=10)
        async with httpx.AsyncClient(auth=auth, limits=limits, timeout=timeout) as client:
            responses = await asyncio.gather(
                *(client.get(server.api_url("/api/x")) for _ in range(40))
            )
        return [r.status_code for r in responses]

    assert asyncio.run(main()) == [200] * 40
    assert server.refresh_grants == 2


def test_cancelled_task_does_not_lose_the_rotated_token(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = _expired_auth(server, auth_factory)
    server.fail_next(FaultSpec(status=200, delay=0.5), count=1)

    async def main() -> int:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            leader = asyncio.ensure_future(client.get(server.api_url("/api/x")))
            await asyncio.sleep(0.1)  # the refresh is now in flight
            leader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await leader
            # The refresh finished anyway; the next request uses its token.
            response = await client.get(server.api_url("/api/x"))
            return response.status_code

    assert asyncio.run(main()) == 200
    assert server.refresh_grants == 1
    assert server.reuse_detected == 0


def test_sync_call_on_the_loop_thread_while_a_task_refreshes_does_not_deadlock(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = _expired_auth(server, auth_factory)
    server.fail_next(FaultSpec(status=200, delay=0.3), count=1)

    async def main() -> tuple[int, int]:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            task = asyncio.ensure_future(client.get(server.api_url("/api/x")))
            await asyncio.sleep(0.05)  # the task now leads the refresh
            # Blocks this loop's thread while the task's refresh is in flight.
            sync_status = requests.get(server.api_url("/api/x"), auth=auth, timeout=30)
            return sync_status.status_code, (await task).status_code

    result: list[tuple[int, int]] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(main())), daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "deadlock"
    assert result == [(200, 200)]
    assert server.refresh_grants == 1


def test_a_failed_refresh_is_reported_to_every_waiter_then_recovers(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = _expired_auth(server, auth_factory, max_retries=0)
    server.fail_next(FaultSpec(status=503, delay=0.3), count=1)
    url = server.api_url("/api/x")

    def work() -> int:
        try:
            return requests.get(url, auth=auth, timeout=30).status_code
        except Exception as exc:
            return -1 if type(exc).__name__ == "TokenEndpointUnavailableError" else -2

    statuses = _run_threads(20, work)
    assert set(statuses) <= {-1, 200}
    assert -1 in statuses
    assert server.token_requests <= 2
    # The failed flight does not stick: the next request refreshes and succeeds.
    assert requests.get(url, auth=auth, timeout=30).status_code == 200
    assert server.reuse_detected == 0


def test_several_event_loops_and_threads_share_one_auth(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = _expired_auth(server, auth_factory)
    server.fail_next(FaultSpec(status=200, delay=0.3), count=1)
    url = server.api_url("/api/x")
    barrier = threading.Barrier(4, timeout=10)

    async def loop_work() -> list[int]:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            barrier.wait()
            responses = await asyncio.gather(*(client.get(url) for _ in range(50)))
        return [r.status_code for r in responses]

    def thread_work() -> list[int]:
        barrier.wait()
        with httpx.Client(auth=auth, timeout=30) as client:
            return [client.get(url).status_code for _ in range(5)]

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(asyncio.run, loop_work()) for _ in range(3)]
        futures.append(pool.submit(thread_work))
        results = [f.result(timeout=60) for f in futures]
    assert results == [[200] * 50] * 3 + [[200] * 5]
    assert server.refresh_grants == 1
