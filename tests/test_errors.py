"""The public errors travel: every one survives pickle and copy with its fields
and attributes set by the application, and an ``invalid_grant`` raised in a
worker process (``ProcessPoolExecutor``) arrives whole, whether the server
refused the refresh token or the refusal came from memory."""

from __future__ import annotations

import concurrent.futures
import contextlib
import inspect
import multiprocessing

import pytest

import eid_auth
from eid_auth import EmpowerIDAuth, EmpowerIDAuthError, InvalidGrantError
from eid_auth.testing import EmpowerIDTestServer

from .conftest import copies

_EXAMPLE_ARGUMENTS = {
    "error": "invalid_grant",
    "error_description": "the grant is gone",
    "status_code": 400,
    "attempts": 3,
    "endpoint": "userinfo_endpoint",
}


def _public_errors() -> list[type[EmpowerIDAuthError]]:
    return [
        value
        for value in vars(eid_auth).values()
        if isinstance(value, type) and issubclass(value, EmpowerIDAuthError)
    ]


def _example(cls: type[EmpowerIDAuthError]) -> EmpowerIDAuthError:
    try:
        parameters = inspect.signature(cls).parameters
    except ValueError:  # Exception's own __init__: a message only
        parameters = {}  # type: ignore[assignment]
    keywords = {
        name: _EXAMPLE_ARGUMENTS[name]
        for name, parameter in parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    return cls("what went wrong", **keywords)


def test_every_public_error_is_known_to_the_round_trip_test() -> None:
    assert {cls.__name__ for cls in _public_errors()} >= {
        "ConfigurationError",
        "EmpowerIDAuthError",
        "EndpointError",
        "InvalidClientError",
        "InvalidGrantError",
        "InvalidTokenResponseError",
        "MissingRefreshTokenError",
        "TokenEndpointError",
        "TokenEndpointUnavailableError",
        "TokenStoreError",
    }


@pytest.mark.parametrize("cls", _public_errors(), ids=lambda cls: cls.__name__)
def test_every_public_error_survives_pickle_and_copy(cls: type[EmpowerIDAuthError]) -> None:
    error = _example(cls)
    error.extra = "set by the application"  # type: ignore[attr-defined]
    for again in copies(error):
        assert type(again) is cls
        assert again is not error
        assert str(again) == str(error)
        assert again.args == error.args
        assert vars(again) == vars(error)


def _refresh_in_a_worker(
    token_endpoint: str, client_id: str, client_secret: str, refresh_token: str, twice: bool
) -> None:
    auth = EmpowerIDAuth(
        token_endpoint=token_endpoint,
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=refresh_token,
        max_retries=0,
    )
    try:
        if twice:  # the second refusal comes from memory, without a request
            with contextlib.suppress(InvalidGrantError):
                auth.refresh()
        auth.refresh()
    finally:
        auth.close()


@pytest.mark.parametrize("twice", [False, True], ids=["refused", "remembered"])
def test_invalid_grant_in_a_worker_process_arrives_whole(
    server: EmpowerIDTestServer, twice: bool
) -> None:
    refresh_token = server.issue_grant()["refresh_token"]
    server.revoke_grant(refresh_token)
    context = multiprocessing.get_context("spawn")  # no fork of a threaded process
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        future = pool.submit(
            _refresh_in_a_worker,
            server.token_endpoint,
            server.client_id,
            server.client_secret,
            refresh_token,
            twice,
        )
        with pytest.raises(InvalidGrantError) as caught:
            future.result(timeout=60)
        assert pool.submit(len, "pool still works").result(timeout=60) == 16
    assert caught.value.error == "invalid_grant"
    assert caught.value.status_code == 400
    assert "invalid_grant" in str(caught.value)
