"""A profile's sign-in as the commands use it: its settings, its stored record,
and a token renewed through ``EmpowerIDAuth`` and the profile's store, the
same way (and under the same lock) as every program using ``from_profile()``."""

from __future__ import annotations

import math

import click

from .._auth import EmpowerIDAuth
from .._client import EmpowerIDClient
from .._exceptions import EmpowerIDAuthError
from .._profiles import Profile, config_path, load_profiles, profile_name
from .._token import Token
from ..stores._base import StoredToken, TokenStore
from ._exit import SERVER_FAILURE, SignInNeeded, classify
from ._tokens import good_for

__all__ = ["fresh_token", "open_profile", "stored_record"]


def open_profile(name: str | None) -> Profile:
    """The profile ``name`` (``None``: ``$EID_PROFILE`` or ``default``).

    Raises:
        SignInNeeded: there is no such profile yet.
    """
    name = profile_name(name)
    profile = load_profiles().get(name)
    if profile is None:
        raise SignInNeeded(name, f"there is no profile {name!r} in {config_path()}")
    return profile


def stored_record(profile: Profile, store: TokenStore) -> StoredToken:
    """The profile's stored record.

    Raises:
        SignInNeeded: the store holds no token (never signed in, or signed out).
    """
    record = store.read()
    if record is None or (record.token is None and record.refresh_token is None):
        raise SignInNeeded(
            profile.name,
            f"profile {profile.name!r} is not signed in ({profile.describe_store()} holds "
            "no token)",
        )
    return record


def fresh_token(
    profile: Profile,
    eid: EmpowerIDClient,
    *,
    min_valid: float | None = None,
    force_refresh: bool = False,
    stale: Token | None = None,
) -> Token:
    """A token valid for ``min_valid`` seconds (``None``: the default), renewed
    first when the stored one is not, or when ``force_refresh``, or when it is
    ``stale`` (an API refused it). When the renewal that only the default
    ``min_valid`` asked for fails for a reason that may pass (no answer, 5xx),
    the still-valid token is returned, with a note on stderr.

    However many processes ask at once, one refresh grant is sent: the store's
    lock makes the others wait and take the token it brought.
    """
    store = profile.store()
    before = stored_record(profile, store).token
    with EmpowerIDAuth(client=eid, store=store) as auth:
        # Takes the stored token while it has not expired, else renews it.
        token = auth.refresh()
        renewed = before is None or token.access_token != before.access_token
        wanted = force_refresh or (stale is not None and token.access_token == stale.access_token)
        if not renewed and (wanted or not good_for(token, min_valid)):
            # Renews the token now held, unless another process already has.
            try:
                token = auth.refresh()
            except EmpowerIDAuthError as exc:
                code, message = classify(exc, profile.name)
                left = token.expires_in() or 0.0
                if wanted or min_valid is not None or code != SERVER_FAILURE or left <= 0:
                    raise
                # An early renewal that failed for a reason that may pass: the
                # token is still valid, and the library would keep sending it.
                click.echo(
                    f"eid-auth: the token could not be renewed ({message}); it is "
                    f"still valid for {math.floor(left)}s",
                    err=True,
                )
    return token
