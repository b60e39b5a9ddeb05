"""No secret in a repr, an error, a log record or a response's history."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

import eid_auth
from eid_auth import EmpowerIDAuth, EmpowerIDAuthError
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import CLIENT_SECRET, library, send

AuthFactory = Callable[..., EmpowerIDAuth]


def _secrets(server: EmpowerIDTestServer, auth: EmpowerIDAuth, first_refresh: str) -> list[str]:
    values = [CLIENT_SECRET, first_refresh]
    for request in server.token_request_log:
        values.extend(v for k, v in request.form.items() if k in ("refresh_token",))
    if auth.token is not None:
        values.append(auth.token.access_token)
        values.extend(t for t in (auth.token.refresh_token, auth.token.id_token) if t)
    return values


def test_repr_hides_client_secret_and_tokens(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    grant = server.issue_grant(scope="openid")
    auth = auth_factory(refresh_token=grant["refresh_token"], api_key="api-key-value")
    auth.refresh()
    text = repr(auth) + str(auth)
    for secret in [*_secrets(server, auth, grant["refresh_token"]), "api-key-value"]:
        assert secret not in text
    assert "test-client" in text  # the client_id is not a secret


def test_no_secret_in_any_log_record_or_error(
    server: EmpowerIDTestServer,
    auth_factory: AuthFactory,
    flavour: str,
    eid_logs: list[logging.LogRecord],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # requests', httpx's and urllib3's records too
    grant = server.issue_grant(scope="openid")
    auth = auth_factory(refresh_token=grant["refresh_token"], api_key="api-key-value")
    errors: list[EmpowerIDAuthError] = []
    url = server.api_url("/api/x")
    send(flavour, auth, "GET", url)  # first refresh
    server.expire_access_tokens()
    server.fail_next(FaultSpec(status=503), count=1)
    send(flavour, auth, "POST", url, json={"a": 1})  # 401, retried refresh, re-send
    server.fail_next(FaultSpec(status=200, body=b"{not json"), count=1)
    server.expire_access_tokens()
    try:
        send(flavour, auth, "GET", url)
    except EmpowerIDAuthError as exc:
        errors.append(exc)
    token = auth.token
    assert token is not None
    assert token.refresh_token is not None
    server.revoke_grant(token.refresh_token)
    try:
        auth.refresh()
    except EmpowerIDAuthError as exc:
        errors.append(exc)
    assert len(errors) == 2
    assert eid_logs, "the eid_auth logger should have recorded the refreshes"
    secrets = [*_secrets(server, auth, grant["refresh_token"]), "api-key-value"]
    texts = [r.getMessage() for r in eid_logs] + [r.getMessage() for r in caplog.records]
    texts += [str(e) + repr(e) + repr(vars(e)) for e in errors]
    for text in texts:
        for secret in secrets:
            assert secret not in text


@pytest.mark.parametrize("name", ["httpx", "httpx2"])
def test_httpx_history_never_holds_a_token_request(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, name: str
) -> None:
    auth = auth_factory()
    auth.refresh()
    server.expire_access_tokens()
    seen: list[Any] = []
    with library(name).Client(auth=auth, event_hooks={"request": [seen.append]}) as client:
        response = client.get(server.api_url("/api/x"))
    assert response.status_code == 200
    assert [r.request.url.path for r in response.history] == ["/api/x"]
    # The user's event hooks see their own requests only, never the token request.
    assert {r.url.path for r in seen} == {"/api/x"}
    assert server.refresh_grants == 2


def test_tokens_travel_only_in_the_authorization_header(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory()
    send(flavour, auth, "GET", server.api_url("/api/x?page=1"))
    assert auth.token is not None
    (request,) = server.api_requests
    assert auth.token.access_token not in request.path
    assert auth.token.access_token.encode() not in request.body
    others = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
    assert all(auth.token.access_token not in v for v in others.values())


def test_public_names() -> None:
    assert sorted(eid_auth.__all__) == sorted(
        [
            "AccessDeniedError",
            "ConfigurationError",
            "EmpowerIDAuth",
            "EmpowerIDAuthError",
            "EmpowerIDClient",
            "EndpointError",
            "InvalidClientError",
            "InvalidGrantError",
            "InvalidIDTokenError",
            "InvalidTokenResponseError",
            "MissingRefreshTokenError",
            "ServerMetadata",
            "SignInError",
            "SignInTimeoutError",
            "Token",
            "TokenEndpointError",
            "TokenEndpointUnavailableError",
            "TokenResponseTooLargeError",
            "TokenStoreError",
            "__version__",
        ]
    )
    for name in eid_auth.__all__:
        assert hasattr(eid_auth, name)


def test_one_object_is_every_kind_of_auth(auth_factory: AuthFactory) -> None:
    import httpx
    import httpx2
    import requests

    auth = auth_factory()
    assert isinstance(auth, requests.auth.AuthBase)
    assert isinstance(auth, httpx.Auth)
    assert isinstance(auth, httpx2.Auth)
