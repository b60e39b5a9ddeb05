"""Token stores: the file and Redis stores themselves, and the refresh protocol
that uses them. Two ``EmpowerIDAuth`` objects on one store stand for two
processes here (each has its own in-process state); tests/test_multiprocess.py
runs real processes, tests/test_store_damaged_records.py damaged records."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import multiprocessing
import os
import signal
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from eid_auth import (
    EmpowerIDAuth,
    InvalidGrantError,
    MissingRefreshTokenError,
    Token,
    TokenStoreError,
)
from eid_auth.stores import (
    FileTokenStore,
    MemoryTokenStore,
    RedisTokenStore,
    StoredToken,
    TokenStore,
)
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    FLAVOURS,
    make_auth,
    send,
    stored_record,
    wait_for,
)
from .workers import StoreSpec, hold_lock, hold_lock_and_fork, write_forever

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(params=["memory", "file", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TokenStore]:
    """A store shared by several auth objects, as processes would share it."""
    if request.param == "memory":
        yield MemoryTokenStore()
    elif request.param == "file":
        yield FileTokenStore(tmp_path / "token.json")
    else:
        redis_store = RedisTokenStore.from_url(
            request.getfixturevalue("redis_server_url"), key=f"test-{uuid.uuid4().hex}"
        )
        yield redis_store
        redis_store.clear()
        redis_store.close()


def seed_with_grant(
    server: EmpowerIDTestServer, spec: StoreSpec, seconds: float
) -> dict[str, Any]:
    """Store a real grant's token, valid for ``seconds`` more; the grant."""
    grant = server.issue_grant()
    token = Token(
        access_token=grant["access_token"],
        refresh_token=grant["refresh_token"],
        expires_at=time.time() + seconds,
    )
    spec.build().write(
        StoredToken(
            client_id=CLIENT_ID,
            token_endpoint=server.token_endpoint,
            generation=1,
            token=token,
            refresh_token=grant["refresh_token"],
        )
    )
    return grant


@contextmanager
def lock_held_elsewhere(spec: StoreSpec) -> Iterator[None]:
    """Another process holds the store's lock (and hangs) until the block ends."""
    held = SPAWN.Event()
    holder = SPAWN.Process(target=hold_lock, args=(spec, held))
    holder.start()
    try:
        assert held.wait(60)
        yield
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        holder.join(30)


def unseeded_auth(server: EmpowerIDTestServer, store: TokenStore) -> EmpowerIDAuth:
    """A worker's auth: no refresh_token=, everything comes from the store."""
    return EmpowerIDAuth(
        token_endpoint=server.token_endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        store=store,
    )


# -- the protocol ------------------------------------------------------------


def test_a_second_process_uses_the_stored_token_without_refreshing(
    server: EmpowerIDTestServer, store: TokenStore
) -> None:
    seed = server.issue_grant()["refresh_token"]
    first = make_auth(server, refresh_token=seed, store=store)
    assert send("requests", first, "GET", server.api_url("/api/x")).status == 200
    # Started later with the same (now spent) refresh token in its configuration.
    second = make_auth(server, refresh_token=seed, store=store)
    assert send("httpx", second, "GET", server.api_url("/api/x")).status == 200
    assert server.refresh_grants == 1
    assert server.reuse_detected == 0
    assert second.token == first.token


def test_after_a_401_the_token_another_process_stored_is_used(
    server: EmpowerIDTestServer, store: TokenStore
) -> None:
    seed = server.issue_grant()["refresh_token"]
    a = make_auth(server, refresh_token=seed, store=store)
    b = make_auth(server, refresh_token=seed, store=store)
    send("requests", a, "GET", server.api_url("/api/x"))
    send("requests", b, "GET", server.api_url("/api/x"))
    server.expire_access_tokens()
    assert send("httpx", a, "GET", server.api_url("/api/x")).status == 200  # refreshes
    assert send("httpx", b, "GET", server.api_url("/api/x")).status == 200  # adopts
    assert server.refresh_grants == 2
    assert server.reuse_detected == 0


