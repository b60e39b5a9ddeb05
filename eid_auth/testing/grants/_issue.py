"""The success answer every grant shares, in EmpowerID's shape: ``access_token``,
``token_type``, ``expires_in``, ``refresh_token`` (for grants that have one), ``id_token``
(when ``openid`` is asked for), ``id`` (the person's GUID) and, optionally, the empty
``error`` fields EmpowerID's answers carry.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from eid_auth.testing._id_token import issue_id_token
from eid_auth.testing._messages import Answer
from eid_auth.testing._state import new_refresh_token

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["application_person_id", "issue_tokens"]


def application_person_id(client_id: str) -> str:
    """The GUID that stands for the application itself (client credentials without a
    ``username``): the same for the same client ID."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "eid-auth-test-client:" + client_id))


def issue_tokens(
    server: EmpowerIDTestServer,
    state: ServerState,
    *,
    person_id: str,
    scope: str,
    username: str | None = None,
    with_refresh_token: bool = False,
    extra: dict[str, Any] | None = None,
) -> Answer:
    """Start a grant for `person_id` and answer its tokens."""
    grant, access_token = state.new_grant(
        person_id=person_id,
        scope=scope,
        refresh_token=new_refresh_token() if with_refresh_token else None,
        lifetime=server.access_token_lifetime,
        username=username,
    )
    # Field order as in EmpowerID's documented answer.
    answer: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer"}
    if server.access_token_lifetime is not None:
        answer["expires_in"] = server.access_token_lifetime
    if with_refresh_token:
        answer["refresh_token"] = grant.refresh_token
    answer["id_token"] = issue_id_token(server, state, grant, scope)
    answer["id"] = person_id
    if scope:
        answer["scope"] = scope
    answer.update(extra or {})
    if server.include_empty_error_fields:
        answer["error"] = ""
        answer["error_description"] = "null"
    return Answer.json(200, answer)
