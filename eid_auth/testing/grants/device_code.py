"""The device code grant (RFC 8628, section 3.4):
``grant_type=urn:ietf:params:oauth:grant-type:device_code``, or plain ``device_code`` as
older EmpowerID pages spell it (the server's ``device_grant_types`` says which it knows).

While the person has not answered: ``authorization_pending`` (HTTP 400, as EmpowerID
answers it); a poll sooner than the interval: ``slow_down``, and the interval grows by 5 s
(section 3.5). Then the tokens once, ``access_denied`` after a refusal, ``expired_token``
after ``expires_in``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from eid_auth.testing._messages import Answer, RecordedRequest, oauth_error
from eid_auth.testing.grants._issue import issue_tokens

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["GRANT_TYPES", "SLOW_DOWN_SECONDS", "handle"]

GRANT_TYPES = ("urn:ietf:params:oauth:grant-type:device_code", "device_code")
SLOW_DOWN_SECONDS = 5.0
# A poll counts as too soon only this far inside the interval: network jitter is no abuse.
_TOLERANCE = 0.8


def handle(
    server: EmpowerIDTestServer,
    state: ServerState,
    request: RecordedRequest,
    form: Mapping[str, str],
) -> Answer:
    """Answer one poll with the device code's state."""
    grant_type = form.get("grant_type", "")
    if grant_type not in server.device_grant_types:
        return oauth_error(
            400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported"
        )
    device_code = form.get("device_code")
    if not device_code:
        return oauth_error(400, "invalid_request", "missing device_code")
    now = time.monotonic()
    with state.lock:
        record = state.device_authorizations.get(device_code)
        if record is None or record.status == "used":
            return oauth_error(400, "invalid_grant", "unknown or already used device_code")
        if now >= record.expires_at:
            return oauth_error(400, "expired_token", "the device code has expired")
        if record.status == "denied":
            return oauth_error(400, "access_denied", "the user refused")
        too_soon = (
            record.last_poll is not None and now - record.last_poll < record.interval * _TOLERANCE
        )
        record.last_poll = now
        if record.status == "pending":
            if too_soon:
                record.interval += SLOW_DOWN_SECONDS
                return oauth_error(400, "slow_down", "polling too often")
            return oauth_error(400, "authorization_pending", "the user has not answered yet")
        record.status = "used"
        person_id, username, scope = record.person_id, record.username, record.scope
    assert person_id is not None
    return issue_tokens(
        server,
        state,
        person_id=person_id,
        scope=scope,
        username=username,
        with_refresh_token=True,
    )
