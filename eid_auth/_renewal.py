"""How to get the next token: one small object per grant, called by the coordinator.

The refresh coordination (``eid_auth._refresh``) decides *when* a token is
renewed and makes sure one renewal runs at a time, in every thread, task,
process and machine sharing a store. *How* is asked of a ``Renewal``:

- ``RefreshTokenRenewal``: the refresh grant, with the refresh token the store
  holds; without one there is nothing to renew with.
- ``ClientCredentialsRenewal`` and ``PasswordRenewal``: the refresh grant first
  when the last answer carried a refresh token, and the original grant when
  there is none or the server refuses it (``invalid_grant``).

A renewal holds its grant's credentials (a password among them) in memory
only: the store keeps tokens, never how to get them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ._exceptions import ConfigurationError, InvalidGrantError
from ._token import Token
from ._token_endpoint import Adapter, TokenEndpoint, basic_credentials

__all__ = [
    "ClientCredentialsRenewal",
    "PasswordRenewal",
    "RefreshTokenRenewal",
    "Renewal",
    "password_grant",
]

logger = logging.getLogger("eid_auth")

UserCredentials = Literal["basic", "body"]


class Renewal(Protocol):
    """How to get the next token, for the refresh coordination.

    Attributes:
        grant_type: the grant that issues the first token (for messages).
        needs_refresh_token: True when there is no way to a new token without a
            refresh token (the refresh grant alone); the coordinator then asks
            for one instead of calling ``next_token``.
    """

    @property
    def grant_type(self) -> str: ...

    @property
    def needs_refresh_token(self) -> bool: ...

    def next_token(
        self,
        endpoint: TokenEndpoint,
        refresh_token: str | None,
        adapter: Adapter,
        keep_refresh_token: Callable[[str], None],
    ) -> Token:
        """A new token, from ``refresh_token`` (the newest one stored) or anew.

        ``keep_refresh_token`` is called with a rotated refresh token found in an
        otherwise unusable answer, so that it is stored before anything else.

        Raises:
            InvalidGrantError: the server refused the grant that was tried last.
            TokenEndpointError, TokenEndpointUnavailableError: as the token
                endpoint raises them.
        """
        ...


@dataclass(frozen=True)
class RefreshTokenRenewal:
    """The refresh grant (RFC 6749 section 6) with the stored refresh token.

    Example:
        >>> RefreshTokenRenewal(scope="api")
        RefreshTokenRenewal(scope='api')
    """

    scope: str | None = None
    grant_type: str = field(default="refresh_token", init=False, repr=False)
    needs_refresh_token: bool = field(default=True, init=False, repr=False)

    def next_token(
        self,
        endpoint: TokenEndpoint,
        refresh_token: str | None,
        adapter: Adapter,
        keep_refresh_token: Callable[[str], None],
    ) -> Token:
        assert refresh_token is not None  # needs_refresh_token: checked by the caller
        logger.debug("refreshing the access token at %s", endpoint.url)
        return endpoint.refresh(refresh_token, adapter, keep_refresh_token, scope=self.scope)


def _refresh_first(
    endpoint: TokenEndpoint,
    refresh_token: str | None,
    adapter: Adapter,
    keep_refresh_token: Callable[[str], None],
    scope: str | None,
    grant: str,
) -> Token | None:
    """The refresh grant when there is a refresh token; None when there is none
    or the server refused it, so that the original grant runs instead."""
    if refresh_token is None:
        return None
    logger.debug("refreshing the access token at %s", endpoint.url)
    try:
        return endpoint.refresh(refresh_token, adapter, keep_refresh_token, scope=scope)
    except InvalidGrantError:
        logger.info(
            "the refresh token was refused (invalid_grant); running the %s grant instead", grant
        )
        return None


@dataclass(frozen=True)
class ClientCredentialsRenewal:
    """The client credentials grant, renewed by itself: a token for the application.

    Args:
        scope: the scope to ask for.
        username: EmpowerID's extension: the token is issued for this person.

    Example:
        >>> ClientCredentialsRenewal(scope="api")
        ClientCredentialsRenewal(scope='api', username=None)
    """

    scope: str | None = None
    username: str | None = None
    grant_type: str = field(default="client_credentials", init=False, repr=False)
    needs_refresh_token: bool = field(default=False, init=False, repr=False)

    def next_token(
        self,
        endpoint: TokenEndpoint,
        refresh_token: str | None,
        adapter: Adapter,
        keep_refresh_token: Callable[[str], None],
    ) -> Token:
        token = _refresh_first(
            endpoint, refresh_token, adapter, keep_refresh_token, self.scope, "client credentials"
        )
        if token is not None:
            return token
        logger.debug("requesting an access token (client credentials) at %s", endpoint.url)
        return endpoint.request_token(
            "client_credentials",
            {"scope": self.scope, "username": self.username},
            adapter,
            keep_refresh_token=keep_refresh_token,
        )


@dataclass(frozen=True)
class PasswordRenewal:
    """The resource owner password grant, renewed by itself.

    The password stays in this object's memory: it is never stored in a token
    store and never printed (its repr leaves it out).

    Args:
        username, password: the person's credentials.
        scope: the scope to ask for.
        user_credentials: ``"basic"`` (EmpowerID's form) or ``"body"`` (RFC 6749's).

    Example:
        >>> PasswordRenewal("jdoe", "correct horse", scope="openid")
        PasswordRenewal(username='jdoe', scope='openid', user_credentials='basic')
    """

    username: str
    password: str = field(repr=False)
    scope: str | None = None
    user_credentials: UserCredentials = "basic"
    grant_type: str = field(default="password", init=False, repr=False)
    needs_refresh_token: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_password_grant(self.username, self.password, self.user_credentials)

    def next_token(
        self,
        endpoint: TokenEndpoint,
        refresh_token: str | None,
        adapter: Adapter,
        keep_refresh_token: Callable[[str], None],
    ) -> Token:
        token = _refresh_first(
            endpoint, refresh_token, adapter, keep_refresh_token, self.scope, "password"
        )
        if token is not None:
            return token
        logger.debug("requesting an access token (password) at %s", endpoint.url)
        return password_grant(
            endpoint,
            self.username,
            self.password,
            self.scope,
            adapter,
            user_credentials=self.user_credentials,
            keep_refresh_token=keep_refresh_token,
        )


def password_grant(
    endpoint: TokenEndpoint,
    username: str,
    password: str,
    scope: str | None,
    adapter: Adapter,
    *,
    user_credentials: UserCredentials = "basic",
    keep_refresh_token: Callable[[str], None] | None = None,
) -> Token:
    """Send the password grant: EmpowerID's form puts the person's credentials in
    HTTP Basic and the client's in the body; RFC 6749's (``"body"``) puts
    ``username`` and ``password`` in the body. The password is redacted from
    every message. ``EmpowerIDClient.password`` and ``PasswordRenewal`` both
    send it from here.

    Raises:
        ConfigurationError: an empty username or password, or another
            ``user_credentials``.
    """
    _check_password_grant(username, password, user_credentials)
    secrets = (password, *basic_credentials(username, password))
    if user_credentials == "body":
        return endpoint.request_token(
            "password",
            {"username": username, "password": password, "scope": scope},
            adapter,
            secrets=secrets,
            keep_refresh_token=keep_refresh_token,
        )
    # Latin-1 where it fits, as requests and httpx encode Basic; else UTF-8.
    basic = basic_credentials(username, password)[0]
    return endpoint.request_token(
        "password",
        {"scope": scope},
        adapter,
        secrets=secrets,
        headers={"Authorization": f"Basic {basic}"},
        client_auth="client_secret_post",
        keep_refresh_token=keep_refresh_token,
    )


def _check_password_grant(username: object, password: object, user_credentials: object) -> None:
    for name, value in (("username", username), ("password", password)):
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{name} must be a non-empty string")
    if user_credentials not in ("basic", "body"):
        raise ConfigurationError(
            f"user_credentials must be 'basic' or 'body', not {user_credentials!r}"
        )
