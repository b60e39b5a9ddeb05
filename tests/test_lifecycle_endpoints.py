"""The endpoints around a token's life, client and test server together: userinfo,
introspection (EmpowerID's tokeninfo), revocation (its tokenrevoke), the logout URL, and
discovery with EmpowerID's own key names, a missing document and a partial one."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from eid_auth import ConfigurationError, EmpowerIDClient, EndpointError
from eid_auth.testing import EmpowerIDTestServer

from .conftest import CLIENT_ID, CLIENT_SECRET
from .hostile_server import HostileServer
from .redis_server import _free_port

TIMEOUT = 10


@pytest.fixture
def eid(server: EmpowerIDTestServer) -> Iterator[EmpowerIDClient]:
    with EmpowerIDClient(
        server=server.url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        max_retries=1,
        backoff_factor=0.01,
    ) as client:
        yield client


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def api_status(server: EmpowerIDTestServer, access_token: str) -> int:
    return requests.get(
        server.api_url("/api/whoami"),
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=TIMEOUT,
    ).status_code


# -- userinfo ------------------------------------------------------------------------------


def test_userinfo_of_a_test_user(server: EmpowerIDTestServer, eid: EmpowerIDClient) -> None:
    user = server.test_user
    token = eid.password(user.username, user.password, scope="openid profile")
    info = eid.userinfo(token.access_token)
    assert info["id"] == user.person_id
    assert info["username"] == "jdoe"
    assert info["first_name"] == "Jane"
    assert info["last_name"] == "Doe"
    assert info["email"] == "jdoe@example.com"


def test_userinfo_of_a_revoked_token_is_an_endpoint_error(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    tokens = server.issue_grant()
    assert eid.userinfo(tokens["access_token"])["id"] == tokens["id"]
    server.revoke_access_token(tokens["access_token"])
    with pytest.raises(EndpointError) as caught:
        eid.userinfo(tokens["access_token"])
    error = caught.value
    assert (error.endpoint, error.status_code, error.error) == (
        "userinfo_endpoint",
        401,
        "invalid_token",
    )
    assert "expired, revoked" in str(error)
    assert tokens["access_token"] not in str(error)


def test_userinfo_is_a_get_with_bearer_and_the_api_key(server: EmpowerIDTestServer) -> None:
    server.api_key = "the-api-key-value"
    tokens = server.issue_grant()
    with (
        EmpowerIDClient(
            server=server.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        ) as without_key,
        pytest.raises(EndpointError) as caught,
    ):
        without_key.userinfo(tokens["access_token"])
    assert caught.value.status_code == 401
    with EmpowerIDClient(
        server=server.url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        api_key="the-api-key-value",
    ) as eid:
        assert eid.userinfo(tokens["access_token"])["id"] == tokens["id"]


# -- introspection (tokeninfo) -------------------------------------------------------------


def test_introspect_an_active_access_token(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    user = server.test_user
    token = eid.password(user.username, user.password, scope="api")
    info = eid.introspect(token.access_token)
    assert info["active"] is True
    assert info["client_id"] == CLIENT_ID
    assert info["username"] == "jdoe"
    assert info["sub"] == user.person_id
    assert info["token_type"] == "Bearer"
    assert info["scope"] == "api"
    assert info["iat"] <= info["nbf"] < info["exp"]
    assert token.expires_at is not None
    assert abs(info["exp"] - token.expires_at) < 5


def test_introspect_a_refresh_token(server: EmpowerIDTestServer, eid: EmpowerIDClient) -> None:
    tokens = server.issue_grant()
    info = eid.introspect(tokens["refresh_token"], token_type_hint="refresh_token")
    assert info["active"] is True
    assert info["sub"] == tokens["id"]
    eid.refresh(tokens["refresh_token"])  # rotated away
    assert eid.introspect(tokens["refresh_token"], "refresh_token") == {"active": False}


@pytest.mark.parametrize("how", ["unknown", "expired", "revoked"])
def test_introspect_an_inactive_token(
    server: EmpowerIDTestServer, eid: EmpowerIDClient, how: str
) -> None:
    tokens = server.issue_grant()
    token = tokens["access_token"]
    if how == "unknown":
        token = "at_never-issued-by-this-server"
    elif how == "expired":
        server.expire_access_tokens()
    else:
        server.revoke_grant(tokens["refresh_token"])
    assert eid.introspect(token) == {"active": False}


def test_tokeninfo_wants_basic_client_credentials_and_both_parameters(
    server: EmpowerIDTestServer,
) -> None:
    token = server.issue_grant()["access_token"]
    url = server.url + "/oauth/v2/tokeninfo"
    both = {"token": token, "token_type_hint": "access_token"}
    # What EmpowerIDClient sends: accepted.
    r = requests.post(url, data=both, auth=(CLIENT_ID, CLIENT_SECRET), timeout=TIMEOUT)
    assert r.json()["active"] is True
    # Client credentials in the body instead of HTTP Basic: refused, as EmpowerID documents.
    body_auth = {**both, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    r = requests.post(url, data=body_auth, timeout=TIMEOUT)
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
    # token_type_hint is required too.
    r = requests.post(url, data={"token": token}, auth=(CLIENT_ID, CLIENT_SECRET), timeout=TIMEOUT)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
    r = requests.post(url, data=both, auth=(CLIENT_ID, "wrong-secret"), timeout=TIMEOUT)
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")


def test_introspect_with_a_wrong_client_secret(server: EmpowerIDTestServer) -> None:
    token = server.issue_grant()["access_token"]
    with (
        EmpowerIDClient(
            server=server.url, client_id=CLIENT_ID, client_secret="wrong-client-secret"
        ) as eid,
        pytest.raises(EndpointError) as caught,
    ):
        eid.introspect(token)
    error = caught.value
    assert (error.endpoint, error.status_code, error.error) == (
        "introspection_endpoint",
        401,
        "invalid_client",
    )
    assert "check client_id and client_secret" in str(error)
    assert "wrong-client-secret" not in str(error)
    assert token not in str(error)


def test_introspect_refuses_a_bad_hint_before_sending(eid: EmpowerIDClient) -> None:
    with pytest.raises(ConfigurationError, match="token_type_hint"):
        eid.introspect("at_x", token_type_hint="id_token")  # type: ignore[arg-type]


# -- revocation (tokenrevoke) -------------------------------------------------------------


def test_revoke_an_access_token_then_it_is_inactive_and_the_api_says_401(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    user = server.test_user
    token = eid.password(user.username, user.password)
    assert api_status(server, token.access_token) == 200
    assert eid.revoke(token.access_token) is None  # EmpowerID answers a null body
    assert eid.introspect(token.access_token) == {"active": False}
    assert api_status(server, token.access_token) == 401
    # Revoking one access token leaves the grant: the refresh token still works.
    assert token.refresh_token is not None
    assert api_status(server, eid.refresh(token.refresh_token).access_token) == 200


def test_revoke_a_refresh_token_ends_its_grant(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    tokens = server.issue_grant()
    eid.revoke(tokens["refresh_token"], token_type_hint="refresh_token")
    assert eid.introspect(tokens["refresh_token"], "refresh_token") == {"active": False}
    assert eid.introspect(tokens["access_token"]) == {"active": False}
    assert api_status(server, tokens["access_token"]) == 401


def test_revoke_an_unknown_token_is_no_error(eid: EmpowerIDClient) -> None:
    eid.revoke("at_never-issued-by-this-server")


def test_revoke_is_retried_after_a_server_error(
    server: EmpowerIDTestServer, eid_logs: list[logging.LogRecord]
) -> None:
    # A loopback server of our own: 503 first, then EmpowerID's null body.
    answers = iter(
        [
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4\r\n"
            b"Connection: close\r\n\r\nnull",
        ]
    )
    with (
        HostileServer(lambda wire: wire.send(next(answers))) as hostile,
        EmpowerIDClient(
            server=server.url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            revocation_endpoint=hostile.url("/oauth/v2/tokenrevoke"),
            max_retries=1,
            backoff_factor=0.01,
        ) as eid,
    ):
        eid.revoke("at_some-access-token")
    assert hostile.requests == 2
    assert any("revocation_endpoint request failed (HTTP 503)" in r.getMessage() for r in eid_logs)


def test_a_refusal_quotes_no_secret_the_server_echoes(server: EmpowerIDTestServer) -> None:
    token = "at_echoed-by-a-careless-server"
    body = (
        b'{"error":"invalid_request","error_description":"bad token at_echoed-by-a-careless-'
        b'server for test-client-secret","access_token":"at_leaked"}'
    )
    answer = (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with (
        HostileServer(lambda wire: wire.send(answer)) as hostile,
        EmpowerIDClient(
            server=server.url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            introspection_endpoint=hostile.url("/oauth/v2/tokeninfo"),
            max_retries=0,
        ) as eid,
        pytest.raises(EndpointError) as caught,
    ):
        eid.introspect(token)
    message = str(caught.value)
    assert caught.value.error == "invalid_request"
    assert "[redacted]" in message
    assert token not in message
    assert CLIENT_SECRET not in message
    assert "at_leaked" not in message


def test_an_unreachable_endpoint_is_an_endpoint_error(server: EmpowerIDTestServer) -> None:
    dead = f"http://127.0.0.1:{_free_port()}/oauth/v2/userinfo"
    with (
        EmpowerIDClient(
            server=server.url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            userinfo_endpoint=dead,
            max_retries=1,
            backoff_factor=0.01,
        ) as eid,
        pytest.raises(EndpointError) as caught,
    ):
        eid.userinfo("at_anything")
    assert caught.value.status_code is None
    assert "failed 2 time(s); last: connection refused" in str(caught.value)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


# -- logout ------------------------------------------------------------------------------


def test_logout_url_carries_empowerids_parameters(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    url = eid.logout_url(
        id_token_hint="header.claims.signature",
        post_logout_redirect_uri="https://app.example.com/signed-out",
        state="s-123",
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == server.url + "/oauth/v2/ui/logout"
    assert dict(parse_qsl(parts.query)) == {
        "id_token_hint": "header.claims.signature",
        "post_logout_redirect_uri": "https://app.example.com/signed-out",
        "state": "s-123",
        "global_logout": "true",
    }


def test_logout_url_without_a_hint_names_the_client_and_may_stay_local(
    eid: EmpowerIDClient,
) -> None:
    query = dict(
        parse_qsl(
            urlsplit(
                eid.logout_url(
                    post_logout_redirect_uri="https://app.example.com/", global_logout=False
                )
            ).query
        )
    )
    assert query == {
        "post_logout_redirect_uri": "https://app.example.com/",
        "client_id": CLIENT_ID,
        "global_logout": "false",
    }


def test_logout_url_keeps_the_endpoints_own_query(server: EmpowerIDTestServer) -> None:
    with EmpowerIDClient(
        server=server.url,
        client_id=CLIENT_ID,
        end_session_endpoint=server.url + "/oauth/v2/ui/logout?tenant=a",
    ) as eid:
        url = eid.logout_url(state="x")
    assert urlsplit(url).query == "tenant=a&state=x&global_logout=true"


# -- discovery -----------------------------------------------------------------------------


def test_discovery_uses_empowerids_key_names(server: EmpowerIDTestServer) -> None:
    server.discovery_overrides = {
        "tokeninfo_endpoint": server.url + "/oauth/v2/tokeninfo?from=document",
        "tokenrevoke_endpoint": server.url + "/oauth/v2/tokenrevoke?from=document",
    }
    with EmpowerIDClient(server=server.url, client_id=CLIENT_ID) as eid:
        meta = eid.metadata
    assert meta.discovered
    assert meta.introspection_endpoint == server.url + "/oauth/v2/tokeninfo?from=document"
    assert meta.revocation_endpoint == server.url + "/oauth/v2/tokenrevoke?from=document"
    assert meta.end_session_endpoint == server.url + "/oauth/v2/ui/logout"
    assert "client_credentials" in meta.raw["grant_types_supported"]
    assert "password" in meta.raw["grant_types_supported"]


def test_without_a_document_the_default_paths_work(
    server: EmpowerIDTestServer, eid_logs: list[logging.LogRecord]
) -> None:
    server.publish_discovery = False  # 404, as older EmpowerID servers
    tokens = server.issue_grant()
    with EmpowerIDClient(
        server=server.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    ) as eid:
        assert eid.userinfo(tokens["access_token"])["id"] == tokens["id"]
        assert eid.introspect(tokens["access_token"])["active"] is True
        eid.revoke(tokens["access_token"])
        assert not eid.metadata.discovered
    assert api_status(server, tokens["access_token"]) == 401
    assert any("HTTP 404" in r.getMessage() for r in eid_logs)


def test_a_document_that_omits_endpoints_falls_back_to_default_paths(
    server: EmpowerIDTestServer,
) -> None:
    server.discovery_overrides = {
        "tokeninfo_endpoint": None,
        "tokenrevoke_endpoint": None,
        "userinfo_endpoint": None,
        "end_session_endpoint": None,
    }
    tokens = server.issue_grant()
    with EmpowerIDClient(
        server=server.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    ) as eid:
        assert eid.metadata.discovered
        assert eid.introspect(tokens["access_token"])["active"] is True
        assert eid.userinfo(tokens["access_token"])["id"] == tokens["id"]
        assert eid.logout_url().startswith(server.url + "/oauth/v2/ui/logout?")


def test_an_http_endpoint_in_the_document_is_ignored(
    server: EmpowerIDTestServer, eid_logs: list[logging.LogRecord]
) -> None:
    # The client secret would travel in clear text: the default path is used instead.
    server.discovery_overrides = {"tokeninfo_endpoint": "http://eid.example.com/tokeninfo"}
    tokens = server.issue_grant()
    with EmpowerIDClient(
        server=server.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    ) as eid:
        assert eid.introspect(tokens["access_token"])["active"] is True
        assert eid.metadata.introspection_endpoint == server.url + "/oauth/v2/tokeninfo"
    assert any("ignored an endpoint" in r.getMessage() for r in eid_logs)


def test_explicit_endpoints_win_over_the_document(server: EmpowerIDTestServer) -> None:
    elsewhere = EmpowerIDTestServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with elsewhere:
        tokens = elsewhere.issue_grant()
        with EmpowerIDClient(
            server=server.url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            userinfo_endpoint=elsewhere.url + "/oauth/v2/userinfo",
        ) as eid:
            # Only the other server knows the token: the explicit endpoint was used.
            assert eid.userinfo(tokens["access_token"])["id"] == tokens["id"]
            assert eid.metadata.discovered


def test_discovery_is_read_once(server: EmpowerIDTestServer, eid: EmpowerIDClient) -> None:
    tokens = server.issue_grant()
    eid.introspect(tokens["access_token"])
    server.publish_discovery = False
    eid.userinfo(tokens["access_token"])  # cached metadata: still the document's
    assert eid.metadata.discovered
