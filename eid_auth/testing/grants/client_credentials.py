"""The client credentials grant (RFC 6749, section 4.4): ``grant_type=client_credentials``.

The application gets a token for itself, with no refresh token. EmpowerID adds an optional
``username``: the token is then issued for that person. The application must have "Enable
Client Credential Flow" switched on (the server's ``client_credentials_enabled``), else
``unauthorized_client``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from eid_auth.testing._messages import Answer, RecordedRequest, oauth_error
from eid_auth.testing.grants._issue import application_person_id, issue_tokens

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
    """A token for the application, or for the person ``username`` names."""
    if not server.client_credentials_enabled:
        return oauth_error(
            400,
            "unauthorized_client",
            "the client credentials flow is not enabled for this application",
        )
    username = form.get("username")
    if username is None:
        person_id = application_person_id(server.client_id)
    else:
        with state.lock:
            user = state.users.get(username)
        if user is None:
            return oauth_error(400, "invalid_grant", "no such user")
        person_id = user.person_id
    return issue_tokens(
        server, state, person_id=person_id, scope=form.get("scope", ""), username=username
    )
