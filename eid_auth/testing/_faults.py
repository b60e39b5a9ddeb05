"""Faults the token endpoint can be told to answer with: outages, rate limits, slow or broken
answers, dropped connections (`EmpowerIDTestServer.fail_next`).

A `FaultSpec` describes one faulted request; `wait_out` sleeps its delay and `fault_answer`
builds the answer it stands for.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from eid_auth.testing._messages import Answer, json_bytes

__all__ = ["MAX_FAULT_DELAY", "FaultSpec", "fault_answer", "wait_out"]

# A fault's delay is capped so that a mistyped value cannot hang a test run.
MAX_FAULT_DELAY = 60.0

_DEFAULT_5XX_BODY = b'{"error":"temporarily_unavailable"}'
_DEFAULT_MALFORMED_BODY = b'{"access_token": '


@dataclass(frozen=True)
class FaultSpec:
    """How the token endpoint misbehaves for one request (see `EmpowerIDTestServer.fail_next`).

    Attributes:
        status: HTTP status to answer with.
        body: Exact response body. ``None`` means ``{"error":"temporarily_unavailable"}`` for
            5xx and 429, a short ``invalid_request`` JSON for other 4xx and, for 2xx/3xx, "serve
            the request normally after `delay`" (see below).
        retry_after: When set, sent as the ``Retry-After`` header, in seconds.
        delay: Seconds to wait before answering (capped at 60, and cut short when the server
            stops), for client timeout tests.
        malformed: Answer 200 with a body that is not valid JSON (``body`` if given).
        close_connection: Close the socket without answering (after `delay`).

    A faulted request is recorded and counted in ``token_requests`` but does not consume or
    rotate the refresh token. The one exception is a "slow success": a fault whose `status` is
    below 400 with no `body` and neither `malformed` nor `close_connection` just delays the
    request, which is then served normally (and so may rotate the refresh token while the
    client has already timed out, which is exactly what such tests want to provoke).

    Example:
        >>> server.fail_next(FaultSpec(status=503, retry_after=2))  # doctest: +SKIP
        >>> server.fail_next(FaultSpec(delay=5.0, close_connection=True))  # doctest: +SKIP
    """

    status: int = 503
    body: bytes | None = None
    retry_after: float | None = None
    delay: float = 0.0
    malformed: bool = False
    close_connection: bool = False

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(
                f"FaultSpec.status must be an HTTP status (100-599), not {self.status}"
            )
        if self.delay < 0:
            raise ValueError(f"FaultSpec.delay must be >= 0 seconds, not {self.delay}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError(f"FaultSpec.retry_after must be >= 0 seconds, not {self.retry_after}")

    @property
    def serves_normally(self) -> bool:
        """True for a "slow success" fault: only delay, then handle the request as usual."""
        return (
            self.status < 400
            and self.body is None
            and not self.malformed
            and not self.close_connection
        )


def wait_out(fault: FaultSpec, stopping: threading.Event) -> bool:
    """Sleep the fault's delay; True when the server began to stop meanwhile.

    The event cuts the sleep short, so stopping the server is never held up by a fault.
    """
    return bool(fault.delay) and stopping.wait(min(fault.delay, MAX_FAULT_DELAY))


def fault_answer(fault: FaultSpec) -> Answer | None:
    """The answer `fault` stands for; None to close the connection without one."""
    if fault.close_connection:
        return None
    headers: list[tuple[str, str]] = []
    if fault.retry_after is not None:
        value = fault.retry_after
        headers.append(
            ("Retry-After", str(int(value)) if float(value).is_integer() else str(value))
        )
    if fault.malformed:
        return Answer(200, fault.body or _DEFAULT_MALFORMED_BODY, headers)
    body = fault.body
    if body is None:
        if fault.status >= 500 or fault.status == 429:
            body = _DEFAULT_5XX_BODY
        else:
            body = json_bytes({"error": "invalid_request", "error_description": "fault"})
    return Answer(fault.status, body, headers)
