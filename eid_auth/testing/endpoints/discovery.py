"""The discovery document (OpenID Connect Discovery 1.0), at EmpowerID's path under
``/oauth``: where the endpoints are and which grants and client authentication methods the
server supports. EmpowerID names introspection and revocation ``tokeninfo_endpoint`` and
``tokenrevoke_endpoint``. The server's ``publish_discovery`` (False: 404, as on older
EmpowerID servers) and ``discovery_overrides`` (a value of None removes the key) change it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eid_auth.testing._id_token import SIGNING_ALGORITHM
from eid_auth.testing._messages import Answer, RecordedRequest, not_found
from eid_auth.testing.endpoints import (
    authorize,
    device_authorization,
    jwks,
    token,
    tokeninfo,
    tokenrevoke,
    userinfo,
)
from eid_auth.testing.grants import GRANT_TYPES

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["PATH", "handle"]

PATH = "/oauth/.well-known/openid-configuration"
# A page of EmpowerID's sign-in UI, not served here: clients only build its URL.
END_SESSION_PATH = "/oauth/v2/ui/logout"


def handle(server: EmpowerIDTestServer, state: ServerState, request: RecordedRequest) -> Answer:
    """``GET`` (or ``HEAD``) answers the document; other methods 404."""
    if request.method not in ("GET", "HEAD") or not server.publish_discovery:
        return not_found()
    document = _document(server.url)
    for key, value in server.discovery_overrides.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return Answer.json(200, document)


def _document(base: str) -> dict[str, Any]:
    return {
        # ID tokens say "EmpowerID" by default (the server's id_token_issuer), as EmpowerID's do.
        "issuer": base,
        "authorization_endpoint": base + authorize.PATH,
        "device_authorization_endpoint": base + device_authorization.PATH,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint": base + token.PATH,
        # EmpowerID's own names for introspection and revocation.
        "tokeninfo_endpoint": base + tokeninfo.PATH,
        "tokenrevoke_endpoint": base + tokenrevoke.PATH,
        "userinfo_endpoint": base + userinfo.PATH,
        "end_session_endpoint": base + END_SESSION_PATH,
        "jwks_uri": base + jwks.PATH,
        "id_token_signing_alg_values_supported": [SIGNING_ALGORITHM],
        "grant_types_supported": list(GRANT_TYPES),
        "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
    }
