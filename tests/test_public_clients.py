"""Public clients (a native or browser application registered without a secret), end
to end: the test server's ``client_secret=None`` and ``EmpowerIDClient`` without a
``client_secret``.

A public client signs a person in at a browser (PKCE) or on another device, refreshes,
and renews through ``EmpowerIDAuth(client=...)``, sending its ``client_id`` alone. It may
not use the grants that stand for the application itself, nor the password grant;
tokeninfo and tokenrevoke, which EmpowerID documents with the client's credentials in
HTTP Basic, are refused before anything is sent. A confidential client that leaves its
secret out is refused as before.
"""

from __future__ import annotations

import logging
import shlex
import socket
import sys
import time
import webbrowser
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eid_auth import (
    ConfigurationError,
    EmpowerIDAuth,
    EmpowerIDClient,
    InvalidClientError,
    InvalidGrantError,
    Token,
    TokenEndpointError,
)
from eid_auth.testing import EmpowerIDTestServer, RecordedRequest

from .conftest import CLIENT_ID, after_a_resend, send

PUBLIC_ID = "my-native-app"
FAKE_BROWSER = Path(__file__).resolve().parent / "fake_browser.py"


@pytest.fixture
def public_server() -> Iterator[EmpowerIDTestServer]:
    with EmpowerIDTestServer(client_id=PUBLIC_ID, client_secret=None) as server:
        server.device_interval = 0.1
        yield server


@pytest.fixture
def eid(public_server: EmpowerIDTestServer) -> Iterator[EmpowerIDClient]:
    with EmpowerIDClient(
        server=public_server.url, client_id=PUBLIC_ID, timeout=5.0, backoff_factor=0.01
    ) as client:
        yield client


def open_browser(url: str) -> bool:
    """A browser that signs in without a person: GET the authorization URL, then
    follow its redirect to the loopback listener."""
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 302, answer.text
    httpx.get(answer.headers["Location"], timeout=30)
    return True


def whoami(server: EmpowerIDTestServer, access_token: str) -> httpx.Response:
    return httpx.get(
        server.api_url("/api/whoami"),
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )


def only_client_id(request: RecordedRequest) -> None:
    """The request identifies the client by its client_id alone: no secret anywhere."""
    assert request.form["client_id"] == PUBLIC_ID
    assert "client_secret" not in request.form
    assert request.header("Authorization") is None


def post_token(server: EmpowerIDTestServer, **form: str) -> httpx.Response:
    return httpx.post(server.token_endpoint, data=form, timeout=10)


# -- the grants a public client may use --------------------------------------------------


def test_a_public_client_signs_in_at_a_browser_named_in_BROWSER(
    public_server: EmpowerIDTestServer,
    eid: EmpowerIDClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "BROWSER", f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_BROWSER))} %s"
    )
    # webbrowser reads BROWSER once per process: make it read it again.
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})

    token = eid.login_in_browser(scope="openid profile", timeout=30)

    assert whoami(public_server, token.access_token).json()["id"] == (
        public_server.test_user.person_id
    )
    assert token.refresh_token is not None
    assert token.id_token is not None  # validated: its aud is the public client's ID
    (exchange,) = public_server.token_request_log
    assert exchange.form["grant_type"] == "authorization_code"
    assert len(exchange.form["code_verifier"]) >= 43
    only_client_id(exchange)


