"""How EmpowerIDAuth signs requests and answers a 401, through every client flavour
(requests, httpx and httpx2, sync and async), against the loopback EmpowerID server.

The refresh grant it sends, refreshing before expiry, rotation; the 401 rules:
which 401 refreshes (not one from another origin, not a second one), what is
re-sent (the same body, rewound or refused when it cannot be replayed, the
cookies the 401 set, only the redirect hop that met it); the API key; resuming
from a saved token."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from eid_auth import EmpowerIDAuth, InvalidTokenResponseError, Token
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    FLAVOURS,
    after_a_resend,
    is_async,
    make_auth,
    send,
)

AuthFactory = Callable[..., EmpowerIDAuth]


def test_bearer_token_on_every_request(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory()
    for _ in range(3):
        result = send(flavour, auth, "GET", server.api_url("/api/whoami"))
        assert result.status == 200
    assert auth.token is not None
    assert [r.header("Authorization") for r in server.api_requests] == [
        f"Bearer {auth.token.access_token}"
    ] * 3
    # Only the first request needed a token.
    assert server.refresh_grants == 1


def test_refresh_grant_is_sent_as_empowerid_documents(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    refresh_token = server.issue_grant()["refresh_token"]
    auth = auth_factory(refresh_token=refresh_token)
    auth.refresh()
    (request,) = server.token_request_log
    assert request.method == "POST"
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"
    assert request.form == {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    assert request.header("Authorization") is None


def test_client_secret_basic(server: EmpowerIDTestServer, auth_factory: AuthFactory) -> None:
    auth = auth_factory(client_auth="client_secret_basic")
    token = auth.refresh()
    (request,) = server.token_request_log
    assert (request.header("Authorization") or "").startswith("Basic ")
    assert "client_secret" not in request.form
    assert token.access_token


def test_server_argument_builds_the_token_endpoint(server: EmpowerIDTestServer) -> None:
    auth = EmpowerIDAuth(
        server=server.url + "/",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=server.issue_grant()["refresh_token"],
    )
    assert auth.token_endpoint == server.token_endpoint
    assert auth.refresh().access_token
    auth.close()


def test_every_field_of_the_answer_is_kept(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory(refresh_token=server.issue_grant(scope="openid profile")["refresh_token"])
    token = auth.refresh()
    assert token.token_type == "Bearer"
    assert isinstance(token.id_token, str)
    assert token.id is not None
    assert token.raw["id"] == token.id
    # EmpowerID's empty error fields are not an error, and are kept as sent.
    assert token.raw["error"] == ""
    assert token.raw["error_description"] == "null"
    assert token.expires_at is not None
    assert 3590 < token.expires_at - time.time() <= 3600


def test_id_token_is_none_without_openid(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    token = auth_factory(
        refresh_token=server.issue_grant(scope="profile")["refresh_token"]
    ).refresh()
    assert token.id_token is None
    assert token.raw["id_token"] is None


def test_proactive_refresh_before_expiry(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    grant = server.issue_grant()
    # Valid for 30 more seconds, with a 60 s leeway: it is refreshed before use.
    auth = auth_factory(
        access_token=grant["access_token"],
        refresh_token=grant["refresh_token"],
        expires_at=time.time() + 30,
    )
    result = send(flavour, auth, "GET", server.api_url("/api/whoami"))
    assert result.status == 200
    assert server.refresh_grants == 1
    assert auth.token is not None
    assert result.sent_authorization == f"Bearer {auth.token.access_token}"
    assert auth.token.access_token != grant["access_token"]


def test_token_outside_the_leeway_is_used_as_is(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    grant = server.issue_grant()
    auth = auth_factory(
        access_token=grant["access_token"],
        refresh_token=grant["refresh_token"],
        expires_at=time.time() + 600,
    )
    assert send(flavour, auth, "GET", server.api_url("/api/whoami")).status == 200
    assert server.refresh_grants == 0


@pytest.fixture
def short_lived_server() -> Iterator[EmpowerIDTestServer]:
    with EmpowerIDTestServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, access_token_lifetime=60
    ) as s:
        yield s


def test_leeway_never_exceeds_half_the_lifetime(
    short_lived_server: EmpowerIDTestServer, flavour: str
) -> None:
    # 60 s tokens and a 60 s leeway: without the half-lifetime cap every
    # request would refresh.
    auth = make_auth(short_lived_server, leeway=60)
    for _ in range(5):
        assert send(flavour, auth, "GET", short_lived_server.api_url("/api/x")).status == 200
    assert short_lived_server.refresh_grants == 1
    auth.close()


def test_rotation_keeps_the_newest_refresh_token(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory()
    first = auth.refresh()
    second = auth.refresh()
    third = auth.refresh()
    assert len({first.refresh_token, second.refresh_token, third.refresh_token}) == 3
    # Each refresh used the refresh token the previous one returned.
    sent = [r.form["refresh_token"] for r in server.token_request_log]
    assert sent[1:] == [first.refresh_token, second.refresh_token]
    assert server.reuse_detected == 0


def test_answer_without_refresh_token_keeps_the_old_one() -> None:
    with EmpowerIDTestServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, return_refresh_token=False
    ) as server:
        original = server.issue_grant()["refresh_token"]
        auth = make_auth(server, refresh_token=original)
        assert auth.refresh().refresh_token == original
        assert auth.refresh().refresh_token == original
        assert [r.form["refresh_token"] for r in server.token_request_log] == [original] * 2
        auth.close()


@pytest.mark.parametrize(
    ("form", "json", "content"),
    [
        ({"name": "Ada", "role": "admin"}, None, None),
        (None, {"name": "Ada", "tags": [1, 2]}, None),
        (None, None, b"\x00raw bytes\xff"),
    ],
    ids=["form", "json", "bytes"],
)
def test_401_refreshes_and_resends_the_same_request(
    server: EmpowerIDTestServer,
    auth_factory: AuthFactory,
    flavour: str,
    form: dict[str, str] | None,
    json: object,
    content: bytes | None,
) -> None:
    auth = auth_factory()
    auth.refresh()
    server.expire_access_tokens()  # the token still looks valid to the client
    result = send(
        flavour,
        auth,
        "PUT",
        server.api_url("/api/items/7?x=1"),
        form=form,
        json=json,
        content=content,
    )
    assert result.status == 200
    assert result.history == after_a_resend(flavour)
    assert server.refresh_grants == 2
    rejected, resent = server.api_requests
    assert rejected.method == resent.method == "PUT"
    assert rejected.path == resent.path == "/api/items/7?x=1"
    assert rejected.body == resent.body
    assert len(resent.body) > 0
    assert rejected.header("Content-Type") == resent.header("Content-Type")
    assert auth.token is not None
    assert resent.header("Authorization") == f"Bearer {auth.token.access_token}"
    assert rejected.header("Authorization") != resent.header("Authorization")


def test_401_on_the_resent_request_is_returned_not_looped(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory()
    auth.refresh()
    server.expire_access_tokens()
    server.reject_all_access_tokens = True
    result = send(flavour, auth, "GET", server.api_url("/api/x"))
    assert result.status == 401
    assert len(server.api_requests) == 2
    assert server.refresh_grants == 2


def test_cookies_set_by_the_401_go_with_the_resend(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory()
    auth.refresh()
    server.expire_access_tokens()
    server.set_cookie_on_401 = "affinity=node7"
    assert send(flavour, auth, "GET", server.api_url("/api/x")).status == 200
    rejected, resent = server.api_requests
    assert rejected.header("Cookie") is None
    assert resent.header("Cookie") == "affinity=node7"


def test_403_never_refreshes(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory()
    result = send(flavour, auth, "GET", server.api_url("/api/forbidden"))
    assert result.status == 403
    assert server.refresh_grants == 1
    assert len(server.api_requests) == 1


def test_streamed_body_is_not_replayed(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory()
    auth.refresh()
    server.expire_access_tokens()
    if is_async(flavour):

        async def agen():  # type: ignore[no-untyped-def]
            yield b"part one, "
            yield b"part two"

        body: object = agen()
    else:
        body = iter([b"part one, ", b"part two"])
    result = send(flavour, auth, "POST", server.api_url("/api/upload"), content=body)
    # An empty re-send would be silent data loss: the caller gets the 401.
    assert result.status == 401
    assert len(server.api_requests) == 1
    assert server.api_requests[0].body == b"part one, part two"


def test_a_seekable_body_is_rewound_for_the_resend_with_requests(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory()
    auth.refresh()
    server.expire_access_tokens()
    body = io.BytesIO(b"prefix-skipped|the upload")
    body.seek(len(b"prefix-skipped|"))  # the body starts where the file position is
    response = requests.post(server.api_url("/api/upload"), data=body, auth=auth, timeout=10)
    assert response.status_code == 200
    rejected, resent = server.api_requests
    assert rejected.body == resent.body == b"the upload"


def test_401_after_another_caller_refreshed_resends_without_refreshing(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory()
    old = auth.refresh()
    server.revoke_access_token(old.access_token)

    # While the request is in flight, another caller refreshes; the request
    # then meets the 401 for the old token.
    refreshed: list[Token] = []

    def other_caller_refreshes() -> None:
        if not refreshed:
            refreshed.append(auth.refresh())

    server.on_api_request = other_caller_refreshes
    result = send(flavour, auth, "GET", server.api_url("/api/x"))
    assert result.status == 200
    assert result.history == after_a_resend(flavour)
    # One refresh by the other caller, none by the request that got the 401.
    assert server.refresh_grants == 2
    assert result.sent_authorization == f"Bearer {refreshed[0].access_token}"


def test_a_401_after_a_salvaged_refresh_token_refreshes(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory()
    auth.refresh()
    # An unusable answer that carries a refresh token the server knows.
    live = server.issue_grant()["refresh_token"]
    body = json.dumps({"access_token": "x", "expires_in": 0, "refresh_token": live}).encode()
    server.fail_next(FaultSpec(status=200, body=body), count=1)
    with pytest.raises(InvalidTokenResponseError):
        auth.refresh()
    server.expire_access_tokens()
    # Same access token as before the salvage: a 401 for it must refresh, not
    # re-send it unchanged.
    result = send(flavour, auth, "GET", server.api_url("/api/x"))
    assert result.status == 200
    assert server.token_request_log[-1].form["refresh_token"] == live


def test_redirect_after_resend_carries_the_new_token(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory()
    auth.refresh()
    server.expire_access_tokens()
    result = send(flavour, auth, "GET", server.api_url("/api/redirect?to=/api/landing"))
    assert result.status == 200
    assert result.body["path"] == "/api/landing"
    assert auth.token is not None
    assert server.refresh_grants == 2
    # 401, then the re-send (302), then the landing page: no second 401.
    assert [r.path for r in server.api_requests] == [
        "/api/redirect?to=/api/landing",
        "/api/redirect?to=/api/landing",
        "/api/landing",
    ]
    assert server.api_requests[-1].header("Authorization") == f"Bearer {auth.token.access_token}"


def _expire_tokens_after_the_first_hop(server: EmpowerIDTestServer) -> None:
    """The redirect's first hop succeeds; the hop after it meets a 401."""
    calls: list[int] = []

    def hook() -> None:
        calls.append(1)
        if len(calls) == 2:
            server.expire_access_tokens()

    server.on_api_request = hook


