"""Exit codes of ``eid-auth``, and the one line on stderr that goes with each.

A script can rely on them:

====  ==========================================================================
code  meaning
====  ==========================================================================
0     success
1     any other failure (a refused client secret, an unreadable token store, a
      sign-in that was refused or timed out, a bad profile)
2     usage error: an unknown command or option, a bad value (click's own code)
3     sign-in needed: the profile does not exist or holds no token, or the server
      no longer accepts its grant (revoked, expired, already used); the message
      says which ``eid-auth login --profile NAME`` to run
4     the server could not be reached or failed (no answer, timeouts, 5xx, 429,
      an unusable answer), after retries
====  ==========================================================================
"""

from __future__ import annotations

from .._exceptions import (
    ConfigurationError,
    EmpowerIDAuthError,
    EndpointError,
    InvalidGrantError,
    InvalidTokenResponseError,
    MissingRefreshTokenError,
    TokenEndpointUnavailableError,
)

__all__ = [
    "FAILURE",
    "OK",
    "SERVER_FAILURE",
    "SIGN_IN_NEEDED",
    "USAGE",
    "SignInNeeded",
    "classify",
]

OK = 0
FAILURE = 1
USAGE = 2
SIGN_IN_NEEDED = 3
SERVER_FAILURE = 4


class SignInNeeded(EmpowerIDAuthError):
    """The profile has no usable sign-in: ``eid-auth login`` is the fix."""

    def __init__(self, profile: str, why: str) -> None:
        super().__init__(f"{why}: sign in with eid-auth login --profile {profile}")
        self.profile = profile


# The library's advice for a proxy or private CA names token_client=, which a
# shell user cannot pass: the command line reads them from the environment.
_LIBRARY_HINT = "; for a proxy or a private CA, pass token_client="
_SHELL_HINT = (
    "; for a proxy or a private CA, set HTTPS_PROXY, or SSL_CERT_FILE and "
    "REQUESTS_CA_BUNDLE to the CA bundle"
)


def _for_the_shell(message: str) -> str:
    cut = message.find(_LIBRARY_HINT)
    return message if cut < 0 else message[:cut] + _SHELL_HINT


def classify(exc: BaseException, profile: str | None) -> tuple[int, str]:
    """The exit code for ``exc`` and the line to print (messages of eid_auth's
    errors never hold a secret)."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    login = f"sign in again with eid-auth login --profile {profile or 'NAME'}"
    if isinstance(exc, SignInNeeded):
        return SIGN_IN_NEEDED, message
    if isinstance(exc, InvalidGrantError):
        return SIGN_IN_NEEDED, f"the server no longer accepts this sign-in ({message}); {login}"
    if isinstance(exc, MissingRefreshTokenError):
        return SIGN_IN_NEEDED, f"the token cannot be renewed ({message}); {login}"
    if isinstance(exc, (TokenEndpointUnavailableError, InvalidTokenResponseError)):
        return SERVER_FAILURE, _for_the_shell(message)
    if isinstance(exc, EndpointError):
        if exc.status_code is None or exc.status_code >= 500 or exc.status_code == 429:
            return SERVER_FAILURE, message
        return FAILURE, message
    if isinstance(exc, (ConfigurationError, EmpowerIDAuthError)):
        return FAILURE, message
    if isinstance(exc, OSError):
        return FAILURE, f"{type(exc).__name__}: {exc.strerror or message}"
    # Not ours: its text could hold anything, so only its type is shown (--debug
    # shows the traceback).
    return FAILURE, f"unexpected {type(exc).__name__} (run with --debug for the traceback)"
