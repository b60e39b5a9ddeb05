"""Which stored token is good enough to print, and how it is printed.

Shared by the fast path (no click, no HTTP library) and the commands, so it
imports only the token model.
"""

from __future__ import annotations

import json
import math
import time

from .._token import Token, expires_in_seconds

__all__ = ["DEFAULT_MIN_VALID", "as_json", "good_for", "header"]

# Without --min-valid a printed token is good for at least this long (a curl
# or a build step), or for half its lifetime when that is shorter, the
# library's own rule, so short-lived tokens are not renewed at every call.
DEFAULT_MIN_VALID = 60.0


def good_for(token: Token, min_valid: float | None, now: float | None = None) -> bool:
    """Whether ``token`` stays valid for ``min_valid`` seconds (``None``: the default)."""
    left = token.expires_in(now)
    if left is None:
        return True  # the server gave no lifetime: used until an API answers 401
    if min_valid is None:
        min_valid = DEFAULT_MIN_VALID
        lifetime = expires_in_seconds(token.raw.get("expires_in"))
        if lifetime is not None:
            min_valid = min(min_valid, lifetime / 2)
    return left > min_valid


def as_json(token: Token, now: float | None = None) -> str:
    """The token's public fields and its access token, never the refresh or ID token.

    Example:
        >>> print(as_json(Token(access_token="at", expires_at=1060.0, scope="api"), now=1000))
        {"access_token": "at", "token_type": "Bearer", "expires_at": 1060, "expires_in": 60, "scope": "api"}
    """  # noqa: E501
    left = token.expires_in(time.time() if now is None else now)
    document = {
        "access_token": token.access_token,
        "token_type": "Bearer",
        "expires_at": None if token.expires_at is None else math.floor(token.expires_at),
        "expires_in": None if left is None else max(0, math.floor(left)),
        "scope": token.scope,
    }
    return json.dumps(document)


def header(token: Token) -> str:
    """``Authorization: Bearer <access token>``, for ``curl -H "$(eid-auth header)"``."""
    return f"Authorization: Bearer {token.access_token}"
