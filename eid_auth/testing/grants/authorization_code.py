"""The authorization code grant (RFC 6749, section 4.1.3): ``grant_type=authorization_code``.

A code from the authorization endpoint is good once, for a minute (the server's
``authorization_code_lifetime``), with the same ``redirect_uri``, and, when the request had a
``code_challenge``, with the ``code_verifier`` that hashes to it (PKCE S256, RFC 7636). Any
failure burns the code; a code presented again revokes the grant its first exchange started
(RFC 6749, section 4.1.2). The ID token carries the request's ``nonce``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from eid_auth.testing._id_token import issue_id_token
from eid_auth.testing._messages import Answer, RecordedRequest, oauth_error
from eid_auth.testing._state import new_refresh_token

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["handle"]

# RFC 7636, section 4.1: 43 to 128 unreserved characters.
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")


def handle(
    server: EmpowerIDTestServer,
    state: ServerState,
    request: RecordedRequest,
    form: Mapping[str, str],
) -> Answer:
    """Exchange ``code`` (with ``redirect_uri`` and ``code_verifier``) for tokens."""
    code = form.get("code")
    if not code:
        return oauth_error(400, "invalid_request", "missing code")
    verifier = form.get("code_verifier")
    with state.lock:
        issued = state.authorization_codes.get(code)
        if issued is None:
            return oauth_error(400, "invalid_grant", "unknown authorization code")
        if issued.used:
            if issued.grant is not None:
                issued.grant.revoked = True  # a replayed code: its tokens may be stolen
            return oauth_error(400, "invalid_grant", "authorization code already used")
        issued.used = True
    if time.monotonic() >= issued.expires_at:
        return oauth_error(400, "invalid_grant", "authorization code expired")
    if form.get("client_id", issued.client_id) != issued.client_id:
        return oauth_error(400, "invalid_grant", "code issued to another client")
    if form.get("redirect_uri") != issued.redirect_uri:
        return oauth_error(400, "invalid_grant", "redirect_uri does not match the request's")
    if issued.code_challenge is not None:
        if verifier is None or not _VERIFIER.fullmatch(verifier):
            return oauth_error(400, "invalid_grant", "missing or malformed code_verifier")
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        if not hmac.compare_digest(challenge, issued.code_challenge):
            return oauth_error(400, "invalid_grant", "PKCE verification failed")
    grant, access_token = state.new_grant(
        person_id=issued.person_id,
        scope=issued.scope,
        refresh_token=new_refresh_token(),
        lifetime=server.access_token_lifetime,
        username=issued.username,
    )
    with state.lock:
        issued.grant = grant
    # Field order as in EmpowerID's documented answer.
    answer: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer"}
    if server.access_token_lifetime is not None:
        answer["expires_in"] = server.access_token_lifetime
    answer["refresh_token"] = grant.refresh_token
    answer["id_token"] = issue_id_token(server, state, grant, issued.scope, nonce=issued.nonce)
    answer["id"] = issued.person_id
    if issued.scope:
        answer["scope"] = issued.scope
    if server.include_empty_error_fields:
        answer["error"] = ""
        answer["error_description"] = "null"
    return Answer.json(200, answer)
