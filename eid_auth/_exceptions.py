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
    │   └── TokenResponseTooLargeError  an answer over 256 KiB (on the wire or decompressed)
    ├── TokenEndpointUnavailableError   connection errors, timeouts, 5xx, 429 after retries
    └── TokenStoreError                 a token store cannot be read, written or locked
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = [
    "ConfigurationError",
    "EmpowerIDAuthError",
    "InvalidClientError",
    "InvalidGrantError",
    "InvalidTokenResponseError",
    "MissingRefreshTokenError",
    "TokenEndpointError",
    "TokenEndpointUnavailableError",
    "TokenResponseTooLargeError",
    "TokenStoreError",
]

_REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each secret in ``text``.

    Server-provided text (an ``error_description``, a non-JSON body) is quoted
    in our messages; a server may echo what it was sent, so it is scrubbed.
    """
    # JSON bodies quoted as raw text may escape characters (.NET writes "+" as
    # \u002B): unescape first so that the secret is recognised.
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    # Rejoin escaped surrogate pairs (emoji); a lone one becomes U+FFFD, so the
    # message stays encodable for log files.
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    for secret in secrets:
        if secret and len(secret) >= 4:
            # Also as it travels in a form body or a URL.
            forms = {secret, quote_plus(secret), quote(secret, safe=""), json.dumps(secret)[1:-1]}
            for form in forms:
                text = text.replace(form, _REDACTED)
    return text


class EmpowerIDAuthError(Exception):
    """Base class of every error raised by eid_auth."""


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


class TokenStoreError(EmpowerIDAuthError):
    """A token store (file, Redis, ...) could not be read, written or locked.

    The message names the store and what to do; it never carries a token or a
    password. Nothing in the store was changed by the failed operation.
    """
