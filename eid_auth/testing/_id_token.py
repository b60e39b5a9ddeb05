"""ID tokens (OpenID Connect Core, section 2): issued with the tokens of a grant whose scope
holds ``openid``, as an HS256 JWT signed with the client secret, which OpenID Connect allows
for confidential clients.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING

from eid_auth.testing._messages import json_bytes

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import Grant, ServerState

__all__ = ["issue_id_token"]


def issue_id_token(
    server: EmpowerIDTestServer, state: ServerState, grant: Grant, scope: str
) -> str | None:
    """The ID token for `grant`, or None when `scope` lacks ``openid``.

    Every ID token issued is kept in `state`, so ``issued_secrets`` lists it.
    """
    if "openid" not in scope.split():
        return None
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {
        "iss": (state.url or "") + "/oauth",
        "sub": grant.person_id,
        "aud": server.client_id,
        "iat": now,
        "exp": now + (server.access_token_lifetime or 3600),
    }
    signing_input = f"{_b64url(json_bytes(header))}.{_b64url(json_bytes(claims))}"
    signature = hmac.new(
        server.client_secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256
    ).digest()
    id_token = f"{signing_input}.{_b64url(signature)}"
    state.id_tokens.append(id_token)  # list.append is atomic; readers take the lock
    return id_token


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