def test_the_store_wins_over_an_older_configured_refresh_token(
    server: EmpowerIDTestServer, store: TokenStore
) -> None:
    seed = server.issue_grant()["refresh_token"]
    a = make_auth(server, refresh_token=seed, store=store)
    a.refresh()
    a.refresh()  # the store now holds the third refresh token of the grant
    # A restart with the configuration's first refresh token: no rollback.
    restarted = make_auth(server, refresh_token=seed, store=store)
    server.expire_access_tokens()
    assert send("requests", restarted, "GET", server.api_url("/api/x")).status == 200
    assert server.reuse_detected == 0
    assert server.refresh_grants == 3


def test_refresh_token_may_be_left_out_once_the_store_is_seeded(
    server: EmpowerIDTestServer, store: TokenStore
) -> None:
    make_auth(server, store=store).refresh()
    worker = unseeded_auth(server, store)
    assert send("httpx_async", worker, "GET", server.api_url("/api/x")).status == 200
    assert server.refresh_grants == 1


def test_an_empty_store_without_a_seed_says_what_to_do(
    server: EmpowerIDTestServer, store: TokenStore
) -> None:
    auth = unseeded_auth(server, store)
    with pytest.raises(MissingRefreshTokenError, match="is empty and no refresh_token"):
        send("requests", auth, "GET", server.api_url("/api/x"))
    assert server.token_requests == 0


def test_a_store_of_another_client_is_refused(
    server: EmpowerIDTestServer, store: TokenStore
) -> None:
    make_auth(server, store=store).refresh()
    other = EmpowerIDAuth(
        token_endpoint=server.token_endpoint,
        client_id="another-client",
        client_secret="x",
        refresh_token="rt",
        store=store,
    )
    with pytest.raises(TokenStoreError, match=r"another-client.*its own store"):
        send("requests", other, "GET", server.api_url("/api/x"))


def test_a_lost_grant_fails_fast_everywhere_until_a_new_refresh_token_comes(
    server: EmpowerIDTestServer, store: TokenStore
) -> None:
    seed = server.issue_grant()["refresh_token"]
    a = make_auth(server, refresh_token=seed, store=store)
    b = make_auth(server, refresh_token=seed, store=store)
    a.refresh()
    b_token = send("requests", b, "GET", server.api_url("/api/x"))
    assert b_token.status == 200
    server.revoke_grant(seed)
    with pytest.raises(InvalidGrantError):
        send("requests", a, "GET", server.api_url("/api/x"))
    sent = server.token_requests
    # b learns from the store that the grant is gone: no token request of its own.
    for flavour in FLAVOURS:
        with pytest.raises(InvalidGrantError, match="not sent again"):
            send(flavour, b, "GET", server.api_url("/api/x"))
    assert server.token_requests == sent
    # A process started with a new sign-in's refresh token replaces the dead grant.
    fresh = make_auth(server, refresh_token=server.issue_grant()["refresh_token"], store=store)
    assert send("httpx", fresh, "GET", server.api_url("/api/x")).status == 200
    assert send("httpx", b, "GET", server.api_url("/api/x")).status == 200
    if not isinstance(store, MemoryTokenStore):
        assert store.read() is not None
        assert store.read().invalid_grant_at is None  # type: ignore[union-attr]


