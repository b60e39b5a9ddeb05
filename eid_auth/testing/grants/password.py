"""The resource owner password credentials grant (RFC 6749, section 4.3):
``grant_type=password``.

EmpowerID's form puts the person's credentials in ``Authorization: Basic
base64(username:password)`` and the client's (``client_id``, ``client_secret``) in the body;
RFC 6749's form puts ``username`` and ``password`` in the body, the client authenticating as
usual. Both are served: a password request without ``password`` in its body is EmpowerID's
form (`user_credentials_in_basic`), and the token endpoint then authenticates the client
from the body alone. The answer has a refresh token.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING

from eid_auth.testing._messages import Answer, RecordedRequest, oauth_error
from eid_auth.testing.grants._issue import issue_tokens

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["handle", "user_credentials_in_basic"]


def user_credentials_in_basic(form: Mapping[str, str]) -> bool:
    """True for EmpowerID's form of the password grant: HTTP Basic holds the person's
    credentials, not the client's."""
    return form.get("grant_type") == "password" and "password" not in form


def handle(
    server: EmpowerIDTestServer,
    state: ServerState,
    request: RecordedRequest,
    form: Mapping[str, str],
) -> Answer:
    """Tokens for the person whose username and password are presented."""
    if user_credentials_in_basic(form):
        credentials = _basic_credentials(request.header("Authorization"))
        if credentials is None:
            return oauth_error(
                400,
                "invalid_request",
                "missing user credentials: send them in HTTP Basic (or username and "
                "password in the body)",
            )
        username, password = credentials
    else:
        username, password = form.get("username", ""), form["password"]
        if not username:
            return oauth_error(400, "invalid_request", "missing username")
    with state.lock:
        user = state.users.get(username)
    if user is None or not hmac.compare_digest(
        password.encode("utf-8"), user.password.encode("utf-8")
    ):
        return oauth_error(400, "invalid_grant", "wrong username or password")
    return issue_tokens(
        server,
        state,
        person_id=user.person_id,
        scope=form.get("scope", ""),
        username=user.username,
        with_refresh_token=True,
    )


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if authorization is None or authorization[:6].lower() != "basic ":
        return None
    try:
        raw = base64.b64decode(authorization[6:].strip(), validate=True)
    except binascii.Error:
        return None
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        decoded = raw.decode("latin-1")  # how requests and httpx encode what fits in it
    username, sep, password = decoded.partition(":")
    return (username, password) if sep and username else None
