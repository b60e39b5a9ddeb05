"""Tests for eid_auth.testing: real requests/httpx traffic against the loopback server."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from eid_auth.testing import EmpowerIDTestServer, FaultSpec, RecordedRequest

CLIENT = {"client_id": "test-client", "client_secret": "test-client-secret"}
TIMEOUT = 30.0  # every client call is bounded; generous for shared, noisy CI machines

MakeServer = Callable[..., EmpowerIDTestServer]


@pytest.fixture
def make_server() -> Iterator[MakeServer]:
    """Start servers with custom settings; stop them (and check for handler bugs) after."""
    servers: list[EmpowerIDTestServer] = []

    def make(**kwargs: Any) -> EmpowerIDTestServer:
        server = EmpowerIDTestServer(**kwargs)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        assert server.handler_errors == []


@pytest.fixture
def server(empowerid_server: EmpowerIDTestServer) -> Iterator[EmpowerIDTestServer]:
    """The plugin's default server, also checked for exceptions inside its handlers."""
    yield empowerid_server
    assert empowerid_server.handler_errors == []


def refresh(
    server: EmpowerIDTestServer,
    refresh_token: str,
    *,
    timeout: float = TIMEOUT,
    headers: dict[str, str] | None = None,
    **extra: str,
) -> requests.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, **CLIENT, **extra}
    return requests.post(server.token_endpoint, data=form, headers=headers, timeout=timeout)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_get(server: EmpowerIDTestServer, path: str, token: str | None) -> requests.Response:
    headers = bearer(token) if token is not None else {}
    return requests.get(server.api_url(path), headers=headers, timeout=TIMEOUT)


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


# -- token endpoint: success shape, rotation, reuse ------------------------------------------


def test_refresh_success_has_empowerid_shape(server: EmpowerIDTestServer) -> None:
    tokens = server.issue_grant(scope="openid profile")
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["scope"] == "openid profile"
    assert isinstance(tokens["id_token"], str)

    r = refresh(server, tokens["refresh_token"])

    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert list(body) == [
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "id_token",
        "id",
        "error",
        "error_description",
    ]
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["error"] == ""
    assert body["error_description"] == "null"
    assert body["id"] == tokens["id"]
    assert body["access_token"] != tokens["access_token"]
    assert body["refresh_token"] != tokens["refresh_token"]
    claims = jwt_claims(body["id_token"])
    assert claims["sub"] == tokens["id"]
    assert claims["aud"] == "test-client"
    assert server.refresh_grants == 1
    assert server.token_requests == 1


def test_id_token_is_null_without_openid_scope(make_server: MakeServer) -> None:
    server = make_server(include_empty_error_fields=False)
    tokens = server.issue_grant(scope="profile")
    assert tokens["id_token"] is None

    body = refresh(server, tokens["refresh_token"]).json()

    assert body["id_token"] is None
    assert "error" not in body
    assert "error_description" not in body


def test_no_lifetime_omits_expires_in(make_server: MakeServer) -> None:
    server = make_server(access_token_lifetime=None)
    tokens = server.issue_grant()
    assert "expires_in" not in tokens

    body = refresh(server, tokens["refresh_token"]).json()

    assert "expires_in" not in body
    assert api_get(server, "/api/whoami", body["access_token"]).status_code == 200


def test_rotation_chain(server: EmpowerIDTestServer) -> None:
    rt = server.issue_grant()["refresh_token"]
    seen = {rt}
    for _ in range(3):
        r = refresh(server, rt)
        assert r.status_code == 200
        rt = r.json()["refresh_token"]
        assert rt not in seen
        seen.add(rt)
    assert server.refresh_grants == 3
    assert server.reuse_detected == 0


def test_reuse_of_rotated_token_revokes_the_grant(server: EmpowerIDTestServer) -> None:
    tokens = server.issue_grant()
    first = refresh(server, tokens["refresh_token"]).json()
    assert api_get(server, "/api/whoami", first["access_token"]).status_code == 200

    replay = refresh(server, tokens["refresh_token"])

    assert replay.status_code == 400
    assert replay.json() == {
        "error": "invalid_grant",
        "error_description": "refresh token has already been used",
    }
    assert server.reuse_detected == 1
    # The whole grant is gone: access tokens and the current refresh token alike.
    for access_token in (tokens["access_token"], first["access_token"]):
        r = api_get(server, "/api/whoami", access_token)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    current = refresh(server, first["refresh_token"])
    assert current.status_code == 400
    assert current.json()["error"] == "invalid_grant"
    assert server.refresh_grants == 1


