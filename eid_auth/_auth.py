"""``EmpowerIDAuth``: the configuration, and the one object both adapters share."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from ._client import EmpowerIDClient
from ._config import check_number, token_endpoint_url
from ._config import token_endpoint as token_endpoint_config
from ._exceptions import ConfigurationError
from ._httpx_adapter import HTTPXAdapter
from ._libraries import ClientAuthClasses, default_library
from ._refresh import RefreshCoordinator
from ._renewal import (
    ClientCredentialsRenewal,
    PasswordRenewal,
    RefreshTokenRenewal,
    Renewal,
    UserCredentials,
)
from ._requests_adapter import RequestsAdapter
from ._token import Token
from ._token_endpoint import ClientAuthMethod, HTTPClient, TokenEndpoint
from .stores import MemoryTokenStore, TokenStore
from .stores._base import fingerprint

if TYPE_CHECKING:
    import httpx
    import httpx2
    import requests
    from aiohttp import ClientMiddlewareType as ClientMiddleware
    from typing_extensions import Self  # typing.Self is Python 3.11+

    # What type checkers see: the classes each library checks an auth= against.
    # At run time ClientAuthClasses gives the same isinstance() answers without
    # importing the libraries.
    class _ClientAuth(requests.auth.AuthBase, httpx.Auth, httpx2.Auth):  # type: ignore[misc]
        pass

else:
    _ClientAuth = ClientAuthClasses

__all__ = ["EmpowerIDAuth"]


class EmpowerIDAuth(RequestsAdapter, HTTPXAdapter, _ClientAuth):
    """Bearer auth for requests, httpx, httpx2 and aiohttp that runs EmpowerID's
    refresh grant by itself.

    One object works with ``requests``, ``httpx.Client`` and ``httpx.AsyncClient``,
    ``httpx2.Client`` and ``httpx2.AsyncClient``, and aiohttp (through
    ``aiohttp_middleware()``), and may be shared by many threads and event loops at
    once: however many callers find the token expired, one refresh grant is sent.

    Args:
        token_endpoint: the token endpoint URL, e.g.
            ``"https://eid.example.com/oauth/v2/token"``.
        server: instead of ``token_endpoint``: ``"https://eid.example.com"``
            means ``"https://eid.example.com/oauth/v2/token"``.
        client: instead of ``token_endpoint``/``server``, ``client_id``,
            ``client_secret``, ``client_auth``, ``api_key``, ``timeout``,
            ``max_retries``, ``backoff_factor`` and ``token_client``: an
            ``EmpowerIDClient`` holding them (a public client, without a secret,
            may run the refresh grant).
        client_id: the OAuth application's client ID.
        client_secret: the OAuth application's client secret.
        refresh_token: the refresh token to start from.
        access_token: an access token to use until it expires (optional).
        expires_at: when ``access_token`` expires, as a Unix timestamp.
        token: instead of the three above, a saved ``Token`` (or its
            ``to_dict()`` form) to resume from.
        scope: sent with the refresh grant to narrow the scope (optional).
        client_auth: ``"client_secret_post"`` (credentials in the form body,
            as EmpowerID documents) or ``"client_secret_basic"`` (HTTP Basic).
        api_key: sent as ``X-EmpowerID-API-Key`` on token and API requests.
        leeway: refresh this many seconds before expiry (at most half of the
            token's lifetime).
        on_refresh: called with the new ``Token`` after every refresh, to
            persist the rotated refresh token.
        timeout: seconds for each token request; always applies.
        max_retries: retries of a token request after a transient failure
            (no answer, 5xx, 429).
        backoff_factor: the first retry waits about this many seconds, each
            next one twice as long (with jitter); ``Retry-After`` is honoured.
        token_client: the ``requests.Session``, ``httpx.Client``, ``httpx2.Client``
            or ``aiohttp.ClientSession`` to send token requests with (proxies, TLS
            settings, transports, mocks). By default a private one of the library
            of the request being signed, configured from the environment.
        store: where the token lives, shared with every process using the same
            store (``eid_auth.stores``): ``FileTokenStore(path)`` for the
            processes of one machine, ``RedisTokenStore`` for many machines.
            By default the token stays in this object's memory. With a store,
            ``refresh_token=``/``token=`` only seed an empty store (a store that
            holds a token wins) and may be left out once the store is seeded.

    For grants that issue no refresh token, or whose token should be renewed
    by running the grant again, see ``EmpowerIDAuth.client_credentials()`` and
    ``EmpowerIDAuth.password()``.

    Raises:
        ConfigurationError: when the arguments cannot work; the message says why.

    Example:
        >>> import requests
        >>> auth = EmpowerIDAuth(
        ...     server="https://eid.example.com",
        ...     client_id="my-app", client_secret="s3cret", refresh_token="rt-123",
        ... )
        >>> auth
        EmpowerIDAuth(token_endpoint='https://eid.example.com/oauth/v2/token', client_id='my-app', client_auth='client_secret_post', token=None)
        >>> session = requests.Session()
        >>> session.auth = auth  # every request now carries a fresh Bearer token

        With an ``EmpowerIDClient`` holding the application's settings:

        >>> from eid_auth import EmpowerIDClient
        >>> eid = EmpowerIDClient(server="https://eid.example.com", client_id="my-app")
        >>> EmpowerIDAuth(client=eid, refresh_token="rt-123")
        EmpowerIDAuth(token_endpoint='https://eid.example.com/oauth/v2/token', client_id='my-app', client_auth='none', token=None)
    """  # noqa: E501

    def __init__(
        self,
        *,
        token_endpoint: str | None = None,
        server: str | None = None,
        client: EmpowerIDClient | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        refresh_token: str | None = None,
        access_token: str | None = None,
        expires_at: float | None = None,
        token: Token | Mapping[str, Any] | None = None,
        scope: str | None = None,
        client_auth: ClientAuthMethod | None = None,
        api_key: str | None = None,
        leeway: float = 60.0,
        on_refresh: Callable[[Token], object] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        backoff_factor: float | None = None,
        token_client: HTTPClient | None = None,
        store: TokenStore | None = None,
    ) -> None:
        """Bearer auth renewed by the refresh grant; see the class's help for the arguments."""
        endpoint, api_key = _token_endpoint(
            client,
            token_endpoint=token_endpoint,
            server=server,
            client_id=client_id,
            client_secret=client_secret,
            client_auth=client_auth,
            scope=scope,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            token_client=token_client,
            secret_required=True,
        )
        initial = _initial_token(
            token, refresh_token, access_token, expires_at, required=store is None
        )
        self._setup(
            endpoint,
            RefreshTokenRenewal(scope),
            api_key=api_key,
            seed=initial,
            store=store,
            leeway=leeway,
            on_refresh=on_refresh,
        )

    @classmethod
    def client_credentials(
        cls,
        *,
        token_endpoint: str | None = None,
        server: str | None = None,
        client: EmpowerIDClient | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        scope: str | None = None,
        username: str | None = None,
        client_auth: ClientAuthMethod | None = None,
        api_key: str | None = None,
        leeway: float = 60.0,
        on_refresh: Callable[[Token], object] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        backoff_factor: float | None = None,
        token_client: HTTPClient | None = None,
        store: TokenStore | None = None,
    ) -> Self:
        """Bearer auth with the client credentials grant, renewed by itself.

        The first request gets a token; when it expires (or a 401 comes back)
        the refresh grant runs if the answer carried a refresh token, else (or
        when that is refused) the client credentials grant runs again. Once
        per expiry, however many threads, tasks, processes and machines share
        ``store``: a fleet of workers shares one token.

        Args:
            scope: the scope to ask for.
            username: EmpowerID's extension: the token is issued for this person
                (the application needs "Enable Client Credential Flow").
            The others: as for ``EmpowerIDAuth()``; a client secret is required.

        Example:
            >>> auth = EmpowerIDAuth.client_credentials(
            ...     server="https://eid.example.com",
            ...     client_id="my-service", client_secret="s3cret", scope="api",
            ... )
            >>> auth.token is None  # fetched by the first request
            True
        """
        for name, value in (("scope", scope), ("username", username)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(f"{name} must be a non-empty string or None")
        endpoint, api_key = _token_endpoint(
            client,
            token_endpoint=token_endpoint,
            server=server,
            client_id=client_id,
            client_secret=client_secret,
            client_auth=client_auth,
            scope=scope,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            token_client=token_client,
            secret_required=True,
        )
        if endpoint.client_auth == "none":
            raise ConfigurationError(
                "the client credentials grant needs a confidential client: give the "
                "EmpowerIDClient a client_secret"
            )
        renewal = ClientCredentialsRenewal(scope, username)
        auth = cls.__new__(cls)
        auth._setup(
            endpoint,
            renewal,
            api_key=api_key,
            seed=None,
            store=store,
            leeway=leeway,
            on_refresh=on_refresh,
            grant=_grant_name("client_credentials", username, scope),
        )
        return auth

    @classmethod
    def password(
        cls,
        *,
        username: str,
        password: str,
        user_credentials: UserCredentials = "basic",
        token_endpoint: str | None = None,
        server: str | None = None,
        client: EmpowerIDClient | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        scope: str | None = None,
        client_auth: ClientAuthMethod | None = None,
        api_key: str | None = None,
        leeway: float = 60.0,
        on_refresh: Callable[[Token], object] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        backoff_factor: float | None = None,
        token_client: HTTPClient | None = None,
        store: TokenStore | None = None,
    ) -> Self:
        """Bearer auth with the resource owner password grant, renewed by itself.

        RFC 9700 says not to use this grant: prefer a browser or device sign-in
        where a person is at hand. The first request signs in; when the token
        expires (or a 401 comes back) the refresh grant runs with the refresh
        token the answer carried, and the password grant runs again when there
        is none or it is refused. The password stays in this object's memory:
        it is never written to ``store`` and never printed. A refused password
        (``invalid_grant``) is not sent again for a minute, by any process
        sharing ``store``, so that retries cannot lock the account.

        Args:
            username, password: the person's credentials.
            user_credentials: ``"basic"`` (EmpowerID's form: the person's
                credentials in HTTP Basic, the client's in the form body) or
                ``"body"`` (RFC 6749's form).
            scope: the scope to ask for.
            The others: as for ``EmpowerIDAuth()``; a public client (no
            secret) is allowed.

        Example:
            >>> auth = EmpowerIDAuth.password(
            ...     server="https://eid.example.com", client_id="my-app",
            ...     client_secret="s3cret", username="jdoe", password="correct horse",
            ... )
            >>> auth  # never the password
            EmpowerIDAuth(token_endpoint='https://eid.example.com/oauth/v2/token', client_id='my-app', client_auth='client_secret_post', grant='password', token=None)
        """  # noqa: E501
        renewal = PasswordRenewal(username, password, scope, user_credentials)
        endpoint, api_key = _token_endpoint(
            client,
            token_endpoint=token_endpoint,
            server=server,
            client_id=client_id,
            client_secret=client_secret,
            client_auth=client_auth,
            scope=scope,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            token_client=token_client,
            secret_required=False,
        )
        auth = cls.__new__(cls)
        auth._setup(
            endpoint,
            renewal,
            api_key=api_key,
            seed=None,
            store=store,
            leeway=leeway,
            on_refresh=on_refresh,
            grant=_grant_name("password", username, scope),
        )
        return auth

    def _setup(
        self,
        endpoint: TokenEndpoint,
        renewal: Renewal,
        *,
        api_key: str | None,
        seed: Token | str | None,
        store: TokenStore | None,
        leeway: float,
        on_refresh: Callable[[Token], object] | None,
        grant: str | None = None,
    ) -> None:
        check_number("leeway", leeway, minimum=0.0)
        if on_refresh is not None and not callable(on_refresh):
            raise ConfigurationError("on_refresh must be callable or None")
        if inspect.iscoroutinefunction(on_refresh):
            raise ConfigurationError(
                "on_refresh must be a plain function: it runs on the refreshing thread, "
                "where nothing would await a coroutine"
            )
        if store is not None and not isinstance(store, TokenStore):
            raise ConfigurationError(
                "store must be an eid_auth.stores.TokenStore (MemoryTokenStore, "
                f"FileTokenStore, RedisTokenStore), not {type(store).__name__}"
            )
        self._api_key = api_key
        self._endpoint = endpoint
        self._renewal = renewal
        self._store = MemoryTokenStore() if store is None else store
        self._coordinator = RefreshCoordinator(
            endpoint=self._endpoint,
            store=self._store,
            seed=seed,
            shared=store is not None,
            leeway=float(leeway),
            on_refresh=on_refresh,
            renewal=renewal,
            grant=grant,
        )

    def __repr__(self) -> str:
        """The token endpoint, client ID, client authentication and token, never a secret."""
        grant = self._renewal.grant_type
        return (
            f"EmpowerIDAuth(token_endpoint={self._endpoint.url!r}, "
            f"client_id={self._endpoint.client_id!r}, "
            f"client_auth={self._endpoint.client_auth!r}, "
            f"{'' if grant == 'refresh_token' else f'grant={grant!r}, '}"
            f"token={self.token!r})"
        )

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        """Refused with a message saying what to do instead: an auth holds locks,
        threads and HTTP clients, which cannot travel to another process."""
        raise TypeError(
            "an EmpowerIDAuth cannot be pickled (it holds locks, threads and HTTP "
            "clients): in the other process, build one with the same settings, and "
            "share the token through a store (FileTokenStore, RedisTokenStore)"
        )

    def __copy__(self) -> Self:
        """A second handle on the same token, flight and clients (a shallow copy)."""
        twin = type(self).__new__(type(self))
        twin.__dict__.update(self.__dict__)
        return twin

    @property
    def token_endpoint(self) -> str:
        """The token endpoint URL refresh grants are sent to."""
        return self._endpoint.url

    @property
    def store(self) -> TokenStore:
        """Where the token lives (a private ``MemoryTokenStore`` unless ``store=`` was given)."""
        return self._store

    @property
    def token(self) -> Token | None:
        """The current token, or None before the first refresh (or, with a
        ``store=``, before the first request reads the store)."""
        return self._coordinator.token

    def refresh(self) -> Token:
        """Run the refresh grant now and return the new token (for an auth made by
        ``client_credentials()`` or ``password()``: the refresh grant where there
        is a refresh token, that grant otherwise).

        Threads and tasks that need a token meanwhile wait for this refresh
        instead of sending their own.

        Raises:
            InvalidGrantError: the refresh token is no longer valid.
            TokenEndpointError: the token endpoint refused for another reason.
            TokenEndpointUnavailableError: no usable answer after retries.
            MissingRefreshTokenError: there is no refresh token.

        Example:
            >>> token = auth.refresh()  # doctest: +SKIP
            >>> save(token.to_dict())  # doctest: +SKIP
        """
        return self._coordinator.replace(self._coordinator.token, default_library())

    async def arefresh(self) -> Token:
        """Like ``refresh()``, for asyncio code; the event loop is never blocked."""
        return await self._coordinator.replace_async(self._coordinator.token, default_library())

    def aiohttp_middleware(self) -> ClientMiddleware:
        """A client middleware for aiohttp (3.12 or newer): the same rules as with
        requests and httpx, sharing this object's token and single flight.

        Each request gets ``Authorization: Bearer`` (and the API key), the token
        is renewed ahead of expiry, and a 401 to our token costs one refresh and
        one re-send of the request, unless its body cannot be sent again (an
        async generator, a pipe): that 401 is returned. A 403 never refreshes.
        aiohttp runs middlewares for each redirect hop too: a hop to another
        origin, and every hop after it, goes without the token and the API key.
        Cookies the 401 sets go with the re-send when the session's cookie jar
        takes them.

        Token requests go through a private ``aiohttp.ClientSession`` on an event
        loop thread of eid_auth's own (closed by ``close()``/``aclose()``), or
        through ``token_client=aiohttp.ClientSession(...)``, which must then be
        used on its own running loop.

        Give it to the session (``ClientSession(middlewares=[...])``) or to single
        requests (``session.get(url, middlewares=(...))``).

        Example:
            >>> import aiohttp  # doctest: +SKIP
            >>> async with aiohttp.ClientSession(  # doctest: +SKIP
            ...     middlewares=[auth.aiohttp_middleware()]
            ... ) as session:
            ...     async with session.get("https://eid.example.com/api/whoami") as r:
            ...         print(r.status)
            200
        """
        from ._aiohttp_adapter import middleware

        return middleware(self)

    @classmethod
    def from_profile(cls, name: str | None = None) -> Self:
        """Bearer auth for a profile signed in with ``eid-auth login``: its server, its
        application and its token store, shared with the command line and with every
        process using the profile (one refresh grant between them).

        Args:
            name: the profile; ``None`` means ``$EID_PROFILE``, else ``"default"``.

        Raises:
            ConfigurationError: no such profile, the profile is not signed in, or the
                variable or keyring entry holding its client secret is missing; the
                message says which ``eid-auth login --profile NAME`` to run.

        Example:
            >>> auth = EmpowerIDAuth.from_profile()  # doctest: +SKIP
            >>> requests.get("https://eid.example.com/api/...", auth=auth)  # doctest: +SKIP
            >>> auth = EmpowerIDAuth.from_profile("work")  # doctest: +SKIP
        """
        from ._profiles import auth_from_profile

        return auth_from_profile(cls, name)

    @classmethod
    def from_env(cls) -> Self:
        """Bearer auth described by ``EID_*`` environment variables (containers, CI).

        ``EID_SERVER`` or ``EID_TOKEN_ENDPOINT``, ``EID_CLIENT_ID`` (required);
        ``EID_CLIENT_SECRET`` (required for client_credentials; leave it out for a
        public client); ``EID_CLIENT_AUTH``; ``EID_SCOPE``; ``EID_GRANT``:
        ``refresh_token`` (default), ``client_credentials`` or ``password``;
        ``EID_REFRESH_TOKEN`` (refresh_token, unless ``EID_TOKEN_STORE`` already holds
        a token); ``EID_USERNAME`` and ``EID_PASSWORD`` (password; ``EID_USERNAME`` is
        EmpowerID's username for client_credentials); ``EID_API_KEY``;
        ``EID_TOKEN_STORE``: a token file path or a ``redis://`` / ``rediss://`` URL
        (key: ``EID_TOKEN_STORE_KEY``, default ``"<client_id>:<grant>[:<username>]"``).
        With none of ``EID_SERVER``, ``EID_TOKEN_ENDPOINT`` and ``EID_CLIENT_ID`` set
        and ``EID_PROFILE`` set, this is ``from_profile(EID_PROFILE)``.

        Raises:
            ConfigurationError: one error naming every missing or wrong variable
                (never a value).

        Example:
            >>> # EID_SERVER=https://eid.example.com EID_CLIENT_ID=svc EID_CLIENT_SECRET=...
            >>> # EID_GRANT=client_credentials EID_SCOPE=api
            >>> auth = EmpowerIDAuth.from_env()  # doctest: +SKIP
        """
        from ._env import auth_from_env

        return auth_from_env(cls)

    def close(self) -> None:
        """Close the HTTP clients created for token requests (never ``token_client``).

        A refresh in progress (one running behind requests, say) is waited for
        first, at most as long as a refresh can take (``timeout`` per attempt,
        with retries): cutting it off could lose the rotated refresh token it
        brings. In asyncio code, use ``await auth.aclose()``.
        """
        self._coordinator.wait_for_refresh()
        self._endpoint.close()

    async def aclose(self) -> None:
        """Like ``close()``, for asyncio code: waits without blocking the event loop."""
        await self._coordinator.wait_for_refresh_async()
        self._endpoint.close()

    def __enter__(self) -> Self:
        """``with EmpowerIDAuth(...) as auth:`` closes it at the end, like ``close()``."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close it at the end of the ``with`` block, like ``close()``."""
        self.close()

    async def __aenter__(self) -> Self:
        """``async with EmpowerIDAuth(...) as auth:`` closes it with ``aclose()``."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close it at the end of the ``async with`` block, like ``aclose()``."""
        await self.aclose()


def _token_endpoint(
    client: EmpowerIDClient | None,
    *,
    token_endpoint: str | None,
    server: str | None,
    client_id: str | None,
    client_secret: str | None,
    client_auth: ClientAuthMethod | None,
    scope: str | None,
    api_key: str | None,
    timeout: float | None,
    max_retries: int | None,
    backoff_factor: float | None,
    token_client: HTTPClient | None,
    secret_required: bool,
) -> tuple[TokenEndpoint, str | None]:
    """The token endpoint and API key: ``client``'s, or built from the keywords
    (``secret_required`` applies to these: a public client is made with ``client=``)."""
    if client is None:
        if client_id is None:
            raise ConfigurationError("give client_id= (or client= an EmpowerIDClient)")
        endpoint = token_endpoint_config(
            url=token_endpoint_url(token_endpoint, server),
            client_id=client_id,
            client_secret=client_secret,
            client_auth="client_secret_post" if client_auth is None else client_auth,
            scope=scope,
            api_key=api_key,
            timeout=30.0 if timeout is None else timeout,
            max_retries=2 if max_retries is None else max_retries,
            backoff_factor=0.5 if backoff_factor is None else backoff_factor,
            token_client=token_client,
            secret_required=secret_required,
        )
        return endpoint, api_key
    if not isinstance(client, EmpowerIDClient):
        raise ConfigurationError(
            f"client must be an eid_auth.EmpowerIDClient, not {type(client).__name__}"
        )
    given = {
        "token_endpoint": token_endpoint,
        "server": server,
        "client_id": client_id,
        "client_secret": client_secret,
        "client_auth": client_auth,
        "api_key": api_key,
        "timeout": timeout,
        "max_retries": max_retries,
        "backoff_factor": backoff_factor,
        "token_client": token_client,
    }
    twice = [name for name, value in given.items() if value is not None]
    if twice:
        raise ConfigurationError(
            f"{', '.join(f'{name}=' for name in twice)} belong to the EmpowerIDClient given "
            "as client=; set them there"
        )
    return client._endpoint, client._api_key


def _grant_name(grant_type: str, username: str | None, scope: str | None) -> str:
    """What names a grant's tokens in a store (``StoredToken.grant``): its type, and
    a fingerprint of the username and scope it asks for."""
    asked = fingerprint("\0".join((grant_type, username or "", scope or "")))
    return f"{grant_type}:{asked[:32]}"


def _initial_token(
    token: Token | Mapping[str, Any] | None,
    refresh_token: str | None,
    access_token: str | None,
    expires_at: float | None,
    *,
    required: bool,
) -> Token | str | None:
    """The starting point: a ``Token``, or just a refresh token to redeem first
    (``None``: a store must already hold the token)."""
    if token is not None:
        if refresh_token is not None or access_token is not None or expires_at is not None:
            raise ConfigurationError(
                "give either token= or refresh_token=/access_token=/expires_at=, not both"
            )
        return token if isinstance(token, Token) else Token.from_dict(token)
    if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
        raise ConfigurationError("refresh_token must be a non-empty string")
    if access_token is not None:
        return Token(access_token=access_token, expires_at=expires_at, refresh_token=refresh_token)
    if expires_at is not None:
        raise ConfigurationError("expires_at needs access_token= (it is that token's expiry)")
    if refresh_token is None and required:
        raise ConfigurationError(
            "give refresh_token= (or access_token=, or token= with a saved Token): "
            "without one there is nothing to authenticate with"
        )
    return refresh_token
