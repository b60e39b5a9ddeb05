"""A protected resource: any method on any path under ``/api/``, with
``Authorization: Bearer <access token>`` (RFC 6750).

It echoes the request as JSON with the person's GUID as ``id``. ``/api/forbidden`` answers
403 for a valid token; ``/api/redirect?to=...`` answers 302 to a path on this server or to
another loopback server. A missing or unusable token gets 401 with
``WWW-Authenticate: Bearer error="invalid_token"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from eid_auth.testing._bearer import bearer_owner
from eid_auth.testing._client_auth import api_key_ok
from eid_auth.testing._messages import API_KEY_HEADER, Answer, RecordedRequest

if TYPE_CHECKING:
    from eid_auth.testing._server import EmpowerIDTestServer
    from eid_auth.testing._state import ServerState

__all__ = ["PATH", "handle"]

PATH = "/api/"


def handle(server: EmpowerIDTestServer, state: ServerState, request: RecordedRequest) -> Answer:
    """Log the request, run ``on_api_request``, check the API key and token, then answer."""
    state.record_api_request(request)
    hook = server.on_api_request
    if hook is not None:
        hook()  # outside the lock: the hook may well call back into this server
    if not api_key_ok(server, request):
        return Answer.json(
            401,
            {
                "error": "invalid_request",
                "error_description": f"missing or wrong {API_KEY_HEADER}: API key required",
            },
        )
    person_id, problem = bearer_owner(server, state, request.header("Authorization"))
    if person_id is None:
        cookie = server.set_cookie_on_401
        return Answer.json(
            401,
            {"error": "invalid_token", "error_description": problem},
            ("WWW-Authenticate", 'Bearer error="invalid_token"'),
            *((("Set-Cookie", f"{cookie}; Path=/"),) if cookie else ()),
        )
    path = urlsplit(request.path).path
    if path == "/api/forbidden":
        return Answer.json(
            403, {"error": "forbidden", "error_description": "not allowed for this person"}
        )
    if path == "/api/redirect":
        return _redirect(server, request)
    return Answer.json(
        200,
        {
            "ok": True,
            "method": request.method,
            "path": request.path,
            "body": request.body.decode("latin-1"),
            "id": person_id,
            "content_type": request.header("Content-Type"),
        },
    )


def _redirect(server: EmpowerIDTestServer, request: RecordedRequest) -> Answer:
    targets = parse_qs(urlsplit(request.path).query).get("to", [])
    target = targets[0] if targets else ""
    # A path on this server, or another loopback server (cross-origin tests); a test
    # server must not bounce clients anywhere else.
    if _is_loopback_url(target):
        location = target
    elif not target.startswith("/") or target.startswith("//") or "\\" in target:
        return Answer.json(
            400,
            {
                "error": "invalid_request",
                "error_description": "to must be a path or a loopback URL",
            },
        )
    else:
        location = server.url + target
    return Answer.json(302, {"location": location}, ("Location", location))


def _is_loopback_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")
