"""Bearer token usage (RFC 6750): how a protected resource (the ``/api/...`` endpoint, and
later userinfo) finds the person behind ``Authorization: Bearer <access token>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["bearer_owner"]


def bearer_owner(
    server: EmpowerIDTestServer, state: ServerState, authorization: str | None
) -> tuple[str | None, str]:
    """Return (person GUID, "") for a usable access token, else (None, reason)."""
    if authorization is None:
        return None, "missing access token"
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None, "missing access token"
    if server.reject_all_access_tokens:
        return None, "access token rejected"
    return state.access_token_owner(token)
