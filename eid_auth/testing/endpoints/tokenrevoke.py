"""Token revocation (RFC 7009), EmpowerID's ``tokenrevoke``: ``POST /oauth/v2/tokenrevoke``.

The request has tokeninfo's shape (client credentials in HTTP Basic; ``token`` and
``token_type_hint`` both required). Revoking an access token ends that token; revoking a
refresh token ends its whole grant, access tokens included (RFC 7009, section 2.1). A token
the server does not know is no error. The answer is 200 with a ``null`` body, as
EmpowerID's is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eid_auth.testing._messages import Answer, RecordedRequest
from eid_auth.testing.endpoints.tokeninfo import read_token_request

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["PATH", "handle"]

PATH = "/oauth/v2/tokenrevoke"


def handle(server: EmpowerIDTestServer, state: ServerState, request: RecordedRequest) -> Answer:
    """Revoke ``token``, whatever ``token_type_hint`` says it is."""
    form = read_token_request(server, request)
    if isinstance(form, Answer):
        return form
    token = form["token"]
    with state.lock:
        access = state.access_index.get(token)
        if access is not None:
            access.revoked = True
        grant = state.refresh_index.get(token)
        if grant is not None and token == grant.refresh_token:
            grant.revoked = True
    return Answer(200, b"null")