def test_reuse_without_detection_keeps_the_grant(make_server: MakeServer) -> None:
    server = make_server(reuse_detection=False)
    tokens = server.issue_grant()
    first = refresh(server, tokens["refresh_token"]).json()

    assert refresh(server, tokens["refresh_token"]).json()["error"] == "invalid_grant"

    assert server.reuse_detected == 1
    assert api_get(server, "/api/whoami", first["access_token"]).status_code == 200
    assert refresh(server, first["refresh_token"]).status_code == 200


def test_without_rotation_the_same_refresh_token_comes_back(make_server: MakeServer) -> None:
    server = make_server(rotate_refresh_tokens=False)
    rt = server.issue_grant()["refresh_token"]
    for _ in range(3):
        r = refresh(server, rt)
        assert r.status_code == 200
        assert r.json()["refresh_token"] == rt
    assert server.refresh_grants == 3


def test_return_refresh_token_false_omits_it_and_keeps_old_one(make_server: MakeServer) -> None:
    server = make_server(return_refresh_token=False)
    rt = server.issue_grant()["refresh_token"]
    for _ in range(2):
        r = refresh(server, rt)
        assert r.status_code == 200
        assert "refresh_token" not in r.json()
    assert server.reuse_detected == 0


def test_scope_narrowing_and_widening(server: EmpowerIDTestServer) -> None:
    rt = server.issue_grant(scope="openid profile")["refresh_token"]
    wider = refresh(server, rt, scope="openid admin")
    assert wider.status_code == 400
    assert wider.json()["error"] == "invalid_scope"
    narrower = refresh(server, rt, scope="profile")
    assert narrower.status_code == 200
    assert narrower.json()["id_token"] is None


# -- token endpoint: client authentication and errors ----------------------------------------


@pytest.mark.parametrize("encode", [False, True], ids=["raw", "form-urlencoded"])
def test_client_secret_basic(make_server: MakeServer, encode: bool) -> None:
    secret = "s3c:r/t+&=%"
    server = make_server(client_secret=secret)
    rt = server.issue_grant()["refresh_token"]
    user, password = (
        (quote_plus("test-client"), quote_plus(secret)) if encode else ("test-client", secret)
    )
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()

    r = requests.post(
        server.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": rt},
        headers={"Authorization": f"Basic {credentials}"},
        timeout=TIMEOUT,
    )

    assert r.status_code == 200, r.text
    assert server.token_request_log[0].header("authorization") == f"Basic {credentials}"


def test_wrong_basic_secret_is_invalid_client_with_challenge(
    server: EmpowerIDTestServer,
) -> None:
    rt = server.issue_grant()["refresh_token"]

    r = requests.post(
        server.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": rt},
        auth=("test-client", "wrong"),
        timeout=TIMEOUT,
    )

    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["WWW-Authenticate"] == 'Basic realm="EmpowerID"'
    # The failed attempt did not consume the refresh token.
    assert refresh(server, rt).status_code == 200


