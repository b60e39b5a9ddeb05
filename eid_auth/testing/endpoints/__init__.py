"""The test server's endpoints, one module each, and the one table that routes to them.

Each module has a ``PATH`` and a ``handle(server, state, request)`` function (see
`Endpoint`); `ROUTES` maps paths to handlers, and `respond` picks the handler for a request.
Adding an endpoint is adding a module here and a line to `ROUTES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from eid_auth.testing._messages import Answer, RecordedRequest, not_found
from eid_auth.testing.endpoints import (
    api,
    authorize,
    device_authorization,
    discovery,
    jwks,
    token,
    tokeninfo,
    tokenrevoke,
    userinfo,
)

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["ROUTES", "Endpoint", "respond"]


class Endpoint(Protocol):
    """Answers one request to an endpoint; None closes the connection without an answer.

    `server` holds the configuration (client, lifetimes, switches), `state` the grants,
    tokens, faults, counters and logs.
    """

    def __call__(
        self, server: EmpowerIDTestServer, state: ServerState, request: RecordedRequest, /
    ) -> Answer | None: ...


# A path ending in "/" routes every path under it.
ROUTES: tuple[tuple[str, Endpoint], ...] = (
    (token.PATH, token.handle),
    (tokeninfo.PATH, tokeninfo.handle),
    (tokenrevoke.PATH, tokenrevoke.handle),
    (userinfo.PATH, userinfo.handle),
    (discovery.PATH, discovery.handle),
    (jwks.PATH, jwks.handle),
    (authorize.PATH, authorize.handle),
    (device_authorization.PATH, device_authorization.handle),
    (api.PATH, api.handle),
)


def respond(
    server: EmpowerIDTestServer, state: ServerState, request: RecordedRequest
) -> Answer | None:
    """Route `request` to its endpoint; 404 for a path no endpoint serves."""
    path = urlsplit(request.path).path
    for route, handle in ROUTES:
        if path == route or (route.endswith("/") and path.startswith(route)):
            return handle(server, state, request)
    return not_found()
