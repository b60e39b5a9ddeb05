"""``MemoryTokenStore``: the token in this process's memory (the default)."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from .._exceptions import TokenStoreError
from ._base import StoredToken, TokenStore

__all__ = ["MemoryTokenStore"]


class MemoryTokenStore(TokenStore):
    """Keeps the token in memory: shared by the threads of one process, lost at exit.

    Every ``EmpowerIDAuth`` without ``store=`` has a private one. Give one
    instance to several ``EmpowerIDAuth`` objects of one process (one per
    framework, say) and they refresh once between them.

    Example:
        >>> from eid_auth import EmpowerIDAuth
        >>> store = MemoryTokenStore()
        >>> a = EmpowerIDAuth(server="https://eid.example.com", client_id="app",
        ...                   client_secret="s", refresh_token="rt", store=store)
        >>> b = EmpowerIDAuth(server="https://eid.example.com", client_id="app",
        ...                   client_secret="s", refresh_token="rt", store=store)
    """

    def __init__(self) -> None:
        self._record: StoredToken | None = None
        self._lock = threading.Lock()
        _live.add(self)

    def read(self) -> StoredToken | None:
        return self._record

    def write(self, record: StoredToken) -> None:
        self._record = record

    @contextmanager
    def lock(self, *, timeout: float) -> Iterator[None]:
        if not self._lock.acquire(timeout=timeout):
            raise TokenStoreError(
                f"the in-memory token store stayed locked for {timeout:.0f}s "
                "(another thread's refresh did not finish)"
            )
        try:
            yield
        finally:
            self._lock.release()

    def describe(self) -> str:
        return "in memory"

    def clear(self) -> None:
        self._record = None


_live: weakref.WeakSet[MemoryTokenStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A parent's thread may have held the lock at the fork; that thread does
    # not exist here, so nobody would release it.
    for store in list(_live):
        store._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
