"""How a token travels: the Bearer scheme (RFC 6750) plus EmpowerID's API key header."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from ._token import Token
from ._token_endpoint import API_KEY_HEADER

__all__ = ["carried", "sign"]


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
