"""Errors raised by eid_auth.

Every error is an ``EmpowerIDAuthError``; none carries a secret in its message
or its attributes. The hierarchy::

    EmpowerIDAuthError
    ├── ConfigurationError              (also a ValueError) wrong arguments
    ├── MissingRefreshTokenError        a refresh was needed, but there is no refresh token
    ├── TokenEndpointError              the token endpoint answered with an OAuth error
    │   ├── InvalidGrantError           refresh token expired, revoked or already used
    │   └── InvalidClientError          client_id / client_secret rejected
    ├── InvalidTokenResponseError       a 2xx answer that is not a valid token response
    │   ├── TokenResponseTooLargeError  an answer over 256 KiB (on the wire or decompressed)
    │   └── InvalidIDTokenError         an ID token that fails validation (or its keys unreadable)
    ├── TokenEndpointUnavailableError   connection errors, timeouts, 5xx, 429 after retries
    ├── EndpointError                   userinfo, tokeninfo or tokenrevoke refused or failed
    ├── SignInError                     a person's sign-in (browser, device) brought no token
    │   ├── AccessDeniedError           the person (or the server) refused: access_denied
    │   └── SignInTimeoutError          no redirect in time, or the device code expired
    └── TokenStoreError                 a token store cannot be read, written or locked
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "AccessDeniedError",
    "ConfigurationError",
    "EmpowerIDAuthError",
    "EndpointError",
    "InvalidClientError",
    "InvalidGrantError",
    "InvalidIDTokenError",
    "InvalidTokenResponseError",
    "MissingRefreshTokenError",
    "SignInError",
    "SignInTimeoutError",
    "TokenEndpointError",
    "TokenEndpointUnavailableError",
    "TokenResponseTooLargeError",
    "TokenStoreError",
]

_REDACTED = "[redacted]"
# Shorter values are not searched for: they would blank out ordinary words.
_MIN_SECRET_LENGTH = 4
# Past this many secrets (every string of a hostile answer), each is first
# looked up by its first characters instead of searched for.
_MANY_SECRETS = 32
# Layers of escaping undone when looking for a secret (a JSON-escaped,
# percent-encoded form is two).
_MAX_DECODING_PASSES = 3

_JSON_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
# Escape sequences of JSON, HTML/XML and percent-encoding. A run of non-ASCII
# percent-encoded bytes is one sequence: it is one UTF-8 text.
_JSON_ESCAPE = (
    r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|\\u[0-9a-fA-F]{4}|\\[\\/\"'bfnrt]"
)
_HTML_ESCAPE = r"&(?:\#[0-9]{1,10}|\#[xX][0-9a-fA-F]{1,8}|[A-Za-z][A-Za-z0-9]{1,31});?"
_PERCENT_ESCAPE = r"(?:%[89a-fA-F][0-9a-fA-F])+|%[0-7][0-9a-fA-F]"
_ESCAPES = [re.compile(p) for p in (_JSON_ESCAPE, _HTML_ESCAPE, _PERCENT_ESCAPE)]
_ANY_ESCAPE = re.compile("|".join((_JSON_ESCAPE, _HTML_ESCAPE, _PERCENT_ESCAPE)))
_JSON_SHORT_ESCAPES = {
    "\\": "\\",
    "/": "/",
    '"': '"',
    "'": "'",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each secret in ``text`` with ``[redacted]``.

    Server-provided text (an ``error_description``, a non-JSON body) is quoted
    in our messages; a server may echo what it was sent, so it is scrubbed. A
    secret is found however a server plausibly wrote it: raw, percent-encoded
    (either case of hex digits, ``+`` or ``%20`` for a space), JSON-escaped
    (``\\/``, ``\\u002B`` in either case), HTML/XML-escaped (``&#43;``,
    ``&#x2b;``, ``&plus;``, ``&amp;``...), and up to three such layers inside
    one another. Secrets shorter than 4 characters are not searched for.

    Example:
        >>> redact('{"got": "a\\\\/b%2bc"}', ["a/b+c"])
        '{"got": "[redacted]"}'
    """
    # Shown decoded (.NET writes "+" as \u002B); surrogate pairs (emoji) are
    # rejoined and a lone one becomes U+FFFD, so the text stays encodable.
    text = _JSON_UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    needles = set()
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET_LENGTH:
            needles.add(secret)
            needles.add(secret.replace(" ", "+"))  # a form body's space
    if not needles:
        return text
    spans: list[tuple[int, int]] = []
    for view, starts, ends in _decoded_views(text):
        candidates: Iterable[str] = needles
        if len(needles) > _MANY_SECRETS:
            heads = {view[i : i + _MIN_SECRET_LENGTH] for i in range(len(view))}
            candidates = [n for n in needles if n[:_MIN_SECRET_LENGTH] in heads]
        for needle in candidates:
            found = view.find(needle)
            while found >= 0:
                spans.append((starts[found], ends[found + len(needle) - 1]))
                found = view.find(needle, found + 1)
    return _replace_spans(text, spans)


