"""A person's sign-in on another device (RFC 8628), on both sides: ``EmpowerIDClient``'s
``login_with_device`` and the test server's device authorization endpoint and device
code grant, with EmpowerID's two spellings of the interval key and of the grant type.

Intervals are made small through the server's settings; the 5 s a ``slow_down`` adds
is scaled down the same way, so no test waits more than a few seconds.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from eid_auth import (
    AccessDeniedError,
    EmpowerIDClient,
    SignInError,
    SignInTimeoutError,
    TokenEndpointError,
)
from eid_auth import _device_code as device_code_module
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import CLIENT_ID, CLIENT_SECRET, wait_for

URN = "urn:ietf:params:oauth:grant-type:device_code"
INTERVAL = 0.1


@pytest.fixture
def eid(server: EmpowerIDTestServer) -> Iterator[EmpowerIDClient]:
    server.device_interval = INTERVAL
    with EmpowerIDClient(
        server=server.url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        timeout=5.0,
        backoff_factor=0.01,
    ) as client:
        yield client


def polls(server: EmpowerIDTestServer) -> list[float]:
    """When each poll of the token endpoint arrived."""
    return [r.time for r in server.token_request_log]


def test_sign_in_on_another_device(server: EmpowerIDTestServer, eid: EmpowerIDClient) -> None:
    shown: list[device_code_module.DeviceAuthorization] = []

    def prompt(device: device_code_module.DeviceAuthorization) -> None:
        shown.append(device)
        server.approve_device(device.user_code)

    token = eid.login_with_device(scope="openid profile", prompt=prompt)

    (device,) = shown
    assert device.verification_uri == server.url + "/oauth/v2/ui/device"
    assert device.user_code in (device.verification_uri_complete or "")
    assert device.interval == INTERVAL
    assert device.device_code not in repr(device)
    assert token.id == server.test_user.person_id
    assert token.refresh_token is not None
    answer = httpx.get(
        server.api_url("/api/whoami"),
        headers={"Authorization": f"Bearer {token.access_token}"},
        timeout=10,
    )
    assert answer.json()["id"] == server.test_user.person_id
    (poll,) = server.token_request_log
    assert poll.form["grant_type"] == URN


def test_the_default_prompt_prints_the_address_and_code_to_stderr(
    server: EmpowerIDTestServer, eid: EmpowerIDClient, capfd: pytest.CaptureFixture[str]
) -> None:
    issued: list[str] = []

    def approve(user_code: str) -> None:
        issued.append(user_code)
        server.approve_device(user_code)

    server.on_device_authorization = approve
    eid.login_with_device(scope="openid")
    captured = capfd.readouterr()
    assert captured.out == ""
    assert issued[0] in captured.err
    assert server.url + "/oauth/v2/ui/device" in captured.err


def test_pending_then_approved(server: EmpowerIDTestServer, eid: EmpowerIDClient) -> None:
    def approve_after_two_polls(device: device_code_module.DeviceAuthorization) -> None:
        def approve() -> None:
            if wait_for(lambda: server.token_requests >= 2, seconds=10):
                server.approve_device(device.user_code)

        threading.Thread(target=approve, daemon=True).start()

    token = eid.login_with_device(scope="openid", prompt=approve_after_two_polls)
    assert token.access_token
    assert server.token_requests >= 3  # two authorization_pending at least, then the token
    times = polls(server)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= INTERVAL * 0.8


def test_slow_down_makes_this_and_every_later_poll_slower(
    server: EmpowerIDTestServer, eid: EmpowerIDClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RFC 8628's 5 s, scaled down like the interval.
    monkeypatch.setattr(device_code_module, "SLOW_DOWN_SECONDS", 0.5)
    server.fail_next(FaultSpec(status=400, body=b'{"error":"slow_down"}'))
    server.fail_next(FaultSpec(status=400, body=b'{"error":"authorization_pending"}'))

    def approve_after_three_polls(device: device_code_module.DeviceAuthorization) -> None:
        def approve() -> None:
            if wait_for(lambda: server.token_requests >= 2, seconds=10):
                server.approve_device(device.user_code)

        threading.Thread(target=approve, daemon=True).start()

    eid.login_with_device(scope="openid", prompt=approve_after_three_polls)
    times = polls(server)
    assert len(times) == 3
    assert times[1] - times[0] >= INTERVAL + 0.5 - 0.05
    assert times[2] - times[1] >= INTERVAL + 0.5 - 0.05


def test_the_server_answers_slow_down_to_a_client_polling_too_fast(
    server: EmpowerIDTestServer,
) -> None:
    server.device_interval = 2.0
    device = httpx.post(
        server.url + "/oauth/v2/device/authorize", data={"client_id": CLIENT_ID}
    ).json()
    form = {
        "grant_type": URN,
        "device_code": device["device_code"],
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    first = httpx.post(server.token_endpoint, data=form)
    second = httpx.post(server.token_endpoint, data=form)
    assert (first.status_code, first.json()["error"]) == (400, "authorization_pending")
    assert (second.status_code, second.json()["error"]) == (400, "slow_down")


def test_no_poll_is_sent_once_the_code_expired(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    server.device_code_lifetime = 0.6
    server.device_interval = 0.2
    started = time.monotonic()
    with pytest.raises(SignInTimeoutError, match=r"0\.6s") as caught:
        eid.login_with_device(scope="openid", prompt=lambda device: None)
    assert time.monotonic() - started < 10
    assert server.token_requests >= 1
    # The client stopped by itself: a poll after expires_in gets the server's expired_token.
    assert caught.value.error is None


def test_expired_token_from_the_server_is_a_timeout(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    server.fail_next(FaultSpec(status=400, body=b'{"error":"expired_token"}'))
    with pytest.raises(SignInTimeoutError) as caught:
        eid.login_with_device(scope="openid", prompt=lambda device: None)
    assert caught.value.error == "expired_token"


def test_the_person_refuses(server: EmpowerIDTestServer, eid: EmpowerIDClient) -> None:
    with pytest.raises(AccessDeniedError) as caught:
        eid.login_with_device(
            scope="openid", prompt=lambda device: server.deny_device(device.user_code)
        )
    assert caught.value.error == "access_denied"
    assert server.token_requests == 1


def test_polling_interval_is_read_as_the_interval(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    server.device_interval_name = "polling_interval"
    server.device_interval = 0.3
    shown: list[float] = []

    def approve_after_two_polls(device: device_code_module.DeviceAuthorization) -> None:
        shown.append(device.interval)

        def approve() -> None:
            if wait_for(lambda: server.token_requests >= 2, seconds=10):
                server.approve_device(device.user_code)

        threading.Thread(target=approve, daemon=True).start()

    # Without the key, the interval would be RFC 8628's 5 s and the timeout would strike.
    eid.login_with_device(scope="openid", prompt=approve_after_two_polls, timeout=4)
    assert shown == [0.3]
    times = polls(server)
    assert times[1] - times[0] >= 0.3 * 0.8


def test_the_short_grant_type_is_tried_when_the_urn_is_unknown(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    server.device_grant_types = ("device_code",)
    token = eid.login_with_device(
        scope="openid", prompt=lambda device: server.approve_device(device.user_code)
    )
    assert token.access_token
    assert [r.form["grant_type"] for r in server.token_request_log] == [URN, "device_code"]


def test_a_server_that_knows_neither_spelling_is_an_error(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    server.device_grant_types = ()
    with pytest.raises(TokenEndpointError) as caught:
        eid.login_with_device(
            scope="openid", prompt=lambda device: server.approve_device(device.user_code)
        )
    assert caught.value.error == "unsupported_grant_type"
    assert server.token_requests == 2


def test_timeout_stops_polling_before_the_code_expires(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    started = time.monotonic()
    with pytest.raises(SignInTimeoutError, match="timeout"):
        eid.login_with_device(scope="openid", prompt=lambda device: None, timeout=0.5)
    assert time.monotonic() - started < 10


def test_a_refusal_at_the_device_authorization_endpoint(
    server: EmpowerIDTestServer,
) -> None:
    with (
        EmpowerIDClient(server=server.url, client_id="someone-else", timeout=5.0) as eid,
        pytest.raises(SignInError) as caught,
    ):
        eid.login_with_device(scope="openid", prompt=lambda device: None)
    assert caught.value.error == "invalid_client"
    assert server.token_requests == 0


def test_approving_an_unknown_user_code_is_a_key_error(server: EmpowerIDTestServer) -> None:
    with pytest.raises(KeyError):
        server.approve_device("BCDF-GHJK")


def test_no_device_code_in_any_log_record_or_error(
    server: EmpowerIDTestServer, eid: EmpowerIDClient, eid_logs: list[logging.LogRecord]
) -> None:
    codes: list[str] = []

    def refuse(device: device_code_module.DeviceAuthorization) -> None:
        codes.append(device.device_code)
        server.deny_device(device.user_code)

    server.device_grant_types = ("device_code",)
    with pytest.raises(AccessDeniedError) as caught:
        eid.login_with_device(scope="openid", prompt=refuse)
    texts = [r.getMessage() for r in eid_logs]
    texts += [str(caught.value), repr(caught.value), repr(vars(caught.value))]
    assert eid_logs
    assert all(codes[0] not in text for text in texts)
