"""The refresh token grant (RFC 6749, section 6): ``grant_type=refresh_token``.

A refresh token that is still current gets a new access token (and, with rotation, a new
refresh token that retires the one presented). A retired refresh token presented again is
counted as reuse and, with reuse detection, revokes the whole grant, as RFC 9700 describes
for refresh token rotation. A narrower ``scope`` may be asked for, never a wider one. The
answer has EmpowerID's shape, with its ``id`` (the person's GUID) and, optionally, its
empty ``error`` fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from eid_auth.testing._id_token import issue_id_token
from eid_auth.testing._messages import Answer, RecordedRequest, oauth_error
from eid_auth.testing._state import new_refresh_token

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["handle"]


def handle(
    server: EmpowerIDTestServer,
    state: ServerState,
    request: RecordedRequest,
    form: Mapping[str, str],
) -> Answer:
    """Exchange ``refresh_token`` for fresh tokens."""
    presented = form.get("refresh_token")
    if not presented:
        return oauth_error(400, "invalid_request", "missing refresh_token")
    requested_scope = form.get("scope")
    with state.lock:
        grant = state.refresh_index.get(presented)
        if grant is None:
            return oauth_error(400, "invalid_grant", "unknown refresh token")
        if presented != grant.refresh_token:
            state.reuse_detected += 1
            if server.reuse_detection:
                # Someone replayed a retired token: assume theft, kill the whole grant.
                grant.revoked = True
            return oauth_error(400, "invalid_grant", "refresh token has already been used")
        if grant.revoked:
            return oauth_error(400, "invalid_grant", "refresh token has been revoked")
        scope = grant.scope
        if requested_scope:
            if not set(requested_scope.split()) <= set(grant.scope.split()):
                return oauth_error(400, "invalid_scope", "scope exceeds the granted scope")
            scope = requested_scope
        access_token = state.new_access_token(grant, server.access_token_lifetime)
        if server.rotate_refresh_tokens:
            grant.used_refresh_tokens.add(grant.refresh_token)
            grant.refresh_token = new_refresh_token()
            state.refresh_index[grant.refresh_token] = grant
        state.refresh_grants += 1
        refresh_token = grant.refresh_token
        person_id = grant.person_id
    # Field order as in EmpowerID's documented answer.
    answer: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer"}
    if server.access_token_lifetime is not None:
        answer["expires_in"] = server.access_token_lifetime
    if server.return_refresh_token:
        answer["refresh_token"] = refresh_token
    answer["id_token"] = issue_id_token(server, state, grant, scope)
    answer["id"] = person_id
    if server.include_empty_error_fields:
        answer["error"] = ""
        answer["error_description"] = "null"
    return Answer.json(200, answer)
