"""Edge cases around redirects, callbacks, interrupted refreshes and exception
chains: each test fails without the behaviour it names."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from eid_auth import (
    EmpowerIDAuth,
    TokenEndpointUnavailableError,
)
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import CLIENT_ID, send

AuthFactory = Callable[..., EmpowerIDAuth]


def test_errors_carry_no_chained_exception(flavour: str) -> None:
    auth = EmpowerIDAuth(
        token_endpoint="http://127.0.0.1:9/oauth/v2/token",  # discard port: refused
        client_id=CLIENT_ID,
        client_secret="chain-secret-value",
        refresh_token="chain-refresh-token",
        api_key="chain-api-key",
        max_retries=0,
    )
    with pytest.raises(TokenEndpointUnavailableError) as caught:
        send(flavour, auth, "GET", "http://127.0.0.1:9/api/x")
    error: BaseException | None = caught.value
    # No requests/httpx error in the chain: it would hold the token request,
    # with the client secret in its body. At most a bare copy of the low-level
    # cause, with no traceback (whose frames hold the request) and no chain.
    assert error is not None
    assert error.__context__ is None
    cause = error.__cause__
    assert isinstance(cause, ConnectionRefusedError)  # why it failed, for the caller
    if cause is not None:
        assert cause.__traceback__ is None
        assert cause.__cause__ is None
        assert cause.__context__ is None
    auth.close()


def test_retry_after_http_date_is_utc() -> None:
    from eid_auth._token_endpoint import _parse_retry_after

    soon = time.time() + 10
    date = time.strftime("%a, %d %b %Y %H:%M:%S -0000", time.gmtime(soon))
    delay = _parse_retry_after(date)
    assert delay is not None
    assert 5 < delay <= 11
    assert _parse_retry_after("2") == 2.0
    assert _parse_retry_after("soon") is None


def test_expires_at_counts_from_when_the_request_was_sent(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory()
    server.fail_next(FaultSpec(status=200, delay=1.0), count=1)  # a slow answer
    sent_at = time.time()
    token = auth.refresh()
    assert token.expires_at is not None
    # Counting from the answer's arrival would overstate the life by the delay.
    assert sent_at + 3600 - 0.5 <= token.expires_at <= sent_at + 3600 + 0.5


def test_redaction_survives_cutting_and_form_encoding() -> None:
    from urllib.parse import quote_plus

    secret = "Zm9v+YmFy/c2VjcmV0="
    with EmpowerIDTestServer(client_secret=secret) as server:
        refresh_token = server.issue_grant()["refresh_token"]
        auth = EmpowerIDAuth(
            token_endpoint=server.token_endpoint,
            client_id=server.client_id,
            client_secret=secret,
            refresh_token=refresh_token,
            max_retries=0,
        )
        for body in (
            "<html>" + "x" * 180 + refresh_token + "</html>",
            "bad request body: client_secret=" + quote_plus(secret),
        ):
            server.fail_next(FaultSpec(status=400, body=body.encode()), count=1)
            with pytest.raises(Exception, match="HTTP 400") as caught:
                auth.refresh()
            message = str(caught.value)
            assert refresh_token[:12] not in message
            assert quote_plus(secret) not in message
            assert secret not in message
        auth.close()


def test_json_escaped_and_basic_header_echoes_are_redacted() -> None:
    import base64

    secret = "Zm9v+YmFy/c2VjcmV0"
    with EmpowerIDTestServer(client_secret=secret) as server:
        basic = base64.b64encode(f"{server.client_id}:{secret}".encode()).decode()
        auth = EmpowerIDAuth(
            token_endpoint=server.token_endpoint,
            client_id=server.client_id,
            client_secret=secret,
            refresh_token=server.issue_grant()["refresh_token"],
            client_auth="client_secret_basic",
            max_retries=0,
        )
        escaped = secret.replace("+", "\\u002B")  # as .NET's JSON writer escapes it
        for body in (
            '{"error": "invalid_request", "received": "' + escaped + '"}',
            "<html>bad header Authorization: Basic " + basic + "</html>",
        ):
            server.fail_next(FaultSpec(status=400, body=body.encode()), count=1)
            with pytest.raises(Exception, match="HTTP 400") as caught:
                auth.refresh()
            for needle in (secret, escaped, basic):
                assert needle not in str(caught.value)
        auth.close()


def test_escaped_emoji_in_an_error_stays_encodable(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory(max_retries=0)
    body = b'{"error": "invalid_request", "message": "bad scope \\ud83d\\ude00 \\ud83d"}'
    server.fail_next(FaultSpec(status=400, body=body), count=1)
    with pytest.raises(Exception, match="HTTP 400") as caught:
        auth.refresh()
    str(caught.value).encode("utf-8")  # no lone surrogates
    assert "\U0001f600" in str(caught.value)