@pytest.mark.parametrize(
    "credentials",
    [
        {"client_id": "test-client", "client_secret": "wrong"},
        {"client_id": "other-client", "client_secret": "test-client-secret"},
        {"client_id": "test-client"},
        {},
    ],
    ids=["wrong-secret", "wrong-id", "no-secret", "nothing"],
)
def test_bad_post_credentials_are_invalid_client(
    server: EmpowerIDTestServer, credentials: dict[str, str]
) -> None:
    rt = server.issue_grant()["refresh_token"]
    r = requests.post(
        server.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": rt, **credentials},
        timeout=TIMEOUT,
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" not in r.headers


def test_two_client_auth_methods_at_once_are_refused(
    server: EmpowerIDTestServer,
) -> None:
    rt = server.issue_grant()["refresh_token"]
    r = requests.post(
        server.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": rt, **CLIENT},
        auth=("test-client", "test-client-secret"),
        timeout=TIMEOUT,
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [
        ({"grant_type": "refresh_token", **CLIENT}, 400, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "", **CLIENT}, 400, "invalid_request"),
        (
            {"grant_type": "refresh_token", "refresh_token": "rt_nope", **CLIENT},
            400,
            "invalid_grant",
        ),
        ({"grant_type": "urn:example:no-such-grant", **CLIENT}, 400, "unsupported_grant_type"),
        ({"refresh_token": "rt_nope", **CLIENT}, 400, "invalid_request"),
        ("grant_type=refresh_token&grant_type=refresh_token", 400, "invalid_request"),
    ],
    ids=["no-token", "empty-token", "unknown-token", "other-grant", "no-grant-type", "repeated"],
)
def test_token_request_errors(
    server: EmpowerIDTestServer, data: dict[str, str] | str, status: int, error: str
) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    r = requests.post(server.token_endpoint, data=data, headers=headers, timeout=TIMEOUT)
    assert r.status_code == status
    assert r.json()["error"] == error
    assert r.headers["Cache-Control"] == "no-store"
    assert server.token_requests == 1
    assert server.refresh_grants == 0


def test_non_form_body_is_invalid_request(server: EmpowerIDTestServer) -> None:
    rt = server.issue_grant()["refresh_token"]
    r = requests.post(
        server.token_endpoint,
        json={"grant_type": "refresh_token", "refresh_token": rt, **CLIENT},
        timeout=TIMEOUT,
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
    assert server.token_request_log[0].form == {}


def test_get_on_token_endpoint_is_405_and_not_counted(
    server: EmpowerIDTestServer,
) -> None:
    r = requests.get(server.token_endpoint, timeout=TIMEOUT)
    assert r.status_code == 405
    assert r.headers["Allow"] == "POST"
    assert server.token_requests == 0


def test_api_key_is_required_on_token_and_api(make_server: MakeServer) -> None:
    server = make_server(api_key="key-123")
    tokens = server.issue_grant()
    key = {"X-EmpowerID-API-Key": "key-123"}

    for headers in (None, {"X-EmpowerID-API-Key": "wrong"}):
        r = refresh(server, tokens["refresh_token"], headers=headers)
        assert r.status_code == 401
        assert r.json() == {
            "error": "invalid_request",
            "error_description": "missing or wrong X-EmpowerID-API-Key",
        }
    good = refresh(server, tokens["refresh_token"], headers=key)
    assert good.status_code == 200
    access_token = good.json()["access_token"]

    no_key = requests.get(
        server.api_url("/api/whoami"), headers=bearer(access_token), timeout=TIMEOUT
    )
    assert no_key.status_code == 401
    assert "API key" in no_key.json()["error_description"]
    assert "invalid_token" not in no_key.headers.get("WWW-Authenticate", "")
    with_key = requests.get(
        server.api_url("/api/whoami"), headers={**bearer(access_token), **key}, timeout=TIMEOUT
    )
    assert with_key.status_code == 200
    assert server.token_requests == 3


# -- faults ---------------------------------------------------------------------------------


def test_503_fault_with_retry_after_does_not_consume_token(
    server: EmpowerIDTestServer,
) -> None:
    rt = server.issue_grant()["refresh_token"]
    server.fail_next(FaultSpec(status=503, retry_after=2))
    server.fail_next(FaultSpec(status=429, retry_after=0.5))

    first = refresh(server, rt)
    second = refresh(server, rt)
    third = refresh(server, rt)

    assert first.status_code == 503
    assert first.headers["Retry-After"] == "2"
    assert first.json() == {"error": "temporarily_unavailable"}
    assert second.status_code == 429
    assert second.headers["Retry-After"] == "0.5"
    assert third.status_code == 200
    assert server.token_requests == 3
    assert server.refresh_grants == 1
    assert len(server.token_request_log) == 3


def test_fault_count_and_custom_body(server: EmpowerIDTestServer) -> None:
    rt = server.issue_grant()["refresh_token"]
    server.fail_next(FaultSpec(status=500, body=b"<html>oops</html>"), count=2)
    assert [refresh(server, rt).text for _ in range(2)] == ["<html>oops</html>"] * 2
    assert refresh(server, rt).status_code == 200


def test_malformed_fault(server: EmpowerIDTestServer) -> None:
    rt = server.issue_grant()["refresh_token"]
    server.fail_next(FaultSpec(malformed=True))

    r = refresh(server, rt)

    assert r.status_code == 200
    with pytest.raises(ValueError, match="Expecting"):
        r.json()
    assert refresh(server, rt).status_code == 200


def test_delay_fault_times_out_client(server: EmpowerIDTestServer) -> None:
    rt = server.issue_grant()["refresh_token"]
    server.fail_next(FaultSpec(delay=5.0))
    with pytest.raises(requests.exceptions.ReadTimeout):
        refresh(server, rt, timeout=0.2)
    assert refresh(server, rt).status_code == 200


def test_delay_fault_then_answers(server: EmpowerIDTestServer) -> None:
    rt = server.issue_grant()["refresh_token"]
    server.fail_next(FaultSpec(status=502, delay=0.2))
    started = time.monotonic()
    r = refresh(server, rt)
    assert time.monotonic() - started >= 0.2
    assert r.status_code == 502


def test_slow_success_rotates_behind_a_timed_out_client(
    server: EmpowerIDTestServer,
) -> None:
    rt = server.issue_grant()["refresh_token"]
    server.fail_next(FaultSpec(status=200, delay=0.3))
    with pytest.raises(requests.exceptions.ReadTimeout):
        refresh(server, rt, timeout=0.1)
    deadline = time.monotonic() + 2
    while server.refresh_grants == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.refresh_grants == 1

    # The client never saw the new refresh token; its retry is a reuse.
    r = refresh(server, rt)
    assert r.json()["error"] == "invalid_grant"
    assert server.reuse_detected == 1


def test_close_connection_fault(server: EmpowerIDTestServer) -> None:
    rt = server.issue_grant()["refresh_token"]
    server.fail_next(FaultSpec(close_connection=True))
    with pytest.raises(requests.exceptions.ConnectionError):
        refresh(server, rt)

    server.fail_next(FaultSpec(close_connection=True))
    with httpx.Client(timeout=TIMEOUT) as client:
        form = {"grant_type": "refresh_token", "refresh_token": rt, **CLIENT}
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(server.token_endpoint, data=form)
        assert client.post(server.token_endpoint, data=form).status_code == 200
    assert server.token_requests == 3


def test_stop_cuts_a_delay_short(make_server: MakeServer) -> None:
    server = make_server()
    rt = server.issue_grant()["refresh_token"]
    server.fail_next(FaultSpec(delay=30.0))
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            refresh(server, rt, timeout=10)
        except requests.exceptions.RequestException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 2
    while server.token_requests == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    caller.join(5)
    assert not caller.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], requests.exceptions.ConnectionError)


