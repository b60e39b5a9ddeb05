"""Wrong configuration fails at construction, with a message that says what to do."""

from __future__ import annotations

from typing import Any

import pytest

from eid_auth import ConfigurationError, EmpowerIDAuth, Token

GOOD: dict[str, Any] = {
    "token_endpoint": "https://eid.example.com/oauth/v2/token",
    "client_id": "app",
    "client_secret": "client-secret-value",
    "refresh_token": "refresh-token-value",
}


def build(**changes: Any) -> EmpowerIDAuth:
    kwargs = {**GOOD, **changes}
    return EmpowerIDAuth(**{k: v for k, v in kwargs.items() if v is not None})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"token_endpoint": None}, "exactly one of token_endpoint"),
        ({"server": "https://eid.example.com"}, "exactly one of token_endpoint"),
        ({"token_endpoint": "http://eid.example.com/oauth/v2/token"}, "must use https"),
        ({"token_endpoint": "ftp://eid.example.com/t"}, "not an http"),
        ({"token_endpoint": "https://u:p@eid.example.com/t"}, "credentials"),
        ({"client_id": ""}, "client_id"),
        ({"client_secret": ""}, "client_secret"),
        ({"refresh_token": None}, "give refresh_token="),
        ({"refresh_token": ""}, "refresh_token must be"),
        ({"client_auth": "private_key_jwt"}, "client_auth"),
        ({"leeway": -1}, "leeway"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"api_key": ""}, "api_key"),
        ({"on_refresh": "print"}, "on_refresh"),
        ({"token_client": object()}, "token_client"),
        ({"expires_at": 5.0}, "expires_at needs access_token"),
        # Numbers no float holds, and milliseconds, fail here, not at the first request.
        ({"access_token": "a", "expires_at": 10**400}, "Unix timestamp in seconds"),
        ({"access_token": "a", "expires_at": 1795666028376.5}, "looks like milliseconds"),
        ({"access_token": "a", "expires_at": float("inf")}, "Unix timestamp in seconds"),
        ({"access_token": "a", "expires_at": -1}, "Unix timestamp in seconds"),
        ({"refresh_token": None, "token": {"access_token": "a", "expires_at": 10**400}}, "Unix"),
        ({"token": {"access_token": "a"}}, "not both"),
        ({"refresh_token": None, "token": {"nope": 1}}, "access_token"),
        # A newline pasted into the URL: httpx would refuse it only at the first request.
        ({"token_endpoint": "http://local\nhost/t"}, "control character"),
        ({"token_endpoint": "https://eid.example.com/oauth/v2/token\n"}, "control character"),
        ({"token_endpoint": "https://eid example.com/oauth/v2/token"}, "space"),
        ({"token_endpoint": "https://eid.example.com:99999/t"}, "invalid host name or port"),
        ({"token_endpoint": "https://eid..example.com/t"}, "invalid host name or port"),
        # server= is the base URL: a full endpoint URL would get the path twice.
        (
            {"token_endpoint": None, "server": "https://eid.example.com/oauth/v2/token"},
            "use token_endpoint= instead",
        ),
        ({"token_endpoint": None, "server": "https://eid.example.com/oauth/"}, "base URL"),
    ],
)
def test_wrong_configuration(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        build(**changes)
    assert isinstance(caught.value, ValueError)
    assert "client-secret-value" not in str(caught.value)
    assert "refresh-token-value" not in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"api_key": "clé"}, "api_key"),
        ({"api_key": "a\nb"}, "api_key"),
        ({"client_auth": "client_secret_basic", "client_secret": "pässwörd€"}, "Latin-1"),
        ({"token_endpoint": None, "server": "https://h?x=1"}, "base URL"),
        ({"token_endpoint": "https://h/oauth/v2/token#frag"}, "fragment"),
    ],
)
def test_values_that_cannot_go_in_a_header_or_url_are_refused(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        build(**changes)
    assert "pässwörd€" not in str(caught.value)


def test_async_on_refresh_is_rejected() -> None:
    async def save(token: Token) -> None:
        return None

    with pytest.raises(ConfigurationError, match="plain function"):
        build(on_refresh=save)


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:8080/oauth/v2/token",
        "http://localhost/oauth/v2/token",
        "http://[::1]:9/oauth/v2/token",
        "https://eid.example.com/oauth/v2/token",
    ],
)
def test_https_or_loopback(endpoint: str) -> None:
    assert build(token_endpoint=endpoint).token_endpoint == endpoint


def test_server_means_the_empowerid_token_path() -> None:
    auth = build(token_endpoint=None, server="https://eid.example.com/")
    assert auth.token_endpoint == "https://eid.example.com/oauth/v2/token"
    # A server behind a path prefix (a reverse proxy) keeps its prefix.
    auth = build(token_endpoint=None, server="https://proxy.example.com/eid")
    assert auth.token_endpoint == "https://proxy.example.com/eid/oauth/v2/token"


def test_token_argument_accepts_a_token_or_its_dict() -> None:
    token = Token(access_token="a", refresh_token="r", expires_at=2e9)
    assert build(refresh_token=None, token=token).token == token
    assert build(refresh_token=None, token=token.to_dict()).token == token


def test_access_token_alone_is_enough() -> None:
    auth = build(refresh_token=None, access_token="a", expires_at=2e9)
    assert auth.token == Token(access_token="a", expires_at=2e9)


@pytest.mark.parametrize(
    "url",
    [
        "https://me:pa55word@eid.example.com",
        "https://me:pa55word@eid.example.com:99999",
        "ftp://me:pa55word@eid.example.com",
        "http://me:pa55word@eid.example.com",
        "https://me:pa55word@eid.example.com/ x",
        "https://me:pa55word@eid.example.com/oauth/v2/token",
    ],
)
def test_a_password_in_a_refused_url_is_not_quoted(url: str) -> None:
    for changes in ({"server": url, "token_endpoint": None}, {"token_endpoint": url}):
        with pytest.raises(ConfigurationError) as caught:
            build(**changes)
        assert "pa55word" not in str(caught.value)
        assert "***@eid.example.com" in str(caught.value)


def test_the_command_line_and_the_library_agree_on_the_token_path() -> None:
    # The fast path of `eid-auth token` keeps its own copy, to import less.
    from eid_auth import _config, _profiles

    assert _profiles.TOKEN_PATH == _config.TOKEN_PATH
