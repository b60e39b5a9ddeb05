"""The token endpoint client: any grant EmpowerID offers, sent with bounded retries.

authlib prepares the request (grant parameters, client authentication); this
module sends it through a ``requests.Session`` or an ``httpx.Client`` and turns
the answer into a ``Token`` or an error. It is synchronous on purpose: refreshes
run on a thread of their own, so no event loop is ever needed to finish one.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ._exceptions import (
    InvalidClientError,
    InvalidGrantError,
    InvalidTokenResponseError,
    TokenEndpointError,
    TokenEndpointUnavailableError,
    TokenResponseTooLargeError,
    redact,
    secrets_in_answer,
)
from ._http_clients import new_client
from ._libraries import Library, require
from ._token import Token
from ._transport import MAX_RESPONSE_BYTES, HTTPClient, send_token_request
from ._transport import Answer as _Answer
from ._transport import Failure as _Failure

__all__ = ["ClientAuthMethod", "HTTPClient", "TokenEndpoint", "basic_credentials"]

logger = logging.getLogger("eid_auth")

ClientAuthMethod = Literal["client_secret_post", "client_secret_basic", "none"]
# The library of the request being signed: token requests go through the same
# one unless token_client= says otherwise.
Adapter = Library

API_KEY_HEADER = "X-EmpowerID-API-Key"

# A Retry-After longer than this is not waited out: the caller gets an error now.
_MAX_RETRY_AFTER = 30.0
# For the thread switches and parsing around the attempts, in longest_refresh.
_REFRESH_MARGIN = 1.0


@dataclass(frozen=True)
class TokenRequest:
    """A token request as plain values: what goes on the wire. Its repr hides secrets."""

    url: str
    headers: dict[str, str] = field(repr=False)
    body: str = field(repr=False)


class TokenEndpoint:
    """Sends grants to EmpowerID's token endpoint and parses the answers.

    ``client_secret=None`` makes a public client (``client_auth="none"``): the
    client ID goes in the form body, as for native and browser applications.
    """

    def __init__(
        self,
        *,
        url: str,
        client_id: str,
        client_secret: str | None,
        client_auth: ClientAuthMethod,
        scope: str | None,
        api_key: str | None,
        timeout: float,
        max_retries: int,
        backoff_factor: float,
        token_client: HTTPClient | None,
    ) -> None:
        self.url = url
        self.client_id = client_id
        self.client_auth: ClientAuthMethod = "none" if client_secret is None else client_auth
        self._client_secret = client_secret
        # What an echoed "Authorization: Basic ..." header would show.
        self._basic_credentials = (
            () if client_secret is None else basic_credentials(client_id, client_secret)
        )
        self.scope = scope
        self._api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_factor = backoff_factor
        self._token_client = token_client
        self._own_clients: dict[Adapter, HTTPClient] = {}
        self._clients_lock = threading.Lock()

    @property
    def longest_refresh(self) -> float:
        """The longest ``refresh()`` can take, for waiters' timeouts: every attempt
        until its deadline (``timeout``), the longest wait before each retry (the
        backoff without jitter, or a ``Retry-After`` of up to 30 s), and a margin.
        151 s with the defaults (timeout=30, max_retries=2, backoff_factor=0.5).
        """
        attempts = self.max_retries + 1
        waits = sum(
            max(self.backoff_factor * 2.0**retry, _MAX_RETRY_AFTER)
            for retry in range(self.max_retries)
        )
        return attempts * self.timeout + waits + _REFRESH_MARGIN

    def build_request(
        self,
        grant_type: str,
        params: Mapping[str, str | None],
        headers: Mapping[str, str] | None = None,
        client_auth: ClientAuthMethod | None = None,
    ) -> TokenRequest:
        """Prepare a grant: form body plus client authentication (authlib).

        ``None`` parameters are left out; ``headers`` are added to the request
        (EmpowerID's password grant puts the user's credentials in HTTP Basic, so
        the client's go in the body: ``client_auth="client_secret_post"``).
        """
        # authlib's form encoding and client authentication, loaded with the first grant.
        from authlib.oauth2.auth import ClientAuth
        from authlib.oauth2.rfc6749.parameters import prepare_token_request

        body = prepare_token_request(
            grant_type, **{k: v for k, v in params.items() if v is not None}
        )
        all_headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "Cache-Control": "no-cache",
            **(headers or {}),
        }
        if self._api_key is not None:
            all_headers[API_KEY_HEADER] = self._api_key
        method = self.client_auth
        if client_auth is not None and self._client_secret:
            method = client_auth
        auth = ClientAuth(self.client_id, self._client_secret, method)
        url, all_headers, body = auth.prepare("POST", self.url, all_headers, body)
        return TokenRequest(url=url, headers=all_headers, body=body)

    def refresh(
        self,
        refresh_token: str,
        adapter: Adapter,
        keep_refresh_token: Callable[[str], None] | None = None,
        *,
        scope: str | None = None,
    ) -> Token:
        """Run the refresh grant (see ``request_token``).

        Args:
            refresh_token: the newest refresh token known.
            adapter: which library's client to use when the user gave none.
            keep_refresh_token: called with a rotated refresh token found in an
                answer that is otherwise unusable, so it is not lost.
            scope: narrows the scope; the endpoint's configured scope otherwise.
        """
        return self.request_token(
            "refresh_token",
            {"refresh_token": refresh_token, "scope": scope or self.scope},
            adapter,
            secrets=(refresh_token,),
            previous_refresh_token=refresh_token,
            keep_refresh_token=keep_refresh_token,
        )

    def request_token(
        self,
        grant_type: str,
        params: Mapping[str, str | None],
        adapter: Adapter,
        *,
        secrets: tuple[str | None, ...] = (),
        headers: Mapping[str, str] | None = None,
        client_auth: ClientAuthMethod | None = None,
        previous_refresh_token: str | None = None,
        keep_refresh_token: Callable[[str], None] | None = None,
    ) -> Token:
        """Send a grant and return the token it brings, retrying transient failures
        with backoff.

        Args:
            grant_type: ``"refresh_token"``, ``"client_credentials"``, ``"password"``,
                ``"authorization_code"``, or a URN (device code, JWT bearer, token
                exchange).
            params: the grant's parameters (``None`` values are left out).
            adapter: which library's client to use when the user gave none.
            secrets: values of ``params`` and ``headers`` that must never be
                quoted (passwords, codes, assertions...); the client secret and
                API key are always among them.
            headers: extra headers for the token request.
            client_auth: how the client authenticates for this grant, when it
                must differ from the configured way (a public client has none).
            previous_refresh_token: kept when the answer carries no new one.
            keep_refresh_token: called with a rotated refresh token found in an
                answer that is otherwise unusable, so it is not lost.

        Raises:
            TokenEndpointError: the server refused (``InvalidGrantError`` and
                ``InvalidClientError`` among them); never retried.
            InvalidTokenResponseError: a 2xx answer that is not a token.
            TokenResponseTooLargeError: an answer over ``MAX_RESPONSE_BYTES``
                (other than 5xx and 429, which are retried as their status says).
            TokenEndpointUnavailableError: every attempt failed transiently;
                its ``__cause__`` is the low-level error (``ConnectionRefusedError``,
                ``ssl.SSLCertVerificationError``, ``TimeoutError``...), without the
                request it belonged to.
        """
        request = self.build_request(grant_type, params, headers, client_auth)
        secrets = (*secrets, self._client_secret, self._api_key, *self._basic_credentials)

        def unavailable(detail: str, failure: _Failure, attempt: int) -> Exception:
            return TokenEndpointUnavailableError(
                f"token endpoint {self.url} {detail}",
                status_code=failure.status_code,
                attempts=attempt,
            )

        answer, requested_at, attempt = self.send_with_retries(
            request.url,
            request.headers,
            request.body.encode(),
            adapter,
            what="token",
            unavailable=unavailable,
        )
        if answer.too_large:
            raise TokenResponseTooLargeError(
                f"token endpoint {self.url} answered HTTP {answer.status} with a body "
                f"over {MAX_RESPONSE_BYTES} bytes ({MAX_RESPONSE_BYTES // 1024} KiB, "
                "the limit for a token response, on the wire and decompressed); "
                "a token response is a few kB: is token_endpoint the right URL?"
            )
        return self._parse(
            answer,
            requested_at,
            grant_type,
            previous_refresh_token,
            secrets,
            attempt,
            keep_refresh_token,
        )

    def send_with_retries(
        self,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        adapter: Adapter,
        *,
        what: str,
        unavailable: Callable[[str, _Failure, int], Exception],
        method: str = "POST",
    ) -> tuple[_Answer, float, int]:
        """Send a request to the server with this endpoint's client, deadline, size
        cap and retries (backoff with jitter, ``Retry-After`` up to 30 s).

        Returns the first answer that is not a transient failure (5xx, 429, no
        answer), when it was sent, and the attempt it took. When retries run out,
        or the server asks to wait too long, raises what ``unavailable(detail,
        failure, attempt)`` makes, with the low-level error as its cause.
        """
        client = self._client_for(adapter)
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            requested_at = time.time()
            # Capped in size, and bounded by ``timeout`` from connecting to the last byte.
            answer = send_token_request(client, url, headers, body, self.timeout, method=method)
            failure = answer if isinstance(answer, _Failure) else _failure_of(answer)
            if failure is None:
                assert not isinstance(answer, _Failure)
                return answer, requested_at, attempt
            # Errors are raised outside any ``except`` block on purpose: a chained
            # requests/httpx exception would carry the request, secret included.
            # The cause is a bare copy of the low-level error, which holds no request.
            if attempt == attempts:
                raise unavailable(
                    f"failed {attempts} time(s); last: {failure.reason}. Check that the "
                    "server is up and reachable; for a proxy or a private CA, pass "
                    "token_client= a configured client (requests.Session, httpx.Client, "
                    "httpx2.Client or aiohttp.ClientSession).",
                    failure,
                    attempt,
                ) from failure.cause
            delay = self._backoff(attempt - 1)
            if failure.retry_after is not None:
                if failure.retry_after > _MAX_RETRY_AFTER:
                    raise unavailable(
                        f"answered {failure.reason} and asked to retry after "
                        f"{failure.retry_after:.0f}s; not waiting that long",
                        failure,
                        attempt,
                    )
                delay = max(delay, failure.retry_after)
            logger.warning(
                "%s request failed (%s); retry %d of %d in %.2fs",
                what,
                failure.reason,
                attempt,
                self.max_retries,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the HTTP clients this endpoint created (never the user's)."""
        with self._clients_lock:
            clients, self._own_clients = list(self._own_clients.values()), {}
        for client in clients:
            client.close()

    def forget_clients_after_fork(self) -> None:
        """In a forked child: drop the parent's clients, whose pooled sockets
        the parent still uses (the child opens its own)."""
        self._clients_lock = threading.Lock()
        self._own_clients = {}

    def _backoff(self, retry: int) -> float:
        # Exponential backoff with jitter, so a fleet does not retry in lockstep.
        return self.backoff_factor * (2.0**retry) * random.uniform(0.5, 1.0)  # noqa: S311

    def _client_for(self, adapter: Adapter) -> HTTPClient:
        if self._token_client is not None:
            return self._token_client
        with self._clients_lock:
            client = self._own_clients.get(adapter)
            if client is None:
                # Same library as the caller, so its environment settings
                # (proxies, CA bundles) apply the way the user expects.
                client = new_client(require(adapter))
                self._own_clients[adapter] = client
            return client

    def _parse(
        self,
        answer: _Answer,
        requested_at: float,
        grant_type: str,
        refresh_token: str | None,
        secrets: tuple[str | None, ...],
        attempt: int,
        keep_refresh_token: Callable[[str], None] | None,
    ) -> Token:
        try:
            body = json.loads(answer.content)
        except (ValueError, RecursionError):
            body = _NOT_JSON
        error = body.get("error") if isinstance(body, dict) else None
        successful = 200 <= answer.status < 300
        # A 2xx answer the caller cannot use may still carry a refresh token
        # the server has rotated already: the old one is dead now, keep the new.
        rotated = body.get("refresh_token") if successful and isinstance(body, dict) else None
        if not isinstance(rotated, str) or rotated in ("", refresh_token):
            rotated = None
        kept = rotated is not None
        if successful and not error:
            if body is _NOT_JSON:
                raise InvalidTokenResponseError(
                    f"token endpoint {self.url} answered HTTP {answer.status} with a body that "
                    "is not JSON; is token_endpoint the right URL?"
                )
            try:
                token = Token.from_response(
                    body, requested_at=requested_at, previous_refresh_token=refresh_token
                )
            except InvalidTokenResponseError:
                if rotated is not None and keep_refresh_token is not None:
                    logger.warning("kept the new refresh token of an unusable token response")
                    keep_refresh_token(rotated)
                raise
            logger.info(
                "%s at %s; expires in %s",
                "access token refreshed"
                if grant_type == "refresh_token"
                else f"access token issued ({_grant_name(grant_type)} grant)",
                self.url,
                "an unknown time" if token.expires_at is None else f"{token.expires_in():.0f}s",
            )
            return token
        if rotated is not None and keep_refresh_token is not None:
            logger.warning("kept the new refresh token of a 2xx answer with an OAuth error")
            keep_refresh_token(rotated)
        raise _token_endpoint_error(
            self.url,
            answer.status,
            body,
            answer.content,
            secrets,
            attempt,
            grant_type=grant_type,
            kept_refresh_token=kept,
        )


_NOT_JSON: Any = object()


def _failure_of(answer: _Answer) -> _Failure | None:
    if answer.status == 429 or answer.status >= 500:
        return _Failure(
            f"HTTP {answer.status}",
            status_code=answer.status,
            retry_after=_parse_retry_after(answer.retry_after),
        )
    return None


def _token_endpoint_error(
    url: str,
    status: int,
    body: Any,
    content: bytes,
    secrets: tuple[str | None, ...],
    attempt: int,
    *,
    grant_type: str = "refresh_token",
    kept_refresh_token: bool = False,
) -> TokenEndpointError:
    # Any field of the answer may be a new token: only the error code and the
    # description, both redacted, are quoted.
    secrets = (*secrets, *secrets_in_answer(body, successful=200 <= status < 300))
    error = description = None
    code = "no OAuth error code"
    if isinstance(body, dict):
        raw_error, raw_description = body.get("error"), body.get("error_description")
        if isinstance(raw_error, str) and raw_error:
            error = redact(raw_error, secrets)[:100]
            code = error
        elif raw_error:
            code = "an error field that is not a string"
        if isinstance(raw_description, str) and raw_description not in ("", "null"):
            description = redact(raw_description[:65536], secrets)[:500]
    # Redact before cutting, so that no secret survives cut in half.
    detail = description or redact(content[:65536].decode("utf-8", "replace"), secrets)[:200]
    if error == "invalid_grant" and not kept_refresh_token:
        hint = (
            "; an earlier attempt that got no answer may have used it already"
            if attempt > 1
            else ""
        )
        if grant_type == "refresh_token":
            message = (
                f"the refresh token was rejected (invalid_grant: {detail}); it is expired, "
                f"revoked or was already used{hint}: the user must sign in again"
            )
        else:
            message = (
                f"token endpoint {url} refused the {_grant_name(grant_type)} grant "
                f"(invalid_grant: {detail}){hint}"
            )
        return InvalidGrantError(
            message,
            error=error,
            error_description=description,
            status_code=status,
        )
    if error == "invalid_client":
        return InvalidClientError(
            f"token endpoint {url} rejected the client credentials (invalid_client: "
            f"{detail}); check client_id, client_secret and client_auth",
            error=error,
            error_description=description,
            status_code=status,
        )
    # An invalid_grant that hands over a new refresh token is not the end of
    # the grant: the kept token is tried next, so no InvalidGrantError here.
    kept = "; its new refresh token was kept" if kept_refresh_token else ""
    return TokenEndpointError(
        f"token endpoint {url} answered HTTP {status} ({code}: {detail}){kept}",
        error=error,
        error_description=description,
        status_code=status,
    )


def _grant_name(grant_type: str) -> str:
    # "urn:ietf:params:oauth:grant-type:device_code" reads as "device_code".
    return grant_type.rsplit(":", 1)[-1]


def basic_credentials(user: str, password: str) -> tuple[str, ...]:
    """What an echoed ``Authorization: Basic`` header of these would show, for redaction."""
    pair = f"{user}:{password}"
    return tuple(
        base64.b64encode(pair.encode(enc)).decode()
        for enc in ("latin-1", "utf-8")
        if _encodes(pair, enc)
    )


def _encodes(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def _parse_retry_after(value: str | None) -> float | None:
    # Retry-After is either delta-seconds or an HTTP date (RFC 9110 section 10.2.3).
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": HTTP dates are always UTC
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - time.time())
