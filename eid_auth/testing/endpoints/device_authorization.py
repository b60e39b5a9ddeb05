"""The device authorization endpoint (RFC 8628, section 3.1): ``POST /oauth/v2/device/authorize``
with ``client_id`` and ``scope``, as EmpowerID documents it.

It answers a ``device_code`` (the device's secret), a ``user_code`` for the person, the
``verification_uri`` where the person would enter it, ``expires_in`` and the polling
interval, under the key the server's ``device_interval_name`` says (EmpowerID's
documentation spells it both ``interval`` and ``polling_interval``). No person visits the
verification page here: a test approves or refuses with ``approve_device(user_code)`` /
``deny_device(user_code)``, or ``on_device_authorization`` does it as the code is issued.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from eid_auth.testing._client_auth import api_key_ok, authenticate_client
from eid_auth.testing._messages import (
    API_KEY_HEADER,
    Answer,
    RecordedRequest,
    oauth_error,
    oauth_form,
)

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["PATH", "VERIFICATION_PATH", "DeviceAuthorization", "handle"]

PATH = "/oauth/v2/device/authorize"
# Where the person would enter the user code (no page is served there).
VERIFICATION_PATH = "/oauth/v2/ui/device"
# RFC 8628, section 6.1: consonants only (no words, no look-alike characters), 8 of them.
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"


@dataclass
class DeviceAuthorization:
    """One device authorization and where the person's sign-in stands. Kept in
    ``ServerState.device_authorizations`` by device code, under its lock."""

    user_code: str
    scope: str
    expires_at: float  # time.monotonic() deadline
    interval: float  # grows by 5 s with each slow_down
    status: str = "pending"  # "approved", "denied", then "used" once redeemed
    username: str | None = None
    person_id: str | None = None
    last_poll: float | None = None  # time.monotonic() of the last poll


def handle(
    server: EmpowerIDTestServer, state: ServerState, request: RecordedRequest
) -> Answer | None:
    """Issue a device code and a user code for the client."""
    if request.method != "POST":
        return Answer.json(
            405, {"error": "invalid_request", "error_description": "use POST"}, ("Allow", "POST")
        )
    if not api_key_ok(server, request):
        return oauth_error(401, "invalid_request", f"missing or wrong {API_KEY_HEADER}")
    form = oauth_form(request)
    if isinstance(form, Answer):
        return form
    if "client_secret" in form or request.header("Authorization") is not None:
        # A confidential client may authenticate here too (RFC 8628, section 3.1).
        client_error = authenticate_client(server, request, form)
        if client_error is not None:
            return client_error
    elif form.get("client_id") != server.client_id:
        return oauth_error(401, "invalid_client", "unknown client_id")
    device_code = "dc_" + secrets.token_urlsafe(32)
    letters = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
    user_code = f"{letters[:4]}-{letters[4:]}"
    record = DeviceAuthorization(
        user_code=user_code,
        scope=form.get("scope", ""),
        expires_at=time.monotonic() + server.device_code_lifetime,
        interval=server.device_interval,
    )
    with state.lock:
        state.device_authorizations[device_code] = record
    verification_uri = server.url + VERIFICATION_PATH
    answer: dict[str, Any] = {
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": f"{verification_uri}?user_code={quote(user_code)}",
        "expires_in": server.device_code_lifetime,
        server.device_interval_name: server.device_interval,
    }
    hook = server.on_device_authorization
    if hook is not None:
        hook(user_code)  # outside the lock: the hook may well approve the code
    return Answer.json(200, answer, ("Cache-Control", "no-store"))
