"""The httpx side: ``sync_auth_flow`` and ``async_auth_flow`` for Client and AsyncClient.

Token requests are never yielded from these flows: a yielded request and its
answer would land in ``response.history`` and pass through the user's event
hooks, exposing the client secret and the new tokens.

Redirect hops that httpx follows by itself never reach the flow; the request
event hook of ``httpx_event_hooks()`` sees each of them before it is sent.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncGenerator, Callable, Generator

import httpx

from ._bearer import RedirectChain, carried, same_origin, sign
from ._exceptions import ConfigurationError
from ._refresh import RefreshCoordinator
from ._token import Token
from ._token_endpoint import API_KEY_HEADER

__all__ = ["HTTPXAdapter"]

# httpx copies a request's extensions onto each redirect hop it builds, so the
# hop, the event hook and a later ``client.send(response.next_request)`` all
# find the chain the hop belongs to.
_CHAIN = "eid_auth.redirect_chain"


class _Chain(RedirectChain):
    """A redirect chain as httpx sends it."""

    __slots__ = ("first_request", "guarded")

    def __init__(self, request: httpx.Request) -> None:
        super().__init__(request.url)
        # Weak, as the request holds the chain; sending it again starts a new chain.
        self.first_request = weakref.ref(request)
        self.guarded = False  # the event hook ran on a request of this chain


class _Done:
    """What the hook returns: ``AsyncClient`` awaits it, ``Client`` ignores it."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        yield from ()


_DONE = _Done()


def _drop_api_key_off_origin(request: httpx.Request) -> _Done:
    """The request event hook of ``httpx_event_hooks()``; httpx runs it before every hop."""
    chain = request.extensions.get(_CHAIN)
    if isinstance(chain, _Chain):
        chain.guarded = True
        if not chain.may_carry_api_key(str(request.url)):
            request.headers.pop(API_KEY_HEADER, None)
    return _DONE


def _replayable(request: httpx.Request) -> bool:
    if isinstance(request.stream, httpx.ByteStream):
        return True  # bytes in memory; httpx builds redirect hops this way too
    try:
        _ = request.content
    except httpx.RequestNotRead:
        return False  # a streamed body (generator, file): it cannot be sent twice
    return True


class HTTPXAdapter(httpx.Auth):
    """``httpx.Auth`` behaviour of ``EmpowerIDAuth``."""

    _coordinator: RefreshCoordinator
    _api_key: str | None

    def httpx_event_hooks(self) -> dict[str, list[Callable[[httpx.Request], object]]]:
        """Event hooks for an httpx client that follows redirects, sync or async.

        httpx builds redirect hops itself and copies every header but
        ``Authorization`` onto them, wherever the server points; the auth flow
        sees none of them. The request hook returned here runs before each hop
        and drops ``X-EmpowerID-API-Key`` from a hop that leaves the first
        request's origin, and from every hop after it. With ``api_key=``, a
        client that follows a redirect without these hooks gets a
        ``ConfigurationError``.

        Example:
            >>> client = httpx.Client(
            ...     auth=auth, follow_redirects=True, event_hooks=auth.httpx_event_hooks()
            ... )
            >>> hooks = auth.httpx_event_hooks()  # with hooks of your own:
            >>> hooks["response"] = [log_response]
            >>> client = httpx.AsyncClient(auth=auth, follow_redirects=True, event_hooks=hooks)
        """
        return {"request": [_drop_api_key_off_origin]}

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        chain = self._chain_of(request)
        if chain is None:
            yield request
            return
        token = self._coordinator.token_for_request("httpx")
        sign(request.headers, token, self._api_key)
        response = yield request
        self._check_followed_redirects(response, chain)
        if not self._should_retry(response, token):
            return
        response.read()  # frees the pooled connection before waiting for a refresh
        response.close()
        token = self._coordinator.replace(token, "httpx")
        response = yield self._resend(response, token)
        if response.status_code == 401 and carried(response.request.headers, token):
            self._coordinator.resend_rejected(token)  # the API rejects fresh tokens too
        self._check_followed_redirects(response, chain)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        chain = self._chain_of(request)
        if chain is None:
            yield request
            return
        token = await self._coordinator.token_for_request_async()
        sign(request.headers, token, self._api_key)
        response = yield request
        self._check_followed_redirects(response, chain)
        if not self._should_retry(response, token):
            return
        await response.aread()
        await response.aclose()
        token = await self._coordinator.replace_async(token)
        response = yield self._resend(response, token)
        if response.status_code == 401 and carried(response.request.headers, token):
            self._coordinator.resend_rejected(token)  # the API rejects fresh tokens too
        self._check_followed_redirects(response, chain)

    def _chain_of(self, request: httpx.Request) -> _Chain | None:
        """The chain ``request`` starts or continues; None for a hop sent by hand
        (``response.next_request``) that may not carry our credentials."""
        chain = request.extensions.get(_CHAIN)
        if not isinstance(chain, _Chain) or chain.first_request() is request:
            chain = _Chain(request)
            request.extensions = {**request.extensions, _CHAIN: chain}
            return chain
        if chain.may_carry_api_key(str(request.url)):
            return chain
        # httpx dropped Authorization from this hop; nothing of ours goes with it.
        request.headers.pop(API_KEY_HEADER, None)
        return None

    def _check_followed_redirects(self, response: httpx.Response, chain: _Chain) -> None:
        """Fail loudly when the client followed redirects without ``httpx_event_hooks()``:
        it copied the API key onto every hop, to any origin."""
        if self._api_key is None or chain.guarded:
            return
        if not any(hop.has_redirect_location for hop in response.history):
            return
        sent = [hop.request for hop in response.history] + [response.request]
        reached = [
            f"{r.url.scheme}://{r.url.netloc.decode('ascii')}"
            for r in sent
            if API_KEY_HEADER in r.headers and not same_origin(chain.first_url, str(r.url))
        ]
        raise ConfigurationError(
            "this httpx client follows redirects with api_key= set"
            + (f" (this redirect sent the API key to {reached[0]})" if reached else "")
            + ": create it with event_hooks=auth.httpx_event_hooks()"
        )

    def _should_retry(self, response: httpx.Response, token: Token) -> bool:
        coordinator = self._coordinator
        return (
            response.status_code == 401
            and carried(response.request.headers, token)
            and _replayable(response.request)
            and coordinator.retry_after_401(token)
        )

    def _resend(self, response: httpx.Response, token: Token) -> httpx.Request:
        # Re-send the hop that got the 401, not the whole redirect chain: the
        # first hop (a POST, say) already succeeded.
        request = response.request
        sign(request.headers, token, self._api_key)
        if response.cookies:
            # Cookies set by the 401 (session affinity, say) go with the re-send.
            httpx.Cookies(response.cookies).set_cookie_header(request)
        return request
