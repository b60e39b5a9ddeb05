"""The JWK Set (RFC 7517) of the keys that sign ID tokens, at EmpowerID's path under
``/oauth``; the discovery document's ``jwks_uri`` points here. After
``rotate_signing_key()`` it lists the new key, and the previous one unless retired.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eid_auth.testing._messages import Answer, RecordedRequest, not_found

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["PATH", "handle"]

PATH = "/oauth/.well-known/jwks"


def handle(server: EmpowerIDTestServer, state: ServerState, request: RecordedRequest) -> Answer:
    """``GET`` (or ``HEAD``) answers the public keys; other methods 404."""
    if request.method not in ("GET", "HEAD"):
        return not_found()
    state.signing_keys.count_jwks_request()
    return Answer.json(200, state.signing_keys.jwks())
