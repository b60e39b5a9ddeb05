"""The discovery document (OpenID Connect Discovery 1.0), at EmpowerID's path under
``/oauth``: where the endpoints are and which grants and client authentication methods the
server supports. EmpowerID names introspection and revocation ``tokeninfo_endpoint`` and
``tokenrevoke_endpoint``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eid_auth.testing._messages import Answer, RecordedRequest, not_found
from eid_auth.testing.endpoints import token
from eid_auth.testing.grants import GRANT_TYPES

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["PATH", "handle"]

PATH = "/oauth/.well-known/openid-configuration"


def handle(server: EmpowerIDTestServer, state: ServerState, request: RecordedRequest) -> Answer:
    """``GET`` (or ``HEAD``) answers the document; other methods 404."""
    if request.method not in ("GET", "HEAD"):
        return not_found()
    return Answer.json(200, _document(server.url))


def _document(base: str) -> dict[str, Any]:
    return {
        "issuer": base + "/oauth",
        "authorization_endpoint": base + "/oauth/v2/ui/authorize",
        "token_endpoint": base + token.PATH,
        "tokeninfo_endpoint": base + "/oauth/v2/tokeninfo",
        "tokenrevoke_endpoint": base + "/oauth/v2/token/revoke",
        "userinfo_endpoint": base + "/oauth/v2/userinfo",
        "grant_types_supported": list(GRANT_TYPES),
        "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
    }