def test_a_public_client_signs_in_on_another_device(
    public_server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    token = eid.login_with_device(
        scope="openid",
        prompt=lambda device: public_server.approve_device(device.user_code),
        timeout=30,
    )

    assert whoami(public_server, token.access_token).status_code == 200
    assert token.refresh_token is not None
    polls = public_server.token_request_log
    assert polls
    for poll in polls:
        only_client_id(poll)
    assert public_server.grants_served == {"urn:ietf:params:oauth:grant-type:device_code": 1}


def test_a_public_client_refreshes_with_its_client_id_alone(
    public_server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    first = eid.login_in_browser(scope="openid profile", open_browser=open_browser, timeout=30)
    assert first.refresh_token is not None

    second = eid.refresh(first.refresh_token)

    assert second.access_token != first.access_token
    assert second.refresh_token not in (None, first.refresh_token)  # rotated
    assert whoami(public_server, second.access_token).status_code == 200
    refresh = public_server.token_request_log[-1]
    assert refresh.form["grant_type"] == "refresh_token"
    only_client_id(refresh)
    # Rotation and reuse detection hold for a public client too.
    with pytest.raises(InvalidGrantError):
        eid.refresh(first.refresh_token)


@pytest.mark.parametrize("ended_by", ["its expiry", "a 401"])
def test_empowerid_auth_of_a_public_client_renews_the_token(
    public_server: EmpowerIDTestServer, eid: EmpowerIDClient, flavour: str, ended_by: str
) -> None:
    token = eid.login_in_browser(scope="openid", open_browser=open_browser, timeout=30)
    if ended_by == "its expiry":
        # As a saved token an hour old looks: the auth renews before sending.
        token = Token.from_dict({**token.to_dict(), "expires_at": time.time() - 10})
    else:
        public_server.expire_access_tokens()  # still looks valid; the API says 401
    auth = EmpowerIDAuth(client=eid, token=token)

    result = send(flavour, auth, "GET", public_server.api_url("/api/whoami"))

    assert result.status == 200
    assert result.body["id"] == public_server.test_user.person_id
    assert result.history == ([] if ended_by == "its expiry" else after_a_resend(flavour))
    assert public_server.grants_served == {"authorization_code": 1, "refresh_token": 1}
    refresh = public_server.token_request_log[-1]
    assert refresh.form["grant_type"] == "refresh_token"
    only_client_id(refresh)
    auth.close()


# -- what a public client may not do -----------------------------------------------------


def test_a_public_client_may_not_use_client_credentials(
    public_server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    with pytest.raises(TokenEndpointError) as caught:
        eid.client_credentials(scope="api")
    assert caught.value.error == "unauthorized_client"
    assert "public client" in str(caught.value)
    only_client_id(public_server.token_request_log[-1])
    assert public_server.grants_served == {}


@pytest.mark.parametrize(
    "grant_type",
    [
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    ],
)
def test_a_public_client_may_not_use_the_grants_that_stand_for_the_application(
    public_server: EmpowerIDTestServer, grant_type: str
) -> None:
    answer = post_token(public_server, grant_type=grant_type, client_id=PUBLIC_ID)
    assert answer.status_code == 400
    assert answer.json()["error"] == "unauthorized_client"


def test_a_public_client_may_not_use_the_password_grant_in_either_form(
    public_server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    user = public_server.test_user
    for user_credentials in ("basic", "body"):
        with pytest.raises(TokenEndpointError) as caught:
            eid.password(user.username, user.password, user_credentials=user_credentials)
        assert caught.value.error == "unauthorized_client"
    auth = EmpowerIDAuth.password(client=eid, username=user.username, password=user.password)
    with pytest.raises(TokenEndpointError) as from_auth:
        send("httpx", auth, "GET", public_server.api_url("/api/whoami"))
    assert from_auth.value.error == "unauthorized_client"
    auth.close()
    assert public_server.grants_served == {}
    # EmpowerIDClient.password and EmpowerIDAuth.password send one and the same request.
    basic, body, renewal = public_server.token_request_log
    for request in (basic, renewal):
        assert request.form == {"grant_type": "password", "client_id": PUBLIC_ID}
        assert (request.header("Authorization") or "").startswith("Basic ")
    assert basic.header("Authorization") == renewal.header("Authorization")
    assert body.form == {
        "grant_type": "password",
        "username": user.username,
        "password": user.password,
        "client_id": PUBLIC_ID,
    }


def test_a_public_client_that_sends_a_secret_is_refused(
    public_server: EmpowerIDTestServer,
) -> None:
    tokens = public_server.issue_grant()
    in_body = post_token(
        public_server,
        grant_type="refresh_token",
        refresh_token=tokens["refresh_token"],
        client_id=PUBLIC_ID,
        client_secret="a-guess",
    )
    in_basic = httpx.post(
        public_server.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(PUBLIC_ID, "a-guess"),
        timeout=10,
    )
    for answer in (in_body, in_basic):
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_client"
    unknown = post_token(
        public_server,
        grant_type="refresh_token",
        refresh_token=tokens["refresh_token"],
        client_id="another-app",
    )
    assert unknown.status_code == 401
    assert unknown.json()["error"] == "invalid_client"
    assert public_server.refresh_grants == 0


def test_a_public_clients_code_must_have_been_asked_for_with_pkce(
    public_server: EmpowerIDTestServer,
) -> None:
    public_server.require_pkce = False  # the authorization endpoint lets it through
    redirect_uri = "http://127.0.0.1:9/callback"
    authorize = httpx.get(
        public_server.url + "/oauth/v2/ui/authorize",
        params={
            "response_type": "code",
            "client_id": PUBLIC_ID,
            "redirect_uri": redirect_uri,
            "scope": "openid",
            "state": "s",
        },
        timeout=10,
    )
    assert authorize.status_code == 302, authorize.text
    code = httpx.URL(authorize.headers["Location"]).params["code"]

    answer = post_token(
        public_server,
        grant_type="authorization_code",
        code=code,
        redirect_uri=redirect_uri,
        client_id=PUBLIC_ID,
    )

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
    assert "PKCE" in answer.json()["error_description"]
    assert public_server.grants_served == {}


def test_a_confidential_client_that_leaves_its_secret_out_is_refused(
    server: EmpowerIDTestServer,
) -> None:
    tokens = server.issue_grant()
    with (
        EmpowerIDClient(server=server.url, client_id=CLIENT_ID, backoff_factor=0.01) as eid,
        pytest.raises(InvalidClientError) as caught,
    ):
        eid.refresh(tokens["refresh_token"])
    assert "confidential" in str(caught.value)
    only_client_secret_missing = server.token_request_log[-1]
    assert "client_secret" not in only_client_secret_missing.form
    device = post_token(
        server,
        grant_type="urn:ietf:params:oauth:grant-type:device_code",
        device_code="dc",
        client_id=CLIENT_ID,
    )
    assert device.status_code == 401
    assert device.json()["error"] == "invalid_client"
    assert server.refresh_grants == 0


# -- tokeninfo and tokenrevoke -----------------------------------------------------------


def test_introspection_and_revocation_need_a_client_secret(
    public_server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    token = eid.login_in_browser(scope="openid", open_browser=open_browser, timeout=30)
    assert token.refresh_token is not None

    with pytest.raises(ConfigurationError) as introspecting:
        eid.introspect(token.access_token)
    with pytest.raises(ConfigurationError) as revoking:
        eid.revoke(token.refresh_token, token_type_hint="refresh_token")

    assert "introspection_endpoint" in str(introspecting.value)
    assert "revocation_endpoint" in str(revoking.value)
    for caught in (introspecting, revoking):
        message = str(caught.value)
        assert "no client_secret" in message
        assert PUBLIC_ID in message
        assert token.access_token not in message
        assert token.refresh_token not in message
    # Nothing was revoked.
    assert whoami(public_server, token.access_token).status_code == 200
    assert eid.refresh(token.refresh_token).refresh_token is not None


def test_introspection_of_a_public_client_sends_nothing(
    unused_port: int, eid_logs: list[logging.LogRecord]
) -> None:
    # Nothing listens there: a request, discovery included, would fail and be logged.
    with EmpowerIDClient(
        server=f"http://127.0.0.1:{unused_port}", client_id=PUBLIC_ID, max_retries=0
    ) as eid:
        with pytest.raises(ConfigurationError, match="no client_secret"):
            eid.introspect("at_x")
        with pytest.raises(ConfigurationError, match="no client_secret"):
            eid.revoke("at_x")
    assert [r.getMessage() for r in eid_logs] == []


def test_the_servers_tokeninfo_refuses_a_public_client(
    public_server: EmpowerIDTestServer,
) -> None:
    tokens = public_server.issue_grant()
    for path in ("/oauth/v2/tokeninfo", "/oauth/v2/tokenrevoke"):
        answer = httpx.post(
            public_server.url + path,
            data={"token": tokens["access_token"], "token_type_hint": "access_token"},
            auth=(PUBLIC_ID, ""),
            timeout=10,
        )
        assert answer.status_code == 401, path
        assert answer.json()["error"] == "invalid_client", path
    assert whoami(public_server, tokens["access_token"]).status_code == 200


def test_a_public_servers_client_secret_is_no_issued_secret(
    public_server: EmpowerIDTestServer,
) -> None:
    tokens = public_server.issue_grant()
    assert tokens["access_token"] in public_server.issued_secrets
    assert None not in public_server.issued_secrets


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
