"""Client authentication: how a request to the token endpoint (and, later, to tokeninfo,
tokenrevoke and device authorization) proves which client sends it.

* ``client_secret_post``: ``client_id`` and ``client_secret`` in the form body.
* ``client_secret_basic``: ``Authorization: Basic base64(client_id:client_secret)``
  (RFC 6749, section 2.3.1); a client must not use both at once.
* EmpowerID's ``X-EmpowerID-API-Key`` header, required on every token and API request when
  the server has an ``api_key``.
* A public client (a native or browser application registered without a secret: the
  server's ``client_secret=None``) sends its ``client_id`` alone, and only for the grants in
  `PUBLIC_CLIENT_GRANT_TYPES`, those where a person signs in (RFC 6749, section 2.1;
  RFC 8252). Anything that stands for the client itself (client credentials, token
  exchange, JWT bearer) needs a secret, and so does the password grant: RFC 6749 allows
  it for public clients, but RFC 9700 says not to use it, EmpowerID documents it only with
  a client secret, and a native application that collects passwords is what RFC 8252 is
  written against, so this server refuses it (``unauthorized_client``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from eid_auth.testing._messages import API_KEY_HEADER, Answer, RecordedRequest, oauth_error
from eid_auth.testing.grants import device_code

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer

__all__ = ["PUBLIC_CLIENT_GRANT_TYPES", "api_key_ok", "authenticate_client"]

# The grants a client without a secret may use: a person signs in, and PKCE (the code) or
# the person's approval (the device code) binds the tokens to the client that asked.
PUBLIC_CLIENT_GRANT_TYPES = frozenset(
    {"authorization_code", "refresh_token", *device_code.GRANT_TYPES}
)


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
    grant_type: str | None = None,
) -> Answer | None:
    """None when the client authenticated, else the ``invalid_client`` (or
    ``invalid_request``, or ``unauthorized_client``) answer. ``basic=False``: HTTP Basic
    holds someone else's credentials (EmpowerID's password grant), so the client's must be
    in the body. ``grant_type``: the token request's; a public client may send its
    ``client_id`` alone for one of `PUBLIC_CLIENT_GRANT_TYPES`, and nowhere else."""
    if server.client_secret is None:
        return _public_client(server, request, form, basic=basic, grant_type=grant_type)
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
        return oauth_error(
            401,
            "invalid_client",
            "missing client credentials: this client is confidential, send its client_secret",
        )
    if not _client_ok(server, client_id, client_secret):
        return oauth_error(401, "invalid_client", "client authentication failed")
    return None


def _public_client(
    server: EmpowerIDTestServer,
    request: RecordedRequest,
    form: Mapping[str, str],
    *,
    basic: bool,
    grant_type: str | None,
) -> Answer | None:
    """A client registered without a secret: its ``client_id``, and nothing else, for a
    grant a public client may use."""
    authorization = request.header("Authorization")
    sends_basic = basic and authorization is not None and authorization[:6].lower() == "basic "
    if sends_basic or "client_secret" in form:
        # A secret this client does not have is no proof of anything.
        return oauth_error(
            401, "invalid_client", "this client is public: it has no client_secret to send"
        )
    client_id = form.get("client_id")
    if client_id is None or not _same(client_id, server.client_id):
        return oauth_error(401, "invalid_client", "missing or unknown client_id")
    if grant_type not in PUBLIC_CLIENT_GRANT_TYPES:
        what = "this request" if grant_type is None else f"grant_type {grant_type!r}"
        return oauth_error(
            400,
            "unauthorized_client",
            f"a public client (no client_secret) may not use {what}: it needs a "
            "confidential client",
        )
    return None


def _client_ok(server: EmpowerIDTestServer, client_id: str, client_secret: str) -> bool:
    if server.client_secret is None:
        return False  # a public client has no secret to match
    return _same(client_id, server.client_id) and _same(client_secret, server.client_secret)
