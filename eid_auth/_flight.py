"""The single flight: one token renewal in progress, and everyone waiting for it.

Threads wait on an event; asyncio tasks on a future of their own loop, which
the flight resolves thread-safely. A flight runs its token request on a
thread, so it never needs an event loop to finish, and a cancelled waiter
cannot abandon it half-way. The threads that run flights in the background are
kept here too, so that interpreter exit gives them ``EXIT_GRACE`` to finish.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import _timing
from ._exceptions import TokenEndpointUnavailableError
from ._token import Token

if TYPE_CHECKING:
    import asyncio

__all__ = ["Flight", "start_renewal_thread"]

logger = logging.getLogger("eid_auth")


class Flight:
    """One renewal in progress, and everyone waiting for its outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done = threading.Event()
        self._token: Token | None = None
        self._error: BaseException | None = None
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        # The thread running the token request, and the new token while
        # on_refresh runs: requests made from on_refresh itself get that token.
        self.owner: int | None = None
        self.pending: Token | None = None

    def finish(self, token: Token | None, error: BaseException | None) -> None:
        with self._lock:
            self._token, self._error = token, error
            self.done.set()
            waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            # A closed loop has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    def wait(self, timeout: float) -> Token:
        if not self.done.wait(timeout):
            raise TokenEndpointUnavailableError(
                f"gave up after {timeout:.0f}s waiting for another thread's token refresh",
                status_code=None,
                attempts=0,
            )
        return self._outcome()

    async def wait_async(self, timeout: float) -> Token:
        import asyncio  # here, not at import: only async callers need it

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Not asyncio (trio, through anyio): wait on a worker thread. Left
            # behind on cancellation, it holds nothing and ends with the flight.
            import anyio.to_thread  # loaded only for an event loop that is not asyncio

            return await anyio.to_thread.run_sync(self.wait, timeout, abandon_on_cancel=True)
        with self._lock:
            future = None if self.done.is_set() else loop.create_future()
            if future is not None:
                self._async_waiters.append((loop, future))
        timed_out = False
        if future is not None:
            # Cancelling this waiter leaves the flight running for the others.
            try:
                await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:
                timed_out = True
        if timed_out:
            raise TokenEndpointUnavailableError(
                f"gave up after {timeout:.0f}s waiting for another task's token refresh",
                status_code=None,
                attempts=0,
            )
        return self._outcome()

    def _outcome(self) -> Token:
        if self._error is not None:
            # Each waiter raises its own copy: a shared object would collect one
            # thread's exception context (and its request) for all the others.
            raise _copy_error(self._error)
        assert self._token is not None
        return self._token


def _copy_error(error: BaseException) -> BaseException:
    copy = type(error).__new__(type(error), *error.args)
    copy.__dict__.update(error.__dict__)
    copy.args = error.args
    # The cause (a bare low-level error such as ConnectionRefusedError, holding
    # no request) says why; it carries no traceback, so waiters may share it.
    copy.__cause__ = error.__cause__
    copy.__suppress_context__ = True
    return copy


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# Renewal threads of ours still running (daemons: not joined at exit).
_renewal_threads: set[threading.Thread] = set()
_threads_lock = threading.Lock()


def start_renewal_thread(run: Callable[[], None]) -> None:
    """Run ``run`` on a daemon thread of its own, given ``EXIT_GRACE`` at exit.

    A daemon, so a hanging token endpoint cannot keep the process alive; at
    interpreter exit ``_finish_renewals_at_exit`` still gives it time to finish
    (and its on_refresh to run) after the server rotated the token.

    Raises:
        BaseException: whatever ``Thread.start`` raises; nothing is left behind.
    """

    def target() -> None:
        try:
            run()
        finally:
            with _threads_lock:
                _renewal_threads.discard(threading.current_thread())

    thread = threading.Thread(target=target, name="eid_auth-refresh", daemon=True)
    with _threads_lock:
        _renewal_threads.add(thread)
    try:
        thread.start()
    except BaseException:
        with _threads_lock:
            _renewal_threads.discard(thread)
        raise


def _finish_renewals_at_exit() -> None:
    """Give renewals still running on our threads EXIT_GRACE seconds in all to
    finish, then abandon them so the process can end.

    An atexit function runs after the interpreter has joined every non-daemon
    thread (so the program's own threads are done) and before daemon threads
    are stopped.
    """
    grace = _timing.EXIT_GRACE
    deadline = time.monotonic() + grace
    with _threads_lock:
        threads = list(_renewal_threads)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        logger.warning(
            "a token refresh still running at interpreter exit was abandoned after %.0fs; "
            "if the server had already rotated the refresh token, the new one is lost "
            "(call close() on the auth before exiting to wait for a refresh to finish)",
            grace,
        )


def _after_fork_in_child() -> None:
    global _threads_lock
    _threads_lock = threading.Lock()
    _renewal_threads.clear()  # the parent's threads do not exist here


atexit.register(_finish_renewals_at_exit)

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