def test_a_401_after_a_redirect_resends_only_that_hop(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory()
    auth.refresh()
    _expire_tokens_after_the_first_hop(server)
    result = send(flavour, auth, "POST", server.api_url("/api/redirect?to=/api/orders/1"), json={})
    assert result.status == 200
    # The POST succeeded once and is not sent again; only the GET that got the 401 is.
    assert [(r.method, r.path) for r in server.api_requests] == [
        ("POST", "/api/redirect?to=/api/orders/1"),
        ("GET", "/api/orders/1"),
        ("GET", "/api/orders/1"),
    ]
    assert server.refresh_grants == 2


def test_a_401_after_a_same_origin_get_redirect_is_retried(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    auth = auth_factory()
    auth.refresh()
    _expire_tokens_after_the_first_hop(server)
    result = send(flavour, auth, "GET", server.api_url("/api/redirect?to=/api/orders/1"))
    assert result.status == 200
    assert [r.path for r in server.api_requests] == [
        "/api/redirect?to=/api/orders/1",
        "/api/orders/1",
        "/api/orders/1",
    ]


@pytest.fixture
def other_origin() -> Iterator[EmpowerIDTestServer]:
    with EmpowerIDTestServer() as s:
        yield s


def test_a_401_from_another_origin_after_a_redirect_does_not_refresh(
    server: EmpowerIDTestServer,
    auth_factory: AuthFactory,
    other_origin: EmpowerIDTestServer,
    flavour: str,
) -> None:
    auth = auth_factory()
    auth.refresh()
    elsewhere = other_origin.api_url("/api/landing")
    result = send(flavour, auth, "GET", server.api_url(f"/api/redirect?to={elsewhere}"))
    # The other host never saw our token; its 401 is not about our token.
    assert result.status == 401
    assert server.refresh_grants == 1
    assert len(other_origin.api_requests) == 1


def test_api_key_on_token_and_api_requests(flavour: str) -> None:
    with EmpowerIDTestServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, api_key="the-api-key"
    ) as server:
        auth = make_auth(server, api_key="the-api-key")
        assert send(flavour, auth, "GET", server.api_url("/api/x")).status == 200
        assert server.token_request_log[0].header("X-EmpowerID-API-Key") == "the-api-key"
        assert server.api_requests[0].header("X-EmpowerID-API-Key") == "the-api-key"
        auth.close()


def test_resume_from_a_saved_token(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    first = auth_factory()
    saved = first.refresh().to_dict()
    resumed = auth_factory(token=json.loads(json.dumps(saved)))
    assert send(flavour, resumed, "GET", server.api_url("/api/x")).status == 200
    assert server.refresh_grants == 1  # the saved access token was still good
    assert resumed.token == first.token


def test_access_token_without_refresh_token_is_used_until_rejected(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, flavour: str
) -> None:
    grant = server.issue_grant()
    auth = auth_factory(access_token=grant["access_token"])
    assert send(flavour, auth, "GET", server.api_url("/api/x")).status == 200
    server.expire_access_tokens()
    result = send(flavour, auth, "GET", server.api_url("/api/x"))
    assert result.status == 401  # nothing to refresh with: the caller gets the 401
    assert server.token_requests == 0


def test_expiry_unknown_means_refresh_on_401_only() -> None:
    with EmpowerIDTestServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, access_token_lifetime=None
    ) as server:
        auth = make_auth(server)
        token = auth.refresh()
        assert token.expires_at is None
        for flavour in FLAVOURS:
            assert send(flavour, auth, "GET", server.api_url("/api/x")).status == 200
        assert server.refresh_grants == 1
        server.expire_access_tokens()
        assert send("httpx", auth, "GET", server.api_url("/api/x")).status == 200
        assert server.refresh_grants == 2
        auth.close()


def test_async_refresh(server: EmpowerIDTestServer, auth_factory: AuthFactory) -> None:
    import asyncio

    auth = auth_factory()
    token = asyncio.run(auth.arefresh())
    assert token == auth.token
    assert server.refresh_grants == 1
