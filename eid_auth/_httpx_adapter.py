"""The httpx side: ``sync_auth_flow`` and ``async_auth_flow`` for Client and AsyncClient.

Token requests are never yielded from these flows: a yielded request and its
answer would land in ``response.history`` and pass through the user's event
hooks, exposing the client secret and the new tokens.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from ._bearer import carried, sign
from ._refresh import RefreshCoordinator
from ._token import Token

__all__ = ["HTTPXAdapter"]


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

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._coordinator.token_for_request("httpx")
        sign(request.headers, token, self._api_key)
        response = yield request
        if not self._should_retry(response, token):
            return
        response.read()  # frees the pooled connection before waiting for a refresh
        response.close()
        token = self._coordinator.replace(token, "httpx")
        response = yield self._resend(response, token)
        if response.status_code == 401 and carried(response.request.headers, token):
            self._coordinator.resend_rejected(token)  # the API rejects fresh tokens too

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._coordinator.token_for_request_async()
        sign(request.headers, token, self._api_key)
        response = yield request
        if not self._should_retry(response, token):
            return
        await response.aread()
        await response.aclose()
        token = await self._coordinator.replace_async(token)
        response = yield self._resend(response, token)
        if response.status_code == 401 and carried(response.request.headers, token):
            self._coordinator.resend_rejected(token)  # the API rejects fresh tokens too

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
