"""The authorization endpoint (RFC 6749, section 4.1.1): ``GET /oauth/v2/ui/authorize``.

It checks the request as EmpowerID does (``client_id``, a registered ``redirect_uri``,
``response_type=code``, PKCE with ``code_challenge_method=S256``), then "signs in" without a
person: by default the server's test user approves at once (``sign_in = "approve"``,
``sign_in_username``), or the sign-in is refused (``sign_in = "deny"``). It answers with a
302 to the redirect URI carrying ``code`` and ``state``, or ``error=access_denied``.

A loopback redirect URI matches whatever its port (RFC 8252, section 7.3): native apps
listen on a port the system chooses. With no ``redirect_uris`` configured, any loopback
``http`` URI is accepted.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit

from eid_auth.testing._messages import Answer, RecordedRequest, oauth_error

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import Grant, ServerState

__all__ = ["PATH", "IssuedCode", "handle", "redirect_uri_allowed"]

PATH = "/oauth/v2/ui/authorize"

# RFC 7636, section 4.2: BASE64URL(SHA256(verifier)) without padding is 43 characters.
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass
class IssuedCode:
    """An authorization code and what its exchange must match. Kept in
    ``ServerState.authorization_codes``, under its lock."""

    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    username: str
    person_id: str
    expires_at: float  # time.monotonic() deadline
    used: bool = False
    grant: Grant | None = None  # the grant its exchange started, revoked if it is replayed


def handle(server: EmpowerIDTestServer, state: ServerState, request: RecordedRequest) -> Answer:
    """Check the authorization request, sign in automatically, redirect back."""
    if request.method not in ("GET", "HEAD"):
        return Answer.json(
            405,
            {"error": "invalid_request", "error_description": "use GET"},
            ("Allow", "GET"),
        )
    pairs = parse_qsl(urlsplit(request.path).query, keep_blank_values=True)
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    params = dict(pairs)
    # Until the client and its redirect URI are known good, errors go to the browser,
    # never to the redirect URI (RFC 6749, section 4.1.2.1).
    if repeated:
        return oauth_error(400, "invalid_request", f"repeated parameter: {repeated[0]}")
    client_id = params.get("client_id")
    if client_id != server.client_id:
        return oauth_error(400, "invalid_client", "unknown client_id")
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri_allowed(server, redirect_uri):
        return oauth_error(400, "invalid_request", "redirect_uri is not registered")
    state_param = params.get("state")

    def back(**values: str) -> Answer:
        query = {**values, **({"state": state_param} if state_param is not None else {})}
        separator = "&" if urlsplit(redirect_uri).query else "?"
        location = redirect_uri + separator + urlencode(query)
        return Answer(
            302, b"", [("Location", location), ("Cache-Control", "no-store")], "text/plain"
        )

    if params.get("response_type") != "code":
        return back(error="unsupported_response_type", error_description="only response_type=code")
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method", "plain")
    if challenge is None:
        if server.require_pkce:
            return back(error="invalid_request", error_description="code_challenge required")
    elif method != "S256":
        return back(error="invalid_request", error_description="only S256 is supported")
    elif not _S256_CHALLENGE.fullmatch(challenge):
        return back(error="invalid_request", error_description="malformed code_challenge")
    if server.sign_in == "deny":
        return back(error="access_denied", error_description="the user refused")
    username = server.sign_in_username or server.test_user.username
    with state.lock:
        user = state.users.get(username)
    if user is None:
        return back(error="access_denied", error_description="no such user")
    code = "ac_" + secrets.token_urlsafe(32)
    issued = IssuedCode(
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=params.get("scope", ""),
        nonce=params.get("nonce"),
        code_challenge=challenge,
        username=user.username,
        person_id=user.person_id,
        expires_at=time.monotonic() + server.authorization_code_lifetime,
    )
    with state.lock:
        state.authorization_codes[code] = issued
    return back(code=code)


def redirect_uri_allowed(server: EmpowerIDTestServer, redirect_uri: str) -> bool:
    """Whether `redirect_uri` is registered: exactly, or a loopback one with another port."""
    parts = urlsplit(redirect_uri)
    if parts.fragment or parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    try:
        _ = parts.port
    except ValueError:
        return False
    registered = server.redirect_uris
    if registered is None:
        return parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS
    for uri in registered:
        if uri == redirect_uri:
            return True
        known = urlsplit(uri)
        if (
            known.scheme == parts.scheme == "http"
            and known.hostname == parts.hostname
            and known.hostname in _LOOPBACK_HOSTS
            and (known.path, known.query) == (parts.path, parts.query)
        ):
            return True
    return False
