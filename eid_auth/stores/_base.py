"""The ``TokenStore`` interface and the record every store keeps.

A store holds one ``StoredToken`` (the newest token of one grant) and an
exclusive lock shared by everyone who uses the store: threads, processes and,
for a networked store, machines. The refresh protocol that uses them lives in
``eid_auth._refresh``; a store only reads, writes and locks.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import ConfigurationError, TokenStoreError
from .._token import Token

__all__ = ["FORMAT", "StoredToken", "TokenStore", "fingerprint"]

# Written into every record, so that a future layout can be told apart.
FORMAT = "eid_auth.token/1"


@dataclass(frozen=True)
class StoredToken:
    """What a store keeps: the newest token of one grant, and who it belongs to.

    Attributes:
        client_id: the client the grant was issued to.
        token_endpoint: where the refresh token is redeemed.
        generation: 1 for the first record, one more on every write; tells a
            newer record from an older one.
        token: the newest token, or ``None`` before the first refresh (a store
            seeded with a refresh token only).
        refresh_token: the refresh token to redeem next.
        invalid_grant_at: when the token endpoint last refused
            ``refresh_token`` with ``invalid_grant`` (Unix time), else ``None``.
        invalid_grant_description: the server's explanation of that refusal.
        updated_at: when this record was written (Unix time).
        seeds: SHA-256 fingerprints of the configured refresh tokens that
            seeded this store, so that a restart with the same configuration
            is told apart from a new sign-in.
    """

    client_id: str
    token_endpoint: str
    generation: int
    token: Token | None
    refresh_token: str | None = field(default=None, repr=False)
    invalid_grant_at: float | None = None
    invalid_grant_description: str | None = None
    updated_at: float = field(default_factory=time.time)
    seeds: tuple[str, ...] = ()

    def successor(self, token: Token) -> StoredToken:
        """The record that replaces this one after a refresh returned ``token``."""
        return StoredToken(
            client_id=self.client_id,
            token_endpoint=self.token_endpoint,
            generation=self.generation + 1,
            token=token,
            refresh_token=token.refresh_token,
            seeds=self.seeds,
        )

    def with_invalid_grant(self, description: str | None) -> StoredToken:
        """This record, marked as refused by the server (the grant is lost)."""
        return dataclasses.replace(
            self,
            generation=self.generation + 1,
            invalid_grant_at=time.time(),
            invalid_grant_description=description,
            updated_at=time.time(),
        )

    def to_json(self) -> bytes:
        """The record as UTF-8 JSON, the form file and Redis stores keep."""
        document = {
            "format": FORMAT,
            "client_id": self.client_id,
            "token_endpoint": self.token_endpoint,
            "generation": self.generation,
            "updated_at": self.updated_at,
            "refresh_token": self.refresh_token,
            "token": None if self.token is None else self.token.to_dict(),
            "invalid_grant": None
            if self.invalid_grant_at is None
            else {"at": self.invalid_grant_at, "description": self.invalid_grant_description},
            "seeds": list(self.seeds),
        }
        return json.dumps(document, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str, where: str) -> StoredToken:
        """Parse a record written by ``to_json``.

        Raises:
            TokenStoreError: the data is not such a record; the message names
                ``where`` it came from and never quotes the data.
        """

        def bad(what: str) -> TokenStoreError:
            return TokenStoreError(
                f"{where} does not hold a token eid_auth wrote ({what}); nothing was changed. "
                "Fix it or remove it (the next start seeds it from refresh_token=)."
            )

        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            # The position only: the message of a JSON error never quotes the text.
            raise bad(f"not JSON: error at position {getattr(exc, 'pos', '?')}") from None
        if not isinstance(document, dict):
            raise bad("not a JSON object")
        if document.get("format") != FORMAT:
            raise bad(f"its 'format' is not {FORMAT!r}")
        try:
            return cls._from_document(document)
        except (_BadRecord, ConfigurationError) as exc:
            # Our own validation messages name fields, never their values.
            raise bad(str(exc)) from None

    @classmethod
    def _from_document(cls, document: Mapping[str, Any]) -> StoredToken:
        for name in ("client_id", "token_endpoint"):
            if not isinstance(document.get(name), str):
                raise _BadRecord(f"'{name}' is not a string")
        generation = document.get("generation")
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 1:
            raise _BadRecord("'generation' is not a positive integer")
        refresh_token = document.get("refresh_token")
        if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
            raise _BadRecord("'refresh_token' is not a non-empty string")
        token_data = document.get("token")
        token = None if token_data is None else Token.from_dict(token_data)
        lost = document.get("invalid_grant")
        lost_at: float | None = None
        lost_description: str | None = None
        if lost is not None:
            lost_at = _as_time(lost.get("at")) if isinstance(lost, dict) else None
            if lost_at is None:
                raise _BadRecord("'invalid_grant' is not {'at': <time>, 'description': ...}")
            description = lost.get("description")
            lost_description = description if isinstance(description, str) else None
        updated_at = document.get("updated_at")
        seeds = document.get("seeds", [])
        if not isinstance(seeds, list) or not all(isinstance(x, str) for x in seeds):
            raise _BadRecord("'seeds' is not a list of strings")
        return cls(
            client_id=document["client_id"],
            token_endpoint=document["token_endpoint"],
            generation=generation,
            token=token,
            refresh_token=refresh_token,
            invalid_grant_at=lost_at,
            invalid_grant_description=lost_description,
            updated_at=_as_time(updated_at) or 0.0,
            seeds=tuple(seeds),
        )


class _BadRecord(Exception):
    """A field of a stored record is missing or of the wrong kind."""


def fingerprint(refresh_token: str) -> str:
    """A one-way fingerprint of a refresh token, to recognise it without keeping it."""
    return hashlib.sha256(refresh_token.encode()).hexdigest()


def _as_time(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


class TokenStore(abc.ABC):
    """Where the token of one grant lives, shared by every ``EmpowerIDAuth`` using it.

    ``EmpowerIDAuth`` reads the store only when its own token needs replacing,
    never on a request with a valid token. To refresh, it takes ``lock()``,
    reads the record again, refreshes only if the record still holds the token
    that needed replacing (someone else may have refreshed meanwhile), writes
    the new record and releases the lock.

    Implement ``read``, ``write``, ``lock`` and ``describe`` to keep tokens
    elsewhere (a database row, a secret manager). ``lock`` must exclude every
    other holder of the same store, in any thread, process or machine, and
    must not stay taken forever when its holder dies.

    Example:
        >>> from eid_auth.stores import MemoryTokenStore
        >>> store = MemoryTokenStore()
        >>> with store.lock(timeout=1.0):
        ...     store.read() is None
        True
    """

    @abc.abstractmethod
    def read(self) -> StoredToken | None:
        """The stored record, or ``None`` when the store is empty.

        Raises:
            TokenStoreError: the store cannot be read or holds something else.
        """

    @abc.abstractmethod
    def write(self, record: StoredToken) -> None:
        """Replace the stored record, atomically: a reader sees the old or the new one.

        Called only while ``lock()`` is held.

        Raises:
            TokenStoreError: the record could not be written; the old one is intact.
        """

    @abc.abstractmethod
    def lock(self, *, timeout: float) -> AbstractContextManager[None]:
        """An exclusive lock over the store, waited for at most ``timeout`` seconds.

        Raises:
            TokenStoreError: the lock could not be taken in time, or at all.
        """

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the store is, for messages (never a password)."""

    def clear(self) -> None:
        """Remove the stored record, so that the next start seeds the store again."""
        raise TokenStoreError(f"{self.describe()} cannot be cleared")

    def close(self) -> None:  # noqa: B027 (optional hook, deliberately empty)
        """Release what the store holds open (connections); the default does nothing."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"
