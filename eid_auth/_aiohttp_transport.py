"""Token requests through aiohttp, sent from the thread that runs a refresh.

A refresh runs on a thread of its own and never needs the caller's event loop
(see ``_refresh``). aiohttp only works on an event loop, so a token request
is handed to one with ``asyncio.run_coroutine_threadsafe`` and its answer is
read back chunk by chunk, raw (``auto_decompress=False``), so that
``_transport`` keeps its deadline, its size cap and its own decoding:

* by default, a ``ClientSession`` of eid_auth's own, on a private event loop
  that runs on one daemon thread for the whole process (``eid_auth-aiohttp``),
  started on first use: token requests never wait for a busy or blocked
  application loop, and a cancelled task cannot cut a refresh off;
* with ``token_client=aiohttp.ClientSession(...)``, on that session's own
  loop, which must be running (the application's loop: its tasks wait for the
  refresh without blocking it). A synchronous token request made on that
  loop's own thread (``auth.refresh()`` in a coroutine) blocks the loop it
  needs: it fails at its deadline, as a timeout.

Each request goes with ``middlewares=()`` (never the session's, which may be
our own middleware), no redirects, and aiohttp's ``total`` timeout set to the
attempt's deadline, so a token request also ends by itself. At the deadline,
``_transport`` calls ``shut_down`` from its thread: the pending read is
cancelled and the connection closed on the loop.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import concurrent.futures
import contextlib
import errno
import http.client
import os
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

from . import _timing
from ._exceptions import ConfigurationError
from ._libraries import require

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AiohttpOpened", "PrivateSession", "check_session", "open_response"]

_T = TypeVar("_T")

# Time for closing a session or a response on the loop; they only close sockets.
_CLOSE_SECONDS = 5.0


class _PrivateLoop:
    """The process's private event loop, on a daemon thread started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_serve, args=(loop,), name="eid_auth-aiohttp", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def after_fork_in_child(self) -> None:
        # The parent's loop thread does not exist here; a new one starts on first use.
        self._lock = threading.Lock()
        self._loop = self._thread = None


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


_private_loop = _PrivateLoop()


