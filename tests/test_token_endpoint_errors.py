"""What users get when the token endpoint answers with an error.

The OAuth errors (``invalid_grant``, ``invalid_client``) are raised at once,
never retried; 5xx and 429 answers are retried as far as ``max_retries`` and
``Retry-After`` allow; answers that are not a token (malformed JSON, an error
page) are described without the secrets they echo. Whether an answer arrives
at all, whole and in time: test_token_endpoint_transport.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from eid_auth import (
    EmpowerIDAuth,
    InvalidClientError,
    InvalidGrantError,
    InvalidTokenResponseError,
    TokenEndpointError,
    TokenEndpointUnavailableError,
)
from eid_auth._token_endpoint import _parse_retry_after
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import CLIENT_ID, send

AuthFactory = Callable[..., EmpowerIDAuth]


def test_invalid_grant_raises_at_once_without_resending(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    grant = server.issue_grant()
    auth = auth_factory(refresh_token=grant["refresh_token"])
    server.revoke_grant(grant["refresh_token"])
    with pytest.raises(InvalidGrantError) as caught:
        send(flavour, auth, "GET", server.api_url("/api/x"))
    assert caught.value.error == "invalid_grant"
    assert caught.value.status_code == 400
    assert "sign in again" in str(caught.value)
    assert server.token_requests == 1  # no retry loop
    assert server.api_requests == []  # nothing sent without a token


def test_invalid_grant_on_401_raises_and_does_not_resend(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory()
    token = auth.refresh()
    assert token.refresh_token is not None
    server.revoke_grant(token.refresh_token)
    with pytest.raises(InvalidGrantError):
        send(flavour, auth, "GET", server.api_url("/api/x"))
    assert len(server.api_requests) == 1
    assert server.token_requests == 2


def test_reused_refresh_token_is_invalid_grant(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    refresh_token = server.issue_grant()["refresh_token"]
    auth_factory(refresh_token=refresh_token).refresh()
    with pytest.raises(InvalidGrantError):
        auth_factory(refresh_token=refresh_token).refresh()
    assert server.reuse_detected == 1


def test_wrong_client_secret_is_invalid_client(server: EmpowerIDTestServer) -> None:
    auth = EmpowerIDAuth(
        token_endpoint=server.token_endpoint,
        client_id=CLIENT_ID,
        client_secret="wrong-secret-value",
        refresh_token=server.issue_grant()["refresh_token"],
    )
    with pytest.raises(InvalidClientError) as caught:
        auth.refresh()
    assert isinstance(caught.value, TokenEndpointError)
    assert caught.value.error == "invalid_client"
    assert "client_secret" in str(caught.value)
    assert "wrong-secret-value" not in str(caught.value)
    assert server.token_requests == 1
    auth.close()


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_transient_failures_are_retried(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, status: int
) -> None:
    auth = auth_factory(max_retries=2)
    server.fail_next(FaultSpec(status=status), count=2)
    token = auth.refresh()
    assert token.access_token
    assert server.token_requests == 3
    assert server.refresh_grants == 1


def test_retries_are_bounded_then_a_clear_error(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory(max_retries=2)
    server.fail_next(FaultSpec(status=503), count=10)
    with pytest.raises(TokenEndpointUnavailableError) as caught:
        send(flavour, auth, "GET", server.api_url("/api/x"))
    assert caught.value.attempts == 3
    assert caught.value.status_code == 503
    assert "HTTP 503" in str(caught.value)
    assert server.token_requests == 3
    assert server.api_requests == []


def test_retry_after_is_honoured(server: EmpowerIDTestServer, auth_factory: AuthFactory) -> None:
    auth = auth_factory(max_retries=1, backoff_factor=0.0)
    server.fail_next(FaultSpec(status=429, retry_after=0.5), count=1)
    auth.refresh()
    first, second = server.token_request_log
    assert second.time - first.time >= 0.45


def test_retry_after_http_date_is_utc() -> None:
    soon = time.time() + 10
    date = time.strftime("%a, %d %b %Y %H:%M:%S -0000", time.gmtime(soon))
    delay = _parse_retry_after(date)
    assert delay is not None
    assert 5 < delay <= 11
    assert _parse_retry_after("2") == 2.0
    assert _parse_retry_after("soon") is None


def test_retry_after_too_long_is_not_waited_out(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory(max_retries=3)
    server.fail_next(FaultSpec(status=503, retry_after=3600), count=1)
    outcome: list[BaseException] = []

    def refresh() -> None:
        try:
            auth.refresh()
        except TokenEndpointUnavailableError as exc:
            outcome.append(exc)

    # On a thread, so that waiting the hour out fails the test instead of hanging it.
    thread = threading.Thread(target=refresh, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the client is waiting out Retry-After: 3600"
    (error,) = outcome
    assert "retry after 3600s" in str(error)
    assert server.token_requests == 1


def test_malformed_json_is_an_invalid_token_response(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    grant = server.issue_grant()
    auth = auth_factory(refresh_token=grant["refresh_token"])
    server.fail_next(FaultSpec(malformed=True), count=1)
    with pytest.raises(InvalidTokenResponseError, match="not JSON"):
        send(flavour, auth, "GET", server.api_url("/api/x"))
    # The refresh token was not consumed: the next attempt works.
    assert send(flavour, auth, "GET", server.api_url("/api/x")).status == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"token_type": "Bearer", "expires_in": 3600}', "no access_token"),
        (b'{"access_token": "abc", "token_type": "mac"}', "only Bearer"),
        (b'{"access_token": "abc", "expires_in": -5}', "expires_in"),
        (b'{"access_token": "abc", "expires_in": "soon"}', "expires_in"),
        (b'["access_token"]', "not an object"),
        (b'{"access_token": "abc", "error": "server_error"}', "server_error"),
    ],
)
def test_invalid_token_responses(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, body: bytes, message: str
) -> None:
    auth = auth_factory()
    server.fail_next(FaultSpec(status=200, body=body), count=1)
    with pytest.raises((InvalidTokenResponseError, TokenEndpointError), match=message):
        auth.refresh()
    assert server.token_requests == 1
    previous = auth.token
    assert previous is None  # nothing half-applied


def test_non_json_error_page(server: EmpowerIDTestServer, auth_factory: AuthFactory) -> None:
    auth = auth_factory()
    server.fail_next(FaultSpec(status=404, body=b"<html>Not Found</html>"), count=1)
    with pytest.raises(TokenEndpointError) as caught:
        auth.refresh()
    assert caught.value.status_code == 404
    assert caught.value.error is None
    assert "Not Found" in str(caught.value)


def test_error_description_echoing_a_secret_is_redacted(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    grant = server.issue_grant()
    auth = auth_factory(refresh_token=grant["refresh_token"])
    body = (
        '{"error": "invalid_grant", "error_description": "bad token '
        + grant["refresh_token"]
        + '"}'
    ).encode()
    server.fail_next(FaultSpec(status=400, body=body), count=1)
    with pytest.raises(InvalidGrantError) as caught:
        auth.refresh()
    assert grant["refresh_token"] not in str(caught.value)
    assert grant["refresh_token"] not in (caught.value.error_description or "")
    assert "[redacted]" in str(caught.value)
