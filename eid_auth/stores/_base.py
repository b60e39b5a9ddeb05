"""The ``TokenStore`` interface and the record every store keeps.

A store holds one ``StoredToken`` (the newest token of one grant) and an
exclusive lock shared by everyone who uses the store: threads, processes and,
for a networked store, machines. The refresh protocol that uses them lives in
``eid_auth._store_protocol``; a store only reads, writes and locks.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import TokenStoreError
from .._token import Token

__all__ = [
    "FORMAT",
    "MAX_RECORD_SIZE",
    "StoredToken",
    "TokenStore",
    "encode",
    "fingerprint",
    "record_error",
]

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
        grant: for a grant renewed without a refresh token (client credentials,
            password): its type and a fingerprint of what it asks for
            (username, scope), so that a store holding one person's token is
            never used for another's; ``None`` for the refresh grant.
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
    grant: str | None = None

    def successor(self, token: Token) -> StoredToken:
        """The record that replaces this one after a refresh returned ``token``."""
        return StoredToken(
            client_id=self.client_id,
            token_endpoint=self.token_endpoint,
            generation=self.generation + 1,
            token=token,
            refresh_token=token.refresh_token,
            seeds=self.seeds,
            grant=self.grant,
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
        if self.grant is not None:
            document["grant"] = self.grant
        return json.dumps(document, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str, where: str) -> StoredToken:
        """Parse a record written by ``to_json``.

        Every field is checked, so that whatever a damaged or hostile record
        holds (any bytes, deep nesting, numbers beyond a float's range, NaN),
        the result is a usable record or this error.

        Raises:
            TokenStoreError: the data is not such a record; the message names
                ``where`` it came from and never quotes the data.
        """
        try:
            return cls._decode(data)
        except _BadRecord as exc:
            # Our own validation messages name fields, never their values.
            raise record_error(where, str(exc)) from None

    @classmethod
    def _decode(cls, data: bytes | str) -> StoredToken:
        if len(data) > MAX_RECORD_SIZE:
            raise _BadRecord(f"larger than {MAX_RECORD_SIZE // 1024} kB")
        if isinstance(data, bytes):
            try:
                data = data.decode()
            except UnicodeDecodeError as exc:
                raise _BadRecord(f"not UTF-8: error at byte {exc.start}") from None
        try:
            document = json.loads(data, parse_int=_parse_int)
        except RecursionError:
            raise _BadRecord("nested too deeply") from None
        except ValueError as exc:
            # The position only: the message of a JSON error never quotes the text.
            raise _BadRecord(f"not JSON: error at position {getattr(exc, 'pos', '?')}") from None
        if not isinstance(document, dict):
            raise _BadRecord("not a JSON object")
        if document.get("format") != FORMAT:
            raise _BadRecord(f"its 'format' is not {FORMAT!r}")
        _check_depth(document)
        return cls._from_document(document)

    @classmethod
    def _from_document(cls, document: Mapping[str, Any]) -> StoredToken:
        client_id = _text(document.get("client_id"), "client_id")
        token_endpoint = _text(document.get("token_endpoint"), "token_endpoint")
        generation = document.get("generation")
        if (
            isinstance(generation, bool)
            or not isinstance(generation, int)
            or not 1 <= generation <= _MAX_GENERATION
        ):
            raise _BadRecord(f"'generation' is not an integer from 1 to {_MAX_GENERATION}")
        refresh_token = document.get("refresh_token")
        if refresh_token is not None:
            refresh_token = _text(refresh_token, "refresh_token", empty=False)
        token_data = document.get("token")
        token = None if token_data is None else _token(token_data)
        lost = document.get("invalid_grant")
        lost_at: float | None = None
        lost_description: str | None = None
        if lost is not None:
            lost_at = _as_time(lost.get("at")) if isinstance(lost, dict) else None
            if lost_at is None:
                raise _BadRecord("'invalid_grant' is not {'at': <time>, 'description': ...}")
            description = lost.get("description")
            if description is not None:
                lost_description = _text(description, "invalid_grant.description")
        updated_at = _as_time(document.get("updated_at"))
        if updated_at is None:
            raise _BadRecord("'updated_at' is not a time")
        seeds = document.get("seeds", [])
        if not isinstance(seeds, list) or not all(_is_text(x) for x in seeds):
            raise _BadRecord("'seeds' is not a list of strings")
        grant = document.get("grant")
        if grant is not None:
            grant = _text(grant, "grant", empty=False)
        return cls(
            client_id=client_id,
            token_endpoint=token_endpoint,
            generation=generation,
            token=token,
            refresh_token=refresh_token,
            invalid_grant_at=lost_at,
            invalid_grant_description=lost_description,
            updated_at=updated_at,
            seeds=tuple(seeds),
            grant=grant,
        )


# A record is a few kB; anything larger is not one of ours.
MAX_RECORD_SIZE = 1 << 20
# Token answers are nearly flat. The limit keeps every later pass over a
# record (writing it back, copying it) far from Python's recursion limit.
_MAX_DEPTH = 32
_MAX_GENERATION = 2**63 - 1
# Saved token fields that hold text (Token checks its own rules on top).
_TOKEN_TEXT = ("access_token", "token_type", "refresh_token", "id_token", "scope", "id")


class _BadRecord(Exception):
    """A field of a stored record is missing or of the wrong kind."""


def record_error(where: str, what: str) -> TokenStoreError:
    """The error for a store holding something that is not a usable record."""
    return TokenStoreError(
        f"{where} does not hold a token eid_auth wrote ({what}); it was left unchanged. "
        "To start over, remove it (store.clear() does) and give EmpowerIDAuth the "
        "refresh token of a new sign-in (refresh_token=)."
    )


def encode(record: StoredToken, where: str) -> bytes:
    """``record.to_json()``, checked to read back, for a store about to write it.

    Raises:
        TokenStoreError: the record cannot be kept as JSON (its token's ``raw``
            holds something JSON cannot carry, or that ``from_json`` refuses).
    """
    try:
        data = record.to_json()
        StoredToken._decode(data)
    except (_BadRecord, ValueError, TypeError, RecursionError) as exc:
        what = str(exc) if isinstance(exc, _BadRecord) else f"{type(exc).__name__} from JSON"
        raise TokenStoreError(
            f"{where} was not written: the record would not read back ({what}); "
            "the previous token is intact"
        ) from None
    return data


def _parse_int(digits: str) -> int:
    # Checked while parsing: an integer beyond a float's range breaks every
    # time computation made with it (OverflowError).
    if len(digits) > 320:
        raise _BadRecord("a number is too large")
    value = int(digits)
    try:
        float(value)
    except OverflowError:
        raise _BadRecord("a number is too large") from None
    return value


def _check_depth(document: object) -> None:
    pending: list[tuple[object, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children: Iterable[object] = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > _MAX_DEPTH:
            raise _BadRecord(f"nested more than {_MAX_DEPTH} levels deep")
        pending.extend((child, depth + 1) for child in children)


def _is_text(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        # JSON can carry lone surrogates (\ud800), which no request can send.
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _text(value: object, name: str, *, empty: bool = True) -> str:
    if not _is_text(value) or not (empty or value):
        kind = "a string" if empty else "a non-empty string"
        raise _BadRecord(f"'{name}' is not {kind}")
    assert isinstance(value, str)
    return value


def _token(data: object) -> Token:
    if not isinstance(data, dict):
        raise _BadRecord("'token' is not a JSON object")
    for name in _TOKEN_TEXT:
        if data.get(name) is not None and not _is_text(data[name]):
            raise _BadRecord(f"'token.{name}' is not a string")
    if data.get("expires_at") is not None and _as_time(data["expires_at"]) is None:
        raise _BadRecord("'token.expires_at' is not a time")
    try:
        return Token.from_dict(data)
    except (ValueError, TypeError, ArithmeticError, RecursionError):
        # ConfigurationError is a ValueError. Its message may quote a value,
        # so it is not repeated; the others would be a gap in Token's checks.
        raise _BadRecord("'token' is not a token saved by Token.to_dict()") from None


def fingerprint(refresh_token: str) -> str:
    """A one-way fingerprint of a refresh token, to recognise it without keeping it."""
    return hashlib.sha256(refresh_token.encode()).hexdigest()


def _as_time(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


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
