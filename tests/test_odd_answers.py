"""Hypothesis sends odd token endpoint answers through the real loopback server:
every one ends in a valid token or a documented error, and nothing is lost."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eid_auth import EmpowerIDAuth, EmpowerIDAuthError, InvalidGrantError, Token
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import CLIENT_ID, CLIENT_SECRET


@pytest.fixture(scope="module")
def shared_server() -> Iterator[EmpowerIDTestServer]:
    with EmpowerIDTestServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        yield server


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
fields = st.fixed_dictionaries(
    {},
    optional={
        "access_token": scalars,
        "token_type": st.sampled_from(["Bearer", "bearer", "MAC", ""]) | scalars,
        "expires_in": scalars,
        "refresh_token": scalars,
        "id_token": scalars,
        "error": st.sampled_from(["", "invalid_grant", "server_error"]) | scalars,
        "error_description": scalars,
        "id": scalars,
    },
)
bodies = (
    fields.map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=40)
    | st.sampled_from([b"", b"null", b"[]", b'"text"', b"{", b"<html></html>"])
)
# (No 204: a 204 with a body is broken HTTP and poisons the keep-alive connection.)
statuses = st.sampled_from([200, 201, 400, 401, 403, 404, 418])


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(status=statuses, body=bodies)
def test_odd_answers_end_in_a_token_or_a_documented_error(
    shared_server: EmpowerIDTestServer, status: int, body: bytes
) -> None:
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
        message = str(outcome) + repr(vars(outcome))
        assert refresh_token not in message
        assert CLIENT_SECRET not in message
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
    """The refresh token a 2xx success-shaped answer carried, if any."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not 200 <= status < 300 or not isinstance(data, dict) or data.get("error"):
        return None
    value = data.get("refresh_token")
    return value if isinstance(value, str) and value else None
