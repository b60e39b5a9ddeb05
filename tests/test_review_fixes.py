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
