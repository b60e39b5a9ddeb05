"""The token model: an immutable ``Token`` and the validation of token responses."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._exceptions import ConfigurationError, InvalidTokenResponseError

__all__ = ["Token", "expires_in_seconds"]

# Beyond ~30 years an ``expires_in`` is a unit mistake, not a lifetime.
_MAX_EXPIRES_IN = 1_000_000_000
# A number sent as a string: "3600", " 3600.5 ", "3.6e3"; not "1_000" or "٣".
_NUMBER = re.compile(r"\s*-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?\s*", re.ASCII)
# A token_type short and plain enough to quote in a message ("MAC", "DPoP"):
# no token looks like this.
_SCHEME = re.compile(r"[A-Za-z]{1,10}")


def _mask(value: str | None) -> str:
    return "None" if value is None else "'***'"


class _Fields(Mapping[str, Any]):
    """A read-only mapping that pickles and copies (``MappingProxyType`` does
    neither), and whose ``repr`` shows the names of the fields, not their values."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{key!r}: '***'" for key in self._data) + "}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Fields, (self._data,))


@dataclass(frozen=True, eq=True)
class Token:
    """An OAuth 2.0 token as the token endpoint issued it. Immutable.

    ``repr()`` and ``str()`` never show ``access_token``, ``refresh_token`` or
    ``id_token``, nor does the ``repr()`` of ``raw``. Use ``to_dict()`` /
    ``Token.from_dict()`` to persist a token as JSON; tokens also survive
    ``pickle``, ``copy.deepcopy``, ``dataclasses.asdict`` and ``dataclasses.replace``.

    Attributes:
        access_token: the bearer token sent in ``Authorization``.
        token_type: always ``"Bearer"``.
        expires_at: expiry as a Unix timestamp, or ``None`` when the server did
            not say (the token is then used until the API answers 401).
        refresh_token: the refresh token to use next, or ``None``.
        id_token: the OpenID Connect ID token (only with the ``openid`` scope).
        scope: the granted scope, when the server said.
        id: EmpowerID's GUID of the person the token belongs to.
        raw: every field of the token endpoint's answer, unknown ones too,
            as a read-only mapping.

    Example:
        >>> token = Token(access_token="at", refresh_token="rt", expires_at=2e9)
        >>> token
        Token(token_type='Bearer', expires_at=2000000000.0, scope=None, id=None, access_token='***', refresh_token='***', id_token=None)
        >>> Token.from_dict(token.to_dict()) == token
        True
        >>> import pickle
        >>> pickle.loads(pickle.dumps(token)) == token
        True
    """  # noqa: E501

    access_token: str
    token_type: str = "Bearer"
    expires_at: float | None = None
    refresh_token: str | None = None
    id_token: str | None = None
    scope: str | None = None
    id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.access_token, str) or not _is_header_safe(self.access_token):
            raise ConfigurationError(
                "Token.access_token must be a non-empty string of visible ASCII characters"
            )
        if not isinstance(self.token_type, str) or self.token_type.lower() != "bearer":
            raise ConfigurationError(f"Token.token_type must be 'Bearer', not {self.token_type!r}")
        _check_expires_at(self.expires_at)
        for name in ("refresh_token", "id_token", "scope", "id"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"Token.{name} must be a string or None")
        if not isinstance(self.raw, Mapping):
            raise ConfigurationError("Token.raw must be a mapping of the answer's fields")
        # A read-only copy: the caller's dict cannot change a frozen token.
        if not isinstance(self.raw, _Fields):
            object.__setattr__(self, "raw", _Fields(self.raw))

    def __repr__(self) -> str:
        return (
            f"Token(token_type={self.token_type!r}, expires_at={self.expires_at!r}, "
            f"scope={self.scope!r}, id={self.id!r}, "
            f"access_token={_mask(self.access_token)}, "
            f"refresh_token={_mask(self.refresh_token)}, id_token={_mask(self.id_token)})"
        )

    __str__ = __repr__

    def expires_in(self, now: float | None = None) -> float | None:
        """Seconds left before expiry (negative once expired), or None if unknown."""
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def is_expired(self, leeway: float = 0.0, now: float | None = None) -> bool:
        """True when the token expires within ``leeway`` seconds; never for unknown expiry."""
        left = self.expires_in(now)
        return left is not None and left <= leeway

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict that ``Token.from_dict`` turns back into this token."""
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
            "id_token": self.id_token,
            "scope": self.scope,
            "id": self.id,
            "raw": dict(self.raw),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Token:
        """Rebuild a token saved with ``to_dict()``.

        Raises:
            ConfigurationError: when ``data`` is not a saved token.
        """
        if not isinstance(data, Mapping):
            raise ConfigurationError("a saved token must be a dict made by Token.to_dict()")
        if "access_token" not in data:
            raise ConfigurationError("the saved token has no 'access_token'")
        raw = data.get("raw")
        raw = {} if raw is None else raw
        if not isinstance(raw, Mapping):
            raise ConfigurationError("the saved token's 'raw' must be a dict")
        return cls(
            access_token=data["access_token"],
            token_type=data.get("token_type") or "Bearer",
            expires_at=data.get("expires_at"),
            refresh_token=data.get("refresh_token"),
            id_token=data.get("id_token"),
            scope=data.get("scope"),
            id=data.get("id"),
            raw=raw,
        )

    @classmethod
    def from_response(
        cls,
        body: Any,
        *,
        requested_at: float,
        previous_refresh_token: str | None = None,
    ) -> Token:
        """Validate a token endpoint's JSON answer and build a token from it.

        Args:
            body: the decoded JSON body of a successful (2xx) answer.
            requested_at: when the token request was sent; ``expires_at`` counts
                from here because servers round the issue time down.
            previous_refresh_token: kept when the answer carries no new one
                (RFC 6749 section 6).

        Raises:
            InvalidTokenResponseError: when ``body`` is not a valid token response.
        """
        if not isinstance(body, Mapping):
            raise InvalidTokenResponseError(
                f"the token endpoint answered a JSON {type(body).__name__}, not an object"
            )
        access_token = body.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise InvalidTokenResponseError(
                "the token endpoint's answer has no access_token (or it is not a string)"
            )
        if not _is_header_safe(access_token):
            raise InvalidTokenResponseError(
                "the token endpoint's access_token has characters that cannot travel "
                "in an HTTP header (spaces, control or non-ASCII characters)"
            )
        token_type = body.get("token_type", "Bearer")
        # RFC 6749 says token_type is case-insensitive; absent is taken as Bearer.
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            # Answer values are not quoted (any may be a secret), but a plain
            # scheme name tells the reader what went wrong.
            shown = (
                repr(token_type)
                if isinstance(token_type, str) and _SCHEME.fullmatch(token_type)
                else f"that is {_describe(token_type)}"
            )
            raise InvalidTokenResponseError(
                f"the token endpoint issued a token_type {shown}; only Bearer is supported"
            )
        expires_at = None
        if body.get("expires_in") is not None:
            expires_in = expires_in_seconds(body["expires_in"])
            if expires_in is None:
                raise InvalidTokenResponseError(
                    f"the token endpoint's expires_in is {_describe(body['expires_in'])}, "
                    f"not a number of seconds from 1 to {_MAX_EXPIRES_IN}"
                )
            expires_at = requested_at + expires_in
        refresh_token = body.get("refresh_token")
        if refresh_token is None or refresh_token == "":
            refresh_token = previous_refresh_token
        elif not isinstance(refresh_token, str):
            raise InvalidTokenResponseError("the token endpoint's refresh_token is not a string")
        # Informational fields are never a reason to throw a token away (the
        # server may have rotated the refresh token already); raw keeps them as sent.
        optional = {name: _as_text(body.get(name)) for name in ("id_token", "scope", "id")}
        return cls(
            access_token=access_token,
            token_type="Bearer",
            expires_at=expires_at,
            refresh_token=refresh_token,
            raw=body,
            **optional,
        )


def expires_in_seconds(value: Any) -> float | None:
    """An answer's ``expires_in`` as seconds, or None when it is not a usable
    lifetime (not a number, under a second, over ~30 years, not finite).

    Never raises: huge integers are compared, not converted (``float(10**400)``
    overflows); "3600" as a string is accepted, as some servers send it.
    """
    number: int | float
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = value
    elif isinstance(value, str) and _NUMBER.fullmatch(value):
        number = float(value)  # "1e400" is inf here, never an error
    else:
        return None
    # Under a second, every request would refresh: a unit mistake, not a lifetime.
    if isinstance(number, float) and not math.isfinite(number):
        return None
    if not 1 <= number <= _MAX_EXPIRES_IN:
        return None
    return float(number)


def _describe(value: Any) -> str:
    """What an answer value is, without quoting it (it may be a secret)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        # Numbers are no secret, but a 400-digit one is not worth printing.
        if abs(value) < 1e15 or (isinstance(value, float) and not math.isfinite(value)):
            return repr(value)
        return "a number too large"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, list):
        return "a JSON array"
    return "a JSON object" if isinstance(value, Mapping) else type(value).__name__


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**64:
        return str(value)  # beyond 4300 digits, str() itself raises
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return " ".join(value)  # a scope sent as a JSON list
    return None


# Unix time in seconds stays below this until the year 5138; a value past it is
# almost always milliseconds (JavaScript's Date.now()), which would never expire.
_MAX_EXPIRES_AT = 10**11


def _check_expires_at(value: object) -> None:
    if value is None:
        return
    # Compared before any float() conversion, which overflows on huge ints.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigurationError("Token.expires_at must be a Unix timestamp in seconds or None")
    if _MAX_EXPIRES_AT <= value < _MAX_EXPIRES_AT * 1000:
        raise ConfigurationError(
            "Token.expires_at looks like milliseconds since 1970, not seconds: divide it "
            "by 1000 (Python's time.time() and OAuth's expires_in count seconds)"
        )
    if not 0 <= value < _MAX_EXPIRES_AT:
        raise ConfigurationError(
            "Token.expires_at must be a Unix timestamp in seconds (between 0 and 10**11) or None"
        )


def _is_header_safe(value: str) -> bool:
    # Visible ASCII, as in RFC 6750's b64token and wider: no space, no control.
    return bool(value) and all("!" <= c <= "~" for c in value)