@pytest.mark.parametrize(
    "kwargs", [{"status": 99}, {"status": 600}, {"delay": -1.0}, {"retry_after": -1.0}]
)
def test_fault_spec_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="FaultSpec"):
        FaultSpec(**kwargs)


# -- protected API --------------------------------------------------------------------------


def test_api_echoes_request(server: EmpowerIDTestServer) -> None:
    tokens = server.issue_grant()
    r = requests.put(
        server.api_url("/api/items/7?x=1"),
        data=b"caf\xe9",
        headers={**bearer(tokens["access_token"]), "Content-Type": "text/plain"},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200
    assert r.json() == {
        "ok": True,
        "method": "PUT",
        "path": "/api/items/7?x=1",
        "body": "café",
        "id": tokens["id"],
        "content_type": "text/plain",
    }


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH", "DELETE", "OPTIONS"])
def test_api_accepts_any_method(server: EmpowerIDTestServer, method: str) -> None:
    token = server.issue_grant()["access_token"]
    r = requests.request(method, server.api_url("/api/x"), headers=bearer(token), timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.json()["method"] == method


def test_api_head_has_no_body(server: EmpowerIDTestServer) -> None:
    token = server.issue_grant()["access_token"]
    r = requests.head(server.api_url("/api/x"), headers=bearer(token), timeout=TIMEOUT)
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) > 0
    assert r.content == b""


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer at_unknown", "Basic dGVzdDp0ZXN0"],
    ids=["missing", "empty", "unknown", "basic"],
)
def test_api_401_with_challenge(server: EmpowerIDTestServer, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    r = requests.get(server.api_url("/api/whoami"), headers=headers, timeout=TIMEOUT)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert r.json()["error"] == "invalid_token"
    # 401s are recorded too.
    assert [rec.path for rec in server.api_requests] == ["/api/whoami"]


def test_expire_access_tokens(server: EmpowerIDTestServer) -> None:
    tokens = server.issue_grant()
    assert api_get(server, "/api/whoami", tokens["access_token"]).status_code == 200

    server.expire_access_tokens()

    expired = api_get(server, "/api/whoami", tokens["access_token"])
    assert expired.status_code == 401
    assert expired.json()["error_description"] == "access token has expired"
    fresh = refresh(server, tokens["refresh_token"]).json()["access_token"]
    assert api_get(server, "/api/whoami", fresh).status_code == 200


def test_issue_grant_with_zero_lifetime_is_already_expired(
    server: EmpowerIDTestServer,
) -> None:
    tokens = server.issue_grant(expires_in=0)
    assert tokens["expires_in"] == 0
    assert api_get(server, "/api/whoami", tokens["access_token"]).status_code == 401


def test_revocation(server: EmpowerIDTestServer) -> None:
    one = server.issue_grant()
    two = server.issue_grant()

    server.revoke_access_token(one["access_token"])
    assert api_get(server, "/api/x", one["access_token"]).status_code == 401
    assert refresh(server, one["refresh_token"]).status_code == 200  # the grant lives on

    server.revoke_grant(two["access_token"])
    assert api_get(server, "/api/x", two["access_token"]).status_code == 401
    revoked = refresh(server, two["refresh_token"])
    assert revoked.json()["error"] == "invalid_grant"

    with pytest.raises(KeyError):
        server.revoke_grant("rt_never_issued")
    with pytest.raises(KeyError):
        server.revoke_access_token("at_never_issued")


def test_reject_all_access_tokens(server: EmpowerIDTestServer) -> None:
    tokens = server.issue_grant()
    server.reject_all_access_tokens = True
    fresh = refresh(server, tokens["refresh_token"]).json()["access_token"]
    r = api_get(server, "/api/x", fresh)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    server.reject_all_access_tokens = False
    assert api_get(server, "/api/x", fresh).status_code == 200


def test_on_api_request_hook_runs_mid_request(server: EmpowerIDTestServer) -> None:
    tokens = server.issue_grant()
    calls: list[str] = []

    def hook() -> None:
        # Runs in the server thread while the client waits; may call the server itself.
        calls.append(refresh(server, tokens["refresh_token"]).json()["access_token"])

    server.on_api_request = hook
    assert api_get(server, "/api/x", tokens["access_token"]).status_code == 200
    assert len(calls) == 1
    assert server.refresh_grants == 1


def test_failing_hook_is_a_500_listed_in_handler_errors() -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    with EmpowerIDTestServer() as server:
        token = server.issue_grant()["access_token"]
        server.on_api_request = broken
        assert api_get(server, "/api/x", token).status_code == 500
        assert [type(e) for e in server.handler_errors] == [RuntimeError]


def test_forbidden(server: EmpowerIDTestServer) -> None:
    token = server.issue_grant()["access_token"]
    assert api_get(server, "/api/forbidden", token).status_code == 403
    assert api_get(server, "/api/forbidden", None).status_code == 401


def test_redirect(server: EmpowerIDTestServer) -> None:
    token = server.issue_grant()["access_token"]

    followed = api_get(server, "/api/redirect?to=/api/target%3Fa%3D1", token)
    assert followed.status_code == 200
    assert followed.json()["path"] == "/api/target?a=1"
    assert [r.status_code for r in followed.history] == [302]

    with httpx.Client(timeout=TIMEOUT) as client:
        r = client.get(server.api_url("/api/redirect?to=/api/target"), headers=bearer(token))
    assert r.status_code == 302
    assert r.headers["Location"] == server.url + "/api/target"

    assert api_get(server, "/api/redirect?to=/api/target", None).status_code == 401
    for bad in ("http://example.com/", "//example.com/x", ""):
        assert api_get(server, f"/api/redirect?to={bad}", token).status_code == 400


def test_unknown_paths_are_404_and_not_recorded(server: EmpowerIDTestServer) -> None:
    for path in ("/nope", "/api", "/oauth/v2/no-such-endpoint"):
        assert requests.get(server.url + path, timeout=TIMEOUT).status_code == 404
    assert server.api_requests == []


def test_chunked_bodies_are_recorded(server: EmpowerIDTestServer) -> None:
    token = server.issue_grant()["access_token"]

    r1 = requests.post(
        server.api_url("/api/upload"),
        data=iter(
            [b"hello ", b"chunked ", b"world"]
        ),  # no empty chunk: urllib3 1.x ends the body there
        headers=bearer(token),
        timeout=TIMEOUT,
    )
    with httpx.Client(timeout=TIMEOUT) as client:
        r2 = client.post(
            server.api_url("/api/upload"),
            content=iter([b"from ", b"httpx"]),
            headers=bearer(token),
        )

    assert r1.json()["body"] == "hello chunked world"
    assert r2.json()["body"] == "from httpx"
    first, second = server.api_requests
    assert first.header("transfer-encoding") == "chunked"
    assert first.body == b"hello chunked world"
    assert second.header("Transfer-Encoding") == "chunked"
    assert second.body == b"from httpx"


@settings(max_examples=25, deadline=None)
@given(body=st.binary(max_size=3000), chunked=st.booleans())
def test_any_body_round_trips(body: bytes, chunked: bool) -> None:
    with EmpowerIDTestServer() as server:
        token = server.issue_grant()["access_token"]
        data: bytes | Iterator[bytes] = (
            iter([body[i : i + 700] for i in range(0, len(body), 700)]) if chunked else body
        )
        r = requests.post(
            server.api_url("/api/echo"), data=data, headers=bearer(token), timeout=TIMEOUT
        )
        assert r.json()["body"].encode("latin-1") == body
        assert server.api_requests[0].body == body


def test_malformed_chunked_body_is_400(server: EmpowerIDTestServer) -> None:
    conn = http.client.HTTPConnection(
        "127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=TIMEOUT
    )
    try:
        conn.putrequest("POST", "/api/x")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders(b"zz\r\nabc\r\n0\r\n\r\n")
        r = conn.getresponse()
        assert r.status == 400
        assert r.getheader("Connection") == "close"
        r.read()
    finally:
        conn.close()


# -- other endpoints, recording, lifecycle ---------------------------------------------------


def test_discovery_document(server: EmpowerIDTestServer) -> None:
    r = requests.get(server.url + "/oauth/.well-known/openid-configuration", timeout=TIMEOUT)
    doc = r.json()
    assert doc["token_endpoint"] == server.token_endpoint
    for key in ("issuer", "tokeninfo_endpoint", "tokenrevoke_endpoint", "userinfo_endpoint"):
        assert doc[key].startswith(server.url)
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_post",
        "client_secret_basic",
    ]


