"""Odd and hostile token endpoint answers, sent through the real loopback server:
every one ends in a valid token or a documented error, nothing is lost (a
rotated refresh token in an unusable answer is kept), and no field of an answer
is quoted in an error or a log record.

Hypothesis sends generated answers; named cases follow: numbers no float holds,
OAuth errors in a 2xx answer, EmpowerID's empty error fields, JSON nested too
deep to parse, an access token that cannot go in a header."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eid_auth import (
    EmpowerIDAuth,
    EmpowerIDAuthError,
    InvalidGrantError,
    InvalidTokenResponseError,
    Token,
    TokenEndpointError,
)
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import CLIENT_ID, CLIENT_SECRET

AuthFactory = Callable[..., EmpowerIDAuth]


@pytest.fixture(scope="module")
def shared_server() -> Iterator[EmpowerIDTestServer]:
    with EmpowerIDTestServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        yield server


# Values no message may quote: every one starts with SECRET.
secrets = st.from_regex(r"SECRET[A-Za-z0-9/+=]{4,12}", fullmatch=True)
numbers = (
    st.integers()
    | st.integers(min_value=10**300, max_value=10**400)  # no float holds them
    | st.integers(min_value=-(10**400), max_value=-(10**300))
    | st.floats()  # inf and nan go out as Infinity and NaN, which Python reads back
    | st.sampled_from(["3600", "1e400", "-1e400", "Infinity", "NaN", "1" * 400, " 60 "])
)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=12) | secrets
nested = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=2)
    ),
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "access_token": scalars,
        "token_type": st.sampled_from(["Bearer", "bearer", "MAC", ""]) | scalars,
        "expires_in": scalars,
        "refresh_token": scalars,
        "id_token": scalars | nested,
        "error": st.sampled_from(["", "invalid_grant", "server_error"]) | scalars,
        "error_description": scalars,
        "id": scalars,
        "scope": scalars | nested,
        "unknown": nested,
    },
)
# Nearly token responses, so that the numbers reach the parsing of expires_in.
token_like = st.fixed_dictionaries(
    {
        "access_token": st.from_regex(r"[A-Za-z0-9._~-]{1,20}", fullmatch=True),
        "expires_in": numbers,
    },
    optional={
        "token_type": st.just("Bearer"),
        "refresh_token": secrets | scalars,
        "id_token": secrets,
        "error": st.sampled_from(["", "server_error"]) | scalars,
        "error_description": st.just("null") | scalars,
        "unknown": nested,
    },
)
token_like_json = token_like.map(lambda d: json.dumps(d).encode())
bodies = st.one_of(
    token_like_json,
    token_like_json,  # twice: the likeliest to reach deep into the parsing
    fields.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=40),
    st.sampled_from([b"", b"null", b"[]", b'"text"', b"{", b"<html></html>"]),
)
# (No 204: a 204 with a body is broken HTTP and poisons the keep-alive connection.)
statuses = st.sampled_from([200, 200, 201, 400, 401, 403, 404, 418])


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(status=statuses, body=bodies)
@example(status=200, body=b'{"access_token": "a", "expires_in": 1' + b"0" * 400 + b"}")
def test_odd_answers_end_in_a_token_or_a_documented_error(
    shared_server: EmpowerIDTestServer,
    eid_logs: list[logging.LogRecord],
    status: int,
    body: bytes,
) -> None:
    eid_logs.clear()
    refresh_token = shared_server.issue_grant()["refresh_token"]
    auth = EmpowerIDAuth(
        token_endpoint=shared_server.token_endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=refresh_token,
        max_retries=0,
    )
    shared_server.fail_next(FaultSpec(status=status, body=body), count=1)
    outcome: Token | EmpowerIDAuthError
    try:
        outcome = auth.refresh()
    except EmpowerIDAuthError as exc:
        outcome = exc
    if isinstance(outcome, Token):
        assert outcome.access_token
        assert auth.token == outcome
    else:
        message = str(outcome) + repr(outcome) + repr(vars(outcome))
        assert refresh_token not in message
        assert CLIENT_SECRET not in message
        logged = "\n".join(record.getMessage() for record in eid_logs)
        for secret in _secrets_in(status, body):
            assert secret not in message
            assert secret not in logged
        assert auth.token is None  # nothing half-applied
        # Nothing lost: the next refresh sends the original refresh token, or
        # the rotated one the odd answer carried (the server may have rotated).
        rotated = _rotated_refresh_token(status, body)
        if isinstance(outcome, InvalidGrantError):
            # A refused refresh token is remembered, not sent again at once.
            sent_before = shared_server.token_requests
            with pytest.raises(InvalidGrantError, match="not sent again"):
                auth.refresh()
            assert shared_server.token_requests == sent_before
            auth.close()
            return
        try:
            auth.refresh()
        except EmpowerIDAuthError:
            assert rotated is not None
        sent = shared_server.token_request_log[-1].form["refresh_token"]
        assert sent == (rotated or refresh_token)
    auth.close()


def _rotated_refresh_token(status: int, body: bytes) -> str | None:
    """The refresh token a 2xx answer carried, if any: kept even when the rest
    of the answer is unusable or an OAuth error."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not 200 <= status < 300 or not isinstance(data, dict):
        return None
    value = data.get("refresh_token")
    return value if isinstance(value, str) and value else None