def _decoded_views(text: str) -> Iterator[tuple[str, list[int], list[int]]]:
    """``text``, then ``text`` with one more layer of escapes undone, each time
    with where each character came from: ``text[starts[i]:ends[i]]``.

    Layers of every kind are undone together; where the text has more than one
    kind, also each kind alone (a secret that itself holds "%2F" must not be
    percent-decoded when a server JSON-escapes it).
    """
    starts, ends = list(range(len(text))), list(range(1, len(text) + 1))
    yield text, starts, ends
    kinds = [escape for escape in _ESCAPES if escape.search(text)]
    for escape in [_ANY_ESCAPE, *kinds] if len(kinds) > 1 else [_ANY_ESCAPE]:
        yield from _undo_layers(escape, text, starts, ends)


def _undo_layers(
    escape: re.Pattern[str], text: str, starts: list[int], ends: list[int]
) -> Iterator[tuple[str, list[int], list[int]]]:
    for _ in range(_MAX_DECODING_PASSES):
        pieces: list[str] = []
        new_starts: list[int] = []
        new_ends: list[int] = []
        position = 0
        for match in escape.finditer(text):
            decoded = _unescape(match.group())
            if decoded == match.group():
                continue  # an unknown entity such as "&foo;": plain text
            pieces.append(text[position : match.start()])
            new_starts += starts[position : match.start()]
            new_ends += ends[position : match.start()]
            pieces.append(decoded)
            new_starts += [starts[match.start()]] * len(decoded)
            new_ends += [ends[match.end() - 1]] * len(decoded)
            position = match.end()
        if position == 0:
            return  # nothing left to undo
        pieces.append(text[position:])
        text = "".join(pieces)
        starts = new_starts + starts[position:]
        ends = new_ends + ends[position:]
        yield text, starts, ends


def _unescape(sequence: str) -> str:
    if sequence.startswith("\\u"):
        units = [int(sequence[i + 2 : i + 6], 16) for i in range(0, len(sequence), 6)]
        if len(units) == 2:
            return chr(0x10000 + ((units[0] - 0xD800) << 10) + (units[1] - 0xDC00))
        return chr(units[0])
    if sequence.startswith("\\"):
        return _JSON_SHORT_ESCAPES[sequence[1]]
    if sequence.startswith("&"):
        return html.unescape(sequence)
    return bytes.fromhex(sequence.replace("%", "")).decode("utf-8", "replace")


def _replace_spans(text: str, spans: list[tuple[int, int]]) -> str:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)  # overlapping or touching: one marker
        else:
            merged.append([start, end])
    pieces: list[str] = []
    position = 0
    for start, end in merged:
        pieces += (text[position:start], _REDACTED)
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def secrets_in_answer(body: Any, *, successful: bool) -> list[str]:
    """The strings of a token endpoint's JSON answer that no message may quote.

    In a 2xx answer every string is taken for a secret (any field may be a new
    token) except a top-level ``error`` and ``error_description``, which are
    there to be read. In another answer, every string under a key that names a
    token (``access_token``, ``refresh_token``, ``id_token``...).
    """
    if not isinstance(body, dict):
        return []
    found: list[str] = []
    # (value, whether strings in it are secret); a loop, not recursion: JSON
    # may nest as deep as the parser allowed.
    pending: list[tuple[Any, bool]] = []
    for key, value in body.items():
        if successful and key in ("error", "error_description") and isinstance(value, str):
            continue
        pending.append((value, successful or _names_a_token(key)))
    while pending:
        value, secret = pending.pop()
        if isinstance(value, str):
            if secret:
                found.append(value)
        elif isinstance(value, dict):
            pending += ((v, secret or _names_a_token(k)) for k, v in value.items())
        elif isinstance(value, list):
            pending += ((v, secret) for v in value)
    return found


def _names_a_token(key: object) -> bool:
    return isinstance(key, str) and "token" in key.lower()