def test_a_refused_grant_is_tried_again_after_a_while(
    server: EmpowerIDTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import eid_auth._refresh

    auth = make_auth(server)
    auth.refresh()
    assert auth.token is not None
    assert auth.token.refresh_token is not None
    server.revoke_grant(auth.token.refresh_token)
    with pytest.raises(InvalidGrantError):
        auth.refresh()
    with pytest.raises(InvalidGrantError, match="not sent again"):
        auth.refresh()
    sent = server.token_requests
    monkeypatch.setattr(eid_auth._refresh, "INVALID_GRANT_MEMORY", 0.0)
    with pytest.raises(InvalidGrantError) as caught:
        auth.refresh()
    assert "not sent again" not in str(caught.value)
    assert server.token_requests == sent + 1


def test_a_refusal_stamped_in_the_future_does_not_block_refreshes(
    server: EmpowerIDTestServer, tmp_path: Path
) -> None:
    # A machine whose clock ran years ahead recorded the refusal: it must not
    # keep every process from trying again for those years.
    grant = server.issue_grant()
    store = FileTokenStore(tmp_path / "token.json")
    stored = StoredToken(
        client_id=CLIENT_ID,
        token_endpoint=server.token_endpoint,
        generation=1,
        token=None,
        refresh_token=grant["refresh_token"],
    ).with_invalid_grant("refused on a machine with a wrong clock")
    store.write(dataclasses.replace(stored, invalid_grant_at=time.time() + 10 * 365 * 86400))
    auth = make_auth(server, refresh_token=grant["refresh_token"], store=store)
    assert send("requests", auth, "GET", server.api_url("/api/x")).status == 200
    assert server.refresh_grants == 1
    auth.close()


class CountingFileStore(FileTokenStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.locks = 0
        self.reads = 0

    def lock(self, *, timeout: float) -> AbstractContextManager[None]:
        self.locks += 1
        return super().lock(timeout=timeout)

    def read(self) -> StoredToken | None:
        self.reads += 1
        return super().read()


def test_threads_and_tasks_of_one_process_take_the_store_lock_once(
    server: EmpowerIDTestServer, tmp_path: Path
) -> None:
    store = CountingFileStore(tmp_path / "token.json")
    auth = make_auth(server, store=store)
    go = threading.Barrier(30)

    def one() -> None:
        go.wait(10)
        with requests.Session() as session:
            session.auth = auth
            assert session.get(server.api_url("/api/x"), timeout=30).status_code == 200

    threads = [threading.Thread(target=one) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert (store.locks, server.refresh_grants) == (1, 1)

    server.expire_access_tokens()

    async def many() -> list[int]:
        async with httpx.AsyncClient(auth=auth) as client:
            answers = await asyncio.gather(
                *(client.get(server.api_url("/api/x")) for _ in range(100))
            )
        return [a.status_code for a in answers]

    assert asyncio.run(many()) == [200] * 100
    assert (store.locks, server.refresh_grants) == (2, 2)


def test_requests_on_a_valid_token_never_touch_the_store(
    server: EmpowerIDTestServer, tmp_path: Path
) -> None:
    store = CountingFileStore(tmp_path / "token.json")
    auth = make_auth(server, store=store)
    for _ in range(20):
        send("requests", auth, "GET", server.api_url("/api/x"))
    assert (store.reads, store.locks) == (2, 1)  # the first request only


def test_a_token_that_could_not_be_stored_is_kept_stored_later_and_logged(
    server: EmpowerIDTestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class FlakyStore(FileTokenStore):
        fail_writes = 0

        def write(self, record: StoredToken) -> None:
            if record.generation > 1 and self.fail_writes:  # the seed is written
                self.fail_writes -= 1
                raise TokenStoreError(f"{self.describe()} cannot be written: disk full")
            super().write(record)

    store = FlakyStore(tmp_path / "token.json")
    store.fail_writes = 1
    auth = make_auth(server, store=store)
    with caplog.at_level(logging.ERROR, logger="eid_auth"):
        assert send("requests", auth, "GET", server.api_url("/api/x")).status == 200
    assert "could not be stored" in caplog.text
    stored = store.read()
    assert stored is not None
    assert stored.token is None  # still the seed
    # The next refresh stores the kept token first, then refreshes with it.
    server.expire_access_tokens()
    assert send("requests", auth, "GET", server.api_url("/api/x")).status == 200
    stored = store.read()
    assert stored is not None
    assert stored.token == auth.token
    assert (server.refresh_grants, server.reuse_detected) == (2, 0)


def test_a_hung_lock_holder_does_not_delay_requests_on_a_valid_token(
    server: EmpowerIDTestServer, tmp_path: Path
) -> None:
    spec = StoreSpec("file", str(tmp_path / "token.json"))
    # Valid for 50 s more, so inside the 60 s leeway: due for an early refresh.
    grant = seed_with_grant(server, spec, 50)
    # Waiting for the lock would take the longest refresh: 2 * 4 + 5 = 13 s.
    auth = make_auth(server, store=spec.build(), timeout=2, max_retries=0)
    with lock_held_elsewhere(spec):
        started = time.monotonic()
        for flavour in (*FLAVOURS, "requests"):
            result = send(flavour, auth, "GET", server.api_url("/api/x"))
            assert result.status == 200
            assert result.sent_authorization == f"Bearer {grant['access_token']}"
        assert time.monotonic() - started < 10
        assert server.token_requests == 0  # the refresh still waits for the lock


# -- FileTokenStore ------------------------------------------------------------


def test_token_file_is_private_and_complete(server: EmpowerIDTestServer, tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "token.json"
    auth = make_auth(server, store=FileTokenStore(path))
    auth.refresh()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((path.parent / "token.json.lock").stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert auth.token is not None
    assert document["token"]["access_token"] == auth.token.access_token
    assert document["refresh_token"] == auth.token.refresh_token
    assert document["generation"] == 2  # the seed, then the refresh
    assert sorted(p.name for p in path.parent.iterdir()) == ["token.json", "token.json.lock"]


def test_a_token_file_others_can_read_is_refused_with_the_fix(
    server: EmpowerIDTestServer, tmp_path: Path
) -> None:
    path = tmp_path / "token.json"
    store = FileTokenStore(path)
    make_auth(server, store=store).refresh()
    before = path.read_bytes()
    path.chmod(0o644)
    auth = make_auth(server, store=store)
    with pytest.raises(TokenStoreError, match=f"mode 0644.*chmod 600 {path}") as caught:
        send("requests", auth, "GET", server.api_url("/api/x"))
    assert path.read_bytes() == before
    assert json.loads(before)["refresh_token"] not in str(caught.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_token_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    FileTokenStore(path).write(stored_record())
    os.chown(path, 65534, 65534)
    with pytest.raises(TokenStoreError, match="belongs to user id 65534"):
        FileTokenStore(path).read()


def test_a_token_file_is_never_seen_half_written(tmp_path: Path) -> None:
    # A writer rewriting a large record as fast as it can is killed five
    # times; every read, during and after, finds a whole record.
    spec = StoreSpec("file", str(tmp_path / "token.json"))
    big = Token(access_token="at", refresh_token="rt", raw={"padding": "x" * 200_000})
    FileTokenStore(spec.where).write(stored_record(token=big))
    reads = 0
    for _ in range(5):
        started = SPAWN.Event()
        writer = SPAWN.Process(
            target=write_forever, args=(spec, stored_record(token=big).to_json(), started)
        )
        writer.start()
        assert started.wait(60)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            assert FileTokenStore(spec.where).read() is not None
            reads += 1
        os.kill(writer.pid, signal.SIGKILL)  # type: ignore[arg-type]
        writer.join(30)
        last = FileTokenStore(spec.where).read()
        assert last is not None
        assert last.token == big
    assert reads > 10


def test_file_store_lock_excludes_other_holders(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "token.json")
    with store.lock(timeout=1):
        started = time.monotonic()
        with (
            pytest.raises(TokenStoreError, match="stayed locked for 0s"),
            FileTokenStore(tmp_path / "token.json").lock(timeout=0.2),
        ):
            pass
        assert time.monotonic() - started >= 0.2
    with FileTokenStore(tmp_path / "token.json").lock(timeout=0.2):
        pass


def test_file_store_under_a_file_says_where_and_why(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store = FileTokenStore(blocker / "token.json")
    with pytest.raises(TokenStoreError, match=r"a-file/token\.json cannot be created"):
        store.write(stored_record())
    with pytest.raises(TokenStoreError, match="cannot be opened: Not a directory"):
        store.read()


# -- RedisTokenStore -----------------------------------------------------------


def test_redis_store_round_trip_and_namespace(redis_server_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_server_url)
    name = uuid.uuid4().hex
    a = RedisTokenStore(client, key=name, prefix="app-a:")
    b = RedisTokenStore(client, key=name, prefix="app-b:")
    a.write(stored_record(generation=3))
    assert a.read() == stored_record(generation=3, updated_at=a.read().updated_at)  # type: ignore[union-attr]
    assert b.read() is None
    assert client.exists(f"app-a:{name}") == 1
    a.clear()
    assert a.read() is None
    client.close()


def test_redis_write_is_refused_once_the_lock_is_lost(redis_server_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_server_url)
    store = RedisTokenStore(client, key=uuid.uuid4().hex)
    store.write(stored_record(generation=1))
    with store.lock(timeout=1):
        client.delete(store.lock_key)  # as if it expired and another process took it
        with pytest.raises(TokenStoreError, match="lost the store's lock"):
            store.write(stored_record(generation=2))
    assert store.read().generation == 1  # type: ignore[union-attr]
    client.close()


def test_redis_lock_is_renewed_while_a_long_refresh_runs(redis_server_url: str) -> None:
    store = RedisTokenStore.from_url(redis_server_url, key=uuid.uuid4().hex, lock_timeout=1)
    with store.lock(timeout=1):
        time.sleep(2.5)  # more than twice lock_timeout
        store.write(stored_record(generation=1))  # still ours
        with pytest.raises(TokenStoreError, match="stayed locked"), store.lock(timeout=0.3):
            pass
    store.clear()
    store.close()


def test_a_dead_redis_is_a_clear_error_without_the_password(server: EmpowerIDTestServer) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    store = RedisTokenStore.from_url(
        f"redis://user:hunter2-redis-password@127.0.0.1:{port}/0",
        key="k",
        socket_timeout=1,
    )
    assert "hunter2" not in repr(store)
    auth = make_auth(server, store=store)
    with pytest.raises(
        TokenStoreError, match=f"Redis key 'eid_auth:k' at redis://127.0.0.1:{port}"
    ) as caught:
        send("requests", auth, "GET", server.api_url("/api/x"))
    assert "hunter2" not in str(caught.value)
    assert server.token_requests == 0


def test_store_arguments_are_checked(redis_server_url: str) -> None:
    from eid_auth import ConfigurationError

    with pytest.raises(ConfigurationError, match="key="):
        RedisTokenStore.from_url(redis_server_url, key="")
    with pytest.raises(ConfigurationError, match="redis://"):
        RedisTokenStore.from_url("http://127.0.0.1:6379", key="k")
    with pytest.raises(ConfigurationError, match=r"redis\.Redis client"):
        RedisTokenStore(object(), key="k")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="store must be"):
        EmpowerIDAuth(
            server="https://eid.example.com",
            client_id="c",
            client_secret="s",
            refresh_token="r",
            store="token.json",  # type: ignore[arg-type]
        )


# -- fork (gunicorn --preload, multiprocessing's fork start method) --------------


def _in_forked_child(work: Any) -> int:
    """Run ``work`` in a forked child; its exit status (0 = it returned True)."""
    import warnings

    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process that has threads (the
        # test server's); the child here only makes requests and exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            code = 0 if work() else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_forked_child_shares_the_store_and_not_the_connections(
    server: EmpowerIDTestServer, tmp_path: Path
) -> None:
    auth = make_auth(server, store=FileTokenStore(tmp_path / "token.json"))
    assert send("requests", auth, "GET", server.api_url("/api/x")).status == 200
    assert send("httpx", auth, "GET", server.api_url("/api/x")).status == 200
    server.expire_access_tokens()

    def child() -> bool:
        # Refreshes in the child, over connections of its own.
        return send("httpx", auth, "GET", server.api_url("/api/x")).status == 200

    assert _in_forked_child(child) == 0
    # The parent finds the child's token in the store: no second refresh.
    assert send("requests", auth, "GET", server.api_url("/api/x")).status == 200
    assert (server.refresh_grants, server.reuse_detected) == (2, 0)


def test_a_fork_during_a_refresh_does_not_leave_the_child_waiting(
    server: EmpowerIDTestServer, tmp_path: Path
) -> None:
    auth = make_auth(server, store=FileTokenStore(tmp_path / "token.json"))
    auth.refresh()
    server.expire_access_tokens()
    server.fail_next(FaultSpec(status=200, delay=1.0))  # a slow, successful refresh
    refreshing = threading.Thread(target=auth.refresh)
    refreshing.start()
    time.sleep(0.3)  # the parent's refresh holds the store's lock now

    def child() -> bool:
        started = time.monotonic()
        ok = send("requests", auth, "GET", server.api_url("/api/x")).status == 200
        # It waited for the parent's lock, not for the parent's (absent) thread.
        return ok and time.monotonic() - started < 10

    assert _in_forked_child(child) == 0
    refreshing.join(30)
    assert (server.refresh_grants, server.reuse_detected) == (2, 0)


def test_a_restart_with_another_refresh_token_keeps_the_store_and_says_so(
    server: EmpowerIDTestServer, store: TokenStore, caplog: pytest.LogCaptureFixture
) -> None:
    first = make_auth(server, store=store)
    first.refresh()
    other = make_auth(server, store=store)  # a new grant's refresh token
    server.expire_access_tokens()
    with caplog.at_level(logging.WARNING, logger="eid_auth"):
        assert send("requests", other, "GET", server.api_url("/api/x")).status == 200
    assert "not the one" in caplog.text
    assert other.token is not None
    assert store.read().refresh_token == other.token.refresh_token  # type: ignore[union-attr]
    assert server.reuse_detected == 0


def test_clearing_a_file_store_starts_over(server: EmpowerIDTestServer, tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "token.json")
    make_auth(server, store=store).refresh()
    store.clear()
    assert store.read() is None
    store.clear()  # nothing to clear: fine


# -- after a write failed ------------------------------------------------------------


class SwitchableStore(FileTokenStore):
    """A file store whose writes can be made to fail (a full disk, say)."""

    failing = False

    def write(self, record: StoredToken) -> None:
        if self.failing:
            raise TokenStoreError(f"{self.describe()} cannot be written: disk full")
        super().write(record)


def test_an_unstored_token_survives_a_second_failed_write(
    server: EmpowerIDTestServer, tmp_path: Path
) -> None:
    store = SwitchableStore(tmp_path / "token.json")
    auth = make_auth(server, store=store)
    auth.refresh()
    store.failing = True
    kept = auth.refresh()  # refreshed, but not stored
    with pytest.raises(TokenStoreError, match="disk full"):
        auth.refresh()  # storing it again fails too: the caller hears of it
    store.failing = False
    server.expire_access_tokens()
    # Still the newest refresh token: the next refresh stores it and uses it.
    assert send("requests", auth, "GET", server.api_url("/api/x")).status == 200
    assert auth.token is not None
    assert auth.token.access_token != kept.access_token
    assert (server.refresh_grants, server.reuse_detected) == (3, 0)
    assert store.read().refresh_token == auth.token.refresh_token  # type: ignore[union-attr]


def test_an_unstored_token_outranks_another_process_refusal_of_the_spent_one(
    tmp_path: Path,
) -> None:
    # Without reuse detection the grant survives another process presenting
    # the spent refresh token; the process holding the newest must not drop it.
    with EmpowerIDTestServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, reuse_detection=False
    ) as server:
        path = tmp_path / "token.json"
        a_store = SwitchableStore(path)
        seed = server.issue_grant()["refresh_token"]
        a = make_auth(server, refresh_token=seed, store=a_store)
        b = make_auth(server, refresh_token=seed, store=FileTokenStore(path))
        a.refresh()
        b.refresh()  # adopts a's token
        a_store.failing = True
        newest = a.refresh()  # the server rotated; the store did not hear of it
        a_store.failing = False
        server.expire_access_tokens()
        with pytest.raises(InvalidGrantError):
            b.refresh()  # presents the spent refresh token; the refusal is stored
        token = a.refresh()  # stores its own newest token, then refreshes with it
        assert token.access_token != newest.access_token
        assert FileTokenStore(path).read().refresh_token == token.refresh_token  # type: ignore[union-attr]
        # And b learns the grant is alive again from the store.
        assert send("requests", b, "GET", server.api_url("/api/x")).status == 200


def test_background_refreshes_pause_after_any_failure(server: EmpowerIDTestServer) -> None:
    grant = server.issue_grant()
    auth = make_auth(
        server,
        access_token=grant["access_token"],
        refresh_token=grant["refresh_token"],
        expires_at=time.time() + 50,  # the first half of the refresh window
    )
    # A non-transient failure (not a 5xx): a 2xx answer that is not a token.
    server.fail_next(FaultSpec(status=200, malformed=True), count=100)
    for _ in range(50):
        assert send("requests", auth, "GET", server.api_url("/api/x")).status == 200
        time.sleep(0.002)
    assert server.token_requests == 1


def test_near_expiry_a_hung_lock_holder_delays_requests_only_until_the_token_expires(
    server: EmpowerIDTestServer, tmp_path: Path
) -> None:
    spec = StoreSpec("file", str(tmp_path / "token.json"))
    # 3 s left: the second half of the window, where requests wait for the refresh.
    grant = seed_with_grant(server, spec, 3)
    auth = make_auth(server, store=spec.build(), timeout=2, max_retries=0)  # lock wait 13 s
    with lock_held_elsewhere(spec):
        started = time.monotonic()
        # The first request finds the token in the store (no lock needed);
        # the second must refresh it, but waits only while it is still valid.
        for flavour in ("httpx", "requests"):
            result = send(flavour, auth, "GET", server.api_url("/api/x"))
            assert result.sent_authorization == f"Bearer {grant['access_token']}"
        assert time.monotonic() - started < 8


def test_a_fork_while_the_default_store_is_locked_leaves_the_child_a_usable_store(
    server: EmpowerIDTestServer,
) -> None:
    auth = make_auth(server, timeout=2, max_retries=0)
    auth.refresh()
    store = auth.store
    assert isinstance(store, MemoryTokenStore)
    with store.lock(timeout=1):  # as a refresh thread would hold it at the fork

        def child() -> bool:
            with store.lock(timeout=1):
                return True

        assert _in_forked_child(child) == 0


def test_a_killed_holder_s_forked_child_does_not_keep_its_file_lock(tmp_path: Path) -> None:
    # The holder forks a long-lived child while it holds the lock, then is
    # killed: the child's inherited descriptor must not keep the lock.
    spec = StoreSpec("file", str(tmp_path / "token.json"))
    pid_file = tmp_path / "grandchild.pid"
    held = SPAWN.Event()
    holder = SPAWN.Process(target=hold_lock_and_fork, args=(spec, held, str(pid_file)))
    holder.start()
    grandchild = 0
    try:
        assert held.wait(60)
        grandchild = int(pid_file.read_text())
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        # (Not join(): the grandchild holds the pipe join() waits on.)
        assert wait_for(lambda: not holder.is_alive())
        with FileTokenStore(spec.where).lock(timeout=5):
            pass
    finally:
        if holder.is_alive():
            holder.kill()
            holder.join(30)
        if grandchild:
            os.kill(grandchild, signal.SIGKILL)
        holder.join(30)


def test_a_fifo_at_the_token_path_is_refused_without_hanging(tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    os.mkfifo(path, 0o600)
    with pytest.raises(TokenStoreError, match="not a regular file"):
        FileTokenStore(path).read()


def test_a_writer_killed_mid_write_leaves_no_token_copies_after_the_next_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "token.json"
    leftover = tmp_path / ".token.json.abc123.tmp"
    leftover.write_text("{}")
    FileTokenStore(path).write(stored_record())
    assert not leftover.exists()
    assert FileTokenStore(path).read() is not None


# -- directories ------------------------------------------------------------------------


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


# 0o277: a directory made with mkdir(mode=0o700) alone would be 0500, and the
# next level could not be made inside it.
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o000, 0o077, 0o277], ids=lambda m: f"{m:03o}")
def test_every_missing_directory_is_made_private_whatever_the_umask(
    tmp_path: Path, mask: int
) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    existing.chmod(0o755)
    path = existing / "a" / "b" / "c" / "token.json"
    with umask(mask):
        store = FileTokenStore(path)
        with store.lock(timeout=5):
            store.write(stored_record())
    for directory in (existing / "a", existing / "a" / "b", existing / "a" / "b" / "c"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755  # existing ones are left alone
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    assert store.read() == stored_record(updated_at=store.read().updated_at)  # type: ignore[union-attr]


def test_processes_creating_the_directories_at_once_all_succeed(tmp_path: Path) -> None:
    # Threads here: each has its own descriptors, as processes would. Five
    # rounds, so that two of them meet in the same directory at least once.
    errors: list[BaseException] = []
    for round_ in range(5):
        path = tmp_path / str(round_) / "a" / "b" / "c" / "token.json"
        go = threading.Barrier(16)

        def one(path: Path = path, go: threading.Barrier = go) -> None:
            store = FileTokenStore(path)
            try:
                go.wait(10)
                with store.lock(timeout=30):
                    store.write(stored_record())
            except BaseException as exc:
                errors.append(exc)

        with umask(0o022):
            threads = [threading.Thread(target=one) for _ in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        assert errors == []
        directory = path.parent
        while directory != tmp_path:
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
            directory = directory.parent
