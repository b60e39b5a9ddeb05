"""The grants that need no person, through ``EmpowerIDClient`` against the loopback server:
client credentials (with EmpowerID's ``username``), password (EmpowerID's Basic form and
RFC 6749's body form), JWT bearer, refresh and token exchange. Each: the token, what went
on the wire, EmpowerID's quirks, and failures that say what went wrong without a secret."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import pytest
import requests

from eid_auth import (
    ConfigurationError,
    EmpowerIDClient,
    InvalidClientError,
    InvalidGrantError,
    TokenEndpointError,
)
from eid_auth.testing import EmpowerIDTestServer
from eid_auth.testing.grants._issue import application_person_id

from .conftest import CLIENT_ID, CLIENT_SECRET

TIMEOUT = 10


@pytest.fixture
def eid(server: EmpowerIDTestServer) -> Iterator[EmpowerIDClient]:
    with EmpowerIDClient(
        server=server.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, max_retries=0
    ) as client:
        yield client


def api_whoami(server: EmpowerIDTestServer, access_token: str) -> requests.Response:
    return requests.get(
        server.api_url("/api/whoami"),
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=TIMEOUT,
    )


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def no_secret_in(text: str, server: EmpowerIDTestServer) -> bool:
    return not any(secret in text for secret in server.issued_secrets if len(secret) >= 6)


# -- client credentials ------------------------------------------------------------------


def test_client_credentials_gives_the_application_a_token(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    token = eid.client_credentials(scope="api")
    assert token.refresh_token is None  # RFC 6749, section 4.4.3
    assert token.id == application_person_id(CLIENT_ID)
    assert api_whoami(server, token.access_token).json()["id"] == token.id
    (request,) = server.token_request_log
    assert request.form == {
        "grant_type": "client_credentials",
        "scope": "api",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    assert server.grants_served == {"client_credentials": 1}


def test_client_credentials_with_username_is_that_persons_token(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    user = server.add_user("asmith", "unused-password-1")
    token = eid.client_credentials(scope="api", username="asmith")
    assert token.id == user.person_id
    assert api_whoami(server, token.access_token).json()["id"] == user.person_id
    assert server.token_request_log[0].form["username"] == "asmith"


def test_client_credentials_for_an_unknown_username_is_refused(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    with pytest.raises(InvalidGrantError, match="client_credentials grant"):
        eid.client_credentials(username="nobody")


def test_client_credentials_when_the_application_may_not_use_them(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    server.client_credentials_enabled = False  # EmpowerID's "Enable Client Credential Flow"
    with pytest.raises(TokenEndpointError) as caught:
        eid.client_credentials(scope="api")
    assert caught.value.error == "unauthorized_client"
    assert caught.value.status_code == 400
    assert "unauthorized_client" in str(caught.value)
    assert server.token_requests == 1  # an OAuth error is not retried
    assert server.grants_served == {}


def test_client_credentials_with_a_wrong_secret(server: EmpowerIDTestServer) -> None:
    with (
        EmpowerIDClient(
            server=server.url, client_id=CLIENT_ID, client_secret="not-the-secret"
        ) as eid,
        pytest.raises(InvalidClientError) as caught,
    ):
        eid.client_credentials()
    assert "not-the-secret" not in str(caught.value)
    assert "client_id, client_secret" in str(caught.value)


def test_client_credentials_with_client_secret_basic(server: EmpowerIDTestServer) -> None:
    with EmpowerIDClient(
        server=server.url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        client_auth="client_secret_basic",
    ) as eid:
        eid.client_credentials()
    (request,) = server.token_request_log
    assert request.header("Authorization") == basic(CLIENT_ID, CLIENT_SECRET)
    assert "client_secret" not in request.form


# -- password ------------------------------------------------------------------------------


def test_password_grant_in_empowerids_form(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    user = server.test_user
    token = eid.password(user.username, user.password, scope="openid")
    assert token.id == user.person_id
    assert token.refresh_token is not None
    assert token.id_token is not None
    assert api_whoami(server, token.access_token).status_code == 200
    (request,) = server.token_request_log
    # The person's credentials in HTTP Basic, the client's in the body.
    assert request.header("Authorization") == basic(user.username, user.password)
    assert request.form == {
        "grant_type": "password",
        "scope": "openid",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    assert server.grants_served == {"password": 1}


def test_password_grant_in_empowerids_form_with_client_secret_basic_configured(
    server: EmpowerIDTestServer,
) -> None:
    # Basic holds the person's credentials, so the client's still go in the body.
    user = server.test_user
    with EmpowerIDClient(
        server=server.url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        client_auth="client_secret_basic",
    ) as eid:
        eid.password(user.username, user.password)
    (request,) = server.token_request_log
    assert request.header("Authorization") == basic(user.username, user.password)
    assert request.form["client_secret"] == CLIENT_SECRET


def test_password_grant_in_rfc_6749s_form(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    user = server.add_user("asmith", "pässwörd with spaces")
    token = eid.password("asmith", "pässwörd with spaces", user_credentials="body")
    assert token.id == user.person_id
    (request,) = server.token_request_log
    assert request.header("Authorization") is None
    assert request.form["username"] == "asmith"
    assert request.form["password"] == "pässwörd with spaces"


def test_password_grant_with_a_non_ascii_password_in_basic(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    user = server.add_user("zoë", "密码-password")
    assert eid.password("zoë", "密码-password").id == user.person_id


@pytest.mark.parametrize("user_credentials", ["basic", "body"])
def test_password_grant_with_a_wrong_password_names_no_secret(
    server: EmpowerIDTestServer, eid: EmpowerIDClient, user_credentials: str
) -> None:
    wrong = "not-jdoes-password"
    with pytest.raises(InvalidGrantError) as caught:
        eid.password("jdoe", wrong, user_credentials=user_credentials)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "password grant" in message
    assert "wrong username or password" in message
    assert wrong not in message
    assert no_secret_in(message + repr(caught.value), server)


def test_password_grant_refuses_empty_credentials_before_sending(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    with pytest.raises(ConfigurationError, match="password"):
        eid.password("jdoe", "")
    with pytest.raises(ConfigurationError, match="user_credentials"):
        eid.password("jdoe", "x", user_credentials="header")  # type: ignore[arg-type]
    assert server.token_requests == 0


def test_password_grant_refresh_token_refreshes(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    user = server.test_user
    first = eid.password(user.username, user.password)
    assert first.refresh_token is not None
    second = eid.refresh(first.refresh_token)
    assert second.id == user.person_id
    assert second.refresh_token not in (None, first.refresh_token)  # rotated
    assert server.grants_served == {"password": 1, "refresh_token": 1}


def test_the_test_server_reads_basic_as_the_persons_only_without_a_body_password(
    server: EmpowerIDTestServer,
) -> None:
    # Without a password in the body, Basic is the person's: the client's are in the body.
    user = server.test_user
    r = requests.post(
        server.token_endpoint,
        data={"grant_type": "password", "client_id": CLIENT_ID},
        auth=(user.username, user.password),
        timeout=TIMEOUT,
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    # With username and password in the body, Basic is the client's (RFC 6749).
    r = requests.post(
        server.token_endpoint,
        data={"grant_type": "password", "username": user.username, "password": user.password},
        auth=(CLIENT_ID, CLIENT_SECRET),
        timeout=TIMEOUT,
    )
    assert r.status_code == 200
    assert r.json()["id"] == user.person_id
    # EmpowerID's form without any Basic header.
    r = requests.post(
        server.token_endpoint,
        data={"grant_type": "password", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        timeout=TIMEOUT,
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_the_password_of_a_test_user_counts_as_a_secret(server: EmpowerIDTestServer) -> None:
    server.add_user("asmith", "asmiths-password")
    assert {"asmiths-password", server.test_user.password} <= server.issued_secrets


# -- JWT bearer ----------------------------------------------------------------------------

ASSERTION_ISSUER = "my-service"
ASSERTION_SECRET = "a-shared-secret-for-hs256-assertions"


def assertion(
    server: EmpowerIDTestServer,
    *,
    key: object = None,
    alg: str = "HS256",
    **claims: object,
) -> str:
    from joserfc import jwt
    from joserfc.jwk import OctKey

    now = int(time.time())
    body = {
        "iss": ASSERTION_ISSUER,
        "sub": "jdoe",
        "aud": server.token_endpoint,
        "iat": now,
        "exp": now + 300,
        **claims,
    }
    signing_key = key if key is not None else OctKey.import_key(ASSERTION_SECRET)
    return jwt.encode({"alg": alg}, body, signing_key)  # type: ignore[arg-type]


def test_jwt_bearer_with_an_hs256_assertion(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    server.trust_assertion_issuer(ASSERTION_ISSUER, ASSERTION_SECRET)
    signed = assertion(server)
    token = eid.jwt_bearer(signed, scope="api")
    assert token.id == server.test_user.person_id  # sub names the test user
    assert token.refresh_token is None
    assert api_whoami(server, token.access_token).status_code == 200
    (request,) = server.token_request_log
    assert request.form == {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": signed,
        "scope": "api",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    assert server.grants_served == {"urn:ietf:params:oauth:grant-type:jwt-bearer": 1}


def test_jwt_bearer_with_an_rs256_assertion(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048)
    server.trust_assertion_issuer(ASSERTION_ISSUER, key.as_dict(private=False))
    token = eid.jwt_bearer(
        assertion(server, key=key, alg="RS256", sub="f3c1b6d2-0000-4000-8000-000000000001"),
        scope="api",
    )
    assert token.id == "f3c1b6d2-0000-4000-8000-000000000001"
    # Signed by another key: refused.
    other = RSAKey.generate_key(2048)
    with pytest.raises(InvalidGrantError, match="bad signature"):
        eid.jwt_bearer(assertion(server, key=other, alg="RS256"), scope="api")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": 1_000_000}, "expired"),
        ({"aud": "https://elsewhere.example/token"}, "aud"),
        ({"iss": "someone-else"}, "untrusted issuer"),
        ({"nbf": 4_000_000_000}, "not valid yet"),
    ],
    ids=["expired", "wrong-audience", "untrusted-issuer", "not-yet-valid"],
)
def test_jwt_bearer_refuses_an_unusable_assertion_without_quoting_it(
    server: EmpowerIDTestServer,
    eid: EmpowerIDClient,
    claims: dict[str, object],
    reason: str,
) -> None:
    server.trust_assertion_issuer(ASSERTION_ISSUER, ASSERTION_SECRET)
    signed = assertion(server, **claims)
    with pytest.raises(InvalidGrantError, match=reason) as caught:
        eid.jwt_bearer(signed, scope="api")
    assert signed not in str(caught.value)
    assert "jwt-bearer grant" in str(caught.value)


def test_jwt_bearer_refuses_an_assertion_signed_with_alg_none(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    server.trust_assertion_issuer(ASSERTION_ISSUER, ASSERTION_SECRET)
    header, claims, _ = assertion(server).split(".")
    unsigned = ".".join(
        [base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode(), claims, ""]
    )
    assert header != unsigned.split(".")[0]
    with pytest.raises(InvalidGrantError, match="bad signature"):
        eid.jwt_bearer(unsigned, scope="api")


def test_jwt_bearer_needs_a_scope(server: EmpowerIDTestServer, eid: EmpowerIDClient) -> None:
    with pytest.raises(ConfigurationError, match="scope"):
        eid.jwt_bearer("a.b.c", scope="")
    r = requests.post(
        server.token_endpoint,
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": "a.b.c",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        timeout=TIMEOUT,
    )
    assert r.status_code == 400
    assert r.json() == {"error": "invalid_request", "error_description": "missing scope"}


# -- refresh -------------------------------------------------------------------------------


def test_refresh_with_a_narrower_scope(server: EmpowerIDTestServer, eid: EmpowerIDClient) -> None:
    tokens = server.issue_grant(scope="openid profile api")
    token = eid.refresh(tokens["refresh_token"], scope="api")
    assert token.refresh_token not in (None, tokens["refresh_token"])
    assert server.token_request_log[0].form["scope"] == "api"
    with pytest.raises(InvalidGrantError, match="sign in again"):
        eid.refresh(tokens["refresh_token"])  # rotated away: reuse


# -- token exchange ------------------------------------------------------------------------

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def test_token_exchange_of_a_trusted_issuers_jwt(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    # As EmpowerID documents it: another issuer's (Azure's) token for an EmpowerID token.
    server.trust_assertion_issuer(ASSERTION_ISSUER, ASSERTION_SECRET)
    foreign = assertion(server, aud="api://azure-app")
    token = eid.token_exchange(foreign, JWT_TYPE, scope="api")
    assert token.id == server.test_user.person_id
    assert token.raw["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert api_whoami(server, token.access_token).status_code == 200
    (request,) = server.token_request_log
    # EmpowerID documents the client's credentials in HTTP Basic for this grant.
    assert request.header("Authorization") == basic(CLIENT_ID, CLIENT_SECRET)
    assert request.form == {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": foreign,
        "subject_token_type": JWT_TYPE,
        "scope": "api",
    }


def test_token_exchange_of_this_servers_access_token(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    tokens = server.issue_grant(scope="openid")
    token = eid.token_exchange(tokens["access_token"], ACCESS_TOKEN_TYPE, scope="api")
    assert token.id == tokens["id"]
    assert token.access_token != tokens["access_token"]


def test_token_exchange_refuses_a_revoked_subject_token(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    tokens = server.issue_grant()
    server.revoke_access_token(tokens["access_token"])
    with pytest.raises(InvalidGrantError, match="token-exchange grant") as caught:
        eid.token_exchange(tokens["access_token"], ACCESS_TOKEN_TYPE, scope="api")
    assert "revoked" in str(caught.value)
    assert no_secret_in(str(caught.value), server)


def test_token_exchange_refuses_an_unknown_subject_token_type(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    with pytest.raises(TokenEndpointError) as caught:
        eid.token_exchange("some-saml", "urn:ietf:params:oauth:token-type:saml2", scope="api")
    assert caught.value.error == "invalid_request"
    assert "subject_token_type" in str(caught.value)


def test_token_exchange_of_a_public_client_sends_its_client_id(
    server: EmpowerIDTestServer,
) -> None:
    # No secret, so no HTTP Basic: the client ID goes in the body (the server refuses it).
    with (
        EmpowerIDClient(server=server.url, client_id=CLIENT_ID) as eid,
        pytest.raises(InvalidClientError),
    ):
        eid.token_exchange("at_x", ACCESS_TOKEN_TYPE, scope="api")
    (request,) = server.token_request_log
    assert request.header("Authorization") is None
    assert request.form["client_id"] == CLIENT_ID
