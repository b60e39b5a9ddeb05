"""The fast path: ``eid-auth token`` and ``eid-auth header`` on a still-valid token.

Shell loops and build steps call these over and over, so when the stored token
is good enough they answer without importing click, an HTTP library or the
sign-in code: the few options are parsed here by hand. Anything else (help, an
option this parser does not know, a token to renew, an error to explain)
returns ``None`` and the full command line handles it, with the same result.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .._exceptions import EmpowerIDAuthError
from .._profiles import load_profile
from ..stores._file import FileTokenStore
from ._tokens import as_json, good_for, header

__all__ = ["try_fast_path"]

_COMMANDS = ("token", "header")


def try_fast_path(argv: Sequence[str]) -> int | None:
    """Print the stored token and return 0, or ``None`` to leave it to click."""
    options = _parse(argv)
    if options is None:
        return None
    command, profile_name, min_valid, as_document = options
    try:
        profile = load_profile(profile_name)
        if profile.token_store != "file":
            return None  # the keyring package alone takes longer to import than click
        record = FileTokenStore(profile.token_path).read()
    except (EmpowerIDAuthError, OSError):
        return None  # the full path explains it
    if (
        record is None
        or record.token is None
        or record.invalid_grant_at is not None
        or record.grant is not None
        or record.client_id != profile.client_id
        or record.token_endpoint != profile.token_endpoint
        or not good_for(record.token, min_valid)
    ):
        return None
    token = record.token
    if command == "header":
        line = header(token)
    else:
        line = as_json(token) if as_document else token.access_token
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return 0


def _parse(argv: Sequence[str]) -> tuple[str, str | None, float | None, bool] | None:
    """``(command, profile, min_valid, json)`` for the simple cases, else ``None``."""
    if not argv or argv[0] not in _COMMANDS:
        return None
    command = argv[0]
    profile: str | None = None
    min_valid: float | None = None
    as_document = False
    rest = list(argv[1:])
    while rest:
        argument = rest.pop(0)
        name, equals, value = argument.partition("=")
        if name == "-p" and equals:
            return None  # click reads "-p=work" as the value "=work": let it say so
        if name in ("--profile", "-p", "--min-valid") and not equals:
            if not rest:
                return None
            value = rest.pop(0)
        if name in ("--profile", "-p"):
            profile = value
        elif name == "--min-valid" and command == "token":
            try:
                min_valid = float(value)
            except ValueError:
                return None
            if not 0 <= min_valid < float("inf"):
                return None
        elif argument == "--json" and command == "token":
            as_document = True
        else:
            return None  # --help, --force-refresh, --debug, anything unknown
    return command, profile, min_valid, as_document
