"""The token exchange grant (RFC 8693):
``grant_type=urn:ietf:params:oauth:grant-type:token-exchange`` with ``subject_token``,
``subject_token_type`` and, as EmpowerID requires, ``scope``. EmpowerID documents the client
authenticating by HTTP Basic; its example swaps an Azure token for an EmpowerID one.

Accepted subject tokens: a JWT signed by a trusted issuer (``trust_assertion_issuer``;
types ``jwt``, ``access_token`` or ``id_token``), or an access token this server issued
and that is still usable (type ``access_token``). The new token is for the same person,
without a refresh token, and the answer names its ``issued_token_type``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from eid_auth.testing._messages import Answer, RecordedRequest, oauth_error
from eid_auth.testing.grants._issue import issue_tokens
from eid_auth.testing.grants.jwt_bearer import subject_of, verify_assertion

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["GRANT_TYPE", "handle"]

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"

_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:"
ACCESS_TOKEN_TYPE = _TOKEN_TYPE + "access_token"
_JWT_TYPES = frozenset({_TOKEN_TYPE + "jwt", ACCESS_TOKEN_TYPE, _TOKEN_TYPE + "id_token"})


def handle(
    server: EmpowerIDTestServer,
    state: ServerState,
    request: RecordedRequest,
    form: Mapping[str, str],
) -> Answer:
    """A token of this server for the subject of another token."""
    for name in ("subject_token", "subject_token_type", "scope"):
        if not form.get(name):
            return oauth_error(400, "invalid_request", f"missing {name}")
    subject_token, subject_token_type = form["subject_token"], form["subject_token_type"]
    scope = form["scope"]
    if subject_token_type not in _JWT_TYPES:
        return oauth_error(
            400, "invalid_request", f"unsupported subject_token_type {subject_token_type!r}"
        )
    username: str | None = None
    person_id, problem = (None, "")
    if subject_token_type == ACCESS_TOKEN_TYPE and subject_token.count(".") != 2:
        person_id, problem = state.access_token_owner(subject_token)
    else:
        claims, problem = verify_assertion(state, subject_token, None)
        if claims is not None:
            person_id, username = subject_of(state, claims)
    if person_id is None:
        return oauth_error(400, "invalid_grant", f"subject_token rejected: {problem}")
    return issue_tokens(
        server,
        state,
        person_id=person_id,
        scope=scope,
        username=username,
        extra={"issued_token_type": ACCESS_TOKEN_TYPE},
    )
