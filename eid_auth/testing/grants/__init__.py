"""The grants the token endpoint serves, one module each, and the table of their
``grant_type`` values.

Each module has a ``handle(server, state, request, form)`` function (see `TokenGrant`),
called once the client has authenticated. Adding a grant is adding a module here and a line
to `GRANT_TYPES`; the discovery document lists the same grant types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from eid_auth.testing._messages import Answer, RecordedRequest
from eid_auth.testing.grants import (
    authorization_code,
    client_credentials,
    device_code,
    jwt_bearer,
    password,
    refresh_token,
    token_exchange,
)

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["GRANT_TYPES", "TokenGrant"]


class TokenGrant(Protocol):
    """Answers a token request of one grant type: the tokens, or an OAuth error.

    `form` holds the request's parameters, already checked for repeats; the client has
    authenticated.
    """

    def __call__(
        self,
        server: EmpowerIDTestServer,
        state: ServerState,
        request: RecordedRequest,
        form: Mapping[str, str],
        /,
    ) -> Answer: ...


GRANT_TYPES: Mapping[str, TokenGrant] = {
    "refresh_token": refresh_token.handle,
    "client_credentials": client_credentials.handle,
    "password": password.handle,
    jwt_bearer.GRANT_TYPE: jwt_bearer.handle,
    token_exchange.GRANT_TYPE: token_exchange.handle,
    "authorization_code": authorization_code.handle,
    **dict.fromkeys(device_code.GRANT_TYPES, device_code.handle),
}
