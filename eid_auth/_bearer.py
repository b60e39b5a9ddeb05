"""How a token travels: the Bearer scheme (RFC 6750) plus EmpowerID's API key header."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from urllib.parse import urlsplit

from ._token import Token
from ._token_endpoint import API_KEY_HEADER

__all__ = ["RedirectChain", "carried", "same_origin", "sign"]


def sign(headers: MutableMapping[str, str], token: Token, api_key: str | None) -> None:
    """Set ``Authorization: Bearer`` (and the API key, when configured) on ``headers``."""
    headers["Authorization"] = f"Bearer {token.access_token}"
    if api_key is not None:
        headers[API_KEY_HEADER] = api_key


def carried(headers: Mapping[str, str], token: Token) -> bool:
    """Whether a request went out with ``token``: a 401 then concerns that token.

    False after a redirect to another host, where the client dropped the header.
    """
    return headers.get("Authorization") == f"Bearer {token.access_token}"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def same_origin(url: str, other: str) -> bool:
    """Whether two absolute URLs share scheme, host and port (RFC 6454 origins).

    An upgrade from http to https on the same host and default ports also counts,
    as it does for requests' own handling of ``Authorization`` on redirects.
    """
    a, b = urlsplit(url), urlsplit(other)
    if (a.hostname or "").lower() != (b.hostname or "").lower():
        return False
    port_a = a.port or _DEFAULT_PORTS.get(a.scheme)
    port_b = b.port or _DEFAULT_PORTS.get(b.scheme)
    if a.scheme == b.scheme:
        return port_a == port_b
    return (a.scheme, port_a, b.scheme, port_b) == ("http", 80, "https", 443)


class RedirectChain:
    """One request and the redirect hops that follow it.

    The API key belongs to the origin of the first request. A hop to another
    origin goes without it, and so does every hop after that one, even a hop
    back: the other origin chose where it leads, and requests and httpx do not
    restore ``Authorization`` there either.

    Example:
        >>> chain = RedirectChain("https://eid.example.com/api/a")
        >>> chain.may_carry_api_key("https://eid.example.com/api/b")
        True
        >>> chain.may_carry_api_key("https://cdn.example.net/file")
        False
        >>> chain.may_carry_api_key("https://eid.example.com/api/c")
        False
    """

    __slots__ = ("_first", "_left")

    def __init__(self, url: object) -> None:
        # Any object whose str() is the URL (an httpx.URL): formatting it costs
        # more than signing a request, and only a redirect needs it.
        self._first = url
        self._left = False

    @property
    def first_url(self) -> str:
        """The URL of the first request, whose origin the API key belongs to."""
        return str(self._first)

    def may_carry_api_key(self, url: str) -> bool:
        """Whether the hop to ``url`` may carry the API key (ask about hops in order)."""
        if not self._left and not same_origin(self.first_url, url):
            self._left = True
        return not self._left
