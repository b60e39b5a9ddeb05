"""``RedisTokenStore``: one token for a fleet of machines, kept in Redis.

Needs the ``redis`` package: ``pip install 'eid-auth[redis]'``.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._exceptions import ConfigurationError, TokenStoreError, redact
from ._base import StoredToken, TokenStore, encode

if TYPE_CHECKING:
    import redis

__all__ = ["RedisTokenStore"]

# Write only while holding the lock: a holder whose lock expired (a process
# paused for longer than lock_timeout) must not overwrite its successor's token.
_WRITE_IF_OWNER = """
if redis.call('get', KEYS[2]) == ARGV[2] then
    redis.call('set', KEYS[1], ARGV[1])
    return 1
end
return 0
"""


def _redis_module() -> Any:
    try:
        import redis
    except ImportError:
        raise ConfigurationError(
            "RedisTokenStore needs the redis package: pip install 'eid-auth[redis]'"
        ) from None
    return redis


class RedisTokenStore(TokenStore):
    """Keeps the token in Redis, for every process of every machine sharing it.

    The record is one string key, ``<prefix><key>``, holding the same JSON as
    ``FileTokenStore``. Refreshes are serialised with a lock on
    ``<prefix><key>:lock`` (redis-py's ``Lock``): it expires ``lock_timeout``
    seconds after its holder stops renewing it, so a crashed or killed holder
    blocks the others for at most that long, and only its owner can release
    it. While a refresh runs, a background thread renews the lock every third
    of ``lock_timeout``. A write is refused unless the writer still owns the
    lock, so a holder that was paused past its lock cannot overwrite the token
    of the process that took over.

    The token is stored in clear: protect the Redis server (ACLs, TLS with
    ``rediss://``, a private network) as you would the refresh token itself.

    Args:
        client: a ``redis.Redis`` client (not a cluster or async client). Give
            it a ``socket_timeout``, so that a dead server fails a refresh
            instead of hanging it (``from_url`` sets 5 seconds).
        key: names this grant's token, e.g. ``"billing-api"``; each grant
            (client and user) needs its own key.
        prefix: the namespace in front of every key; several applications
            can share one Redis with different prefixes.
        lock_timeout: seconds after which a lock whose holder stopped renewing
            it (a crash) is given to the next process.

    Example:
        >>> store = RedisTokenStore.from_url(  # doctest: +SKIP
        ...     "redis://redis.internal:6379/0", key="billing-api")
        >>> auth = EmpowerIDAuth(..., store=store)  # doctest: +SKIP
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        key: str,
        prefix: str = "eid_auth:",
        lock_timeout: float = 30.0,
    ) -> None:
        module = _redis_module()
        if not isinstance(client, module.Redis):
            raise ConfigurationError(
                "RedisTokenStore needs a redis.Redis client, "
                f"not {type(client).__name__}; or use RedisTokenStore.from_url(url, key=...)"
            )
        if not isinstance(key, str) or not key:
            raise ConfigurationError("RedisTokenStore needs key='<name of this grant>'")
        if not isinstance(prefix, str):
            raise ConfigurationError("prefix must be a string")
        if (
            isinstance(lock_timeout, bool)
            or not isinstance(lock_timeout, (int, float))
            or not (1.0 <= lock_timeout <= 86400)
        ):
            raise ConfigurationError("lock_timeout must be a number of seconds from 1 to 86400")
        self._redis = client
        self._errors: tuple[type[BaseException], ...] = (module.RedisError,)
        self.key = prefix + key
        self.lock_key = self.key + ":lock"
        self.lock_timeout = float(lock_timeout)
        self._write_if_owner = client.register_script(_WRITE_IF_OWNER)
        # The lock token of the lock this thread holds (written only under it).
        self._held = threading.local()
        kwargs = client.connection_pool.connection_kwargs
        self._where = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        if kwargs.get("path"):
            self._where = f"unix://{kwargs['path']}"
        self._where += f"/{kwargs.get('db', 0)}"
        self._password = kwargs.get("password")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key: str,
        prefix: str = "eid_auth:",
        lock_timeout: float = 30.0,
        socket_timeout: float = 5.0,
    ) -> RedisTokenStore:
        """A store on a new client for ``url`` (``redis://``, ``rediss://`` or ``unix://``).

        ``socket_timeout`` bounds every Redis command, so a dead server makes
        a refresh fail instead of hang.
        """
        module = _redis_module()
        if not isinstance(url, str) or urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError(
                "the Redis URL must start with redis://, rediss:// or unix://"
            )
        try:
            client = module.Redis.from_url(
                url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
            )
        except ValueError as exc:
            password = urlsplit(url).password
            raise ConfigurationError(
                f"the Redis URL is not valid: {redact(str(exc), [password, url])}"
            ) from None
        return cls(client, key=key, prefix=prefix, lock_timeout=lock_timeout)

    def describe(self) -> str:
        return f"Redis key {self.key!r} at {self._where}"

    def read(self) -> StoredToken | None:
        try:
            data = self._redis.get(self.key)
        except self._errors as exc:
            raise self._error("cannot be read", exc) from None
        if data is None:
            return None
        return StoredToken.from_json(data, self.describe())

    def write(self, record: StoredToken) -> None:
        token = getattr(self._held, "token", None)
        data = encode(record, self.describe())
        try:
            if token is None:
                self._redis.set(self.key, data)
                return
            written = self._write_if_owner(keys=[self.key, self.lock_key], args=[data, token])
        except self._errors as exc:
            raise self._error("cannot be written; the previous token is intact", exc) from None
        if not written:
            raise TokenStoreError(
                f"{self.describe()} was not written: this process lost the store's lock "
                f"(held longer than lock_timeout={self.lock_timeout:g}s, so another process "
                "took over)"
            )

    def clear(self) -> None:
        try:
            self._redis.delete(self.key)
        except self._errors as exc:
            raise self._error("cannot be cleared", exc) from None

    @contextmanager
    def lock(self, *, timeout: float) -> Iterator[None]:
        lock = self._redis.lock(
            self.lock_key, timeout=self.lock_timeout, sleep=0.02, thread_local=False
        )
        token = uuid.uuid4().hex
        try:
            acquired = lock.acquire(blocking_timeout=timeout, token=token)
        except self._errors as exc:
            raise self._error("cannot be locked", exc) from None
        if not acquired:
            raise TokenStoreError(
                f"{self.describe()} stayed locked for {timeout:.0f}s: another process's "
                "refresh did not finish"
            )
        self._held.token = token
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(lock, stop), name="eid_auth-redis-lock", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            # Bounded: a renewal stuck on a client without socket_timeout must
            # not hold up the refresh (the daemon thread ends with its command).
            renewer.join(self.lock_timeout)
            self._held.token = None
            # Expired or unreachable: it times out by itself.
            with contextlib.suppress(Exception):
                lock.release()

    def _renew(self, lock: Any, stop: threading.Event) -> None:
        while not stop.wait(self.lock_timeout / 3):
            try:
                lock.reacquire()
            except Exception:  # noqa: S112 - lost or unreachable: the write will say so
                continue

    def close(self) -> None:
        self._redis.close()

    def _error(self, what: str, exc: BaseException) -> TokenStoreError:
        message = redact(f"{type(exc).__name__}: {exc}", [self._password])
        return TokenStoreError(f"{self.describe()} {what}: {message}")
