"""The requests side: an ``AuthBase`` that signs, and a response hook that answers 401.

The 401 handling follows ``requests.auth.HTTPDigestAuth``: the hook re-sends a
copy of the request through the same adapter, which dispatches no hooks, so
the re-sent request cannot trigger another retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from ._bearer import RedirectChain, carried, sign
from ._refresh import RefreshCoordinator
from ._token import Token
from ._token_endpoint import API_KEY_HEADER

if TYPE_CHECKING:
    import requests

__all__ = ["RequestsAdapter"]


def _replayable(request: requests.PreparedRequest) -> bool:
    body = request.body
    if body is None or isinstance(body, (bytes, str)):
        return True
    # requests records where a seekable body started; generators have no position.
    return isinstance(getattr(request, "_body_position", None), int)


class RequestsAdapter:
    """``requests.auth.AuthBase`` behaviour of ``EmpowerIDAuth`` (requests needs only
    a callable; ``isinstance(auth, AuthBase)`` holds through ``ClientAuthClasses``)."""

    _coordinator: RefreshCoordinator
    _api_key: str | None

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        """Sign a request for ``requests``; on a 401, refresh and re-send it once.

        requests calls this itself; redirect hops to another origin go without the API key.
        """
        token = self._coordinator.token_for_request("requests")
        sign(r.headers, token, self._api_key)
        r.hooks["response"].append(_RetryOn401(self, token, RedirectChain(r.url or "")))
        return r


class _RetryOn401:
    """The response hook of one request: at most one refresh-and-resend."""

    def __init__(self, auth: RequestsAdapter, token: Token, chain: RedirectChain) -> None:
        self._auth = auth
        self._token = token
        self._chain = chain
        # Copies of the request (redirects) share this hook; one retry in all,
        # even if the server hands out the same access token again.
        self._spent = False

    def __call__(self, r: requests.Response, **kwargs: Any) -> requests.Response:
        request = r.request
        if r.is_redirect:
            self._before_redirect(r, request)
            return r
        coordinator = self._auth._coordinator
        if (
            r.status_code != 401
            or self._spent
            or not carried(request.headers, self._token)
            or not _replayable(request)
            or not coordinator.retry_after_401(self._token)
        ):
            return r
        self._spent = True
        from requests.cookies import extract_cookies_to_jar
        from requests.utils import rewind_body

        # Free the pooled connection before waiting for a refresh.
        _ = r.content
        r.close()
        token = coordinator.replace(self._token, "requests")

        retry = request.copy()
        sign(retry.headers, token, self._auth._api_key)
        # Redirects are built from the original request: give it the new token too.
        sign(request.headers, token, self._auth._api_key)
        if retry.body is not None and not isinstance(retry.body, (bytes, str)):
            rewind_body(retry)
        cookies = getattr(retry, "_cookies", None)
        if cookies is not None:
            extract_cookies_to_jar(cookies, request, r.raw)  # type: ignore[no-untyped-call]
            retry.prepare_cookies(cookies)
        response: requests.Response = r.connection.send(retry, **kwargs)
        if response.status_code == 401:
            coordinator.resend_rejected(token)  # the API rejects fresh tokens too
        response.history.append(r)
        response.request = retry
        if response.is_redirect:
            # No hook sees this answer, yet Session.send follows its redirect.
            self._before_redirect(response, request)
        return response

    def _before_redirect(self, r: requests.Response, source: requests.PreparedRequest) -> None:
        """requests builds the next hop from a copy of ``source`` and drops only
        ``Authorization`` when it leaves the origin: drop the API key too (hops
        after it are copies, so they go without it)."""
        target = urljoin(r.url, r.headers["location"])
        if not self._chain.may_carry_api_key(target):
            source.headers.pop(API_KEY_HEADER, None)
