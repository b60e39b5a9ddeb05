"""The Token model and the validation of token endpoint answers, including
hypothesis-generated odd answers; tokens through pickle and copy. (Errors
through pickle, copy and worker processes: test_errors.py.)"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from eid_auth import (
    ConfigurationError,
    EmpowerIDAuth,
    InvalidTokenResponseError,
    Token,
)
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import copies

EMPOWERID_ANSWER = {
    "access_token": "at-secret-value",
    "token_type": "Bearer",
    "expires_in": 3600,
    "refresh_token": "rt-secret-value",
    "id_token": None,
    "id": "00000000-0000-0000-0000-000000000000",
    "error": "",
    "error_description": "null",
    "custom_field": {"kept": True},
}


def test_from_an_empowerid_answer() -> None:
    token = Token.from_response(EMPOWERID_ANSWER, requested_at=1000.0)
    assert token.access_token == "at-secret-value"
    assert token.refresh_token == "rt-secret-value"
    assert token.expires_at == 4600.0  # from when the request was sent
    assert token.id == "00000000-0000-0000-0000-000000000000"
    assert token.id_token is None
    assert token.raw["custom_field"] == {"kept": True}


def test_large_expires_in_from_empowerid_samples() -> None:
    answer = {**EMPOWERID_ANSWER, "expires_in": 3600000}
    assert Token.from_response(answer, requested_at=0.0).expires_at == 3600000.0


def test_expires_in_as_a_numeric_string() -> None:
    answer = {**EMPOWERID_ANSWER, "expires_in": "3600"}
    assert Token.from_response(answer, requested_at=0.0).expires_at == 3600.0


def test_missing_expires_in_means_unknown_expiry() -> None:
    answer = {k: v for k, v in EMPOWERID_ANSWER.items() if k != "expires_in"}
    token = Token.from_response(answer, requested_at=0.0)
    assert token.expires_at is None
    assert not token.is_expired(leeway=10**9)


def test_missing_refresh_token_keeps_the_previous_one() -> None:
    answer = {k: v for k, v in EMPOWERID_ANSWER.items() if k != "refresh_token"}
    token = Token.from_response(answer, requested_at=0.0, previous_refresh_token="old-rt")
    assert token.refresh_token == "old-rt"


def test_token_type_is_case_insensitive() -> None:
    token = Token.from_response({**EMPOWERID_ANSWER, "token_type": "bearer"}, requested_at=0)
    assert token.token_type == "Bearer"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"access_token": None}, "access_token"),
        ({"access_token": ""}, "access_token"),
        ({"access_token": 12}, "access_token"),
        ({"token_type": "MAC"}, "Bearer"),
        ({"token_type": None}, "Bearer"),
        ({"expires_in": 0}, "expires_in"),
        ({"expires_in": 0.5}, "expires_in"),
        ({"expires_in": 5e-324}, "expires_in"),
        ({"expires_in": -1}, "expires_in"),
        ({"expires_in": True}, "expires_in"),
        ({"expires_in": "NaN"}, "expires_in"),
        ({"expires_in": 1e12}, "expires_in"),
        ({"expires_in": [3600]}, "expires_in"),
        ({"refresh_token": 5}, "refresh_token"),
    ],
)
def test_invalid_answers(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTokenResponseError, match=message):
        Token.from_response({**EMPOWERID_ANSWER, **change}, requested_at=0.0)


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        ({"id": 42}, "id", "42"),
        ({"id": {"guid": "x"}}, "id", None),
        ({"scope": ["openid", "profile"]}, "scope", "openid profile"),
        ({"scope": 7}, "scope", "7"),
        ({"id_token": {}}, "id_token", None),
        ({"id_token": ""}, "id_token", None),
    ],
)
def test_odd_informational_fields_do_not_discard_the_token(
    change: dict[str, Any], field: str, expected: str | None
) -> None:
    token = Token.from_response({**EMPOWERID_ANSWER, **change}, requested_at=0.0)
    assert getattr(token, field) == expected
    assert token.raw[field] == next(iter(change.values()))  # kept as sent
    assert token.refresh_token == "rt-secret-value"


def test_repr_and_str_hide_every_token() -> None:
    token = Token.from_response({**EMPOWERID_ANSWER, "id_token": "idt-secret"}, requested_at=0)
    for text in (repr(token), str(token), f"{token}", repr([token])):
        assert "at-secret-value" not in text
        assert "rt-secret-value" not in text
        assert "idt-secret" not in text
    assert "Bearer" in repr(token)


def test_dict_round_trip_through_json() -> None:
    token = Token.from_response(EMPOWERID_ANSWER, requested_at=123.5)
    again = Token.from_dict(json.loads(json.dumps(token.to_dict())))
    assert again == token
    assert again.raw == token.raw
    assert again.expires_at == token.expires_at


def test_token_is_immutable() -> None:
    token = Token(access_token="a")
    with pytest.raises(AttributeError):
        token.access_token = "b"  # type: ignore[misc]
    raw = {"access_token": "a", "x": 1}
    token = Token(access_token="a", raw=raw)
    raw["x"] = 2
    assert token.raw["x"] == 1
    with pytest.raises(TypeError):
        token.raw["x"] = 3  # type: ignore[index]


@pytest.mark.parametrize(
    "data",
    [
        "not a dict",
        {},
        {"access_token": ""},
        {"access_token": "a", "token_type": "MAC"},
        {"access_token": "a", "expires_at": "tomorrow"},
        {"access_token": "a", "expires_at": math.inf},
        {"access_token": "a", "raw": []},
    ],
)
def test_from_dict_rejects_what_is_not_a_saved_token(data: Any) -> None:
    with pytest.raises(ConfigurationError):
        Token.from_dict(data)


def test_expiry_helpers() -> None:
    now = time.time()
    token = Token(access_token="a", expires_at=now + 100)
    assert not token.is_expired(now=now)
    assert token.is_expired(leeway=100, now=now)
    assert token.expires_in(now=now) == pytest.approx(100)


huge_numbers = (
    st.integers(min_value=10**300, max_value=10**400)
    | st.integers(min_value=-(10**400), max_value=-(10**300))
    | st.just(5000).map(lambda digits: 10**digits)  # past what str() accepts
    | st.sampled_from(["1e400", "-1e400", "Infinity", "NaN", "1" * 400])
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | huge_numbers | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
answers = st.dictionaries(
    st.sampled_from(
        ["access_token", "token_type", "expires_in", "refresh_token", "id_token", "scope", "id"]
    )
    | st.text(max_size=10),
    json_values,
    max_size=8,
)


@given(answers)
@example({"access_token": "a", "expires_in": 10**400})
@example({"access_token": "a", "id": 10**5000})
def test_any_answer_gives_a_valid_token_or_the_documented_error(answer: dict[str, Any]) -> None:
    try:
        token = Token.from_response(answer, requested_at=1000.0, previous_refresh_token="old")
    except InvalidTokenResponseError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        return
    assert isinstance(token.access_token, str)
    assert token.access_token
    assert token.token_type == "Bearer"
    assert token.expires_at is None or (
        math.isfinite(token.expires_at) and token.expires_at > 1000.0
    )
    assert token.refresh_token == (answer.get("refresh_token") or "old")
    assert Token.from_dict(token.to_dict()) == token


@given(
    st.one_of(
        st.integers(min_value=1, max_value=10**9),
        st.floats(min_value=1.0, max_value=1e9),
    )
)
def test_any_positive_expires_in_counts_from_the_request(expires_in: float) -> None:
    token = Token.from_response({"access_token": "a", "expires_in": expires_in}, requested_at=50.0)
    assert token.expires_at == pytest.approx(50.0 + expires_in)


def test_expires_at_counts_from_when_the_request_was_sent(
    server: EmpowerIDTestServer, auth_factory: Callable[..., EmpowerIDAuth]
) -> None:
    auth = auth_factory()
    server.fail_next(FaultSpec(status=200, delay=1.0), count=1)  # a slow answer
    sent_at = time.time()
    token = auth.refresh()
    assert token.expires_at is not None
    # Counting from the answer's arrival would overstate the life by the delay.
    assert sent_at + 3600 - 0.5 <= token.expires_at <= sent_at + 3600 + 0.5


# -- numbers no float can hold ---------------------------------------------------------

HUGE = 10**400


@pytest.mark.parametrize(
    "expires_in",
    [
        HUGE,
        -HUGE,
        "1e400",
        "-1e400",
        "Infinity",
        "-Infinity",
        "NaN",
        math.inf,
        math.nan,
        "1" * 400,
        "3_600",
        "\u0663\u0666\u0660\u0660",
        "0x10",
        "3600 s",
        "",
    ],
)
def test_expires_in_no_float_can_hold_is_an_invalid_answer(expires_in: Any) -> None:
    with pytest.raises(InvalidTokenResponseError, match="expires_in") as caught:
        Token.from_response({**EMPOWERID_ANSWER, "expires_in": expires_in}, requested_at=0.0)
    assert "1" * 20 not in str(caught.value)  # described, not printed


@pytest.mark.parametrize(("expires_in", "seconds"), [(" 3600 ", 3600.0), ("3.6e3", 3600.0)])
def test_expires_in_as_a_plain_numeric_string(expires_in: str, seconds: float) -> None:
    token = Token.from_response({**EMPOWERID_ANSWER, "expires_in": expires_in}, requested_at=0)
    assert token.expires_at == seconds


def test_a_huge_integer_id_is_dropped_not_raised() -> None:
    # Python refuses str() of an int over 4300 digits; such an id is not worth a token.
    token = Token.from_response({**EMPOWERID_ANSWER, "id": 10**5000}, requested_at=0.0)
    assert token.id is None
    assert token.access_token == "at-secret-value"


@pytest.mark.parametrize(
    "change",
    [
        {"token_type": "rt-secret-value"},
        {"token_type": ["rt-secret-value"]},
        {"expires_in": "rt-secret-value"},
        {"expires_in": {"rt-secret-value": 1}},
    ],
)
def test_an_invalid_answer_is_described_without_quoting_its_values(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidTokenResponseError) as caught:
        Token.from_response({**EMPOWERID_ANSWER, **change}, requested_at=0.0)
    assert "secret" not in str(caught.value)


def test_a_plain_token_type_is_named_in_the_message() -> None:
    with pytest.raises(InvalidTokenResponseError, match="'MAC'"):
        Token.from_response({**EMPOWERID_ANSWER, "token_type": "MAC"}, requested_at=0.0)


def test_a_saved_token_with_a_huge_expires_in_is_still_used(
    server: EmpowerIDTestServer, auth_factory: Callable[..., EmpowerIDAuth]
) -> None:
    # Token() and the stores accept any raw fields; the refresh planning reads
    # raw["expires_in"] again and must not overflow on it.
    for expires_in in (HUGE, "1e400", -HUGE, "NaN"):
        grant = server.issue_grant()
        token = Token.from_response(grant, requested_at=time.time())
        odd = dataclasses.replace(token, raw={**grant, "expires_in": expires_in})
        auth = auth_factory(token=odd)
        assert auth.token == odd
        assert auth.refresh().access_token != token.access_token


# -- pickle and copy ---------------------------------------------------------------------

TOKEN_SECRETS = ("at-secret-value", "rt-secret-value", "idt-secret")


def test_token_survives_pickle_and_copy_and_still_hides_its_secrets() -> None:
    token = Token.from_response({**EMPOWERID_ANSWER, "id_token": "idt-secret"}, requested_at=9.5)
    for again in [*copies(token), dataclasses.replace(token)]:
        assert again == token
        assert type(again.raw) is type(token.raw)
        assert dict(again.raw) == dict(token.raw)
        assert again.to_dict() == token.to_dict()
        for text in (repr(again), str(again), repr(again.raw), repr([again])):
            assert not any(secret in text for secret in TOKEN_SECRETS)
        with pytest.raises(TypeError):
            again.raw["access_token"] = "x"  # type: ignore[index]
    deep = copy.deepcopy(token)
    assert deep.raw["custom_field"] == token.raw["custom_field"]
    assert deep.raw["custom_field"] is not token.raw["custom_field"]


def test_token_works_with_dataclasses_helpers() -> None:
    token = Token.from_response(EMPOWERID_ANSWER, requested_at=0.0)
    fields = dataclasses.asdict(token)
    assert fields["access_token"] == "at-secret-value"
    assert dict(fields["raw"]) == dict(token.raw)
    newer = dataclasses.replace(token, refresh_token="rt-2")
    assert newer.refresh_token == "rt-2"
    assert dict(newer.raw) == dict(token.raw)


def test_raw_fields_are_read_only_and_show_no_values() -> None:
    token = Token(access_token="a", raw={"access_token": "a", "refresh_token": "rt-hidden"})
    for change in (
        lambda raw: raw.__setitem__("x", 1),
        lambda raw: raw.__delitem__("access_token"),
        lambda raw: raw.update(x=1),
        lambda raw: raw.pop("access_token"),
        lambda raw: raw.clear(),
    ):
        with pytest.raises((TypeError, AttributeError)):
            change(token.raw)
    assert dict(token.raw) == {"access_token": "a", "refresh_token": "rt-hidden"}
    assert token.raw == {"access_token": "a", "refresh_token": "rt-hidden"}
    assert "rt-hidden" not in repr(token.raw)
    assert "'refresh_token'" in repr(token.raw)
    with pytest.raises(ConfigurationError, match="raw"):
        Token(access_token="a", raw=["not", "a", "mapping"])  # type: ignore[arg-type]
