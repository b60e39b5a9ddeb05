"""What travels between a client and the test server: requests in, answers out.

`RecordedRequest` is a request as the server received it (tests read them back from
``api_requests`` and ``token_request_log``); `Answer` is a complete response an endpoint
returns. The helpers build the bodies OAuth 2.0 defines: a form-encoded request body
(RFC 6749, appendix B) and a JSON error answer (RFC 6749, section 5.2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

__all__ = [
    "API_KEY_HEADER",
    "Answer",
    "RecordedRequest",
    "json_bytes",
    "not_found",
    "oauth_error",
    "oauth_form",
]

API_KEY_HEADER = "X-EmpowerID-API-Key"

_JSON_TYPE = "application/json; charset=utf-8"
_FORM_TYPE = "application/x-www-form-urlencoded"
# Names whose values RecordedRequest.__repr__ hides, so failing assertions don't echo secrets.
_SENSITIVE = frozenset(
    {
        "authorization",
        API_KEY_HEADER.lower(),
        "client_secret",
        "refresh_token",
        "access_token",
        "code",
        "password",
    }
)


def json_bytes(obj: Mapping[str, Any]) -> bytes:
    """Compact JSON, UTF-8 encoded."""
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the test server received it.

    Attributes:
        method: HTTP method, e.g. ``"POST"``.
        path: Request target including the query string, e.g. ``"/api/items?page=2"``.
        headers: Header names with case preserved as received; repeated headers are joined
            with ``", "``. Use `header` for case-insensitive lookup.
        body: Raw request body (chunked bodies are already de-chunked).
        form: Parsed body when it was ``application/x-www-form-urlencoded``, else ``{}``.
        time: ``time.time()`` when the request arrived.

    Example:
        >>> rec = server.api_requests[-1]  # doctest: +SKIP
        >>> rec.header("authorization")  # doctest: +SKIP
        'Bearer at_...'
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, str] = field(default_factory=dict)
    time: float = 0.0

    def header(self, name: str) -> str | None:
        """Return the value of header `name` (case-insensitive), or None when absent.

        Example:
            >>> RecordedRequest("GET", "/", {"Accept": "*/*"}, b"").header("accept")
            '*/*'
        """
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    def __repr__(self) -> str:
        # Hide credentials: pytest prints reprs of failing assertions into CI logs.
        headers = {k: ("***" if k.lower() in _SENSITIVE else v) for k, v in self.headers.items()}
        form = {k: ("***" if k.lower() in _SENSITIVE else v) for k, v in self.form.items()}
        return (
            f"RecordedRequest(method={self.method!r}, path={self.path!r}, headers={headers!r}, "
            f"body=<{len(self.body)} bytes>, form={form!r}, time={self.time!r})"
        )


@dataclass
class Answer:
    """A complete HTTP response; `None` in its place means "close without answering"."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = _JSON_TYPE

    @classmethod
    def json(cls, status: int, obj: Mapping[str, Any], *headers: tuple[str, str]) -> Answer:
        return cls(status, json_bytes(obj), list(headers))


def oauth_error(status: int, error: str, description: str, *headers: tuple[str, str]) -> Answer:
    """An OAuth error answer: ``{"error": ..., "error_description": ...}``."""
    return Answer.json(status, {"error": error, "error_description": description}, *headers)


def oauth_form(request: RecordedRequest) -> dict[str, str] | Answer:
    """The parameters of a form-encoded OAuth request, or the ``invalid_request`` answer.

    Stricter than `RecordedRequest.form`: the body must be declared and encoded as a form,
    and no parameter may appear twice.
    """
    content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != _FORM_TYPE:
        return oauth_error(400, "invalid_request", f"body must be {_FORM_TYPE}")
    try:
        pairs = parse_qsl(
            request.body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=bool(request.body),
        )
    except (UnicodeDecodeError, ValueError):
        return oauth_error(400, "invalid_request", "body is not valid form encoding")
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        # RFC 6749, section 3.2: parameters must not be included more than once.
        return oauth_error(400, "invalid_request", f"repeated parameter: {repeated[0]}")
    return dict(pairs)


def not_found() -> Answer:
    """The answer for a path (or method) no endpoint serves."""
    return Answer.json(404, {"error": "not_found"})
