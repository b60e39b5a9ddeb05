"""A person's sign-in at a browser: the authorization code grant with PKCE (S256)
through a loopback redirect (RFC 8252), on both sides: ``EmpowerIDClient``'s
``login_in_browser`` and building blocks, and the test server's authorization endpoint
and code exchange.

The browser is ``tests/fake_browser.py`` named in ``BROWSER`` (through ``webbrowser``,
as a user's would be), or an ``open_browser`` callable doing the same GETs.
"""

from __future__ import annotations

import base64
import json
import logging
import shlex
import subprocess
import sys
import time
import webbrowser
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from eid_auth import (
    AccessDeniedError,
    EmpowerIDAuthError,
    EmpowerIDClient,
    InvalidGrantError,
    SignInError,
    SignInTimeoutError,
)
from eid_auth.testing import EmpowerIDTestServer

from .conftest import CLIENT_ID, CLIENT_SECRET

FAKE_BROWSER = Path(__file__).resolve().parent / "fake_browser.py"


@pytest.fixture
def eid(server: EmpowerIDTestServer) -> Iterator[EmpowerIDClient]:
    with EmpowerIDClient(
        server=server.url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        timeout=5.0,
        backoff_factor=0.01,
    ) as client:
        yield client


def browser(tamper: Callable[[str], str] = lambda url: url) -> Callable[[str], bool]:
    """An ``open_browser`` that signs in over HTTP, as fake_browser.py does;
    ``tamper`` may change the redirect before it is followed."""

    def open_browser(url: str) -> bool:
        answer = httpx.get(url, timeout=10)
        assert answer.status_code == 302, answer.text
        httpx.get(tamper(answer.headers["Location"]), timeout=30)
        return True

    return open_browser


def redirect_of(url: str) -> str:
    """Where the authorization endpoint sends the browser back."""
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def claims_of(id_token: str) -> dict[str, object]:
    payload = id_token.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def test_sign_in_through_webbrowser_with_BROWSER_set(
    server: EmpowerIDTestServer,
    eid: EmpowerIDClient,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    page = tmp_path / "page.html"
    monkeypatch.setenv(
        "BROWSER", f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_BROWSER))} %s"
    )
    monkeypatch.setenv("FAKE_BROWSER_PAGE", str(page))
    # webbrowser reads BROWSER once per process: make it read it again.
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})

    token = eid.login_in_browser(scope="openid profile", timeout=30)

    response = httpx.get(
        server.api_url("/api/whoami"),
        headers={"Authorization": f"Bearer {token.access_token}"},
        timeout=10,
    )
    assert response.json()["id"] == server.test_user.person_id
    assert token.refresh_token is not None
    (exchange,) = server.token_request_log
    assert exchange.form["grant_type"] == "authorization_code"
    redirect_uri = exchange.form["redirect_uri"]
    assert redirect_uri.startswith("http://127.0.0.1:")
    assert redirect_uri.endswith("/callback")
    assert len(exchange.form["code_verifier"]) >= 43
    text = page.read_text()
    assert "signed in" in text
    assert exchange.form["code"] not in text
    assert token.id_token is not None
    assert "nonce" in claims_of(token.id_token)


