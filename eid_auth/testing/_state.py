"""What the test server knows at run time: its grants and the tokens issued for them, the
queued faults, its counters and request logs, its address and whether it is stopping.

A `Grant` is one sign-in (a person, a scope, a chain of rotated refresh tokens); an
`AccessToken` belongs to one grant. Everything in `ServerState` sits behind its one `lock`,
taken briefly by the endpoints (in the server's threads) and by the tests that inspect or
change the state while requests are in flight.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from eid_auth.testing._faults import FaultSpec
from eid_auth.testing._id_token import SigningKeys
from eid_auth.testing._messages import RecordedRequest

if TYPE_CHECKING:
    from eid_auth.testing.endpoints.authorize import IssuedCode
    from eid_auth.testing.endpoints.device_authorization import DeviceAuthorization

__all__ = ["AccessToken", "Grant", "ServerState", "TestUser", "new_refresh_token"]


@dataclass(frozen=True)
class TestUser:
    """A person who can sign in with a password (and whom ``username`` and ``sub`` name)."""

    __test__ = False  # not a pytest test class, despite its name

    username: str
    password: str = field(repr=False)
    person_id: str
    first_name: str
    last_name: str
    email: str


@dataclass
class Grant:
    """One sign-in: a person, a scope, and the chain of refresh tokens it went through."""

    person_id: str
    scope: str
    refresh_token: str
    used_refresh_tokens: set[str] = field(default_factory=set)
    access_tokens: set[str] = field(default_factory=set)
    revoked: bool = False
    username: str | None = None  # the person's, when the grant names one


@dataclass
class AccessToken:
    """One access token, as a protected resource looks it up."""

    grant: Grant
    expires_at: float | None  # time.monotonic() deadline; None = never expires
    revoked: bool = False
    expired: bool = False  # set by expire_access_tokens()
    issued_at: float = field(default_factory=time.time)  # wall clock, for tokeninfo's iat


def new_refresh_token() -> str:
    """A fresh, unguessable refresh token."""
    return "rt_" + secrets.token_urlsafe(32)


class ServerState:
    """The grants, tokens, faults, counters and logs of one test server.

    Attributes are read and written with `lock` held, except `url` (set once, at start) and
    `stopping` (an event, safe from any thread).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.url: str | None = None  # "http://127.0.0.1:<port>" once started
        self.refresh_index: dict[str, Grant] = {}  # every refresh token ever issued
        self.access_index: dict[str, AccessToken] = {}
        self.faults: deque[FaultSpec] = deque()
        self.refresh_grants = 0
        self.token_requests = 0
        self.reuse_detected = 0
        self.api_requests: list[RecordedRequest] = []
        self.token_request_log: list[RecordedRequest] = []
        self.handler_errors: list[BaseException] = []
        self.id_tokens: list[str] = []
        self.signing_keys = SigningKeys()  # the ID tokens' keys, served as the JWKS
        self.users: dict[str, TestUser] = {}
        self.grants_served: Counter[str] = Counter()  # successful grants, by grant_type
        # JWT bearer: trusted assertion issuer -> its key (HS256 secret or RSA public JWK).
        self.assertion_keys: dict[str, str | dict[str, str]] = {}
        self.authorization_codes: dict[str, IssuedCode] = {}  # every code ever issued
        self.device_authorizations: dict[str, DeviceAuthorization] = {}  # by device code

    # -- tokens (the lock must be held where noted) ----------------------------------------

    def new_access_token(self, grant: Grant, lifetime: int | None) -> str:
        """Issue an access token for `grant`, valid for `lifetime` seconds. Lock held."""
        token = "at_" + secrets.token_urlsafe(32)
        expires_at = None if lifetime is None else time.monotonic() + lifetime
        self.access_index[token] = AccessToken(grant=grant, expires_at=expires_at)
        grant.access_tokens.add(token)
        return token

    def new_grant(
        self,
        *,
        person_id: str,
        scope: str,
        refresh_token: str | None,
        lifetime: int | None,
        username: str | None = None,
    ) -> tuple[Grant, str]:
        """Start a grant with its first refresh token (None: a grant without one, such as
        client credentials); return it and its first access token."""
        with self.lock:
            grant = Grant(
                person_id=person_id,
                scope=scope,
                refresh_token=refresh_token or "",
                username=username,
            )
            if refresh_token:
                self.refresh_index[refresh_token] = grant
            return grant, self.new_access_token(grant, lifetime)

    def revoke_grant(self, token: str) -> None:
        """Revoke the grant a refresh or access token belongs to; KeyError if unknown."""
        with self.lock:
            grant = self.refresh_index.get(token)
            if grant is None and token in self.access_index:
                grant = self.access_index[token].grant
            if grant is None:
                raise KeyError("unknown token: not issued by this server")
            grant.revoked = True

    def revoke_access_token(self, access_token: str) -> None:
        """Revoke one access token; KeyError if unknown."""
        with self.lock:
            record = self.access_index.get(access_token)
            if record is None:
                raise KeyError("unknown access token: not issued by this server")
            record.revoked = True

    def expire_access_tokens(self) -> None:
        """Mark every access token issued so far as expired."""
        with self.lock:
            for record in self.access_index.values():
                record.expired = True

    def access_token_owner(self, token: str) -> tuple[str | None, str]:
        """Return (person GUID, "") for a usable access token, else (None, reason)."""
        with self.lock:
            record = self.access_index.get(token)
            if record is None:
                return None, "unknown access token"
            if record.revoked or record.grant.revoked:
                return None, "access token has been revoked"
            if record.expired or (
                record.expires_at is not None and time.monotonic() >= record.expires_at
            ):
                return None, "access token has expired"
            return record.grant.person_id, ""

    def issued_tokens(self) -> set[str]:
        """Every refresh, access and ID token issued so far."""
        with self.lock:
            return {
                *self.refresh_index,
                *self.access_index,
                *self.id_tokens,
                *self.authorization_codes,
                *self.device_authorizations,
            }

    # -- faults, counters and logs -------------------------------------------------------

    def queue_faults(self, fault: FaultSpec, count: int) -> None:
        with self.lock:
            self.faults.extend([fault] * count)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_token_request(self, request: RecordedRequest) -> FaultSpec | None:
        """Count and log a token request; return the fault queued for it, if any."""
        with self.lock:
            self.token_requests += 1
            self.token_request_log.append(request)
            return self.faults.popleft() if self.faults else None

    def record_api_request(self, request: RecordedRequest) -> None:
        with self.lock:
            self.api_requests.append(request)

    def record_error(self, exc: BaseException) -> None:
        with self.lock:
            self.handler_errors.append(exc)

    def reset_counters(self) -> None:
        """Zero the counters and clear the request logs; tokens and queued faults remain."""
        with self.lock:
            self.refresh_grants = 0
            self.token_requests = 0
            self.reuse_detected = 0
            self.grants_served.clear()
            self.api_requests.clear()
            self.token_request_log.clear()
