"""Token introspection (RFC 7662), EmpowerID's ``tokeninfo``: ``POST /oauth/v2/tokeninfo``.

As EmpowerID documents it: the client authenticates by HTTP Basic, and the form body must
hold both ``token`` and ``token_type_hint``. An access or refresh token this server issued
and that is still usable answers ``{"active": true, "client_id", "token_type", "username",
"exp", "iat", "nbf", "sub", "iss", "scope"}``; any other token ``{"active": false}``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from eid_auth.testing._client_auth import api_key_ok, authenticate_client
from eid_auth.testing._messages import (
    API_KEY_HEADER,
    Answer,
    RecordedRequest,
    oauth_error,
    oauth_form,
)

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["PATH", "handle", "read_token_request"]

PATH = "/oauth/v2/tokeninfo"


def handle(server: EmpowerIDTestServer, state: ServerState, request: RecordedRequest) -> Answer:
    """What the server knows of ``token``."""
    form = read_token_request(server, request)
    if isinstance(form, Answer):
        return form
    return Answer.json(200, _introspect(server, state, form["token"]))


def read_token_request(
    server: EmpowerIDTestServer, request: RecordedRequest
) -> dict[str, str] | Answer:
    """The form of a tokeninfo or tokenrevoke request, or the error answer: POST, the API
    key when the server has one, client credentials in HTTP Basic, ``token`` and
    ``token_type_hint``."""
    if request.method != "POST":
        return Answer.json(
            405, {"error": "invalid_request", "error_description": "use POST"}, ("Allow", "POST")
        )
    if not api_key_ok(server, request):
        return oauth_error(401, "invalid_request", f"missing or wrong {API_KEY_HEADER}")
    form = oauth_form(request)
    if isinstance(form, Answer):
        return form
    authorization = request.header("Authorization") or ""
    if authorization[:6].lower() != "basic ":
        return oauth_error(
            401,
            "invalid_client",
            "client credentials must be sent by HTTP Basic",
            ("WWW-Authenticate", 'Basic realm="EmpowerID"'),
        )
    client_error = authenticate_client(server, request, form)
    if client_error is not None:
        return client_error
    for name in ("token", "token_type_hint"):
        if not form.get(name):
            return oauth_error(400, "invalid_request", f"missing {name}")
    return form


def _introspect(server: EmpowerIDTestServer, state: ServerState, token: str) -> dict[str, Any]:
    now_wall, now = time.time(), time.monotonic()
    exp: int | None = None
    with state.lock:
        access = state.access_index.get(token)
        if access is not None:
            usable = not (
                access.revoked
                or access.expired
                or access.grant.revoked
                or (access.expires_at is not None and now >= access.expires_at)
            )
            if not usable:
                return {"active": False}
            grant, token_type, issued_at = access.grant, "Bearer", access.issued_at
            if access.expires_at is not None:
                exp = int(now_wall + (access.expires_at - now))
        else:
            found = state.refresh_index.get(token)
            if found is None or found.revoked or token != found.refresh_token:
                return {"active": False}
            grant, token_type, issued_at = found, "refresh_token", now_wall
    answer: dict[str, Any] = {
        "active": True,
        "client_id": server.client_id,
        "token_type": token_type,
        "username": grant.username,
        "iat": int(issued_at),
        "nbf": int(issued_at),
        "sub": grant.person_id,
        "iss": server.url,
        "scope": grant.scope,
    }
    if exp is not None:
        answer["exp"] = exp
    return answer
