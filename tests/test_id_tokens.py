"""ID tokens: every grant of ``EmpowerIDClient`` validates the one in its answer against the
loopback server's JWKS (signature, algorithm, ``iss``, ``aud``, ``exp``, ``iat``, ``nonce``),
with EmpowerID's issuer rule (``"EmpowerID"`` or the discovery document's ``issuer``, or
exactly the one configured); the keys are read once, and again when the server rolls them
over; a JWKS that cannot be read says so. ``import eid_auth`` loads no JOSE library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

from eid_auth import (
    ConfigurationError,
    EmpowerIDClient,
    InvalidIDTokenError,
    InvalidTokenResponseError,
    Token,
)
from eid_auth import _id_token as id_token_module
from eid_auth.testing import EmpowerIDTestServer

from .conftest import CLIENT_ID, CLIENT_SECRET
from .hostile_server import HostileServer, Wire

TIMEOUT = 10


def make_client(server: EmpowerIDTestServer, **kwargs: Any) -> EmpowerIDClient:
    return EmpowerIDClient(
        server=server.url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        max_retries=0,
        timeout=TIMEOUT,
        **kwargs,
    )


@pytest.fixture
def eid(server: EmpowerIDTestServer) -> Iterator[EmpowerIDClient]:
    with make_client(server) as client:
        yield client


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    found: dict[str, Any] = {
        "iss": "EmpowerID",
        "sub": "c0a8f6d2-2b1e-4b7e-9d55-0e4a2f1c9b10",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 600,
    }
    found.update(changes)
    return {name: value for name, value in found.items() if value is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def server_kid(server: EmpowerIDTestServer) -> str:
    jwks = requests.get(server.url + "/oauth/.well-known/jwks", timeout=TIMEOUT).json()
    kid: str = jwks["keys"][0]["kid"]
    return kid


def refused(eid: EmpowerIDClient, id_token: str, **kwargs: Any) -> str:
    """The message of the InvalidIDTokenError that validating `id_token` raises."""
    with pytest.raises(InvalidIDTokenError) as caught:
        eid.validate_id_token(id_token, **kwargs)
    message = str(caught.value)
    assert id_token not in message
    return message


# -- through the grants --------------------------------------------------------------------


def test_refresh_validates_the_id_token_against_the_servers_jwks(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    grant = server.issue_grant(scope="openid profile")
    token = eid.refresh(grant["refresh_token"])
    assert token.id_token is not None
    assert server.jwks_requests == 1
    found = eid.validate_id_token(token.id_token)
    assert found["iss"] == "EmpowerID"  # while discovery says the server's URL
    assert eid.metadata.issuer == server.url
    assert found["aud"] == CLIENT_ID
    assert found["sub"] == grant["id"]
    assert found["exp"] > time.time()
    assert server.jwks_requests == 1  # the keys are kept


def test_a_refresh_answer_whose_id_token_fails_is_refused(server: EmpowerIDTestServer) -> None:
    # An ID token from an issuer this client does not expect: the grant raises.
    other = EmpowerIDTestServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    other.id_token_issuer = "https://elsewhere.example.com"
    with other, make_client(other) as eid:
        grant = other.issue_grant(scope="openid")
        with pytest.raises(InvalidIDTokenError, match="elsewhere") as caught:
            eid.refresh(grant["refresh_token"])
    assert isinstance(caught.value, InvalidTokenResponseError)


def test_the_grants_without_a_person_validate_their_id_tokens(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    credentials = eid.client_credentials(scope="openid")
    assert credentials.id_token is not None
    assert server.jwks_requests == 1
    user = server.test_user
    password = eid.password(user.username, user.password, scope="openid profile")
    assert password.id_token is not None
    assert eid.validate_id_token(password.id_token)["sub"] == user.person_id
    # An ID token this client does not accept makes the grant fail.
    server.id_token_issuer = "urn:someone-else"
    with pytest.raises(InvalidIDTokenError, match="someone-else"):
        eid.password(user.username, user.password, scope="openid")


def test_an_answer_without_an_id_token_needs_no_keys(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    token = eid.refresh(server.issue_grant(scope="profile")["refresh_token"])
    assert token.id_token is None
    assert eid._checked(token, nonce="n-0S6_WzA2Mj") is token
    assert server.jwks_requests == 0


def test_the_keys_are_read_with_token_client_a_requests_session(
    server: EmpowerIDTestServer,
) -> None:
    with requests.Session() as session, make_client(server, token_client=session) as eid:
        token = eid.refresh(server.issue_grant(scope="openid")["refresh_token"])
    assert token.id_token is not None
    assert server.jwks_requests == 1


def test_the_keys_are_read_with_the_api_key(server: EmpowerIDTestServer) -> None:
    with (
        EmpowerIDTestServer(api_key="k-jwks-1234") as keyed,
        make_client(keyed, api_key="k-jwks-1234") as eid,
    ):
        token = eid.refresh(keyed.issue_grant(scope="openid")["refresh_token"])
        assert token.id_token is not None
        assert keyed.jwks_requests == 1


# -- signatures and keys ---------------------------------------------------------------


def test_a_token_signed_with_another_key_is_refused(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    forged = jwt.encode(
        {"alg": "RS256", "kid": server_kid(server)}, claims(), RSAKey.generate_key(2048)
    )
    assert "signature does not verify" in refused(eid, forged)


def test_a_token_whose_claims_were_changed_is_refused(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    header, _, signature = server.sign_id_token(claims(sub="someone")).split(".")
    altered = f"{header}.{b64url(json.dumps(claims(sub='admin')).encode())}.{signature}"
    assert "signature does not verify" in refused(eid, altered)


def test_a_new_kid_reads_the_keys_again_once(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    eid.refresh(server.issue_grant(scope="openid")["refresh_token"])
    assert server.jwks_requests == 1
    server.rotate_signing_key()
    # The server rolled its keys over: a token under the new kid reads them again.
    assert eid.validate_id_token(server.sign_id_token(claims()))["sub"]
    assert server.jwks_requests == 2
    assert eid.validate_id_token(server.sign_id_token(claims()))["sub"]
    assert server.jwks_requests == 2
    # A made-up kid right after: refused without reading the keys again.
    made_up = jwt.encode({"alg": "RS256", "kid": "made-up"}, claims(), RSAKey.generate_key(2048))
    message = refused(eid, made_up)
    assert "'made-up'" in message
    assert "at most once every 60s" in message
    assert server.jwks_requests == 2


def test_a_made_up_kid_reads_the_keys_again_once_the_interval_has_passed(
    server: EmpowerIDTestServer, eid: EmpowerIDClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    made_up = jwt.encode({"alg": "RS256", "kid": "made-up"}, claims(), RSAKey.generate_key(2048))
    eid.validate_id_token(server.sign_id_token(claims()))
    assert "read again just now" in refused(eid, made_up)
    assert "at most once every 60s" in refused(eid, made_up)
    assert server.jwks_requests == 2
    monkeypatch.setattr(id_token_module, "JWKS_REFETCH_INTERVAL", 0.0)
    assert "read again just now" in refused(eid, made_up)
    assert server.jwks_requests == 3


def test_a_key_withdrawn_by_the_server_stops_counting_once_the_keys_are_old(
    server: EmpowerIDTestServer, eid: EmpowerIDClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = server.sign_id_token(claims())
    assert eid.validate_id_token(old)
    server.rotate_signing_key(keep_previous=False)
    assert eid.validate_id_token(old)  # the kept keys are fresh
    assert server.jwks_requests == 1
    monkeypatch.setattr(id_token_module, "KEYS_MAX_AGE", 0.0)
    assert "is not in the server's JWKS" in refused(eid, old)
    assert eid.validate_id_token(server.sign_id_token(claims()))


def test_old_keys_are_kept_when_reading_them_again_fails(
    server: EmpowerIDTestServer, monkeypatch: pytest.MonkeyPatch, eid_logs: list[Any]
) -> None:
    jwks = requests.get(server.url + "/oauth/.well-known/jwks", timeout=TIMEOUT).content
    answers = iter([("200 OK", jwks), ("503 Service Unavailable", b"{}")])

    def script(wire: Wire) -> None:
        status, body = next(answers, ("503 Service Unavailable", b"{}"))
        wire.send(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )

    with (
        HostileServer(script) as keys,
        make_client(server, jwks_uri=keys.url("/oauth/.well-known/jwks")) as eid,
    ):
        assert eid.validate_id_token(server.sign_id_token(claims()))
        monkeypatch.setattr(id_token_module, "KEYS_MAX_AGE", 0.0)
        assert eid.validate_id_token(server.sign_id_token(claims()))
    assert any("kept the server's keys" in record.getMessage() for record in eid_logs)


def test_a_token_endpoint_of_its_own_needs_jwks_uri_for_id_tokens(
    server: EmpowerIDTestServer,
) -> None:
    proxied = server.url + "/proxy/token"
    id_token = server.sign_id_token(claims())
    with (
        EmpowerIDClient(token_endpoint=proxied, client_id=CLIENT_ID) as eid,
        pytest.raises(ConfigurationError, match="jwks_uri="),
    ):
        eid.validate_id_token(id_token)
    jwks_uri = server.url + "/oauth/.well-known/jwks"
    with EmpowerIDClient(token_endpoint=proxied, client_id=CLIENT_ID, jwks_uri=jwks_uri) as eid:
        # No discovery document: "EmpowerID" is the issuer expected, RS256 the algorithm.
        assert eid.validate_id_token(server.sign_id_token(claims()))
        assert "expected 'EmpowerID';" in refused(eid, server.sign_id_token(claims(iss="x")))


def test_an_unknown_kid_still_missing_after_reading_again_is_refused(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    eid.validate_id_token(server.sign_id_token(claims()))
    # Another server's token: same iss and aud, but none of this server's kids.
    with EmpowerIDTestServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as other:
        foreign = other.sign_id_token(claims())
    assert "read again just now" in refused(eid, foreign)
    assert server.jwks_requests == 2


def test_a_key_retired_by_the_server_no_longer_verifies(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    old = server.sign_id_token(claims())
    server.rotate_signing_key(keep_previous=False)
    # A client that never saw the old key reads only the new one.
    assert "is not in the server's JWKS" in refused(eid, old)
    assert eid.validate_id_token(server.sign_id_token(claims()))


def test_alg_none_is_refused(server: EmpowerIDTestServer, eid: EmpowerIDClient) -> None:
    header = b64url(json.dumps({"alg": "none", "kid": server_kid(server)}).encode())
    unsigned = f"{header}.{b64url(json.dumps(claims()).encode())}."
    assert "alg 'none'" in refused(eid, unsigned)
    assert server.jwks_requests == 1  # server_kid's own: the client never asked for keys


def test_hs256_keyed_with_the_public_key_is_refused(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    # The classic confusion: HMAC keyed with the JWKS's public key, which anyone can read.
    kid = server_kid(server)
    jwks = requests.get(server.url + "/oauth/.well-known/jwks", timeout=TIMEOUT).json()
    public_pem = RSAKey.import_key(jwks["keys"][0]).as_pem(private=False)
    signing_input = (
        b64url(json.dumps({"alg": "HS256", "kid": kid}).encode())
        + "."
        + b64url(json.dumps(claims()).encode())
    )
    mac = hmac.new(public_pem, signing_input.encode("ascii"), hashlib.sha256).digest()
    message = refused(eid, f"{signing_input}.{b64url(mac)}")
    assert "alg 'HS256'" in message
    assert "only RS256" in message


def test_tokens_that_are_not_signed_jwts_are_refused(eid: EmpowerIDClient) -> None:
    assert "three dot-separated parts" in refused(eid, "not-a-jwt")
    assert "encrypted (JWE)" in refused(eid, "a.b.c.d.e")
    assert "header is not base64url-encoded JSON" in refused(eid, "%%%.b.c")


# -- claims ------------------------------------------------------------------------------


def test_a_token_for_another_audience_is_refused(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    message = refused(eid, server.sign_id_token(claims(aud="another-app")))
    assert "'another-app'" in message
    assert f"client_id '{CLIENT_ID}'" in message


def test_several_audiences_need_this_client_as_authorized_party(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    both = [CLIENT_ID, "another-app"]
    assert "azp" in refused(eid, server.sign_id_token(claims(aud=both)))
    assert "azp" in refused(eid, server.sign_id_token(claims(aud=both, azp="another-app")))
    assert eid.validate_id_token(server.sign_id_token(claims(aud=both, azp=CLIENT_ID)))


def test_an_expired_token_is_refused_after_a_small_leeway(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    now = int(time.time())
    assert "expired" in refused(eid, server.sign_id_token(claims(iat=now - 7200, exp=now - 600)))
    # A few seconds of clock difference are no reason to refuse.
    assert eid.validate_id_token(server.sign_id_token(claims(iat=now - 700, exp=now - 10)))
    assert "exp is missing" in refused(eid, server.sign_id_token(claims(exp=None)))
    assert "exp is missing" in refused(eid, server.sign_id_token(claims(exp="tomorrow")))


def test_a_token_issued_in_the_future_is_refused(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    now = int(time.time())
    message = refused(eid, server.sign_id_token(claims(iat=now + 3600, exp=now + 7200)))
    assert "in the future" in message
    assert "iat is missing" in refused(eid, server.sign_id_token(claims(iat=None)))


def test_a_token_without_a_subject_is_refused(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    assert "sub" in refused(eid, server.sign_id_token(claims(sub=None)))


def test_the_nonce_sent_must_come_back(server: EmpowerIDTestServer, eid: EmpowerIDClient) -> None:
    with_nonce = server.sign_id_token(claims(nonce="n-0S6_WzA2Mj"))
    assert eid.validate_id_token(with_nonce, nonce="n-0S6_WzA2Mj")["nonce"] == "n-0S6_WzA2Mj"
    assert "not the one the sign-in sent" in refused(eid, with_nonce, nonce="n-other")
    assert "has no nonce" in refused(eid, server.sign_id_token(claims()), nonce="n-0S6_WzA2Mj")
    # The check point every grant's token passes checks it too.
    token = Token(access_token="at-1234", id_token=with_nonce)
    assert eid._checked(token, nonce="n-0S6_WzA2Mj") is token
    with pytest.raises(InvalidIDTokenError, match="nonce"):
        eid._checked(token, nonce="n-other")
    # Without a nonce to compare (a refresh), one in the token is fine.
    assert eid.validate_id_token(with_nonce)


# -- the issuer ------------------------------------------------------------------------


def test_by_default_empowerid_and_the_discovery_issuer_are_accepted(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    assert eid.validate_id_token(server.sign_id_token(claims(iss="EmpowerID")))
    assert eid.validate_id_token(server.sign_id_token(claims(iss=server.url)))
    message = refused(eid, server.sign_id_token(claims(iss="https://elsewhere.example.com")))
    assert "'https://elsewhere.example.com'" in message
    assert f"expected 'EmpowerID' or '{server.url}'" in message


def test_an_issuer_given_to_the_client_is_the_only_one_accepted(
    server: EmpowerIDTestServer,
) -> None:
    with make_client(server, issuer="https://eid.example.com/tenant") as eid:
        assert eid.validate_id_token(
            server.sign_id_token(claims(iss="https://eid.example.com/tenant"))
        )
        message = refused(eid, server.sign_id_token(claims(iss="EmpowerID")))
        assert "is 'EmpowerID', expected 'https://eid.example.com/tenant'" in message
        assert server.url not in message
        message = refused(eid, server.sign_id_token(claims(iss=server.url)))
        assert f"is '{server.url}', expected 'https://eid.example.com/tenant';" in message


def test_a_server_whose_tokens_carry_the_discovery_issuer(server: EmpowerIDTestServer) -> None:
    with (
        EmpowerIDTestServer(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, id_token_issuer=None
        ) as plain,
        make_client(plain) as eid,
    ):
        token = eid.refresh(plain.issue_grant(scope="openid")["refresh_token"])
        assert token.id_token is not None
        assert eid.validate_id_token(token.id_token)["iss"] == plain.url


def test_a_server_with_its_own_issuer_needs_it_configured(server: EmpowerIDTestServer) -> None:
    with EmpowerIDTestServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, id_token_issuer="urn:eid:contoso"
    ) as custom:
        with make_client(custom) as eid, pytest.raises(InvalidIDTokenError) as caught:
            eid.refresh(custom.issue_grant(scope="openid")["refresh_token"])
        message = str(caught.value)
        assert "'urn:eid:contoso'" in message
        assert f"'EmpowerID' or '{custom.url}'" in message
        assert "EmpowerIDClient(issuer=...)" in message
        with make_client(custom, issuer="urn:eid:contoso") as eid:
            eid.refresh(custom.issue_grant(scope="openid")["refresh_token"])


def test_a_long_issuer_is_cut_short_in_the_message(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    message = refused(eid, server.sign_id_token(claims(iss="x" * 20_000)))
    assert len(message) < 500


# -- a JWKS that cannot be used --------------------------------------------------------------


def answering(status: str, body: bytes) -> HostileServer:
    def script(wire: Wire) -> None:
        wire.send(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )

    return HostileServer(script)


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        ("503 Service Unavailable", b'{"error": "down"}', "HTTP 503"),
        ("200 OK", b"<html>maintenance</html>", "not JSON"),
        ("200 OK", b'["not", "a", "jwk set"]', "not a JWK Set"),
        ("200 OK", b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "no usable signing key"),
        ("200 OK", b'{"keys": [{"kty": "RSA", "n": "AQAB"}]}', "no usable signing key"),
    ],
)
def test_a_jwks_that_cannot_be_used_says_so(
    server: EmpowerIDTestServer, status: str, body: bytes, reason: str
) -> None:
    with (
        answering(status, body) as jwks,
        make_client(server, jwks_uri=jwks.url("/oauth/.well-known/jwks")) as eid,
    ):
        grant = server.issue_grant(scope="openid")
        with pytest.raises(InvalidIDTokenError) as caught:
            eid.refresh(grant["refresh_token"])
    message = str(caught.value)
    assert "the server's keys (JWKS at http://127.0.0.1:" in message
    assert reason in message


def test_an_unreachable_jwks_says_so_and_is_tried_again(server: EmpowerIDTestServer) -> None:
    with answering("200 OK", b"") as gone:
        dead = gone.url("/oauth/.well-known/jwks")
    with make_client(server, jwks_uri=dead) as eid:
        id_token = server.sign_id_token(claims())
        assert "could not be read" in refused(eid, id_token)
        assert "could not be read" in refused(eid, id_token)


def test_a_jwks_over_the_size_cap_says_so(server: EmpowerIDTestServer) -> None:
    body = b'{"keys": [], "padding": "' + b"x" * (300 * 1024) + b'"}'
    with (
        answering("200 OK", body) as jwks,
        make_client(server, jwks_uri=jwks.url("/oauth/.well-known/jwks")) as eid,
    ):
        assert "over 256 KiB" in refused(eid, server.sign_id_token(claims()))


# -- pay only for what you use ---------------------------------------------------------------


def test_import_eid_auth_loads_no_jose_library() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import eid_auth, sys; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in {'joserfc', 'cryptography'}))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"
