"""The JWT bearer grant (RFC 7523, section 2.1):
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` with a signed JWT ``assertion``
and, as EmpowerID requires, a ``scope``.

An assertion is accepted when its ``iss`` is a trusted issuer (``trust_assertion_issuer``)
whose key verifies its signature (HS256 with a shared secret, or RS256 with an RSA public
JWK), its ``aud`` names this server's token endpoint (or the server), it has not expired
(``exp``) and it is valid already (``nbf``). The token is issued for its ``sub``: a test
user's username, or else taken for the person's GUID. No refresh token.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from eid_auth.testing._messages import Answer, RecordedRequest, oauth_error
from eid_auth.testing.grants._issue import issue_tokens

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["GRANT_TYPE", "handle", "verify_assertion"]

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"

# Clocks of the assertion's signer and this server may differ this much.
_CLOCK_SKEW = 30


def handle(
    server: EmpowerIDTestServer,
    state: ServerState,
    request: RecordedRequest,
    form: Mapping[str, str],
) -> Answer:
    """Tokens for the subject of a trusted, valid assertion."""
    assertion = form.get("assertion")
    if not assertion:
        return oauth_error(400, "invalid_request", "missing assertion")
    scope = form.get("scope")
    if not scope:
        return oauth_error(400, "invalid_request", "missing scope")
    audiences = (server.token_endpoint, server.url, server.url + "/oauth")
    claims, problem = verify_assertion(state, assertion, audiences)
    if claims is None:
        return oauth_error(400, "invalid_grant", f"assertion rejected: {problem}")
    person_id, username = subject_of(state, claims)
    return issue_tokens(server, state, person_id=person_id, scope=scope, username=username)


def subject_of(state: ServerState, claims: Mapping[str, Any]) -> tuple[str, str | None]:
    """(person GUID, username) for a verified JWT's ``sub``."""
    subject = str(claims["sub"])
    with state.lock:
        user = state.users.get(subject)
    return (subject, None) if user is None else (user.person_id, user.username)


def verify_assertion(
    state: ServerState, jwt: str, audiences: Collection[str] | None
) -> tuple[dict[str, Any] | None, str]:
    """Return (claims, "") for a JWT a trusted issuer signed, else (None, reason).

    `audiences`: the ``aud`` must name one of them; None skips the check.
    """
    parts = jwt.split(".")
    if len(parts) != 3:
        return None, "not a signed JWT"
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
    except (ValueError, binascii.Error):
        return None, "not a signed JWT"
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None, "not a signed JWT"
    issuer = claims.get("iss")
    with state.lock:
        key = state.assertion_keys.get(issuer) if isinstance(issuer, str) else None
    if key is None:
        return None, "untrusted issuer"
    if not _signature_ok(header.get("alg"), key, jwt):
        return None, "bad signature"
    now = time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, (int, float)) or exp + _CLOCK_SKEW <= now:
        return None, "expired or without exp"
    if isinstance(nbf, (int, float)) and nbf - _CLOCK_SKEW > now:
        return None, "not valid yet (nbf)"
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        return None, "missing sub"
    if audiences is not None:
        aud = claims.get("aud")
        named = aud if isinstance(aud, list) else [aud]
        if not any(a in audiences for a in named):
            return None, "aud does not name this server's token endpoint"
    return claims, ""


def _signature_ok(alg: object, key: str | dict[str, str], jwt: str) -> bool:
    # joserfc checks the signature; the algorithm must be the one the key is for.
    from joserfc import jws
    from joserfc.errors import JoseError
    from joserfc.jwk import OctKey, RSAKey

    try:
        if alg == "HS256" and isinstance(key, str):
            jws.deserialize_compact(jwt, OctKey.import_key(key), algorithms=["HS256"])
        elif alg == "RS256" and isinstance(key, dict):
            jwk: dict[str, str | list[str]] = dict(key)
            jws.deserialize_compact(jwt, RSAKey.import_key(jwk), algorithms=["RS256"])
        else:
            return False  # "none", another algorithm, or one that does not fit the key
    except (JoseError, ValueError, TypeError):
        return False
    return True


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