def test_recorded_requests(server: EmpowerIDTestServer) -> None:
    tokens = server.issue_grant()
    before = time.time()
    refresh(server, tokens["refresh_token"], headers={"X-Trace": "abc"})
    api_get(server, "/api/a", tokens["access_token"])

    (token_req,) = server.token_request_log
    assert isinstance(token_req, RecordedRequest)
    assert token_req.method == "POST"
    assert token_req.path == "/oauth/v2/token"
    assert token_req.form["grant_type"] == "refresh_token"
    assert token_req.form["refresh_token"] == tokens["refresh_token"]
    assert "X-Trace" in token_req.headers
    assert token_req.header("x-trace") == "abc"
    assert token_req.header("missing") is None
    assert before <= token_req.time <= time.time()
    # Secrets stay out of reprs, which pytest prints on failures.
    text = repr(token_req) + repr(server.api_requests[0])
    for secret in ("test-client-secret", tokens["refresh_token"], tokens["access_token"]):
        assert secret not in text

    # Returned lists are copies.
    server.api_requests.clear()
    assert len(server.api_requests) == 1

    server.reset_counters()
    assert (server.token_requests, server.refresh_grants, server.reuse_detected) == (0, 0, 0)
    assert server.api_requests == []
    assert server.token_request_log == []