def _secrets_in(status: int, body: bytes) -> list[str]:
    """The SECRET values of an answer that no message may quote: all of them
    in a 2xx answer except error and error_description; in another answer,
    the tokens."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str) and value.startswith("SECRET"):
            found.append(value)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    for key, value in data.items():
        if 200 <= status < 300:
            if key not in ("error", "error_description") or not isinstance(value, str):
                walk(value)
        elif key.endswith("token"):
            walk(value)
    return found


# -- a rotated refresh token is never lost, and never quoted ------------------------------


@pytest.mark.parametrize(
    "expires_in",
    [10**400, -(10**400), "1e400", "Infinity", "NaN", float("inf"), float("nan")],
    ids=["huge", "huge-negative", "1e400", "Infinity", "NaN", "inf", "nan"],
)
def test_an_expires_in_no_float_holds_keeps_the_rotated_refresh_token(
    server: EmpowerIDTestServer,
    auth_factory: AuthFactory,
    eid_logs: list[logging.LogRecord],
    expires_in: Any,
) -> None:
    auth = auth_factory(max_retries=0)
    rotated = server.issue_grant()["refresh_token"]  # a live one, as a rotating server sends
    answer = {"access_token": "at-x", "expires_in": expires_in, "refresh_token": rotated}
    server.fail_next(FaultSpec(status=200, body=json.dumps(answer).encode()), count=1)
    with pytest.raises(InvalidTokenResponseError, match="expires_in") as caught:
        auth.refresh()
    assert "0" * 50 not in str(caught.value)
    token = auth.refresh()  # with the kept refresh token
    assert server.token_request_log[-1].form["refresh_token"] == rotated
    assert token.refresh_token is not None
    assert any("kept the new refresh token" in r.getMessage() for r in eid_logs)


def test_a_rotated_refresh_token_in_an_unusable_answer_is_kept(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory()
    body = b'{"access_token": "x", "expires_in": 0, "refresh_token": "rt-rotated-by-server"}'
    server.fail_next(FaultSpec(status=200, body=body), count=1)
    with pytest.raises(InvalidTokenResponseError, match="expires_in"):
        auth.refresh()
    with pytest.raises(Exception, match="invalid_grant"):
        auth.refresh()  # the server never issued that one: it proves which was sent
    assert server.token_request_log[-1].form["refresh_token"] == "rt-rotated-by-server"


_TOKENS = {
    "access_token": "SECRET-access-2xx-error",
    "id_token": "SECRET-id-2xx-error",
    "nested": {"deep": ["SECRET-unknown-2xx-error"]},
}


@pytest.mark.parametrize("error", ["server_error", "invalid_grant", "access_denied"])
def test_a_2xx_answer_with_an_error_keeps_its_refresh_token_and_quotes_no_token(
    server: EmpowerIDTestServer,
    auth_factory: AuthFactory,
    eid_logs: list[logging.LogRecord],
    caplog: pytest.LogCaptureFixture,
    error: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = auth_factory(max_retries=0)
    rotated = server.issue_grant()["refresh_token"]
    answer = {
        **_TOKENS,
        "refresh_token": rotated,
        "error": error,
        "error_description": "echo: SECRET-access-2xx-error and " + rotated,
    }
    server.fail_next(FaultSpec(status=200, body=json.dumps(answer).encode()), count=1)
    with pytest.raises(TokenEndpointError) as caught:
        auth.refresh()
    exc = caught.value
    # A server that hands over a new refresh token has not ended the grant: no
    # InvalidGrantError, whose refusal would be remembered for the new token.
    assert type(exc) is TokenEndpointError
    assert exc.error == error
    assert exc.status_code == 200
    assert exc.error_description == "echo: [redacted] and [redacted]"
    texts = [str(exc), repr(exc), repr(vars(exc))]
    texts += [r.getMessage() for r in eid_logs] + [caplog.text]
    for secret in [rotated, *_secrets_in(200, json.dumps(answer).encode())]:
        assert not any(secret in text for text in texts)
    auth.refresh()
    assert server.token_request_log[-1].form["refresh_token"] == rotated


def test_a_2xx_error_without_a_description_quotes_its_body_redacted(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory(max_retries=0)
    answer = {**_TOKENS, "error": "temporarily_unavailable", "error_description": "null"}
    server.fail_next(FaultSpec(status=200, body=json.dumps(answer).encode()), count=1)
    with pytest.raises(TokenEndpointError, match="temporarily_unavailable") as caught:
        auth.refresh()
    assert "SECRET" not in str(caught.value)
    assert '"access_token": "[redacted]"' in str(caught.value)
    assert caught.value.error_description is None


def test_an_error_field_that_is_not_a_string_is_not_quoted(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory(max_retries=0)
    answer = {"error": {"code": "SECRET-in-error"}, "error_description": ["SECRET-in-desc"]}
    server.fail_next(FaultSpec(status=200, body=json.dumps(answer).encode()), count=1)
    with pytest.raises(TokenEndpointError, match="not a string") as caught:
        auth.refresh()
    assert "SECRET" not in str(caught.value) + repr(vars(caught.value))
    assert caught.value.error is None


def test_a_4xx_answer_carrying_tokens_does_not_quote_them(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory(max_retries=0)
    answer = {
        "Message": "denied",
        "refresh_token": "SECRET-4xx-refresh",
        "x": {"id_token": "SECRET-4xx-id"},
    }
    server.fail_next(FaultSpec(status=401, body=json.dumps(answer).encode()), count=1)
    with pytest.raises(TokenEndpointError, match="denied") as caught:
        auth.refresh()
    assert "SECRET" not in str(caught.value)


def test_empowerid_success_bodies_with_an_empty_error_are_successes(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory(max_retries=0)
    rotated = server.issue_grant()["refresh_token"]
    answer = {
        "access_token": "at-empowerid",
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": rotated,
        "id_token": None,
        "id": "00000000-0000-0000-0000-000000000000",
        "error": "",
        "error_description": "null",
    }
    server.fail_next(FaultSpec(status=200, body=json.dumps(answer).encode()), count=1)
    token = auth.refresh()
    assert token.access_token == "at-empowerid"
    assert token.refresh_token == rotated


# -- answers no usable token comes from ------------------------------------------------


def test_deeply_nested_json_is_an_invalid_token_response(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory()
    server.fail_next(FaultSpec(status=200, body=b"[" * 100_000), count=1)
    with pytest.raises(InvalidTokenResponseError, match="not JSON"):
        auth.refresh()


@pytest.mark.parametrize("access_token", ["has space", "new\nline", "ünï", "tab\t"])
def test_access_token_that_cannot_be_a_header_is_rejected(
    server: EmpowerIDTestServer, auth_factory: AuthFactory, access_token: str
) -> None:
    auth = auth_factory()
    body = json.dumps({"access_token": access_token, "expires_in": 3600}).encode()
    server.fail_next(FaultSpec(status=200, body=body), count=1)
    with pytest.raises(InvalidTokenResponseError, match="HTTP header") as caught:
        auth.refresh()
    assert access_token not in str(caught.value)
