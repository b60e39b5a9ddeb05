"""The httpx and httpx2 side: ``sync_auth_flow`` and ``async_auth_flow`` for Client
and AsyncClient of either library.

httpx2 keeps httpx's API under another module name, so one set of flows serves
both: whatever the flow needs from the library it takes from the module of the
request it was given (``_library``), and neither library is imported here.

Token requests are never yielded from these flows: a yielded request and its
answer would land in ``response.history`` and pass through the user's event
hooks, exposing the client secret and the new tokens.

Redirect hops that httpx follows by itself never reach the flow. With an API
key, the flow gives each request httpcore's ``trace`` extension (wrapping the
caller's own, if any); httpx copies extensions onto every hop it builds, and
httpcore calls the trace right before a hop's headers are written, which is
where the key is taken off a hop to another origin. httpx2 and httpcore2 do the
same under their own names.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import AsyncGenerator, Callable, Generator
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._bearer import RedirectChain, carried, sign
from ._exceptions import ConfigurationError
from ._libraries import library_of
from ._refresh import RefreshCoordinator
from ._token import Token
from ._token_endpoint import API_KEY_HEADER

if TYPE_CHECKING:
    import httpx

    from ._libraries import Library

__all__ = ["HTTPXAdapter"]

# httpx copies a request's extensions onto each redirect hop it builds, so the
# hop, its trace and a later ``client.send(response.next_request)`` all find
# the chain the hop belongs to.
_CHAIN = "eid_auth.redirect_chain"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# httpcore's event right before it writes a request's headers (HTTP/1.1, HTTP/2).
_SENDING_HEADERS = frozenset(
    {"http11.send_request_headers.started", "http2.send_request_headers.started"}
)
_API_KEY = API_KEY_HEADER.lower().encode("ascii")


class _Chain(RedirectChain):
    """A redirect chain as httpx sends it, and the ``trace`` that guards its hops."""

    __slots__ = ("first_request", "guarded_origins", "token", "user_trace")

    def __init__(self, request: httpx.Request, user_trace: Callable[..., Any] | None) -> None:
        super().__init__(request.url)
        # Weak, as the request holds the chain; sending it again starts a new chain.
        self.first_request = weakref.ref(request)
        self.token: Token | None = None  # the token the flow signed with
        self.user_trace = user_trace  # the caller's own trace extension
        # The origins of the hops the trace saw before their headers went out.
        # By origin, not by request: httpcore2 hands a proxied request to the
        # trace with a copy of its extensions, so nothing can be marked on the
        # hop itself, and a client picks its transport by origin anyway.
        self.guarded_origins: set[tuple[str, str, int | None]] = set()

    def trace(self, name: str, info: dict[str, Any]) -> Any:
        """httpcore's ``trace`` extension for ``httpx.Client``."""
        if name in _SENDING_HEADERS:
            self._guard(info["request"])
        if self.user_trace is not None:
            return self.user_trace(name, info)
        return None

    async def atrace(self, name: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` extension for ``httpx.AsyncClient``."""
        if name in _SENDING_HEADERS:
            self._guard(info["request"])
        if self.user_trace is not None:
            await self.user_trace(name, info)

    def _guard(self, request: Any) -> None:
        """Take the API key (and our Bearer token) off an ``httpcore.Request``
        bound for another origin, before its headers are written."""
        extensions = request.extensions
        first = self.first_request()
        if first is not None and extensions is first.extensions:
            return  # the first request: on the chain's origin by definition
        if request.method == b"CONNECT":
            return  # opens a tunnel through a proxy; none of our headers go with it
        url = _url_of(request)
        self.guarded_origins.add(_origin(url))
        if not self.may_carry_api_key(url):
            request.headers = _without_credentials(request.headers, self.token)


def _url_of(request: Any) -> str:
    """The URL an ``httpcore.Request`` is bound for."""
    url = request.url
    target: bytes = url.target
    if not target.startswith(b"/"):
        # Absolute form: sent to a forwarding proxy, the target is the real URL.
        return target.decode("ascii", "replace")
    host = url.host.decode("ascii", "replace")
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    port = "" if url.port is None else f":{url.port}"
    return f"{url.scheme.decode('ascii', 'replace')}://{host}{port}/"


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of an absolute URL, the port filled in when implied."""
    parts = urlsplit(url)
    return (
        parts.scheme,
        (parts.hostname or "").lower(),
        parts.port or _DEFAULT_PORTS.get(parts.scheme),
    )


def _without_credentials(
    headers: list[tuple[bytes, bytes]], token: Token | None
) -> list[tuple[bytes, bytes]]:
    bearer = None if token is None else f"Bearer {token.access_token}".encode()
    return [
        (name, value)
        for name, value in headers
        if name.lower() != _API_KEY and not (name.lower() == b"authorization" and value == bearer)
    ]


# Request class -> its library: one dict lookup on the hot path.
_LIBRARY_OF_REQUEST_CLASS: dict[type, tuple[Library, ModuleType]] = {}


def _library(request: Any) -> tuple[Library, ModuleType]:
    """``("httpx", httpx)`` or ``("httpx2", httpx2)``: the library ``request`` is of."""
    found = _LIBRARY_OF_REQUEST_CLASS.get(type(request))
    if found is None:
        name: Library = "httpx2" if library_of(request) == "httpx2" else "httpx"
        found = _LIBRARY_OF_REQUEST_CLASS[type(request)] = (name, sys.modules[name])
    return found


def _replayable(request: httpx.Request) -> bool:
    _, library = _library(request)
    if isinstance(request.stream, library.ByteStream):
        return True  # bytes in memory; httpx builds redirect hops this way too
    try:
        _ = request.content
    except library.RequestNotRead:
        return False  # a streamed body (generator, file): it cannot be sent twice
    return True


class HTTPXAdapter:
    """``httpx.Auth`` and ``httpx2.Auth`` behaviour of ``EmpowerIDAuth`` (both
    libraries check ``isinstance(auth, Auth)``, which holds through
    ``ClientAuthClasses``).

    The requests and responses are typed ``Any``: they are httpx's or httpx2's.
    """

    _coordinator: RefreshCoordinator
    _api_key: str | None

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        """Sign the request for ``httpx.Client``; on a 401, refresh and re-send it once.

        httpx calls this itself; redirect hops to another origin go without the API key.
        """
        chain = self._chain_of(request, is_async=False)
        if chain is None:
            yield request
            return
        library, _ = _library(request)
        token = self._coordinator.token_for_request(library)
        sign(request.headers, token, self._api_key)
        chain.token = token
        response = yield request
        self._check_hops(response, chain)
        if not self._should_retry(response, token):
            return
        response.read()  # frees the pooled connection before waiting for a refresh
        response.close()
        token = self._coordinator.replace(token, library)
        response = yield self._resend(response, token, chain)
        if response.status_code == 401 and carried(response.request.headers, token):
            self._coordinator.resend_rejected(token)  # the API rejects fresh tokens too
        self._check_hops(response, chain)

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        """Like ``sync_auth_flow``, for ``httpx.AsyncClient``; waits for a refresh
        without blocking the event loop."""
        chain = self._chain_of(request, is_async=True)
        if chain is None:
            yield request
            return
        library, _ = _library(request)
        token = await self._coordinator.token_for_request_async(library)
        sign(request.headers, token, self._api_key)
        chain.token = token
        response = yield request
        self._check_hops(response, chain)
        if not self._should_retry(response, token):
            return
        await response.aread()
        await response.aclose()
        token = await self._coordinator.replace_async(token, library)
        response = yield self._resend(response, token, chain)
        if response.status_code == 401 and carried(response.request.headers, token):
            self._coordinator.resend_rejected(token)  # the API rejects fresh tokens too
        self._check_hops(response, chain)

    def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        """Unused by httpx, which calls ``sync_auth_flow`` or ``async_auth_flow``; the same
        as ``sync_auth_flow`` for code that drives an ``httpx.Auth`` by hand."""
        return self.sync_auth_flow(request)

    def _chain_of(self, request: httpx.Request, *, is_async: bool) -> _Chain | None:
        """The chain ``request`` starts or continues; None for a hop sent by hand
        (``response.next_request``) that may not carry our credentials."""
        extensions = request.extensions
        chain = extensions.get(_CHAIN)
        if not isinstance(chain, _Chain) or chain.first_request() is request:
            trace = extensions.get("trace")
            if trace is not None and isinstance(getattr(trace, "__self__", None), _Chain):
                trace = trace.__self__.user_trace  # sent again: wrap the caller's trace only
            chain = _Chain(request, trace)
            if self._api_key is None:
                # httpx itself drops Authorization from hops to another origin.
                request.extensions = {**extensions, _CHAIN: chain}
            else:
                guard = chain.atrace if is_async else chain.trace
                request.extensions = {**extensions, _CHAIN: chain, "trace": guard}
            return chain
        if not chain.may_carry_api_key(str(request.url)):
            # httpx dropped Authorization from this hop; nothing of ours goes with it.
            request.headers.pop(API_KEY_HEADER, None)
            return None
        if self._api_key is not None:
            # A hop built by one client and sent by hand through the other kind
            # (or a trace of the caller's set on the hop) needs the matching guard.
            guard = chain.atrace if is_async else chain.trace
            trace = extensions.get("trace")
            if trace != guard:
                if trace is not None and getattr(trace, "__self__", None) is not chain:
                    chain.user_trace = trace
                request.extensions = {**extensions, "trace": guard}
        return chain

    def _check_hops(self, response: httpx.Response, chain: _Chain) -> None:
        """After a followed redirect: record that the trace took the API key off
        hops to another origin, and fail loudly where it could not."""
        if self._api_key is None or not response.history:
            return
        rule = RedirectChain(chain.first_url)
        for hop in (*response.history, response):
            request = hop.request
            if API_KEY_HEADER not in request.headers or rule.may_carry_api_key(str(request.url)):
                continue
            if _origin(str(request.url)) in chain.guarded_origins:
                # httpx's record of the hop (response.history) shows what went out.
                del request.headers[API_KEY_HEADER]
                continue
            origin = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"
            raise ConfigurationError(
                f"the API key went to {origin}: this httpx client followed a redirect "
                "there through a transport that is not httpcore's (a custom or mock "
                "transport), which runs no trace extension, so the key could not be "
                "taken off the hop. With such a transport, use follow_redirects=False "
                "and send response.next_request yourself: hops to another origin then "
                "go without the key"
            )

    def _should_retry(self, response: httpx.Response, token: Token) -> bool:
        coordinator = self._coordinator
        return (
            response.status_code == 401
            and carried(response.request.headers, token)
            and _replayable(response.request)
            and coordinator.retry_after_401(token)
        )

    def _resend(self, response: httpx.Response, token: Token, chain: _Chain) -> httpx.Request:
        # Re-send the hop that got the 401, not the whole redirect chain: the
        # first hop (a POST, say) already succeeded.
        request = response.request
        sign(request.headers, token, self._api_key)
        chain.token = token
        if response.cookies:
            # Cookies set by the 401 (session affinity, say) go with the re-send.
            _library(request)[1].Cookies(response.cookies).set_cookie_header(request)
        return request