class PrivateSession:
    """The client token requests of aiohttp users go through by default: an
    ``aiohttp.ClientSession`` of eid_auth's own on the private loop, made on
    first use and closed by ``close()`` (``auth.close()`` / ``aclose()``), or
    at interpreter exit.

    Proxies come from the environment (``HTTPS_PROXY``, ``NO_PROXY``...), as for
    the other libraries' default clients; netrc is not read, as it is not for
    them: its password would go to the token endpoint.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._dropped: weakref.finalize[Any, Any] | None = None

    def session(self) -> tuple[aiohttp.ClientSession, asyncio.AbstractEventLoop]:
        """The session and its loop, made now if need be."""
        with self._lock:
            if self._closed:
                raise ConfigurationError(
                    "eid_auth's aiohttp session for token requests was closed (by close() "
                    "or aclose() of the auth or EmpowerIDClient using it)"
                )
            with _live_lock:
                # Not there after a fork: the parent's session stays the parent's.
                loop = _live.get(self._session) if self._session is not None else None
            if self._session is None or loop is None or loop.is_closed():
                loop = _private_loop.get()
                self._session = _wait(_new_session(), loop, _CLOSE_SECONDS)
                with _live_lock:
                    _live[self._session] = loop
                if self._dropped is not None:
                    self._dropped.detach()
                # An auth dropped without close() frees its session too: closed
                # on the loop once this object is collected (exit has its own).
                self._dropped = weakref.finalize(self, _close_dropped, self._session, loop)
                self._dropped.atexit = False
            return self._session, loop

    def close(self) -> None:
        """Close the session (waits a few seconds at most; the loop thread stays)."""
        with self._lock:
            session, self._session, self._closed = self._session, None, True
        if session is not None:
            _close(session)


# Every private session not closed yet, and its loop. Kept here rather than by
# its PrivateSession alone: a session the garbage collector finds unclosed is
# reported by aiohttp ("Unclosed client session"); these are closed by
# close() or at interpreter exit.
_live: dict[Any, asyncio.AbstractEventLoop] = {}
_live_lock = threading.Condition()
_busy = 0  # token requests under way on private sessions


def _begin() -> None:
    global _busy
    with _live_lock:
        _busy += 1


def _end() -> None:
    global _busy
    with _live_lock:
        _busy -= 1
        _live_lock.notify_all()


def _close(session: aiohttp.ClientSession) -> None:
    with _live_lock:
        loop = _live.pop(session, None)
    if loop is not None and not loop.is_closed():
        # A loop stopped already (interpreter exit) has nothing left to close.
        with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
            _wait(session.close(), loop, _CLOSE_SECONDS)


def _close_dropped(session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop) -> None:
    # Called by the garbage collector, on any thread (the loop's own included):
    # it may only schedule. A session not in _live was closed already, or is a
    # forked parent's, whose loop does not run here.
    if session in _live:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to do
            loop.call_soon_threadsafe(_close_on_loop, session)


_closing: set[asyncio.Future[None]] = set()  # tasks closing dropped sessions, kept alive


def _close_on_loop(session: aiohttp.ClientSession) -> None:
    with _live_lock:
        if _live.pop(session, None) is None:
            return
    task = asyncio.ensure_future(session.close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def _close_sessions_at_exit() -> None:
    # Registered after the exit function of the renewal threads (_flight), so it
    # runs first: a token request under way gets EXIT_GRACE to finish.
    deadline = time.monotonic() + _timing.EXIT_GRACE
    with _live_lock:
        _live_lock.wait_for(lambda: _busy <= 0, max(0.0, deadline - time.monotonic()))
        sessions = list(_live)
    for session in sessions:
        _close(session)


atexit.register(_close_sessions_at_exit)

# A forked child's copies of the parent's sessions and loop: never used, closed
# or collected here. Their sockets and the loop's epoll instance are shared
# with the parent, which goes on using them; collecting a session would also
# report it unclosed.
_parents: list[object] = []


def _after_fork_in_child() -> None:
    global _live_lock, _busy
    _parents.append(dict(_live))
    _live.clear()
    _live_lock = threading.Condition()
    _busy = 0
    _private_loop.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


async def _new_session() -> aiohttp.ClientSession:
    aiohttp = require("aiohttp")
    return aiohttp.ClientSession(trust_env=False)  # type: ignore[no-any-return]


def check_session(client: object) -> None:
    """ConfigurationError for an ``aiohttp.ClientSession`` token requests cannot use."""
    session: Any = client
    if session.closed:
        raise ConfigurationError("token_client is a closed aiohttp.ClientSession")
    if session.auth is not None:
        raise ConfigurationError(
            "token_client is an aiohttp.ClientSession with auth=: aiohttp would add "
            "those credentials to token requests; give a session without auth="
        )


def _check_netrc(session: Any, url: str) -> None:
    """ConfigurationError when aiohttp would add a netrc login to our request.

    A session with ``trust_env=True`` adds the netrc file's login for a host to
    every request there that has no ``auth=``, and no request option turns
    that off; the other libraries' clients are told not to (requests, httpx).
    """
    if not session.trust_env:
        return
    host = urlsplit(url).hostname
    netrc_file = require("aiohttp").helpers.netrc_from_env()  # NETRC, else ~/.netrc
    if host is None or netrc_file is None or netrc_file.authenticators(host) is None:
        return
    raise ConfigurationError(
        f"token_client is an aiohttp.ClientSession with trust_env=True, and the netrc "
        f"file has a login for {host}: aiohttp would send it with eid_auth's requests "
        "to the token endpoint. Give a session with trust_env=False (and proxy= if "
        "you need one), or leave token_client out"
    )


def _wait(
    coroutine: Coroutine[Any, Any, _T], loop: asyncio.AbstractEventLoop, seconds: float
) -> _T:
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result(seconds)


def _loop_of(session: Any) -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop = session._loop  # the loop it was made on; no public name
    if loop.is_closed() or not loop.is_running():
        raise ConfigurationError(
            "token_client is an aiohttp.ClientSession whose event loop is not running: "
            "token requests run on that loop, so use it from code running on that loop "
            "(or leave token_client out: eid_auth then uses a private session)"
        )
    return loop


class AiohttpOpened:
    """An aiohttp answer whose status and headers are in, read from another thread."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        loop: asyncio.AbstractEventLoop,
        done: Callable[[], None],
    ) -> None:
        self.response = response
        self._loop = loop
        self._pending: concurrent.futures.Future[Any] | None = None
        self._lock = threading.Lock()
        self._shut = False
        self._done: Callable[[], None] | None = done

    def _finished(self) -> None:
        with self._lock:
            done, self._done = self._done, None
        if done is not None:
            done()

    def chunks(self, size: int) -> Iterator[bytes]:
        """The body as sent (still compressed, if it is), ``size`` bytes at a time."""
        while True:
            chunk = self._on_loop(self.response.content.read(size))
            if not chunk:
                return
            yield chunk

    def _on_loop(self, coroutine: Coroutine[Any, Any, bytes]) -> bytes:
        with self._lock:
            if self._shut:
                coroutine.close()
                raise TimeoutError("the deadline passed")
            future = self._pending = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        chunk: bytes = _translated(future.result)
        return chunk

    def close(self) -> None:
        """Hand the connection back (reused only when the answer was read whole)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: so is the connection
            self._loop.call_soon_threadsafe(self.response.release)
        self._finished()

    def shut_down(self) -> None:
        """From another thread, at the deadline: stop the pending read, drop the connection."""
        with self._lock:
            self._shut = True
            pending = self._pending
        if pending is not None:
            pending.cancel()
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self.response.close)
        self._finished()


def open_response(
    client: object,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float,
) -> AiohttpOpened:
    """Send the request through a ``PrivateSession`` or a user's ``aiohttp.ClientSession``
    and return once the status and headers are in (on this thread, not the loop's)."""
    library = require("aiohttp")
    options: dict[str, Any] = {}
    done: Callable[[], None] = _nothing
    if isinstance(client, PrivateSession):
        session, loop = client.session()
        options = _environment_proxy(url)
        headers = {**headers, **options.pop("headers", {})}
        _begin()
        done = _end
    else:
        session, loop = client, _loop_of(client)  # type: ignore[assignment]
        _check_netrc(session, url)

    async def send() -> aiohttp.ClientResponse:
        response: aiohttp.ClientResponse = await session.request(
            method,
            url,
            headers=headers,
            data=body,
            allow_redirects=False,
            # A session's raise_for_status is for the application's requests: an
            # error answer of the token endpoint (invalid_grant) is read, not raised.
            raise_for_status=False,
            auto_decompress=False,
            timeout=library.ClientTimeout(total=timeout),
            middlewares=(),
            **options,
        )
        return response

    try:
        future = asyncio.run_coroutine_threadsafe(send(), loop)
        # aiohttp's own total timeout ends the request at the deadline at the latest;
        # the margin only covers a loop too busy to run it on time.
        response = _translated(lambda: future.result(timeout + _CLOSE_SECONDS))
    except BaseException:
        done()
        raise
    return AiohttpOpened(response, loop, done)


def _nothing() -> None:
    pass


def _translated(result: Any) -> Any:
    """``result()``, with aiohttp's errors that are not ``OSError`` as the standard
    errors ``_transport`` describes (and without the request they hold)."""
    aiohttp = require("aiohttp")
    try:
        return result()
    except (asyncio.TimeoutError, concurrent.futures.TimeoutError):
        raise TimeoutError("no complete answer before the deadline") from None
    except concurrent.futures.CancelledError:  # by shut_down, at the deadline
        raise TimeoutError("the deadline passed") from None
    except aiohttp.ServerDisconnectedError:
        raise http.client.RemoteDisconnected("connection closed without an answer") from None
    except aiohttp.ClientError as exc:
        if isinstance(exc, OSError):
            raise  # ClientConnectorError and kin: _transport finds the cause under it
        raise ConnectionAbortedError(
            errno.ECONNABORTED,
            f"connection closed or broken before a complete answer ({type(exc).__name__})",
        ) from None


def _environment_proxy(url: str) -> dict[str, Any]:
    """The ``proxy`` the environment names for ``url``, and its credentials (as
    ``proxy_headers``, or ``headers`` to add to the request)."""
    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return {}
    proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    options: dict[str, Any] = {}
    if proxy_parts.username is not None:
        pair = f"{unquote(proxy_parts.username)}:{unquote(proxy_parts.password or '')}"
        basic = base64.b64encode(pair.encode("latin-1", "replace")).decode("ascii")
        credentials = {"Proxy-Authorization": f"Basic {basic}"}
        if parts.scheme == "https":
            options["proxy_headers"] = credentials  # for the CONNECT request
        else:
            # aiohttp sends proxy_headers only with CONNECT; a plain request goes
            # to the proxy itself, so its credentials go in the request's headers.
            options["headers"] = credentials
        netloc = proxy_parts.netloc.rpartition("@")[2]
        proxy_parts = proxy_parts._replace(netloc=netloc)
    options["proxy"] = proxy_parts.geturl()
    return options
