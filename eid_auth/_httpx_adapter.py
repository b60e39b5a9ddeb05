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
        if not self._should_retry(request, response, token):
            return
        response.read()  # frees the pooled connection before waiting for a refresh
        response.close()
        token = self._coordinator.replace(token, "httpx")
        sign(request.headers, token, self._api_key)
        yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._coordinator.token_for_request_async()
        sign(request.headers, token, self._api_key)
        response = yield request
        if not self._should_retry(request, response, token):
            return
        await response.aread()
        await response.aclose()
        token = await self._coordinator.replace_async(token)
        sign(request.headers, token, self._api_key)
        yield request

    def _should_retry(
        self, request: httpx.Request, response: httpx.Response, token: Token
    ) -> bool:
        coordinator = self._coordinator
        return (
            response.status_code == 401
            and carried(response.request.headers, token)
            and _replayable(request)
            and (coordinator.can_refresh or coordinator.token is not token)
        )
