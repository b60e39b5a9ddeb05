"""``eid-auth logout``: revoke the sign-in, delete the token, show the logout address."""

from __future__ import annotations

import click

from .._client import EmpowerIDClient
from .._exceptions import EmpowerIDAuthError, EndpointError, TokenStoreError
from .._profiles import Profile
from ..stores._base import StoredToken, TokenStore
from ._exit import OK
from ._login import STORE_LOCK_TIMEOUT
from ._session import open_profile

__all__ = ["logout_profile"]


def logout_profile(name: str | None, *, local: bool) -> int:
    """Revoke (unless ``local``), delete, and print the server's logout URL on stdout.

    A failed revocation keeps the token (so that logout can be tried again)
    and raises; ``--local`` deletes without asking the server.
    """
    profile = open_profile(name)
    store = profile.store()
    with profile.client() as eid:
        # Under the store's lock: a renewal running in another process finishes
        # first, so the refresh token revoked is the current one, not one it has
        # just spent, and no renewal stores a token after it is deleted.
        with store.lock(timeout=STORE_LOCK_TIMEOUT):
            _revoke_and_delete(profile, store, eid, local=local)
        try:
            # No id_token_hint: the browser's own session cookie says whom to
            # sign out, and an ID token does not belong in a terminal.
            url = eid.logout_url()
        except EmpowerIDAuthError as exc:
            click.echo(f"(no logout address: {exc})", err=True)
            return OK
    click.echo("To end the EmpowerID session in your browser too, open:", err=True)
    click.echo(url)
    return OK


def _revoke_and_delete(
    profile: Profile, store: TokenStore, eid: EmpowerIDClient, *, local: bool
) -> None:
    """Revoke the stored grant (unless ``local``), then delete it; the caller holds
    the store's lock."""
    try:
        record = store.read()
    except TokenStoreError as exc:
        if not local:
            raise TokenStoreError(
                f"{exc}; nothing could be revoked: eid-auth logout --local deletes it"
            ) from exc
        click.echo(f"The stored token cannot be read ({exc}).", err=True)
    else:
        if record is None:
            click.echo(f"Profile {profile.name!r} is not signed in; nothing to revoke.", err=True)
        elif local:
            click.echo("Not revoked at the server (--local).", err=True)
        else:
            _revoke(profile, eid, record)
    store.clear()
    click.echo(f"Deleted the token ({profile.describe_store()}).", err=True)


def _revoke(profile: Profile, eid: EmpowerIDClient, record: StoredToken) -> None:
    if not profile.confidential:
        click.echo(
            "A public client cannot revoke tokens at EmpowerID (tokenrevoke needs the "
            "client secret): the token is deleted here, and stays valid at the server "
            "until it expires.",
            err=True,
        )
        return
    try:
        # Revoking the refresh token ends the grant and its access tokens.
        if record.refresh_token is not None:
            eid.revoke(record.refresh_token, "refresh_token")
        if record.token is not None and not record.token.is_expired():
            eid.revoke(record.token.access_token, "access_token")
    except EndpointError as exc:
        raise EndpointError(
            f"{exc}; the token is kept: run eid-auth logout again, or with --local "
            "to delete it without revoking",
            endpoint=exc.endpoint,
            status_code=exc.status_code,
            error=exc.error,
            error_description=exc.error_description,
        ) from exc
    click.echo("Revoked at the server.", err=True)
