"""Hypothesis state machines over one auth object and a real loopback server.

Steps interleave requests through the three clients, bursts of concurrent
callers, expiries and revocations (each makes the next request meet a 401),
transient token endpoint failures (never more than the retries absorb) and,
with short-lived tokens, the passing of time. After every step:

* at most one refresh grant per expiry (exactly one when a request followed it);
* no refresh token is ever presented twice (the server's reuse detection);
* every request goes out with the newest token the auth knows;
* no request is lost where a retry was possible: every request succeeds.
"""

from __future__ import annotations

import threading
import time

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from eid_auth import Token
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import CLIENT_ID, CLIENT_SECRET, FLAVOURS, make_auth, send

MAX_RETRIES = 2


class _Callers(RuleBasedStateMachine):
    """The rules both machines share: callers, revocations, transient failures."""

    LIFETIME: int | None = 3600

    def __init__(self) -> None:
        super().__init__()
        self.server = EmpowerIDTestServer(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, access_token_lifetime=self.LIFETIME
        )
        self.server.start()
        self.auth = make_auth(self.server, max_retries=MAX_RETRIES, backoff_factor=0.001)
        self.queued_faults = 0
        self.seen_token_requests = 0

    def teardown(self) -> None:
        self.auth.close()
        self.server.stop()

    def served(self) -> None:
        """Requests went through (a hook for the model)."""

    def revoked(self) -> None:
        """The current access token was revoked (a hook for the model)."""

    def check_sent(self, sent: str | None, before: Token | None, after: Token) -> None:
        assert sent == f"Bearer {after.access_token}"

    @rule(flavour=st.sampled_from(FLAVOURS))
    def one_request(self, flavour: str) -> None:
        before = self.auth.token
        result = send(flavour, self.auth, "GET", self.server.api_url("/api/x"))
        assert result.status == 200
        self.served()
        assert self.auth.token is not None
        self.check_sent(result.sent_authorization, before, self.auth.token)

    @rule(callers=st.integers(min_value=2, max_value=10))
    def concurrent_requests(self, callers: int) -> None:
        go = threading.Barrier(callers)
        statuses: list[int] = []

        def one(i: int) -> None:
            go.wait(10)
            result = send(
                FLAVOURS[i % len(FLAVOURS)], self.auth, "GET", self.server.api_url("/api/x")
            )
            statuses.append(result.status)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert statuses == [200] * callers
        self.served()

    @precondition(lambda self: self.auth.token is not None)
    @rule()
    def the_current_access_token_is_revoked(self) -> None:
        assert self.auth.token is not None
        self.server.revoke_access_token(self.auth.token.access_token)
        self.revoked()

    @precondition(lambda self: self.queued_faults < MAX_RETRIES)
    @rule(status=st.sampled_from([500, 502, 503, 429]))
    def the_token_endpoint_fails_once(self, status: int) -> None:
        self.server.fail_next(FaultSpec(status=status))
        self.queued_faults += 1

    @invariant()
    def no_refresh_token_presented_twice(self) -> None:
        self.auth._coordinator.wait_for_refresh()  # a refresh behind the last step
        # Queued faults are used up by token requests, one each.
        sent = self.server.token_requests - self.seen_token_requests
        self.queued_faults = max(0, self.queued_faults - sent)
        self.seen_token_requests = self.server.token_requests
        assert self.server.reuse_detected == 0


class OneAuthManyCallers(_Callers):
    """Hour-long tokens: every refresh follows an expiry the model knows of."""

    def __init__(self) -> None:
        super().__init__()
        # The model: refresh grants the server must have served by now.
        self.expected_grants = 0
        self.needs_refresh = True  # no access token yet

    def served(self) -> None:
        if self.needs_refresh:
            self.expected_grants += 1
            self.needs_refresh = False

    def revoked(self) -> None:
        self.needs_refresh = True

    @rule()
    def every_access_token_expires(self) -> None:
        self.server.expire_access_tokens()
        self.needs_refresh = True

    @invariant()
    def one_refresh_grant_per_expiry(self) -> None:
        assert self.server.refresh_grants == self.expected_grants


class TokensExpiringByTheClock(_Callers):
    """2-second tokens and passing time: early refreshes run behind requests and
    are waited for near expiry."""

    LIFETIME = 2

    def __init__(self) -> None:
        super().__init__()
        self.started = time.monotonic()
        self.revocations = 0

    def revoked(self) -> None:
        self.revocations += 1

    def check_sent(self, sent: str | None, before: Token | None, after: Token) -> None:
        # The newest token the auth knew, before or after a refresh that ran
        # meanwhile behind the request; never an older one.
        known = {f"Bearer {t.access_token}" for t in (before, after) if t is not None}
        assert sent in known

    @rule(seconds=st.sampled_from([0.2, 0.5, 1.0]))
    def time_passes(self, seconds: float) -> None:
        time.sleep(seconds)

    @invariant()
    def at_most_one_refresh_per_token_life_or_revocation(self) -> None:
        # A token is refreshed no earlier than half-way through its life (1 s),
        # so at most one grant per 0.9 s, plus one per revocation, plus the first.
        self.auth._coordinator.wait_for_refresh()
        elapsed = time.monotonic() - self.started
        assert self.server.refresh_grants <= 1 + self.revocations + elapsed / 0.9


OneAuthManyCallers.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TokensExpiringByTheClock.TestCase.settings = settings(
    max_examples=8,
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_one_auth_many_callers = OneAuthManyCallers.TestCase
test_tokens_expiring_by_the_clock = TokensExpiringByTheClock.TestCase
