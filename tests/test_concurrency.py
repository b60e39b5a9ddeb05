"""Single flight: many threads, many tasks, both at once, one refresh grant per expiry.

The server rotates refresh tokens and revokes the grant when a used one comes
back, so a second refresh would not just be counted: it would fail requests.

Also what the callers waiting for a refresh get: each its own error object, an
error once the longest possible refresh is over, an ordinary error (not a hang,
not the interrupt) when the refreshing caller is interrupted; small connection
pools that a slow refresh does not starve; trio as well as asyncio; and a
refresh thread that cannot start. httpx2 (sync and async) wherever httpx is,
and every client library at once on one auth.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import httpx2
import pytest
import requests

from eid_auth import EmpowerIDAuth, TokenEndpointUnavailableError
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import CLIENT_ID, CLIENT_SECRET, library

AuthFactory = Callable[..., EmpowerIDAuth]

THREADS = 50
TASKS = 500
# httpx's API: the tests of its clients run through httpx and httpx2.
HTTPX_LIBRARIES = ["httpx", "httpx2"]


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


@pytest.mark.parametrize("name", ["requests", *HTTPX_LIBRARIES])
def test_threads_sharing_one_auth_refresh_once(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, name: str
) -> None:
    auth = _expired_auth(server, auth_factory)
    # Slow the refresh down so every thread arrives while it is in flight.
    server.fail_next(FaultSpec(status=200, delay=0.3), count=1)
    url = server.api_url("/api/x")
    if name == "requests":
        session = requests.Session()
        session.auth = auth
        statuses = _run_threads(THREADS, lambda: session.get(url, timeout=30).status_code)
        session.close()
    else:
        lib = library(name)
        with lib.Client(auth=auth, timeout=30, limits=lib.Limits(max_connections=200)) as c:
            statuses = _run_threads(THREADS, lambda: c.get(url).status_code)
    assert statuses == [200] * THREADS
    assert server.refresh_grants == 1
    assert server.token_requests == 1
    assert server.reuse_detected == 0


@pytest.mark.parametrize("name", HTTPX_LIBRARIES)
def test_tasks_sharing_one_async_client_refresh_once(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, name: str
) -> None:
    auth = _expired_auth(server, auth_factory)
    server.fail_next(FaultSpec(status=200, delay=0.3), count=1)

    async def main() -> list[int]:
        async with library(name).AsyncClient(auth=auth, timeout=60) as client:
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


def test_every_client_library_at_once_on_one_expired_token_costs_one_grant(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    """Threads on one requests.Session and on one httpx2.Client, and tasks on
    httpx.AsyncClient, httpx2.AsyncClient and an aiohttp session in one event
    loop, all on one auth whose token has expired: one refresh grant for all."""
    import aiohttp

    auth = _expired_auth(server, auth_factory)
    # Slow the refresh down so every caller arrives while it is in flight.
    server.fail_next(FaultSpec(status=200, delay=0.3), count=1)
    url = server.api_url("/api/x")
    threads_each, tasks_each = 10, 50
    go = threading.Barrier(2 * threads_each + 1, timeout=30)

    async def tasks() -> list[int]:
        async with (
            httpx.AsyncClient(auth=auth, timeout=30) as on_httpx,
            httpx2.AsyncClient(auth=auth, timeout=30) as on_httpx2,
            aiohttp.ClientSession(
                middlewares=[auth.aiohttp_middleware()], timeout=aiohttp.ClientTimeout(total=30)
            ) as on_aiohttp,
        ):

            async def with_httpx(client: Any) -> int:
                return int((await client.get(url)).status_code)

            async def with_aiohttp() -> int:
                async with on_aiohttp.get(url) as response:
                    await response.read()
                    return response.status

            go.wait()  # blocks the loop on purpose: every task starts together
            return await asyncio.gather(
                *(with_httpx(on_httpx) for _ in range(tasks_each)),
                *(with_httpx(on_httpx2) for _ in range(tasks_each)),
                *(with_aiohttp() for _ in range(tasks_each)),
            )

    session = requests.Session()
    session.auth = auth
    client = httpx2.Client(auth=auth, timeout=30, limits=httpx2.Limits(max_connections=50))

    def with_requests() -> int:
        go.wait()
        return session.get(url, timeout=30).status_code

    def with_httpx2() -> int:
        go.wait()
        return int(client.get(url).status_code)

    with session, client, ThreadPoolExecutor(2 * threads_each + 1) as pool:
        loop = pool.submit(asyncio.run, tasks())
        threads = [pool.submit(with_requests) for _ in range(threads_each)]
        threads += [pool.submit(with_httpx2) for _ in range(threads_each)]
        assert [f.result(timeout=60) for f in threads] == [200] * (2 * threads_each)
        assert loop.result(timeout=60) == [200] * (3 * tasks_each)
    assert server.grants_served == {"refresh_token": 1}
    assert server.reuse_detected == 0


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


@pytest.mark.parametrize("name", HTTPX_LIBRARIES)
def test_async_401_burst_with_a_tiny_pool_does_not_starve(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, name: str
) -> None:
    auth = auth_factory()
    auth.refresh()
    server.expire_access_tokens()
    lib = library(name)

    async def main() -> list[int]:
        limits = lib.Limits(max_connections=2)
        timeout = lib.Timeout(10, pool=10)
        async with lib.AsyncClient(auth=auth, limits=limits, timeout=timeout) as client:
            responses = await asyncio.gather(
                *(client.get(server.api_url("/api/x")) for _ in range(40))
            )
        return [r.status_code for r in responses]

    assert asyncio.run(main()) == [200] * 40
    assert server.refresh_grants == 2


@pytest.mark.parametrize("name", HTTPX_LIBRARIES)
def test_a_slow_refresh_does_not_starve_a_tiny_connection_pool(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, name: str
) -> None:
    auth = auth_factory()
    auth.refresh()
    server.expire_access_tokens()
    server.fail_next(FaultSpec(status=200, delay=2.0), count=1)
    lib = library(name)

    async def main() -> list[int]:
        # Tasks holding their unread 401s while the refresh takes 2 s would keep
        # both connections, and the others would hit the 1 s pool timeout.
        limits = lib.Limits(max_connections=2)
        timeout = lib.Timeout(10, pool=1.0)
        async with lib.AsyncClient(auth=auth, limits=limits, timeout=timeout) as client:
            responses = await asyncio.gather(
                *(client.get(server.api_url("/api/x")) for _ in range(20))
            )
        return [r.status_code for r in responses]

    assert asyncio.run(main()) == [200] * 20
    assert server.refresh_grants == 2


@pytest.mark.parametrize("name", HTTPX_LIBRARIES)
def test_a_slow_refresh_does_not_starve_a_tiny_sync_pool(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, name: str
) -> None:
    auth = auth_factory()
    auth.refresh()
    server.expire_access_tokens()
    server.fail_next(FaultSpec(status=200, delay=2.0), count=1)
    lib = library(name)
    limits = lib.Limits(max_connections=2)
    timeout = lib.Timeout(10, pool=1.0)
    with lib.Client(auth=auth, limits=limits, timeout=timeout) as client:
        barrier = threading.Barrier(10, timeout=10)
        statuses: list[int] = []

        def one() -> None:
            barrier.wait()
            try:
                response = client.get(server.api_url("/api/x"))
            except lib.ReadError as exc:
                # httpcore's sync pool can close a connection it has just handed
                # to a queued request (encode/httpcore#1110): EBADF, now and then,
                # under load. Not what this test is about: starvation shows as a
                # PoolTimeout, which is not caught here.
                if "Bad file descriptor" not in str(exc):
                    raise
                response = client.get(server.api_url("/api/x"))
            statuses.append(response.status_code)

        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert statuses == [200] * 10
    assert server.refresh_grants == 2


@pytest.mark.parametrize("name", HTTPX_LIBRARIES)
def test_cancelled_task_does_not_lose_the_rotated_token(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, name: str
) -> None:
    auth = _expired_auth(server, auth_factory)
    server.fail_next(FaultSpec(status=200, delay=0.5), count=1)

    async def main() -> int:
        async with library(name).AsyncClient(auth=auth, timeout=30) as client:
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


def test_every_waiter_gets_its_own_error_object(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory(max_retries=0)
    server.fail_next(FaultSpec(status=503, delay=0.5), count=1)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            auth.refresh()
        except TokenEndpointUnavailableError as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join(10)
    assert len(errors) == 5
    assert len({id(e) for e in errors}) == 5
    assert len({str(e) for e in errors}) == 1


def test_async_waiters_give_up_after_the_longest_possible_refresh(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    release = threading.Event()
    auth = auth_factory(
        on_refresh=lambda token: release.wait(20), timeout=0.1, max_retries=0
    )  # the longest refresh is then 0.1 * 4 + 5 = 5.4 s
    leader = threading.Thread(target=auth.refresh)
    leader.start()
    time.sleep(0.2)

    async def one() -> int:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            return (await client.get(server.api_url("/api/x"))).status_code

    started = time.monotonic()
    with pytest.raises(TokenEndpointUnavailableError, match="gave up"):
        asyncio.run(asyncio.wait_for(one(), 15))
    assert time.monotonic() - started < 12
    release.set()
    leader.join(10)


def test_interrupt_during_the_token_request_does_not_strand_waiters(
    server: EmpowerIDTestServer,
) -> None:
    class InterruptOnce(requests.Session):
        interrupted = False

        # request(), which post() calls too: the token request goes through it.
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            if not InterruptOnce.interrupted:
                InterruptOnce.interrupted = True
                time.sleep(1.0)  # let the waiters gather
                raise KeyboardInterrupt  # Ctrl-C cannot be aimed at one thread for real
            return super().request(*args, **kwargs)

    auth = EmpowerIDAuth(
        token_endpoint=server.token_endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=server.issue_grant()["refresh_token"],
        token_client=InterruptOnce(),
    )
    outcomes: list[str] = []

    def call() -> None:
        try:
            auth.refresh()
            outcomes.append("token")
        except KeyboardInterrupt:
            outcomes.append("interrupt")
        except TokenEndpointUnavailableError:
            outcomes.append("error")

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    # The interrupted leader re-raises; waiters get an ordinary error, not the
    # interrupt and not a hang.
    assert sorted(outcomes) == ["error", "error", "error", "interrupt"]
    assert auth.refresh().access_token  # and the next refresh works


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


@pytest.mark.parametrize("name", HTTPX_LIBRARIES)
def test_trio_is_supported(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, name: str
) -> None:
    trio = pytest.importorskip("trio")
    auth = auth_factory()

    async def main() -> list[int]:
        async with library(name).AsyncClient(auth=auth, timeout=10) as client:
            results: list[int] = []

            async def one() -> None:
                results.append((await client.get(server.api_url("/api/x"))).status_code)

            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(one)
            return results

    assert trio.run(main) == [200] * 20
    assert server.refresh_grants == 1


def test_a_refresh_thread_that_cannot_start_does_not_block_later_calls(
    server: EmpowerIDTestServer,
    auth_factory: AuthFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = auth_factory()
    real_start = threading.Thread.start

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    async def one() -> int:
        async with httpx.AsyncClient(auth=auth, timeout=10) as client:
            return (await client.get(server.api_url("/api/x"))).status_code

    # Thread exhaustion cannot be provoked safely for real; this is the one mock.
    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError, match="can't start"):
        asyncio.run(one())
    monkeypatch.setattr(threading.Thread, "start", real_start)
    assert asyncio.run(asyncio.wait_for(one(), 10)) == 200
