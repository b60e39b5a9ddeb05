"""The userinfo endpoint (OpenID Connect Core, section 5.3): ``GET /oauth/v2/userinfo``
(or ``POST``) with ``Authorization: Bearer <access token>``.

It answers EmpowerID's fields for the person the token belongs to: ``id`` (the person's
GUID), ``sub`` (the same), and for a test user also ``username``, ``first_name``,
``last_name``, ``email`` and ``name``. A missing or unusable token gets 401 with
``WWW-Authenticate: Bearer error="invalid_token"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eid_auth.testing._bearer import bearer_owner
from eid_auth.testing._client_auth import api_key_ok
from eid_auth.testing._messages import API_KEY_HEADER, Answer, RecordedRequest, oauth_error

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["PATH", "handle"]

PATH = "/oauth/v2/userinfo"


def handle(server: EmpowerIDTestServer, state: ServerState, request: RecordedRequest) -> Answer:
    """The claims of the person behind the bearer token."""
    if request.method not in ("GET", "POST"):
        return Answer.json(
            405,
            {"error": "invalid_request", "error_description": "use GET"},
            ("Allow", "GET, POST"),
        )
    if not api_key_ok(server, request):
        return oauth_error(401, "invalid_request", f"missing or wrong {API_KEY_HEADER}")
    person_id, problem = bearer_owner(server, state, request.header("Authorization"))
    if person_id is None:
        return oauth_error(
            401,
            "invalid_token",
            problem,
            ("WWW-Authenticate", 'Bearer error="invalid_token"'),
        )
    claims: dict[str, Any] = {"id": person_id, "sub": person_id}
    with state.lock:
        user = next((u for u in state.users.values() if u.person_id == person_id), None)
    if user is not None:
        claims.update(
            username=user.username,
            first_name=user.first_name,
            last_name=user.last_name,
            email=user.email,
            name=f"{user.first_name} {user.last_name}".strip(),
        )
    return Answer.json(200, claims, ("Cache-Control", "no-store"))
