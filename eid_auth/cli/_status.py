"""``eid-auth status``: what is known of a profile's sign-in, here and at the server."""

from __future__ import annotations

import math
import time
from typing import Any

from .._exceptions import EmpowerIDAuthError
from .._profiles import profile_name
from ._exit import OK, SERVER_FAILURE, SIGN_IN_NEEDED, classify
from ._session import open_profile

__all__ = ["status_of"]


def status_of(name: str | None) -> tuple[dict[str, Any], int]:
    """The facts to show (no secret among them) and the exit code: 3 when the
    profile is not signed in or the server no longer accepts its sign-in, 4
    when the server could not be asked."""
    profile = open_profile(name)
    facts: dict[str, Any] = {
        "profile": profile.name,
        "default": profile.name == profile_name(None),
        "server": profile.server,
        "client_id": profile.client_id,
        "client": "confidential" if profile.confidential else "public",
        "stored_in": profile.describe_store(),
    }
    record = profile.store().read()
    token = None if record is None else record.token
    if record is None or (token is None and record.refresh_token is None):
        facts["signed_in"] = False
        facts["next"] = f"eid-auth login --profile {profile.name}"
        return facts, SIGN_IN_NEEDED
    facts["signed_in"] = True
    code = OK
    if token is not None:
        left = token.expires_in()
        facts["expires_at"] = token.expires_at
        facts["expires_in"] = None if left is None else max(0, math.floor(left))
        facts["scope"] = token.scope
    facts["refresh_token"] = record.refresh_token is not None
    if record.invalid_grant_at is not None:
        facts["refused_at"] = record.invalid_grant_at
    with profile.client() as eid:
        try:
            if profile.confidential:
                # The refresh token says whether the sign-in lasts; the access
                # token only whether it is valid until it expires.
                if record.refresh_token is not None:
                    answer = eid.introspect(record.refresh_token, "refresh_token")
                else:
                    assert token is not None
                    answer = eid.introspect(token.access_token)
                facts["accepted_by_server"] = bool(answer.get("active"))
                facts["signed_in_as"] = answer.get("username") or answer.get("sub")
            elif token is not None and not token.is_expired(time.time()):
                answer = eid.userinfo(token.access_token)
                facts["signed_in_as"] = answer.get("username") or answer.get("sub")
        except EmpowerIDAuthError as exc:
            code, message = classify(exc, profile.name)
            facts["server_error"] = message
            code = SERVER_FAILURE if code == SERVER_FAILURE else OK
    if facts.get("accepted_by_server") is False or (
        record.invalid_grant_at is not None and facts.get("accepted_by_server") is not True
    ):
        facts["next"] = f"eid-auth login --profile {profile.name}"
        code = SIGN_IN_NEEDED
    return facts, code