def test_keep_alive(server: EmpowerIDTestServer) -> None:
    token = server.issue_grant()["access_token"]
    port = int(server.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        statuses = []
        for path in ("/api/a", "/nope", "/api/b"):
            conn.request("GET", path, headers=bearer(token))
            if path == "/api/a":
                sock = conn.sock
            r = conn.getresponse()
            r.read()
            statuses.append(r.status)
            assert conn.sock is sock  # the server kept the connection open
    finally:
        conn.close()
    assert statuses == [200, 404, 200]


def test_concurrent_refresh_of_one_token_has_one_winner(make_server: MakeServer) -> None:
    server = make_server()
    rt = server.issue_grant()["refresh_token"]
    barrier = threading.Barrier(20)
    results: list[requests.Response] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait(TIMEOUT)
        r = refresh(server, rt)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)

    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [400] * 19
    assert all(r.json()["error"] == "invalid_grant" for r in results if r.status_code == 400)
    assert server.refresh_grants == 1
    assert server.token_requests == 20
    assert server.reuse_detected == 19


def test_hundred_simultaneous_connections(server: EmpowerIDTestServer) -> None:
    token = server.issue_grant()["access_token"]
    barrier = threading.Barrier(100)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait(TIMEOUT)
        status = api_get(server, "/api/x", token).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert statuses == [200] * 100
    assert len(server.api_requests) == 100


