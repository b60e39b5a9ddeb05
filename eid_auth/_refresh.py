"""Refresh coordination: one refresh grant per expiry, for threads and tasks alike.

The current token lives in one immutable ``TokenState`` that is swapped whole, so
the hot path (a token that is still fresh) is a single attribute read with no
lock. When a token needs replacing, the first caller starts a ``Flight`` and
every other caller, thread or asyncio task, waits for that flight instead of
sending a refresh grant of its own.

A flight always runs the token request on a thread: the leader's own thread
for synchronous callers, a new thread for asyncio callers. So a flight
never needs an event loop to finish, a cancelled task cannot abandon a refresh
half-way (losing a rotated refresh token), and a synchronous caller blocking an
event loop's thread cannot deadlock with a task of that loop.

The parts, each in its own module: the single flight (``_flight``), the store
protocol (``_store_protocol``: read, lock, re-read, renew or adopt, write), the
timing policy (``_timing``: refresh windows, jitter, cooldowns, the 401-storm
pause), and how to get the next token (``_renewal``: the refresh grant, or the
grant that issued the first token). The coordinator joins them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from . import _timing
from ._exceptions import (
    EmpowerIDAuthError,
    MissingRefreshTokenError,
    TokenEndpointUnavailableError,
    TokenStoreError,
)
from ._flight import Flight, start_renewal_thread
from ._renewal import RefreshTokenRenewal, Renewal
from ._store_protocol import RememberedInvalidGrant, StoreProtocol
from ._timing import RejectedTokenPause, TokenState, same_access_token
from ._token import Token
from ._token_endpoint import Adapter, TokenEndpoint
from .stores import StoredToken, TokenStore

__all__ = ["RefreshCoordinator", "same_access_token"]

logger = logging.getLogger("eid_auth")

# Failures that leave a still-valid token usable: nobody said it is bad.
_TRANSIENT = (TokenEndpointUnavailableError, TokenStoreError)
# The timing policy (see _timing): read from here at each use, so it can be tuned.
INVALID_GRANT_MEMORY = _timing.INVALID_GRANT_MEMORY
REJECTED_TOKEN_PAUSE = _timing.REJECTED_TOKEN_PAUSE
EXIT_GRACE = _timing.EXIT_GRACE
_make_state = _timing.make_state


@dataclass(frozen=True)
class _Wait:
    flight: Flight
    timeout: float


@dataclass(frozen=True)
class _Replace:
    stale: Token | None


class RefreshCoordinator:
    """Holds the current token and makes sure one renewal runs at a time.

    Within a process, the flight makes threads and tasks share one renewal.
    Across processes, the store's lock does: the flight's leader takes it,
    re-reads the store, and renews only if the store still holds the token
    that needed replacing. ``renewal`` says how (the refresh grant by default).
    """

    def __init__(
        self,
        *,
        endpoint: TokenEndpoint,
        store: TokenStore,
        seed: Token | str | None,
        shared: bool,
        leeway: float,
        on_refresh: Callable[[Token], object] | None,
        renewal: Renewal | None = None,
        grant: str | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._renewal: Renewal = RefreshTokenRenewal() if renewal is None else renewal
        # A store only we use holds what we hold: no need to read it first.
        self._shared = shared
        self._leeway = leeway
        self._on_refresh = on_refresh
        self._lock = threading.Lock()
        self._flight: Flight | None = None
        self._records = StoreProtocol(
            endpoint=endpoint,
            store=store,
            renewal=self._renewal,
            grant=grant,
            seed=seed,
            shared=shared,
            leeway=leeway,
            kept=self._kept_refresh_token,
        )
        # The 401 rules (see retry_after_401).
        self._pause = RejectedTokenPause()
        if shared:
            self._state = TokenState(None, None, float("-inf"))
        else:
            record = self._records.seed_record()
            store.write(record)
            self._state = self._make_state(record.token, record.refresh_token)
        _live.add(self)

    def _make_state(self, token: Token | None, refresh_token: str | None) -> TokenState:
        return _make_state(
            token,
            refresh_token,
            self._leeway,
            renewable=not self._renewal.needs_refresh_token,
        )

    def _kept_refresh_token(self, token: Token | None, refresh_token: str) -> None:
        with self._lock:
            self._state = self._make_state(token, refresh_token)

    @property
    def token(self) -> Token | None:
        return self._state.token

    @property
    def can_refresh(self) -> bool:
        # A shared store may hold a refresh token this process has not seen;
        # some grants need none.
        return (
            self._state.refresh_token is not None
            or self._shared
            or not self._renewal.needs_refresh_token
        )

    def retry_after_401(self, rejected: Token) -> bool:
        """Whether a request the API answered 401 should be re-sent with a newer
        token (which ``replace(rejected)`` then brings, refreshing if need be).

        No when there is nothing to refresh with, and no during a pause (see
        ``resend_rejected``): that 401 goes back to the caller instead of
        costing a refresh grant. Decided from memory alone, as it runs on event
        loops too.
        """
        with self._lock:
            if not same_access_token(self._state.token, rejected):
                return True  # replaced already: re-send with the newer token, no grant
            if not self.can_refresh:
                return False
            left = self._pause.seconds_left(rejected, time.time(), REJECTED_TOKEN_PAUSE)
        if left is not None:
            logger.debug("401 returned without refreshing (%.0fs of the pause left)", left)
        return left is None

    def resend_rejected(self, token: Token) -> None:
        """A request re-sent with ``token`` after a 401 was answered 401 again.

        If a refresh caused by a 401 brought ``token``, the API rejects fresh
        tokens too: for ``REJECTED_TOKEN_PAUSE`` seconds, ``retry_after_401``
        says no to 401s for it. A token the API accepted at first and revoked
        later is refreshed as usual.
        """
        with self._lock:
            if not self._pause.resend_rejected(token, time.time(), REJECTED_TOKEN_PAUSE):
                return
        logger.warning(
            "the API rejected (401) the token just refreshed because of a 401; for the next "
            "%.0fs, 401s for it are returned without refreshing (check the API key, "
            "audience or scope)",
            REJECTED_TOKEN_PAUSE,
        )

    @property
    def longest_wait(self) -> float:
        """How long a caller may wait for a refresh: for a shared store, its
        lock (another process's refresh) and then our own refresh."""
        longest = self._endpoint.longest_refresh
        return 2 * longest + 10.0 if self._shared else longest

    # -- synchronous callers ------------------------------------------------

    def token_for_request(self, adapter: Adapter) -> Token:
        """The token to send now, refreshed first if it is missing or expiring."""
        plan = self._plan(adapter)
        if isinstance(plan, Token):
            return plan
        if isinstance(plan, _Wait):
            try:
                return plan.flight.wait(plan.timeout)
            except EmpowerIDAuthError:
                return self._still_valid_or_raise()
        try:
            return self.replace(plan.stale, adapter)
        except _TRANSIENT:
            return self._still_valid_or_raise()

    def replace(self, stale: Token | None, adapter: Adapter) -> Token:
        """A token newer than ``stale``: someone else's, or a refresh of our own."""
        flight, leader = self._join_or_lead(stale)
        if isinstance(flight, Token):
            return flight
        if leader:
            self._run(flight, adapter, stale)
        return flight.wait(self.longest_wait)

    # -- asyncio callers ----------------------------------------------------

    async def token_for_request_async(self, adapter: Adapter = "httpx") -> Token:
        plan = self._plan(adapter)
        if isinstance(plan, Token):
            return plan
        if isinstance(plan, _Wait):
            try:
                return await plan.flight.wait_async(plan.timeout)
            except EmpowerIDAuthError:
                return self._still_valid_or_raise()
        try:
            return await self.replace_async(plan.stale, adapter)
        except _TRANSIENT:
            return self._still_valid_or_raise()

    def _plan(self, adapter: Adapter) -> Token | _Wait | _Replace:
        """What a request needs, decided without waiting: a token to send now, a
        refresh to wait for (and for how long), or a token to replace."""
        pending = self._pending_for_this_thread()
        if pending is not None:
            return pending
        state = self._state  # one snapshot: the token it holds is the stale one
        now = time.time()
        token = state.token
        if token is not None and state.is_fresh(now):
            return token
        if token is not None and state.refresh_behind(now):
            started = self._refresh_in_background(token, adapter)
            # A newer token (another thread's refresh after a 401) beats ours.
            return started if isinstance(started, Token) else token
        if token is not None and not token.is_expired(now=now):
            # Close to expiry: wait for the new token, but not past the current
            # one's expiry (a hung lock holder elsewhere must not stall us).
            started = self._refresh_in_background(token, adapter)
            if not isinstance(started, Flight):
                return started or token
            return _Wait(started, self._wait_within(token))
        return _Replace(token)

    async def replace_async(self, stale: Token | None, adapter: Adapter = "httpx") -> Token:
        flight, leader = self._join_or_lead(stale)
        if isinstance(flight, Token):
            return flight
        if leader:
            self._start_thread(flight, adapter, stale)
        return await flight.wait_async(self.longest_wait)

    def _refresh_in_background(self, stale: Token, adapter: Adapter) -> Flight | Token | None:
        """Start a refresh on a thread of its own, unless one runs already; the
        flight to wait for, a newer token, or None (nothing to refresh with)."""
        running = self._flight  # read without the lock: the valid-token path takes none
        if running is not None and running.owner != threading.get_ident():
            return running
        try:
            flight, leader = self._join_or_lead(stale)
        except EmpowerIDAuthError:
            return None  # the current token is still valid; a later caller will see why
        if leader and isinstance(flight, Flight):
            # A thread that cannot start fails the flight; the token is still valid.
            with contextlib.suppress(Exception):
                self._start_thread(flight, adapter, stale)
        return flight

    def _wait_within(self, token: Token) -> float:
        left = token.expires_in()
        return self.longest_wait if left is None else max(0.0, min(self.longest_wait, left - 1.0))

    def _start_thread(self, flight: Flight, adapter: Adapter, stale: Token | None) -> None:
        try:
            start_renewal_thread(lambda: self._run(flight, adapter, stale))
        except BaseException as exc:
            self._abandon(flight, f"could not start the refresh thread ({exc})")
            raise

    def _pending_for_this_thread(self) -> Token | None:
        # Requests made from on_refresh get the token being saved, not the old
        # one (which a 401 may just have rejected). No lock: one attribute read.
        flight = self._flight
        if flight is not None and flight.owner == threading.get_ident():
            return flight.pending
        return None

    def _still_valid_or_raise(self) -> Token:
        """After an early refresh failed or took too long: the current token, if
        it has not expired; else the error being handled is the caller's."""
        token = self._state.token
        if token is None or token.is_expired():
            raise  # re-raises the error being handled: only called from except blocks
        # The failure itself was logged once, by the refresh.
        logger.debug(
            "the current access token stays in use (it expires in %.0fs)",
            token.expires_in() or 0.0,
        )
        return token

    # -- the flight -----------------------------------------------------------

    def _join_or_lead(self, stale: Token | None) -> tuple[Flight | Token, bool]:
        with self._lock:
            state = self._state
            if not same_access_token(state.token, stale) and state.is_fresh(time.time()):
                assert state.token is not None
                return state.token, False  # already replaced by someone else
            flight = self._flight
            if flight is not None:
                if flight.owner == threading.get_ident():
                    # A request made from on_refresh (or from a hook of the token
                    # client): waiting for this flight would wait for ourselves.
                    if flight.pending is None:
                        raise EmpowerIDAuthError(
                            "a request with this EmpowerIDAuth was made from inside its "
                            "own token request; do not give token_client this auth"
                        )
                    return flight.pending, False
                return flight, False
            if state.refresh_token is None and not self.can_refresh:
                raise MissingRefreshTokenError(
                    "the access token needs replacing but there is no refresh token; "
                    "give EmpowerIDAuth a refresh_token (or a token= that has one)"
                )
            self._flight = Flight()
            return self._flight, True

    def _run(self, flight: Flight, adapter: Adapter, stale: Token | None) -> None:
        flight.owner = threading.get_ident()
        record: StoredToken | None = None
        refreshed = False
        error: Exception | None = None
        try:
            record, refreshed = self._records.replace(
                stale, adapter, invalid_grant_memory=INVALID_GRANT_MEMORY
            )
        except Exception as exc:
            error = exc
            if isinstance(exc, RememberedInvalidGrant):
                logger.debug("token refresh skipped: %s", exc)
            else:
                logger.warning("token refresh failed: %s", exc)
        except BaseException:
            # KeyboardInterrupt or SystemExit belongs to this thread alone; the
            # others get an ordinary error.
            self._abandon(flight, "the refreshing thread was interrupted")
            raise
        token = None if record is None else record.token
        try:
            # Before anyone here uses the new token, so that saved tokens are in
            # the order they were issued and a saved token is never older than
            # one in use.
            if refreshed and token is not None and self._on_refresh is not None:
                flight.pending = token
                self._call_on_refresh(token)
        finally:
            with self._lock:
                # A refresh the API's 401 caused: see resend_rejected.
                self._pause.replaced(stale, token, renewed=refreshed)
                if record is not None:
                    self._state = self._make_state(record.token, record.refresh_token)
                    self._records.generation = record.generation
                elif error is not None:
                    # Early refreshes pause, whatever the failure, instead of one
                    # token request per request; a token that expires meanwhile
                    # is still refreshed (is_fresh is False for it).
                    self._state = dataclasses.replace(
                        self._state, not_before=time.time() + _timing.EARLY_REFRESH_COOLDOWN
                    )
                self._flight = None
            flight.finish(token, error)

    def _call_on_refresh(self, token: Token) -> None:
        assert self._on_refresh is not None
        try:
            self._on_refresh(token)
        except Exception:
            logger.exception("the on_refresh callback raised; the new token is used anyway")

    def _abandon(self, flight: Flight, reason: str) -> None:
        with self._lock:
            self._flight = None
        flight.finish(None, TokenEndpointUnavailableError(reason, status_code=None, attempts=0))

    def wait_for_refresh(self) -> None:
        """Wait (bounded) for a refresh in progress, e.g. one running behind
        requests, so that closing its HTTP client cannot cut it off after the
        server has already spent the refresh token."""
        flight = self._flight
        if flight is not None and flight.owner != threading.get_ident():
            flight.done.wait(self.longest_wait)

    async def wait_for_refresh_async(self) -> None:
        """``wait_for_refresh`` without blocking the event loop."""
        flight = self._flight
        if flight is not None and flight.owner != threading.get_ident():
            with contextlib.suppress(EmpowerIDAuthError):
                await flight.wait_async(self.longest_wait)

    def _after_fork_in_child(self) -> None:
        # A flight of the parent has no thread here; a lock a parent's thread
        # held would stay held. Start clean; the store still has the token.
        self._lock = threading.Lock()
        self._flight = None
        self._endpoint.forget_clients_after_fork()


_live: weakref.WeakSet[RefreshCoordinator] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for coordinator in list(_live):
        coordinator._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
