"""``EmpowerIDAuth``: the configuration, and the one object both adapters share."""

from __future__ import annotations

import inspect
import ipaddress
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, get_args
from urllib.parse import urlsplit

import httpx
import requests

from ._exceptions import ConfigurationError
from ._httpx_adapter import HTTPXAdapter
from ._refresh import RefreshCoordinator
from ._requests_adapter import RequestsAdapter
from ._token import Token
from ._token_endpoint import ClientAuthMethod, HTTPClient, TokenEndpoint
from .stores import MemoryTokenStore, TokenStore

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11+

__all__ = ["EmpowerIDAuth"]

TOKEN_PATH = "/oauth/v2/token"


class EmpowerIDAuth(RequestsAdapter, HTTPXAdapter):
    """Bearer auth for requests and httpx that runs EmpowerID's refresh grant by itself.

    One object works with ``requests``, ``httpx.Client`` and ``httpx.AsyncClient``,
    and may be shared by many threads and an event loop at once: however many
    callers find the token expired, one refresh grant is sent.

    Args:
        token_endpoint: the token endpoint URL, e.g.
            ``"https://eid.example.com/oauth/v2/token"``.
        server: instead of ``token_endpoint``: ``"https://eid.example.com"``
            means ``"https://eid.example.com/oauth/v2/token"``.
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
        token_client: the ``requests.Session`` or ``httpx.Client`` to send token
            requests with (proxies, TLS settings, transports, mocks). By default
            a private one of the calling library, configured from the environment.
        store: where the token lives, shared with every process using the same
            store (``eid_auth.stores``): ``FileTokenStore(path)`` for the
            processes of one machine, ``RedisTokenStore`` for many machines.
            By default the token stays in this object's memory. With a store,
            ``refresh_token=``/``token=`` only seed an empty store (a store that
            holds a token wins) and may be left out once the store is seeded.

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
    """  # noqa: E501

    def __init__(
        self,
        *,
        token_endpoint: str | None = None,
        server: str | None = None,
        client_id: str,
        client_secret: str,
        refresh_token: str | None = None,
        access_token: str | None = None,
        expires_at: float | None = None,
        token: Token | Mapping[str, Any] | None = None,
        scope: str | None = None,
        client_auth: ClientAuthMethod = "client_secret_post",
        api_key: str | None = None,
        leeway: float = 60.0,
        on_refresh: Callable[[Token], object] | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        backoff_factor: float = 0.5,
        token_client: HTTPClient | None = None,
        store: TokenStore | None = None,
    ) -> None:
        url = _token_endpoint_url(token_endpoint, server)
        for name, value in (("client_id", client_id), ("client_secret", client_secret)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{name} must be a non-empty string")
        if client_auth not in get_args(ClientAuthMethod):
            raise ConfigurationError(
                f"client_auth must be 'client_secret_post' or 'client_secret_basic', "
                f"not {client_auth!r}"
            )
        if api_key is not None and (
            not isinstance(api_key, str) or not api_key or not _is_header_safe(api_key)
        ):
            raise ConfigurationError(
                "api_key must be a non-empty string of printable ASCII characters, or None"
            )
        if client_auth == "client_secret_basic" and not all(
            _is_latin1(v) for v in (client_id, client_secret)
        ):
            raise ConfigurationError(
                "client_secret_basic needs client_id and client_secret in Latin-1 characters "
                "(HTTP Basic); use client_auth='client_secret_post' for others"
            )
        _check_number("leeway", leeway, minimum=0.0)
        _check_number("timeout", timeout, minimum=0.001)
        _check_number("backoff_factor", backoff_factor, minimum=0.0)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError("max_retries must be an int >= 0")
        if on_refresh is not None and not callable(on_refresh):
            raise ConfigurationError("on_refresh must be callable or None")
        if inspect.iscoroutinefunction(on_refresh):
            raise ConfigurationError(
                "on_refresh must be a plain function: it runs on the refreshing thread, "
                "where nothing would await a coroutine"
            )
        if token_client is not None and not isinstance(
            token_client, (requests.Session, httpx.Client)
        ):
            raise ConfigurationError(
                "token_client must be a requests.Session or an httpx.Client (token requests "
                f"run on a thread of their own), not {type(token_client).__name__}"
            )
        if store is not None and not isinstance(store, TokenStore):
            raise ConfigurationError(
                "store must be an eid_auth.stores.TokenStore (MemoryTokenStore, "
                f"FileTokenStore, RedisTokenStore), not {type(store).__name__}"
            )
        initial = _initial_token(
            token, refresh_token, access_token, expires_at, required=store is None
        )

        self._api_key = api_key
        self._endpoint = TokenEndpoint(
            url=url,
            client_id=client_id,
            client_secret=client_secret,
            client_auth=client_auth,
            scope=scope,
            api_key=api_key,
            timeout=float(timeout),
            max_retries=max_retries,
            backoff_factor=float(backoff_factor),
            token_client=token_client,
        )
        self._client_auth = client_auth
        self._store = MemoryTokenStore() if store is None else store
        self._coordinator = RefreshCoordinator(
            endpoint=self._endpoint,
            store=self._store,
            seed=initial,
            shared=store is not None,
            leeway=float(leeway),
            on_refresh=on_refresh,
        )

    def __repr__(self) -> str:
        return (
            f"EmpowerIDAuth(token_endpoint={self._endpoint.url!r}, "
            f"client_id={self._endpoint.client_id!r}, client_auth={self._client_auth!r}, "
            f"token={self.token!r})"
        )

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
        """Run the refresh grant now and return the new token.

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
        return self._coordinator.replace(self._coordinator.token, "httpx")

    async def arefresh(self) -> Token:
        """Like ``refresh()``, for asyncio code; the event loop is never blocked."""
        return await self._coordinator.replace_async(self._coordinator.token)

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
        self.close()

    async def __aenter__(self) -> Self:
        """``async with EmpowerIDAuth(...) as auth:`` closes it with ``aclose()``."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _token_endpoint_url(token_endpoint: str | None, server: str | None) -> str:
    if (token_endpoint is None) == (server is None):
        raise ConfigurationError(
            "give exactly one of token_endpoint='https://host/oauth/v2/token' or "
            "server='https://host'"
        )
    if server is not None:
        if not isinstance(server, str):
            raise ConfigurationError("server must be a URL string like 'https://host'")
        if "oauth" in urlsplit(server).path.lower().split("/"):
            # "https://host/oauth/v2/token" would become ".../oauth/v2/token/oauth/v2/token".
            raise ConfigurationError(
                f"server must be the EmpowerID base URL (like 'https://host'), not an OAuth "
                f"endpoint: {server!r} has '/oauth' in its path. For the token endpoint's "
                "own URL, use token_endpoint= instead"
            )
        url = server.rstrip("/") + TOKEN_PATH
    else:
        assert token_endpoint is not None
        if not isinstance(token_endpoint, str):
            raise ConfigurationError("token_endpoint must be a URL string")
        url = token_endpoint
    name = "server" if server is not None else "token_endpoint"
    if not url.isprintable() or any(c.isspace() for c in url):
        # A newline or space in a URL is a pasting accident, and HTTP libraries
        # refuse it only when the first request is sent.
        raise ConfigurationError(
            f"{name} has a space or control character (a newline?) in it: {url!r}"
        )
    parts = urlsplit(url)
    if server is not None and (parts.query or parts.fragment):
        raise ConfigurationError(
            "server must be a base URL like 'https://host' (no query or fragment); "
            "use token_endpoint= for a full URL"
        )
    if parts.fragment:
        raise ConfigurationError("the token endpoint URL must not have a #fragment")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"token endpoint {url!r} is not an http(s) URL with a host")
    try:
        _ = parts.port  # "host:abc" or a port past 65535 raises here
        parts.hostname.encode("idna")
    except (ValueError, UnicodeError):
        raise ConfigurationError(
            f"token endpoint {url!r} has an invalid host name or port"
        ) from None
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError("the token endpoint URL must not carry credentials")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"token endpoint {url!r} must use https: the client secret and tokens would "
            "travel in clear text (plain http is allowed only for loopback hosts)"
        )
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_header_safe(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _is_latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _check_number(name: str, value: object, *, minimum: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < minimum
    ):
        raise ConfigurationError(f"{name} must be a finite number >= {minimum:g}")


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
