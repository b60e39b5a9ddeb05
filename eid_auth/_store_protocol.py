"""The store protocol: how a renewal goes through a token store shared by processes.

Read; lock; read again; adopt the token someone else stored meanwhile, or get
the next one (the ``Renewal`` says how) and write it; unlock. Around that: the
seed a store starts from, the refused grant (``invalid_grant``) every process
remembers for a while, and a renewed token the store failed to take.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from ._exceptions import InvalidGrantError, MissingRefreshTokenError, TokenStoreError
from ._renewal import Renewal
from ._timing import make_state, same_access_token
from ._token import Token
from ._token_endpoint import Adapter, TokenEndpoint
from .stores import StoredToken, TokenStore
from .stores._base import fingerprint

__all__ = ["RememberedInvalidGrant", "StoreProtocol"]

logger = logging.getLogger("eid_auth")

# How many seeding refresh tokens a store recognises (as fingerprints).
_SEEDS_KEPT = 10


class RememberedInvalidGrant(InvalidGrantError):
    """An ``InvalidGrantError`` raised from memory, without a token request."""


class StoreProtocol:
    """One client's token in one store, renewed under the store's lock.

    Args:
        endpoint: where tokens come from (its client ID and URL name the record).
        store: where the token lives.
        renewal: how to get the next token.
        grant: what else names the record (see ``StoredToken.grant``).
        seed: what an empty store starts from: a ``Token``, a refresh token, or None.
        shared: whether others may use the store (else it holds what we hold).
        leeway: as for ``EmpowerIDAuth``, to tell a fresh stored token.
        kept: called (to update what the coordinator holds) with a rotated refresh
            token kept from an unusable answer, and the token it now goes with.
    """

    def __init__(
        self,
        *,
        endpoint: TokenEndpoint,
        store: TokenStore,
        renewal: Renewal,
        grant: str | None,
        seed: Token | str | None,
        shared: bool,
        leeway: float,
        kept: Callable[[Token | None, str], None],
    ) -> None:
        self._endpoint = endpoint
        self._store = store
        self._renewal = renewal
        self._grant = grant
        self._seed = seed
        self._shared = shared
        self._leeway = leeway
        self._kept = kept
        # A renewed record the store refused to take (written again at the
        # next renewal), with the spent refresh token it replaced.
        self._unsaved: tuple[StoredToken, str | None] | None = None
        # The generation of the newest record this process has used: an older
        # one (a store restored from a backup, a lagging replica) is not adopted.
        self.generation = 0
        self._warned_about_seed = False

    def replace(
        self, stale: Token | None, adapter: Adapter, *, invalid_grant_memory: float
    ) -> tuple[StoredToken, bool]:
        """Under the store's lock: adopt a newer stored token, or renew and store.

        Returns the record now current and whether we renewed.
        """
        if self._shared and self._unsaved is None:
            # Most often another process has renewed already: a plain read
            # (atomic in every store) finds its token without queueing for the lock.
            found = self._check(self._store.read(), stale, invalid_grant_memory, fresh=False)
            if found is not None:
                return found, False
        with self._store.lock(timeout=self._endpoint.longest_refresh):
            record = self._current_record()
            if self._check(record, stale, invalid_grant_memory, fresh=True) is not None:
                return record, False
            if record.refresh_token is None and self._renewal.needs_refresh_token:
                raise MissingRefreshTokenError(
                    f"the access token needs replacing but there is no refresh token "
                    f"(in {self._store.describe()}); give EmpowerIDAuth a refresh_token"
                )

            def keep_refresh_token(refresh_token: str) -> None:
                # A rotated refresh token from an unusable answer: the old one
                # is spent, so the new one must be stored before anything else.
                nonlocal record
                spent = record.refresh_token
                token = record.token
                if token is not None:
                    token = dataclasses.replace(token, refresh_token=refresh_token)
                record = dataclasses.replace(
                    record,
                    generation=record.generation + 1,
                    token=token,
                    refresh_token=refresh_token,
                    updated_at=time.time(),
                )
                self._write(record, spent)
                self._kept(token, refresh_token)

            try:
                token = self._renewal.next_token(
                    self._endpoint, record.refresh_token, adapter, keep_refresh_token
                )
            except InvalidGrantError as exc:
                self._remember_invalid_grant(record, exc)
                raise
            new = record.successor(token)
            self._write(new, record.refresh_token)
            return new, True

    def seed_record(self) -> StoredToken:
        """The record an empty store starts from."""
        seed = self._seed
        token = seed if isinstance(seed, Token) else None
        refresh_token = self._seed_refresh_token()
        return StoredToken(
            client_id=self._endpoint.client_id,
            token_endpoint=self._endpoint.url,
            generation=1,
            token=token,
            refresh_token=refresh_token,
            seeds=() if refresh_token is None else (fingerprint(refresh_token),),
            grant=self._grant,
        )

    def _ours(self, record: StoredToken) -> bool:
        return (record.client_id, record.token_endpoint, record.grant) == (
            self._endpoint.client_id,
            self._endpoint.url,
            self._grant,
        )

    def _check(
        self,
        record: StoredToken | None,
        stale: Token | None,
        invalid_grant_memory: float,
        *,
        fresh: bool,
    ) -> StoredToken | None:
        """``record`` if it holds a token other than ``stale`` that is fresh (or,
        with ``fresh=False``, at least unexpired: it is used while it is being
        renewed); raises if its grant was refused a moment ago."""
        if record is None or not self._ours(record):
            return None  # _current_record explains a foreign record, under the lock
        if not fresh and record.generation < self.generation:
            return None  # older than what we used; decided under the lock
        if record.invalid_grant_at is not None and not self._brings_new_grant(record):
            self._raise_remembered_invalid_grant(record, invalid_grant_memory)
        current = record.token
        if current is None or same_access_token(current, stale):
            return None
        now = time.time()
        state = make_state(
            current,
            record.refresh_token,
            self._leeway,
            renewable=not self._renewal.needs_refresh_token,
        )
        if state.is_fresh(now) or (not fresh and not current.is_expired(now=now)):
            logger.debug("using the token stored in %s", self._store.describe())
            return record
        return None

    def _current_record(self) -> StoredToken:
        """The store's record (under its lock), seeded or repaired where needed."""
        if not self._shared:
            record = self._store.read()
            assert record is not None
            return record
        record = self._store.read()
        if self._unsaved is not None:
            unsaved, spent = self._unsaved
            if record is None or record.refresh_token == spent:
                # Our last renewal could not be stored, and the store still holds
                # the refresh token it spent (perhaps marked refused by a process
                # that tried it): ours is the grant's newest. Store it now; if
                # that fails too, it stays ours and the error goes to the caller.
                unsaved = dataclasses.replace(
                    unsaved, generation=(0 if record is None else record.generation) + 1
                )
                self._store.write(unsaved)
                self._unsaved = None
                logger.warning("stored the token that an earlier write failed to store")
                return unsaved
            # Someone stored another refresh token since (a new sign-in, say).
            self._unsaved = None
        if record is None:
            if self._seed is None:
                if not self._renewal.needs_refresh_token:
                    return self.seed_record()  # the grant needs no seed: renewed next
                raise MissingRefreshTokenError(
                    f"{self._store.describe()} is empty and no refresh_token= was given to "
                    "seed it; give one to the first process that starts"
                )
            record = self.seed_record()
            self._store.write(record)
            logger.info("seeded %s from the configuration", self._store.describe())
            return record
        if not self._ours(record):
            raise TokenStoreError(
                f"{self._store.describe()} holds the token of client {record.client_id!r} "
                f"at {record.token_endpoint}{_grant_words(record.grant)}, not of client "
                f"{self._endpoint.client_id!r} at {self._endpoint.url}"
                f"{_grant_words(self._grant)}; give each client (and each grant) its own "
                "store (file path or key)"
            )
        seed = self._seed_refresh_token()
        if (
            seed is not None
            and not self._warned_about_seed
            and seed != record.refresh_token
            and fingerprint(seed) not in record.seeds
            and record.invalid_grant_at is None
        ):
            self._warned_about_seed = True
            logger.warning(
                "the configured refresh token is not the one %s was seeded with; the "
                "store's token is used. To start from the configured one, clear the store",
                self._store.describe(),
            )
        if self._brings_new_grant(record):
            # The stored grant is lost and the configuration brings another
            # refresh token: a new sign-in, so it replaces the dead one.
            new = dataclasses.replace(
                self.seed_record(),
                generation=record.generation + 1,
                seeds=(*record.seeds, *self.seed_record().seeds)[-_SEEDS_KEPT:],
            )
            self._store.write(new)
            logger.info(
                "replaced the refused token in %s with the configured one", self._store.describe()
            )
            return new
        return record

    def _brings_new_grant(self, record: StoredToken) -> bool:
        """Whether the stored grant was refused and our configuration has another
        refresh token: a new sign-in, which replaces the dead one."""
        seed = self._seed_refresh_token()
        return (
            self._shared
            and record.invalid_grant_at is not None
            and seed is not None
            and seed != record.refresh_token
            and fingerprint(seed) not in record.seeds
        )

    def _seed_refresh_token(self) -> str | None:
        seed = self._seed
        return seed.refresh_token if isinstance(seed, Token) else seed

    def _write(self, record: StoredToken, spent: str | None) -> None:
        """Store a renewed record. If the store refuses, keep it anyway, and say so.

        Dropping it would lose the only copy of a rotated refresh token (and
        with it the grant); this process uses it and writes it again at its
        next renewal. Until then, other processes find a spent refresh token.
        """
        try:
            self._store.write(record)
        except TokenStoreError as exc:
            if not self._shared:
                raise
            if self._unsaved is not None:
                spent = self._unsaved[1]  # the store still holds the older one
            self._unsaved = (record, spent)
            logger.error(  # noqa: TRY400 - the message says all; no traceback
                "the refreshed token could not be stored, so other processes cannot see "
                "it (they will find a refresh token that is already spent); this process "
                "keeps using it and stores it again at its next refresh: %s",
                exc,
            )
        else:
            self._unsaved = None

    def _remember_invalid_grant(self, record: StoredToken, exc: InvalidGrantError) -> None:
        try:
            self._store.write(record.with_invalid_grant(exc.error_description))
        except TokenStoreError as store_error:
            logger.warning("could not record the refused refresh token: %s", store_error)

    def _raise_remembered_invalid_grant(self, record: StoredToken, memory: float) -> None:
        assert record.invalid_grant_at is not None
        age = time.time() - record.invalid_grant_at
        if not -memory < age < memory:
            # Long enough: let one request find out again. A time far in the
            # future (a clock gone wrong) must not block renewals for ever.
            return
        description = record.invalid_grant_description
        because = f"{': ' + description if description else ''}"
        if self._renewal.needs_refresh_token:
            message = (
                f"the token endpoint refused this refresh token (invalid_grant) {age:.0f}s "
                f"ago{because}; it is not sent again. Sign in again and give EmpowerIDAuth "
                "the new refresh token"
            )
        else:
            message = (
                f"the token endpoint refused the {self._renewal.grant_type} grant "
                f"(invalid_grant) {age:.0f}s ago{because}; it is not sent again for "
                f"{memory:.0f}s (check the username and password, or the scope)"
            )
        raise RememberedInvalidGrant(
            message, error="invalid_grant", error_description=description, status_code=400
        )


def _grant_words(grant: str | None) -> str:
    return "" if grant is None else f" (grant {grant.split(':', 1)[0]})"
