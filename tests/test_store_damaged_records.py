"""A damaged token file or Redis key is a ``TokenStoreError`` that names the store
and says how to start over, never a crash deep in a parser (``RecursionError``,
``OverflowError``) nor a record that breaks later; the damaged record is left as
it was for a person to look at, and no error quotes a secret it holds. A record
that would not read back is never written.

Named hostile records, then hypothesis-generated ones, in a file and in Redis.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eid_auth import EmpowerIDAuthError, Token, TokenStoreError
from eid_auth.stores import FileTokenStore, RedisTokenStore, StoredToken, TokenStore
from eid_auth.testing import EmpowerIDTestServer

from .conftest import FLAVOURS, make_auth, send, stored_record


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"format": "eid_auth.token/1", "client_id": "test-cli',  # cut short
        b"\xff\xfe secret-refresh-token",
        b'["secret-refresh-token"]',
        b'{"format": "something-else", "refresh_token": "secret-refresh-token"}',
        b'{"format": "eid_auth.token/1", "client_id": "c", "token_endpoint": "e",'
        b' "generation": 0, "refresh_token": "secret-refresh-token"}',
        b'{"format": "eid_auth.token/1", "client_id": "c", "token_endpoint": "e",'
        b' "generation": 3, "refresh_token": "secret-refresh-token", "token": {"a": 1}}',
    ],
)
def test_an_unreadable_token_file_is_reported_and_left_alone(
    server: EmpowerIDTestServer, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "token.json"
    path.write_bytes(content)
    path.chmod(0o600)
    auth = make_auth(server, store=FileTokenStore(path))
    with pytest.raises(TokenStoreError, match="does not hold a token eid_auth wrote") as caught:
        send("httpx", auth, "GET", server.api_url("/api/x"))
    assert "secret-refresh-token" not in str(caught.value)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == content
    assert server.token_requests == 0


# Put in the hostile records below; no error message may repeat it.
SECRET = "secret-refresh-token-5f2c"


def valid_document() -> dict[str, Any]:
    token = Token(
        access_token=SECRET, refresh_token=SECRET, expires_at=2e9, raw={"expires_in": 3600}
    )
    return json.loads(stored_record(token=token, refresh_token=SECRET).to_json())  # type: ignore[no-any-return]


def with_field(path: str, text: str) -> bytes:
    """A valid record whose field at ``path`` (``token.expires_at``) holds JSON ``text``."""
    document = valid_document()
    *parents, name = path.split(".")
    holder = document
    for parent in parents:
        if holder.get(parent) is None:  # invalid_grant: a refusal's fields
            holder[parent] = {"at": 1.7e9, "description": "refused"}
        holder = holder[parent]
    holder[name] = "@@hole@@"
    return json.dumps(document).replace('"@@hole@@"', text).encode()


DEEP = 200_000
TIME_FIELDS = ("updated_at", "invalid_grant.at", "token.expires_at")
NUMBER_FIELDS = ("generation", *TIME_FIELDS, "token.raw.expires_in")
HOSTILE_RECORDS: dict[str, bytes] = {
    "deep lists": b"[" * DEEP,
    "deep objects": b'{"a":' * DEEP,
    "deep lists in raw": with_field("token.raw.claims", "[" * DEEP + "]" * DEEP),
    "nested 40 deep in raw": with_field("token.raw.claims", "[" * 40 + "]" * 40),
    **{f"10**400 in {name}": with_field(name, str(10**400)) for name in NUMBER_FIELDS},
    **{f"-10**400 in {name}": with_field(name, str(-(10**400))) for name in NUMBER_FIELDS},
    "10**400 deep inside raw": with_field("token.raw.claims", f'{{"n": [1, {10**400}]}}'),
    "generation 2**63": with_field("generation", str(2**63)),
    **{
        f"{constant} in {name}": with_field(name, constant)
        for name in TIME_FIELDS
        for constant in ("NaN", "Infinity", "-Infinity", "1e400")
    },
    "a string as updated_at": with_field("updated_at", '"2024-01-01"'),
    "no updated_at": json.dumps(
        {k: v for k, v in valid_document().items() if k != "updated_at"}
    ).encode(),
    "a lone surrogate in the refresh token": with_field(
        "refresh_token", '"\\ud800' + SECRET + '"'
    ),
    "a lone surrogate in the token's refresh token": with_field(
        "token.refresh_token", '"\\udfff"'
    ),
    "a list as access_token": with_field("token.access_token", f'["{SECRET}"]'),
    "a secret as token_type": with_field("token.token_type", f'"{SECRET}"'),
    "a number as the description": with_field("invalid_grant.description", "5"),
    "raw that is not an object": with_field("token.raw", f'["{SECRET}"]'),
    "not UTF-8": b"\xff\xfe" + SECRET.encode(),
    "UTF-16": json.dumps(valid_document()).encode("utf-16"),
    "larger than 1 MiB": with_field("token.raw.padding", json.dumps("x" * (1 << 20))),
}


@pytest.fixture(params=["file", "redis"])
def kept_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TokenStore, Any]]:
    """A file or Redis store, and a function that puts raw bytes in it and
    returns what it holds (to check that nothing changed)."""
    if request.param == "file":
        path = tmp_path / "token.json"

        def put_file(data: bytes | None) -> bytes:
            if data is not None:
                path.write_bytes(data)
                path.chmod(0o600)
            return path.read_bytes()

        yield FileTokenStore(path), put_file
    else:
        import redis

        client = redis.Redis.from_url(request.getfixturevalue("redis_server_url"))
        store = RedisTokenStore(client, key=f"test-{uuid.uuid4().hex}")

        def put_key(data: bytes | None) -> bytes:
            if data is not None:
                client.set(store.key, data)
            held = client.get(store.key)
            assert isinstance(held, bytes)
            return held

        yield store, put_key
        store.clear()
        client.close()


def assert_refused(store: TokenStore, caught: pytest.ExceptionInfo[TokenStoreError]) -> None:
    message = str(caught.value)
    assert store.describe() in message
    assert "store.clear()" in message
    assert SECRET not in message
    assert "hunter2" not in message


@pytest.mark.parametrize("content", HOSTILE_RECORDS.values(), ids=HOSTILE_RECORDS.keys())
def test_a_damaged_record_is_a_store_error_and_left_alone(
    kept_store: tuple[TokenStore, Any], content: bytes
) -> None:
    store, put = kept_store
    put(content)
    with pytest.raises(TokenStoreError, match="does not hold a token eid_auth wrote") as caught:
        store.read()
    assert_refused(store, caught)
    assert put(None) == content


def test_the_valid_record_of_the_hostile_ones_reads(kept_store: tuple[TokenStore, Any]) -> None:
    store, put = kept_store
    put(json.dumps(valid_document()).encode())
    stored = store.read()
    assert stored is not None
    assert stored.refresh_token == SECRET


@pytest.mark.parametrize(
    "content",
    [HOSTILE_RECORDS["deep lists"], HOSTILE_RECORDS["10**400 in token.expires_at"]],
    ids=["deep lists", "10**400 in token.expires_at"],
)
def test_a_damaged_token_file_fails_requests_with_a_store_error(
    server: EmpowerIDTestServer, tmp_path: Path, flavour: str, content: bytes
) -> None:
    path = tmp_path / "token.json"
    path.write_bytes(content)
    path.chmod(0o600)
    store = FileTokenStore(path)
    auth = make_auth(server, store=store)
    with pytest.raises(TokenStoreError) as caught:
        send(flavour, auth, "GET", server.api_url("/api/x"))
    assert isinstance(caught.value, EmpowerIDAuthError)
    assert_refused(store, caught)
    assert path.read_bytes() == content
    assert server.token_requests == 0


def test_a_damaged_redis_record_fails_requests_with_a_store_error(
    server: EmpowerIDTestServer, redis_server_url: str
) -> None:
    import redis

    client = redis.Redis.from_url(redis_server_url)
    store = RedisTokenStore(client, key=f"test-{uuid.uuid4().hex}")
    content = HOSTILE_RECORDS["deep objects"]
    client.set(store.key, content)
    auth = make_auth(server, store=store)
    try:
        for flavour in FLAVOURS:
            with pytest.raises(TokenStoreError) as caught:
                send(flavour, auth, "GET", server.api_url("/api/x"))
            assert_refused(store, caught)
        assert client.get(store.key) == content
        assert server.token_requests == 0
    finally:
        store.clear()
        client.close()


@pytest.mark.parametrize(
    "raw",
    [{"n": 10**400}, {"claims": json.loads("[" * 40 + "]" * 40)}, {1: "a", "b": "c"}],
    ids=["10**400", "nested 40 deep", "keys JSON cannot sort"],
)
def test_a_record_that_would_not_read_back_is_not_written(
    kept_store: tuple[TokenStore, Any], raw: dict[Any, Any]
) -> None:
    store, put = kept_store
    store.write(stored_record(generation=1))
    before = put(None)
    with pytest.raises(TokenStoreError, match=r"was not written.*previous token is intact"):
        store.write(stored_record(generation=2, token=Token(access_token="at", raw=raw)))
    assert put(None) == before
    assert store.read().generation == 1  # type: ignore[union-attr]


# Raw JSON text for one field of a record: ordinary values, and the hostile kind.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=8)
    | st.just(SECRET),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
fragments = (
    json_values.map(json.dumps)
    # Values a valid record may hold there, so that many records read.
    | st.one_of(st.none(), st.text(max_size=8), st.floats(1, 4e9), st.integers(1, 10)).map(
        json.dumps
    )
    | st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n)
    | st.integers(min_value=1, max_value=3000).map(lambda n: '{"a":' * n + "1" + "}" * n)
    | st.sampled_from(
        ["NaN", "Infinity", "-Infinity", "1e400", "-0.0", '"\\ud800"', "[", "", "0x10"]
    )
)
field_paths = st.sampled_from(
    [
        "format",
        "client_id",
        "token_endpoint",
        "generation",
        "updated_at",
        "refresh_token",
        "seeds",
        "invalid_grant",
        "invalid_grant.at",
        "invalid_grant.description",
        "token",
        "token.access_token",
        "token.token_type",
        "token.expires_at",
        "token.refresh_token",
        "token.id_token",
        "token.scope",
        "token.id",
        "token.raw",
        "token.raw.expires_in",
        "token.raw.claims",
    ]
)
damaged_fields = st.builds(with_field, field_paths, fragments)
hostile_records = (
    damaged_fields
    | damaged_fields
    | st.binary(max_size=200)
    | json_values.map(lambda value: json.dumps(value).encode())
)


def check_read(store: TokenStore, put: Any, content: bytes) -> None:
    """``read()`` returns a record that works, or refuses it properly; either way
    the store still holds ``content``."""
    put(content)
    try:
        stored = store.read()
    except TokenStoreError as exc:
        message = str(exc)
        assert store.describe() in message
        assert "store.clear()" in message
        assert SECRET not in message
    else:
        assert stored is not None
        # Usable: its times are numbers, and it can be written back and read again.
        assert 1 <= stored.generation < 2**63
        moments = [stored.updated_at, stored.invalid_grant_at]
        if stored.token is not None:
            moments.append(stored.token.expires_at)
            stored.token.is_expired(leeway=60)
        assert all(moment is None or math.isfinite(moment) for moment in moments)
        assert StoredToken.from_json(stored.to_json(), "again") == stored
    assert put(None) == content


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=hostile_records)
def test_any_token_file_content_reads_as_a_record_or_a_store_error(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "token.json"

    def put(data: bytes | None) -> bytes:
        if data is not None:
            path.write_bytes(data)
            path.chmod(0o600)
        return path.read_bytes()

    check_read(FileTokenStore(path), put, content)


@settings(max_examples=300, deadline=None)
@given(content=hostile_records)
def test_any_redis_value_reads_as_a_record_or_a_store_error(
    redis_server_url: str, content: bytes
) -> None:
    import redis

    with redis.Redis.from_url(redis_server_url) as client:
        store = RedisTokenStore(client, key="test-hostile-records")

        def put(data: bytes | None) -> bytes:
            if data is not None:
                client.set(store.key, data)
            held = client.get(store.key)
            assert isinstance(held, bytes)
            return held

        try:
            check_read(store, put, content)
        finally:
            store.clear()
