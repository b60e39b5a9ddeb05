"""Client authentication: how a request to the token endpoint (and, later, to tokeninfo,
tokenrevoke and device authorization) proves which client sends it.

* ``client_secret_post``: ``client_id`` and ``client_secret`` in the form body.
* ``client_secret_basic``: ``Authorization: Basic base64(client_id:client_secret)``
  (RFC 6749, section 2.3.1); a client must not use both at once.
* EmpowerID's ``X-EmpowerID-API-Key`` header, required on every token and API request when
  the server has an ``api_key``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from eid_auth.testing._messages import API_KEY_HEADER, Answer, RecordedRequest, oauth_error

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer

__all__ = ["api_key_ok", "authenticate_client"]


def _same(a: str, b: str) -> bool:
    """Compare two secrets in constant time."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def api_key_ok(server: EmpowerIDTestServer, request: RecordedRequest) -> bool:
    """True when the server needs no API key or `request` carries the right one."""
    if server.api_key is None:
        return True
    presented = request.header(API_KEY_HEADER)
    return presented is not None and _same(presented, server.api_key)


def authenticate_client(
    server: EmpowerIDTestServer,
    request: RecordedRequest,
    form: Mapping[str, str],
    *,
    basic: bool = True,
) -> Answer | None:
    """None when the client authenticated, else the ``invalid_client`` (or
    ``invalid_request``) answer. ``basic=False``: HTTP Basic holds someone else's
    credentials (EmpowerID's password grant), so the client's must be in the body."""
    authorization = request.header("Authorization")
    if basic and authorization is not None and authorization[:6].lower() == "basic ":
        if "client_secret" in form:
            # RFC 6749, section 2.3: a client must not use more than one method.
            return oauth_error(
                400, "invalid_request", "use either client_secret_basic or client_secret_post"
            )
        challenge = ("WWW-Authenticate", 'Basic realm="EmpowerID"')
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return oauth_error(401, "invalid_client", "malformed Basic credentials", challenge)
        raw_id, sep, raw_secret = decoded.partition(":")
        if not sep:
            return oauth_error(401, "invalid_client", "malformed Basic credentials", challenge)
        # RFC 6749 says id and secret are form-urlencoded inside Basic; many clients
        # send them raw. Accept either.
        candidates = {(raw_id, raw_secret), (unquote_plus(raw_id), unquote_plus(raw_secret))}
        if not any(_client_ok(server, cid, sec) for cid, sec in candidates):
            return oauth_error(401, "invalid_client", "client authentication failed", challenge)
        body_id = form.get("client_id")
        if body_id is not None and body_id not in {cid for cid, _ in candidates}:
            return oauth_error(
                401, "invalid_client", "client_id differs from Basic credentials", challenge
            )
        return None
    client_id = form.get("client_id")
    client_secret = form.get("client_secret")
    if client_id is None or client_secret is None:
        return oauth_error(401, "invalid_client", "missing client credentials")
    if not _client_ok(server, client_id, client_secret):
        return oauth_error(401, "invalid_client", "client authentication failed")
    return None


def _client_ok(server: EmpowerIDTestServer, client_id: str, client_secret: str) -> bool:
    return _same(client_id, server.client_id) and _same(client_secret, server.client_secret)
