"""ID tokens (OpenID Connect Core, section 2) and the keys that sign them.

An ID token is issued with the tokens of a grant whose scope holds ``openid``: an RS256 JWT
(what EmpowerID's discovery document advertises) whose ``kid`` names a key of the server's
JWKS (`SigningKeys.jwks`, served at ``/oauth/.well-known/jwks``). Its ``iss`` is the
server's ``id_token_issuer``, EmpowerID's default ``"EmpowerID"`` unless configured, while
the discovery document's ``issuer`` is the server's URL: the two differ, as they may on a
real EmpowerID server.

joserfc (and cryptography under it) is imported on first use, so that loading the pytest
plugin costs nothing to test suites that never ask for an ID token.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from joserfc.jwk import RSAKey

    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import Grant, ServerState

__all__ = ["SIGNING_ALGORITHM", "SigningKeys", "issue_id_token", "sign"]

SIGNING_ALGORITHM = "RS256"
_KEY_BITS = 2048

# RSA key generation takes tens of milliseconds and a test suite starts hundreds of servers:
# every server's first key is this one, under a kid of the server's own (a client finds
# keys by kid, so one server's tokens still fail against another's JWKS).
# rotate_signing_key() generates a fresh key.
_shared_key: RSAKey | None = None
_shared_key_lock = threading.Lock()


def _generate_key() -> RSAKey:
    from joserfc.jwk import RSAKey

    key: RSAKey = RSAKey.generate_key(_KEY_BITS, private=True)
    return key


def _first_key() -> RSAKey:
    global _shared_key
    with _shared_key_lock:
        if _shared_key is None:
            _shared_key = _generate_key()
        return _shared_key


def _new_kid() -> str:
    return "eid-test-" + secrets.token_hex(8)


class SigningKeys:
    """One server's signing keys: the current one signs, the JWKS publishes it and, after a
    rotation that keeps it, the one before. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: list[tuple[str, RSAKey]] = []  # newest first
        self.jwks_requests = 0

    def rotate(self, *, keep_previous: bool = True) -> str:
        """Sign with a freshly generated key from now on; return its kid."""
        key = _generate_key()
        kid = _new_kid()
        with self._lock:
            kept = self._keys[:1] if keep_previous else []
            self._keys = [(kid, key), *kept]
        return kid

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set (RFC 7517) of the keys published now."""
        keys = self._published()
        public = [
            {**key.as_dict(private=False), "kid": kid, "use": "sig", "alg": SIGNING_ALGORITHM}
            for kid, key in keys
        ]
        return {"keys": public}

    def count_jwks_request(self) -> None:
        with self._lock:
            self.jwks_requests += 1

    def sign(self, claims: Mapping[str, Any]) -> str:
        """`claims` as a JWT signed with the current key, its kid in the header."""
        from joserfc import jwt

        kid, key = self._published()[0]
        header = {"alg": SIGNING_ALGORITHM, "typ": "JWT", "kid": kid}
        return jwt.encode(header, dict(claims), key, algorithms=[SIGNING_ALGORITHM])

    def _published(self) -> list[tuple[str, RSAKey]]:
        with self._lock:
            if not self._keys:
                self._keys = [(_new_kid(), _first_key())]
            return list(self._keys)


def issue_id_token(
    server: EmpowerIDTestServer,
    state: ServerState,
    grant: Grant,
    scope: str,
    nonce: str | None = None,
) -> str | None:
    """The ID token for `grant`, or None when `scope` lacks ``openid``.

    Args:
        server: its ``client_id`` is the ``aud``, its ``id_token_issuer`` the ``iss``
            (``None``: the discovery document's ``issuer``, the server's URL).
        state: holds the signing keys; every ID token issued is kept there, so
            ``issued_secrets`` lists it.
        grant: the sign-in; its ``person_id`` is the ``sub``.
        scope: the scope granted.
        nonce: the ``nonce`` of the authorization request, when it had one: the
            authorization code grant passes it, the ID token carries it back.

    Example:
        >>> issue_id_token(server, state, grant, "openid", nonce="n-0S6_Wz")  # doctest: +SKIP
        'eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiIs...'
    """
    if "openid" not in scope.split():
        return None
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": server.id_token_issuer or server.url,
        "sub": grant.person_id,
        "aud": server.client_id,
        "iat": now,
        "exp": now + (server.access_token_lifetime or 3600),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    return sign(state, claims)


def sign(state: ServerState, claims: Mapping[str, Any]) -> str:
    """`claims` signed with the server's current key, kept in `state` as a secret it issued."""
    id_token = state.signing_keys.sign(claims)
    state.id_tokens.append(id_token)  # list.append is atomic; readers take the lock
    return id_token
