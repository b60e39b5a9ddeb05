"""The token endpoint (RFC 6749, section 3.2): ``POST /oauth/v2/token``.

It checks EmpowerID's API key, the form body and the client authentication, then hands the
request to the grant its ``grant_type`` names (`eid_auth.testing.grants`). Faults queued by
``fail_next`` strike here, before any of that. Every answer says ``Cache-Control: no-store``.

A public client (the server's ``client_secret=None``) sends its ``client_id`` alone, for
the grants a person signs in with and the refresh grant; its authorization codes must have
been asked for with PKCE (RFC 9700, section 2.1.1), whatever ``require_pkce`` says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from eid_auth.testing._client_auth import api_key_ok, authenticate_client
from eid_auth.testing._faults import fault_answer, wait_out
from eid_auth.testing._messages import (
    API_KEY_HEADER,
    Answer,
    RecordedRequest,
    oauth_error,
    oauth_form,
)
from eid_auth.testing.grants import GRANT_TYPES, password

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["PATH", "handle"]

PATH = "/oauth/v2/token"


def handle(
    server: EmpowerIDTestServer, state: ServerState, request: RecordedRequest
) -> Answer | None:
    """Count and log the request, play a queued fault if any, else serve the grant."""
    if request.method != "POST":
        return Answer.json(
            405,
            {"error": "invalid_request", "error_description": "use POST"},
            ("Allow", "POST"),
        )
    fault = state.take_token_request(request)
    if fault is not None:
        if wait_out(fault, state.stopping):  # outside the lock
            return None
        if not fault.serves_normally:
            return fault_answer(fault)
    answer = _token_answer(server, state, request)
    answer.headers += [("Cache-Control", "no-store"), ("Pragma", "no-cache")]
    return answer


def _token_answer(
    server: EmpowerIDTestServer, state: ServerState, request: RecordedRequest
) -> Answer:
    if not api_key_ok(server, request):
        return Answer.json(
            401,
            {
                "error": "invalid_request",
                "error_description": f"missing or wrong {API_KEY_HEADER}",
            },
        )
    form = oauth_form(request)
    if isinstance(form, Answer):
        return form
    grant_type = form.get("grant_type")
    client_error = authenticate_client(
        server,
        request,
        form,
        basic=not password.user_credentials_in_basic(form),
        grant_type=grant_type,
    )
    if client_error is not None:
        return client_error
    if not grant_type:
        return oauth_error(400, "invalid_request", "missing grant_type")
    if server.client_secret is None and grant_type == "authorization_code":
        pkce_error = _public_client_pkce(state, form)
        if pkce_error is not None:
            return pkce_error
    grant = GRANT_TYPES.get(grant_type)
    if grant is None:
        return oauth_error(
            400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported"
        )
    answer = grant(server, state, request, form)
    if answer.status == 200:
        with state.lock:
            state.grants_served[grant_type] += 1
    return answer


def _public_client_pkce(state: ServerState, form: Mapping[str, str]) -> Answer | None:
    """A public client's code must carry a PKCE challenge: without one, whoever reads the
    code from the redirect could redeem it, there being no secret to stop them."""
    with state.lock:
        issued = state.authorization_codes.get(form.get("code", ""))
        if issued is None or issued.used or issued.code_challenge is not None:
            return None  # the grant answers for unknown and used codes
        issued.used = True  # as any failed exchange does
    return oauth_error(
        400, "invalid_grant", "a public client must use PKCE: this code has no code_challenge"
    )