class EmpowerIDAuthError(Exception):
    """Base class of every error raised by eid_auth.

    Every error survives ``pickle`` (a worker process of a
    ``ProcessPoolExecutor`` can raise one) and ``copy``, with its message
    and attributes.

    Example:
        >>> import pickle
        >>> error = InvalidGrantError(
        ...     "refused", error="invalid_grant", error_description=None, status_code=400
        ... )
        >>> again = pickle.loads(pickle.dumps(error))
        >>> type(again).__name__, again.error, again.status_code
        ('InvalidGrantError', 'invalid_grant', 400)
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt without __init__, whose keyword-only arguments pickle cannot
        # pass: the message travels in args, the attributes in the state.
        return (_rebuild_error, (type(self), self.args), self.__dict__ or None)


def _rebuild_error(cls: type[EmpowerIDAuthError], args: tuple[Any, ...]) -> EmpowerIDAuthError:
    return cls.__new__(cls, *args)


class ConfigurationError(EmpowerIDAuthError, ValueError):
    """The arguments given to ``EmpowerIDAuth`` or ``Token`` cannot work."""


class MissingRefreshTokenError(EmpowerIDAuthError):
    """A refresh was needed (or asked for), but no refresh token is known."""


class TokenEndpointError(EmpowerIDAuthError):
    """The token endpoint refused the request with an OAuth 2.0 error.

    Attributes:
        error: the RFC 6749 error code, such as ``"invalid_grant"``
            (``None`` when the server sent a non-2xx answer without one).
        error_description: the server's explanation, with any secret removed.
        status_code: the HTTP status of the answer.
    """

    def __init__(
        self,
        message: str,
        *,
        error: str | None,
        error_description: str | None,
        status_code: int,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.error_description = error_description
        self.status_code = status_code


class InvalidGrantError(TokenEndpointError):
    """The refresh token is expired, revoked or was already used.

    Retrying cannot help: the user must sign in again (or a new refresh token
    must be given to ``EmpowerIDAuth``).
    """


class InvalidClientError(TokenEndpointError):
    """The token endpoint rejected the client credentials (client_id, client_secret)."""


class InvalidTokenResponseError(EmpowerIDAuthError):
    """The token endpoint answered 2xx, but not with a usable token response.

    Examples: a body that is not JSON, no ``access_token``, a ``token_type``
    other than ``Bearer``, a negative or non-numeric ``expires_in``.
    """


class TokenResponseTooLargeError(InvalidTokenResponseError):
    """The token endpoint's answer was over 256 KiB, on the wire or decompressed.

    Reading stopped at the limit (a gzip bomb or an endless body cannot fill
    memory); the answer is not retried. Also raised for an oversized 4xx answer;
    an oversized 5xx or 429 is retried as its status says.
    """


class InvalidIDTokenError(InvalidTokenResponseError):
    """An ID token failed validation: its signature, ``alg``, ``iss``, ``aud``,
    ``azp``, ``exp``, ``iat``, ``sub`` or ``nonce``, or the server's keys (its
    JWKS) could not be read to check it.

    The message says which check failed and, for the issuer, both the value
    expected and the value seen; it never quotes the token. Raised by every grant
    of ``EmpowerIDClient`` whose answer carries an ``id_token`` (the tokens of
    that answer are then not returned) and by ``validate_id_token``.
    """


class TokenEndpointUnavailableError(EmpowerIDAuthError):
    """The token endpoint could not be reached, or kept failing, after retries.

    Attributes:
        status_code: the HTTP status of the last answer (5xx or 429), or
            ``None`` when no answer came (connection error, timeout).
        attempts: how many token requests were sent.
    """

    def __init__(self, message: str, *, status_code: int | None, attempts: int) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.attempts = attempts


class EndpointError(EmpowerIDAuthError):
    """Userinfo, introspection (EmpowerID's tokeninfo) or revocation (its
    tokenrevoke) failed: the server refused, answered something unusable, or
    could not be reached after retries.

    Attributes:
        endpoint: the endpoint's name in RFC 8414's words, such as
            ``"userinfo_endpoint"``.
        status_code: the HTTP status of the answer, or ``None`` when no answer
            came (connection error, timeout).
        error: the OAuth error code of the answer (``"invalid_token"``...), or ``None``.
        error_description: the server's explanation, with any secret removed.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        status_code: int | None,
        error: str | None = None,
        error_description: str | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status_code = status_code
        self.error = error
        self.error_description = error_description


class SignInError(EmpowerIDAuthError):
    """A sign-in by a person, at a browser or on another device, did not end in a token.

    Also raised for a redirect that does not belong to the sign-in (a ``state``
    other than the one sent) and for an error the authorization server put on the
    redirect. A refusal at the token endpoint is a ``TokenEndpointError`` instead.

    Attributes:
        error: the OAuth error code when the server sent one (``"access_denied"``,
            ``"expired_token"``, ``"invalid_scope"``...), else ``None``.
        error_description: the server's explanation, when it sent one.
    """

    def __init__(
        self, message: str, *, error: str | None = None, error_description: str | None = None
    ) -> None:
        super().__init__(message)
        self.error = error
        self.error_description = error_description


class AccessDeniedError(SignInError):
    """The person refused the sign-in, or the server refused it for them
    (``access_denied``, on the browser's redirect or while a device polls)."""


class SignInTimeoutError(SignInError):
    """The sign-in did not finish in time: no redirect came back to the loopback
    listener before ``timeout``, or the device code expired (``expired_token``,
    or its ``expires_in`` passed). Start a new sign-in."""


class TokenStoreError(EmpowerIDAuthError):
    """A token store (file, Redis, ...) could not be read, written or locked.

    The message names the store and what to do; it never carries a token or a
    password. Nothing in the store was changed by the failed operation.
    """
