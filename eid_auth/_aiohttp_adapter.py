"""The aiohttp side: a client middleware (aiohttp 3.12 and later).

aiohttp calls a session's middlewares for every request it sends, redirect
hops included, each hop as a new ``ClientRequest``. The middleware signs the
request, and on a 401 that concerns its token, reads and releases the 401,
waits for one refresh and calls the handler once more with the same request,
as aiohttp's own retry examples do. The refresh runs on a thread of its own
(see ``_refresh``), so neither this event loop nor any other ever has to
finish it, and a cancelled request leaves it running for the others.

Redirect hops: aiohttp follows a redirect inside ``ClientSession._request``,
in the task that sent the request, by calling the middlewares again for the
hop right after the middleware returned the 3xx answer. So when the
middleware returns a redirect it notes in a context variable (per task, as
asyncio gives each task a copy of the context) the chain and where the
redirect leads; the next request of the same task to that origin is taken as
the hop. While a request is under way the variable names it instead: aiohttp
sends a request again, through the middlewares, when the pooled connection it
went out on turns out closed, and that second attempt (the same URL, in the
same task, before any answer) stays on the first one's chain. A hop may carry
our credentials only while the chain has not left the first request's origin
(``RedirectChain``); otherwise the API key is taken off it and it goes
unsigned. Taking a request for a hop when it is not one (the caller turned
redirects off and sent the next request to the Location's origin by hand)
can only send fewer credentials, never more.
"""

from __future__ import annotations

import contextvars
import sys
from typing import TYPE_CHECKING, Any

from ._bearer import RedirectChain, carried, sign
from ._token_endpoint import API_KEY_HEADER

if TYPE_CHECKING:
    from aiohttp import ClientHandlerType, ClientMiddlewareType, ClientRequest, ClientResponse
    from yarl import URL

    from ._auth import EmpowerIDAuth
    from ._refresh import RefreshCoordinator
    from ._token import Token

__all__ = ["middleware"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _Redirect:
    """A redirect the middleware just returned, which aiohttp may follow next;
    or a request under way, which aiohttp may send again (``url``)."""

    __slots__ = ("chain", "origin", "url")

    def __init__(self, chain: RedirectChain, origin: URL | None, url: URL | None = None) -> None:
        self.chain = chain
        self.origin = origin  # None: the Location could not be read; any request matches
        self.url = url

    def leads_to(self, url: URL) -> bool:
        if self.url is not None:
            return url == self.url
        if self.origin is None:
            return True
        try:
            return url.origin() == self.origin
        except ValueError:  # a URL without an origin: not ours to judge, treat as the hop
            return True


# The redirect returned last in this task (asyncio gives each task its own context).
_LAST_REDIRECT: contextvars.ContextVar[_Redirect | None] = contextvars.ContextVar(
    "eid_auth_aiohttp_redirect", default=None
)


def middleware(auth: EmpowerIDAuth) -> ClientMiddlewareType:
    """The client middleware of ``auth.aiohttp_middleware()``.

    Example:
        >>> import aiohttp  # doctest: +SKIP
        >>> async with aiohttp.ClientSession(  # doctest: +SKIP
        ...     middlewares=[auth.aiohttp_middleware()]
        ... ) as session:
        ...     async with session.get("https://eid.example.com/api/whoami") as r:
        ...         print(await r.json())
    """
    coordinator: RefreshCoordinator = auth._coordinator
    api_key = auth._api_key

    async def eid_auth_middleware(
        request: ClientRequest, handler: ClientHandlerType
    ) -> ClientResponse:
        chain, ours = _chain_of(request)
        # Until an answer comes back, a request of this task to the same URL is
        # this one sent again: aiohttp does that on a new connection when a
        # pooled one turns out dropped, calling the middlewares again.
        _LAST_REDIRECT.set(_Redirect(chain, None, request.url))
        if not ours:
            # A hop after the chain left the first origin: nothing of ours goes with it.
            request.headers.popall(API_KEY_HEADER, None)
            response = await handler(request)
            _note_redirect(response, chain)
            return response
        token = await coordinator.token_for_request_async("aiohttp")
        sign(request.headers, token, api_key)
        response = await handler(request)
        if _should_retry(coordinator, request, response, token):
            # Frees the pooled connection before waiting for the refresh.
            await response.read()
            response.release()
            token = await coordinator.replace_async(token, "aiohttp")
            sign(request.headers, token, api_key)
            _add_cookies_of(response, request)
            response = await handler(request)
            if response.status == 401 and carried(request.headers, token):
                coordinator.resend_rejected(token)  # the API rejects fresh tokens too
        _note_redirect(response, chain)
        return response

    return eid_auth_middleware


def _chain_of(request: ClientRequest) -> tuple[RedirectChain, bool]:
    """The chain ``request`` starts, or continues as a redirect hop, and whether
    the request may carry our credentials."""
    redirect = _LAST_REDIRECT.get()
    if redirect is not None:
        _LAST_REDIRECT.set(None)
        if redirect.leads_to(request.url):
            chain = redirect.chain
            return chain, chain.may_carry_api_key(str(request.url))
    return RedirectChain(request.url), True


def _note_redirect(response: ClientResponse, chain: RedirectChain) -> None:
    _LAST_REDIRECT.set(None)
    if response.status not in _REDIRECTS:
        return
    location = response.headers.get("Location") or response.headers.get("URI")
    if location is None:
        return
    yarl = sys.modules["yarl"]
    try:
        origin: URL | None = response.url.join(yarl.URL(location)).origin()
    except ValueError:
        origin = None
    _LAST_REDIRECT.set(_Redirect(chain, origin))


def _should_retry(
    coordinator: RefreshCoordinator,
    request: ClientRequest,
    response: ClientResponse,
    token: Token,
) -> bool:
    return (
        response.status == 401
        and carried(request.headers, token)
        and _replayable(request)
        and coordinator.retry_after_401(token)
    )


def _replayable(request: ClientRequest) -> bool:
    """Whether the request's body can be sent again whole."""
    aiohttp = sys.modules["aiohttp"]
    body: Any = request.body
    if not isinstance(body, aiohttp.payload.Payload):
        return True  # no body, or bytes
    if isinstance(getattr(type(body), "consumed", None), property):
        # aiohttp 3.12.? and later: payloads say whether they can be written
        # again (bytes, seekable files rewound; streams and generators not).
        return not body.consumed
    # Older: only bytes in memory; a file would be re-sent from where it ended.
    return isinstance(body, aiohttp.payload.BytesPayload)


def _add_cookies_of(response: ClientResponse, request: ClientRequest) -> None:
    """Cookies the 401 set (a load balancer's affinity cookie, say) go with the
    re-send, as the session's cookie jar lets them: aiohttp itself updates the
    jar only once the middlewares have returned."""
    if not response.cookies:
        return
    jar = request.session.cookie_jar
    jar.update_cookies(response.cookies, response.url)
    cookies = jar.filter_cookies(request.url)
    if cookies:
        request.update_cookies(cookies)