def test_many_asyncio_tasks(server: EmpowerIDTestServer) -> None:
    token = server.issue_grant()["access_token"]
    port = int(server.url.rsplit(":", 1)[1])

    async def raw_get(i: int) -> bytes:
        # One fresh connection per task, all opened at once: exercises the listen backlog.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /api/raw/{i} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = await reader.read()
        writer.close()
        await writer.wait_closed()
        return data.split(b" ", 2)[1]

    async def main() -> tuple[list[bytes], list[int]]:
        raw = await asyncio.wait_for(asyncio.gather(*(raw_get(i) for i in range(300))), TIMEOUT)
        # httpx's own pool gets slow with many queued requests, so fewer tasks here.
        async with httpx.AsyncClient(timeout=TIMEOUT, headers=bearer(token)) as client:
            responses = await asyncio.gather(
                *(client.get(server.api_url(f"/api/n/{i}")) for i in range(100))
            )
        return raw, [r.status_code for r in responses]

    raw, statuses = asyncio.run(main())
    assert raw == [b"200"] * 300
    assert statuses == [200] * 100
    assert len(server.api_requests) == 400


def test_lifecycle() -> None:
    server = EmpowerIDTestServer()
    with pytest.raises(RuntimeError):
        _ = server.url
    server.stop()  # stopping a server that never started is harmless

    with EmpowerIDTestServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.token_endpoint == server.url + "/oauth/v2/token"
        assert server.api_url("/api/whoami") == server.url + "/api/whoami"
        with pytest.raises(RuntimeError):
            server.start()
        token = server.issue_grant()["access_token"]
        # An idle keep-alive connection must not hold up stop().
        session = requests.Session()
        assert session.get(server.api_url("/api/x"), headers=bearer(token), timeout=TIMEOUT).ok
        started = time.monotonic()
    try:
        assert time.monotonic() - started < 1.0
        server.stop()  # idempotent
        assert not [t for t in threading.enumerate() if t.name.startswith("EmpowerIDTestServer")]
        with pytest.raises(requests.exceptions.ConnectionError):
            session.get(server.api_url("/api/x"), timeout=TIMEOUT)
    finally:
        session.close()


def test_plugin_fixture_gives_a_running_default_server(
    empowerid_server: EmpowerIDTestServer,
) -> None:
    assert empowerid_server.client_id == "test-client"
    assert empowerid_server.client_secret == "test-client-secret"
    r = requests.get(
        empowerid_server.url + "/oauth/.well-known/openid-configuration", timeout=TIMEOUT
    )
    assert r.status_code == 200
