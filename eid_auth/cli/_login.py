"""``eid-auth login``: a person signs in (browser or device), and the profile
and its token are saved where the command line and ``from_profile()`` find them."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import click

from .._client import EmpowerIDClient
from .._exceptions import ConfigurationError, EmpowerIDAuthError, TokenStoreError
from .._profiles import (
    APP_NAME,
    TOKEN_PATH,
    Profile,
    hide_value,
    load_profiles,
    profile_name,
    save_profile,
)
from .._token import Token
from ..stores._base import StoredToken, TokenStore, fingerprint

__all__ = ["LoginRequest", "browser_available", "login"]

DEFAULT_SCOPE = "openid profile"
# Longest wait for another process holding the token store's lock (its refresh).
STORE_LOCK_TIMEOUT = 160.0


@dataclass(frozen=True)
class LoginRequest:
    """What ``eid-auth login`` was asked; ``None``: keep the profile's setting."""

    profile: str | None
    server: str | None
    client_id: str | None
    scope: str | None
    device: bool
    no_browser: bool
    port: int
    client_secret_env: str | None
    client_secret_keyring: bool
    public_client: bool
    client_auth: str | None
    api_key_env: str | None
    token_store: str | None
    timeout: float


def login(request: LoginRequest) -> tuple[Profile, Token, str | None]:
    """Sign in, store the token, save the profile; returns who signed in when
    the server says (userinfo)."""
    old = load_profiles().get(profile_name(request.profile))
    profile = _profile(request, old)
    with profile.client() as eid:
        token = _sign_in(eid, profile, request)
        _store(profile.store(), eid, token)
        save_profile(profile)
        if old is not None and old.token_store != profile.token_store:
            _forget_old_store(old)
        return profile, token, _who(eid, token)


def _profile(request: LoginRequest, old: Profile | None) -> Profile:
    name = profile_name(request.profile)
    server = request.server or (old.server if old else None)
    client_id = request.client_id or (old.client_id if old else None)
    if not server or not client_id:
        missing = " and ".join(
            option
            for option, value in (("--server URL", server), ("--client-id ID", client_id))
            if not value
        )
        raise click.UsageError(f"profile {name!r} is new: give {missing}")
    if request.server:
        # Checked and normalised as the library does (https, no /oauth path...);
        # the profile keeps the base URL the token endpoint is built from.
        try:
            endpoint = EmpowerIDClient(server=server, client_id=client_id).token_endpoint
        except ConfigurationError as exc:
            raise click.BadParameter(hide_value(str(exc), server), param_hint="--server") from None
        server = endpoint[: -len(TOKEN_PATH)]
    secret_env = old.client_secret_env if old else None
    secret_keyring = old.client_secret_keyring if old else False
    if request.public_client:
        secret_env, secret_keyring = None, False
    elif request.client_secret_keyring:
        secret_env, secret_keyring = None, True
    elif request.client_secret_env:
        secret_env, secret_keyring = request.client_secret_env, False
    profile = Profile(
        name=name,
        server=server,
        client_id=client_id,
        scope=request.scope or (old.scope if old else DEFAULT_SCOPE),
        client_auth=request.client_auth or (old.client_auth if old else "client_secret_post"),
        client_secret_env=secret_env,
        client_secret_keyring=secret_keyring,
        api_key_env=request.api_key_env or (old.api_key_env if old else None),
        token_store=request.token_store or (old.token_store if old else "file"),
    )
    if request.client_secret_keyring:
        _keep_secret_in_keyring(profile, request.client_secret_env)
    return profile


def _keep_secret_in_keyring(profile: Profile, variable: str | None) -> None:
    """Put the client secret in the keyring: from ``variable`` when given, else
    asked for on the terminal when the keyring has none yet."""
    from ..stores._keyring import get_secret, set_secret

    if variable is not None:
        secret = os.environ.get(variable)
        if not secret:
            raise click.BadParameter(
                f"the environment variable {variable} is not set", param_hint="--client-secret-env"
            )
    elif get_secret(APP_NAME, profile.secret_entry):
        return
    elif sys.stdin.isatty():
        secret = click.prompt("Client secret (kept in the OS keyring)", hide_input=True)
    else:
        raise click.UsageError(
            "the OS keyring has no client secret for this profile yet: run this on a "
            "terminal, or give --client-secret-env VAR to copy it from a variable"
        )
    set_secret(APP_NAME, profile.secret_entry, secret)


def _sign_in(eid: EmpowerIDClient, profile: Profile, request: LoginRequest) -> Token:
    scope = profile.scope
    if request.device:
        return eid.login_with_device(scope)
    if request.no_browser:
        # The address is printed; the person opens it in a browser on this
        # machine (or through an SSH tunnel to the listening port).
        return eid.login_in_browser(
            scope, port=request.port, timeout=request.timeout, open_browser=lambda url: False
        )
    why_not = browser_available()
    if why_not is not None:
        click.echo(
            f"No browser can be opened here ({why_not}): signing in on another device "
            "instead (--no-browser prints an address to open on this machine).",
            err=True,
        )
        return eid.login_with_device(scope)
    return eid.login_in_browser(scope, port=request.port, timeout=request.timeout)


def browser_available() -> str | None:
    """``None`` when a browser can be opened here, else why not."""
    if os.environ.get("BROWSER"):
        return None
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not display:
        return "no DISPLAY or WAYLAND_DISPLAY"
    if not sys.platform.startswith("linux") and os.environ.get("SSH_CONNECTION"):
        return "an SSH session"
    import webbrowser

    try:
        webbrowser.get()
    except webbrowser.Error:
        return "no browser found"
    return None


def _store(store: TokenStore, eid: EmpowerIDClient, token: Token) -> None:
    """Replace the profile's token with the new sign-in's, under the store's lock,
    as a newer generation: processes using the old one move to it."""
    with store.lock(timeout=STORE_LOCK_TIMEOUT):
        try:
            old = store.read()
        except TokenStoreError:
            old = None  # a damaged record: the new sign-in replaces it
        seeds = () if token.refresh_token is None else (fingerprint(token.refresh_token),)
        store.write(
            StoredToken(
                client_id=eid.client_id,
                token_endpoint=eid.token_endpoint,
                generation=1 if old is None else old.generation + 1,
                token=token,
                refresh_token=token.refresh_token,
                seeds=seeds,
            )
        )


def _forget_old_store(old: Profile) -> None:
    """Delete the token of the store the profile no longer uses: a refresh token
    must not stay behind in clear in a token file once it moves to the keyring."""
    try:
        store = old.store()
        with store.lock(timeout=STORE_LOCK_TIMEOUT):
            store.clear()
    except (EmpowerIDAuthError, OSError) as exc:
        click.echo(
            f"eid-auth: the previous token could not be deleted from {old.describe_store()} "
            f"({exc}): delete it yourself",
            err=True,
        )


def _who(eid: EmpowerIDClient, token: Token) -> str | None:
    try:
        answer = eid.userinfo(token.access_token)
    except EmpowerIDAuthError:
        return None  # only for the message
    name = answer.get("username") or answer.get("email") or answer.get("sub")
    return name if isinstance(name, str) else None
