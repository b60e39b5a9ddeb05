"""When to renew a token: refresh windows, jitter, cooldowns and the 401-storm pause.

Every duration the refresh coordination waits, pauses or remembers something
for is named here, with the reason for its value. The coordinator
(``eid_auth._refresh``) re-exports the ones users and tests tune and passes
them in at each use.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ._token import Token, expires_in_seconds

__all__ = [
    "EARLY_REFRESH_COOLDOWN",
    "EXIT_GRACE",
    "INVALID_GRANT_MEMORY",
    "JITTER",
    "REJECTED_TOKEN_PAUSE",
    "RejectedTokenPause",
    "TokenState",
    "make_state",
    "same_access_token",
]

# How long a failed early refresh is not retried while the token is still valid.
EARLY_REFRESH_COOLDOWN = 15.0
# How long a refresh token the server refused (invalid_grant) is not sent again:
# requests fail fast instead of hammering the token endpoint with a dead token.
INVALID_GRANT_MEMORY = 60.0
# The share of the refresh window over which early refreshes are spread.
JITTER = 0.1
# When a request re-sent with the token that a refresh after its 401 brought is
# answered 401 again, the API rejects fresh tokens too (a wrong API key,
# audience or scope): for this long, 401s for that token are returned as is
# instead of costing a refresh grant (and a rotation) per request.
REJECTED_TOKEN_PAUSE = 30.0
# At interpreter exit, how long refreshes still running on threads of ours get
# to finish (and hand a rotated refresh token to the store and on_refresh)
# before they are abandoned so the process can end.
EXIT_GRACE = 5.0


@dataclass(frozen=True)
class TokenState:
    """The current token and when to renew it; swapped whole, never changed."""

    token: Token | None
    refresh_token: str | None
    # When to refresh proactively: None = never (expiry unknown, or nothing to
    # refresh with); -inf = now (no access token yet).
    refresh_at: float | None
    # Until then (the first half of the refresh window), requests go out with
    # the current token while the refresh runs in the background; after it,
    # they wait for the new token.
    background_until: float | None = None
    # After a failed early refresh, a still-valid token is used until then.
    not_before: float = float("-inf")

    def is_fresh(self, now: float) -> bool:
        if self.token is None:
            return False
        if self.refresh_at is None or now < self.refresh_at:
            return True
        return now < self.not_before and not self.token.is_expired(now=now)

    def refresh_behind(self, now: float) -> bool:
        """Whether to send the current token and refresh in the background."""
        return self.background_until is not None and now < self.background_until


def make_state(
    token: Token | None,
    refresh_token: str | None,
    leeway: float,
    *,
    renewable: bool = False,
) -> TokenState:
    """The state for ``token``: renewed ``leeway`` seconds before expiry when there
    is a refresh token, or when the grant needs none (``renewable``: client
    credentials, password)."""
    if token is None:
        return TokenState(None, refresh_token, float("-inf"))
    if token.expires_at is None or (refresh_token is None and not renewable):
        return TokenState(token, refresh_token, None)
    window = leeway
    lifetime = _lifetime(token)
    if lifetime is not None:
        # Never refresh earlier than half-way: 60 s tokens with a 60 s leeway
        # would otherwise be refreshed on every request.
        window = min(leeway, lifetime / 2)
    # Jitter: processes and clients holding the same token (a fleet restarted
    # together) spread their early refreshes over the first tenth of the window
    # instead of reaching the token endpoint in the same second.
    jitter = random.uniform(0.0, window * JITTER)  # noqa: S311 - not for security
    return TokenState(
        token,
        refresh_token,
        refresh_at=token.expires_at - window + jitter,
        background_until=token.expires_at - window / 2,
    )


def _lifetime(token: Token) -> float | None:
    # A token from a store or from Token() may carry any raw: checked again,
    # without overflow (float(10**400) raises).
    return expires_in_seconds(token.raw.get("expires_in"))


def same_access_token(a: Token | None, b: Token | None) -> bool:
    """Whether two tokens carry the same access token (a rotated refresh token
    alone does not make a token new to the API)."""
    if a is None or b is None:
        return a is b
    return a.access_token == b.access_token


@dataclass
class _RefreshedAfter401:
    """A token that a refresh caused by a 401 brought."""

    token: Token
    # When a re-send carrying it was answered 401 too: the pause starts.
    rejected_at: float | None = None


class RejectedTokenPause:
    """The 401 rules: a 401 costs one refresh, unless the API rejects fresh tokens too.

    The coordinator calls every method under its own lock.
    """

    def __init__(self) -> None:
        # The last token the API answered 401 to that we went on to replace,
        # and the token its refresh brought.
        self._rejected: Token | None = None
        self._refreshed_after_401: _RefreshedAfter401 | None = None

    def seconds_left(self, rejected: Token, now: float, pause: float) -> float | None:
        """The pause left for 401s to ``rejected``; None (and ``rejected`` noted as
        the token being replaced after a 401) when there is none."""
        after = self._refreshed_after_401
        if (
            after is not None
            and after.rejected_at is not None
            and same_access_token(after.token, rejected)
            and now - after.rejected_at < pause
        ):
            return pause - (now - after.rejected_at)
        self._rejected = rejected
        return None

    def resend_rejected(self, token: Token, now: float, pause: float) -> bool:
        """A re-send with ``token`` after a 401 got a 401 too; whether a pause starts
        (only if a refresh caused by a 401 brought ``token``)."""
        after = self._refreshed_after_401
        if (
            after is None
            or not same_access_token(after.token, token)
            or (after.rejected_at is not None and now - after.rejected_at < pause)
        ):
            return False
        after.rejected_at = now
        return True

    def replaced(self, stale: Token | None, token: Token | None, *, renewed: bool) -> None:
        """A flight replacing ``stale`` ended with ``token`` (``renewed``: by a token
        request of ours rather than by adopting another process's token)."""
        after_401 = self._rejected is not None and same_access_token(self._rejected, stale)
        if after_401:
            self._rejected = None
            if renewed and token is not None:
                self._refreshed_after_401 = _RefreshedAfter401(token)