def test_sign_in_with_an_open_browser_callable(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    opened: list[str] = []

    def open_browser(url: str) -> bool:
        opened.append(url)
        return browser()(url)

    token = eid.login_in_browser(scope="openid", open_browser=open_browser, timeout=30)

    (url,) = opened
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(server.url + "/oauth/v2/ui/authorize?")
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [CLIENT_ID]
    assert query["code_challenge_method"] == ["S256"]
    assert {"state", "nonce", "code_challenge", "redirect_uri"} <= set(query)
    assert token.id == server.test_user.person_id


def test_a_redirect_with_another_state_is_refused_and_no_code_is_exchanged(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    def forge(location: str) -> str:
        return location.replace("state=", "state=forged")

    with pytest.raises(SignInError, match="state") as caught:
        eid.login_in_browser(scope="openid", open_browser=browser(forge), timeout=30)
    assert not isinstance(caught.value, AccessDeniedError)
    assert server.token_requests == 0


def test_a_denied_sign_in_raises_access_denied(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    server.sign_in = "deny"
    pages: list[httpx.Response] = []

    def open_browser(url: str) -> bool:
        pages.append(httpx.get(redirect_of(url), timeout=30))
        return True

    with pytest.raises(AccessDeniedError) as caught:
        eid.login_in_browser(scope="openid", open_browser=open_browser, timeout=30)
    assert caught.value.error == "access_denied"
    assert server.token_requests == 0
    (page,) = pages
    assert "refused" in page.text


def test_no_redirect_within_the_timeout_raises_a_timeout(eid: EmpowerIDClient) -> None:
    started = time.monotonic()
    with pytest.raises(SignInTimeoutError, match=r"within 0\.5s"):
        eid.login_in_browser(scope="openid", open_browser=lambda url: True, timeout=0.5)
    assert time.monotonic() - started < 10


def test_without_a_browser_the_address_is_printed_to_stderr(
    eid: EmpowerIDClient, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SignInTimeoutError):
        eid.login_in_browser(scope="openid", open_browser=lambda url: False, timeout=0.5)
    assert "/oauth/v2/ui/authorize?" in capfd.readouterr().err


def test_the_listener_is_closed_when_the_sign_in_ends(eid: EmpowerIDClient) -> None:
    seen: list[str] = []

    def open_browser(url: str) -> bool:
        seen.append(parse_qs(urlsplit(url).query)["redirect_uri"][0])
        return True

    with pytest.raises(SignInTimeoutError):
        eid.login_in_browser(scope="openid", open_browser=open_browser, timeout=0.3)
    with pytest.raises(httpx.ConnectError):
        httpx.get(seen[0], timeout=5)


def test_an_error_on_the_redirect_is_a_sign_in_error(eid: EmpowerIDClient) -> None:
    request = eid.authorization_url("http://127.0.0.1:8400/callback", scope="openid")
    with pytest.raises(SignInError) as caught:
        request.code_from_redirect(
            f"http://127.0.0.1:8400/callback?error=invalid_scope&state={request.state}"
        )
    assert type(caught.value) is SignInError
    assert caught.value.error == "invalid_scope"


def test_the_building_blocks_and_the_id_tokens_nonce(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    request = eid.authorization_url("http://127.0.0.1:8400/callback", scope="openid")
    assert request.code_verifier not in repr(request)
    code = request.code_from_redirect(redirect_of(request.url))
    token = eid.exchange_code(
        code,
        redirect_uri=request.redirect_uri,
        code_verifier=request.code_verifier,
        nonce=request.nonce,
    )
    assert token.id_token is not None
    assert claims_of(token.id_token)["nonce"] == request.nonce


def test_the_exchange_hands_the_nonce_to_the_id_tokens_validation(
    eid: EmpowerIDClient,
) -> None:
    request = eid.authorization_url("http://127.0.0.1:8400/callback", scope="openid")
    other = eid.authorization_url("http://127.0.0.1:8400/callback", scope="openid")
    code = other.code_from_redirect(redirect_of(other.url))
    with pytest.raises(EmpowerIDAuthError, match="nonce"):
        eid.exchange_code(
            code,
            redirect_uri=other.redirect_uri,
            code_verifier=other.code_verifier,
            nonce=request.nonce,
        )


def test_the_server_refuses_a_wrong_code_verifier_and_burns_the_code(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    request = eid.authorization_url("http://127.0.0.1:8400/callback", scope="openid")
    code = request.code_from_redirect(redirect_of(request.url))
    with pytest.raises(InvalidGrantError, match="PKCE"):
        eid.exchange_code(code, redirect_uri=request.redirect_uri, code_verifier="x" * 43)
    with pytest.raises(InvalidGrantError, match="already used"):
        eid.exchange_code(
            code, redirect_uri=request.redirect_uri, code_verifier=request.code_verifier
        )


def test_the_server_wants_the_same_redirect_uri(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    request = eid.authorization_url("http://127.0.0.1:8400/callback", scope="openid")
    code = request.code_from_redirect(redirect_of(request.url))
    with pytest.raises(InvalidGrantError, match="redirect_uri"):
        eid.exchange_code(
            code,
            redirect_uri="http://127.0.0.1:8400/other",
            code_verifier=request.code_verifier,
        )


def test_a_replayed_code_revokes_the_tokens_it_brought(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    request = eid.authorization_url("http://127.0.0.1:8400/callback", scope="openid")
    code = request.code_from_redirect(redirect_of(request.url))
    exchange = {"redirect_uri": request.redirect_uri, "code_verifier": request.code_verifier}
    token = eid.exchange_code(code, **exchange)
    with pytest.raises(InvalidGrantError):
        eid.exchange_code(code, **exchange)
    answer = httpx.get(
        server.api_url("/api/whoami"),
        headers={"Authorization": f"Bearer {token.access_token}"},
        timeout=10,
    )
    assert answer.status_code == 401


def test_the_server_requires_pkce_s256(server: EmpowerIDTestServer) -> None:
    base = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": "http://127.0.0.1:8400/callback",
        "state": "s-1",
    }
    url = server.url + "/oauth/v2/ui/authorize"
    without = parse_qs(urlsplit(redirect_of(httpx.URL(url, params=base).__str__())).query)
    assert without["error"] == ["invalid_request"]
    assert without["state"] == ["s-1"]
    plain = {**base, "code_challenge": "a" * 43, "code_challenge_method": "plain"}
    refused = parse_qs(urlsplit(redirect_of(str(httpx.URL(url, params=plain)))).query)
    assert refused["error"] == ["invalid_request"]
    assert "code" not in refused


def test_the_server_redirects_only_to_a_registered_uri_any_loopback_port(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    server.redirect_uris = ["http://127.0.0.1/callback"]
    stranger = eid.authorization_url("https://evil.example/callback", scope="openid")
    answer = httpx.get(stranger.url, timeout=10)
    assert answer.status_code == 400
    assert "location" not in answer.headers
    # RFC 8252 section 7.3: the port the system chose does not matter.
    token = eid.login_in_browser(scope="openid", open_browser=browser(), timeout=30)
    assert token.access_token


def test_discovery_lists_the_authorization_and_device_endpoints(
    server: EmpowerIDTestServer, eid: EmpowerIDClient
) -> None:
    document = httpx.get(server.url + "/oauth/.well-known/openid-configuration").json()
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert eid.metadata.authorization_endpoint == server.url + "/oauth/v2/ui/authorize"
    assert eid.metadata.device_authorization_endpoint == server.url + "/oauth/v2/device/authorize"


def test_no_code_or_verifier_in_any_log_record(
    server: EmpowerIDTestServer, eid: EmpowerIDClient, eid_logs: list[logging.LogRecord]
) -> None:
    request = eid.authorization_url("http://127.0.0.1:8400/callback", scope="openid")
    code = request.code_from_redirect(redirect_of(request.url))
    with pytest.raises(InvalidGrantError) as caught:
        eid.exchange_code(code, redirect_uri=request.redirect_uri, code_verifier="y" * 43)
    eid.login_in_browser(scope="openid", open_browser=browser(), timeout=30)
    verifiers = [r.form["code_verifier"] for r in server.token_request_log]
    texts = [r.getMessage() for r in eid_logs] + [str(caught.value), repr(caught.value)]
    for secret in [code, request.code_verifier, *verifiers]:
        assert all(secret not in text for text in texts)


def test_import_eid_auth_loads_no_sign_in_module() -> None:
    code = (
        "import sys, eid_auth\n"
        "loaded = [m for m in ('webbrowser', 'http.server', 'eid_auth._authorization_code',"
        " 'eid_auth._device_code') if m in sys.modules]\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
