"""The device authorization grant (RFC 8628), for a person on an SSH session or a
box without a browser: the person signs in on another device with a short code
while this one polls the token endpoint.

EmpowerID's documentation spells two things two ways: the polling interval is
``interval`` or ``polling_interval``, and the polling grant type is the URN or
plain ``device_code``. Both keys are read; the URN is sent, and ``device_code``
once if the server answers ``unsupported_grant_type``. ``authorization_pending``
comes back as HTTP 400, like any OAuth error.

Imported only when a device sign-in is asked for.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._exceptions import (
    AccessDeniedError,
    ConfigurationError,
    SignInError,
    SignInTimeoutError,
    TokenEndpointError,
    redact,
    secrets_in_answer,
)
from ._transport import MAX_RESPONSE_BYTES, Failure, HTTPClient, send_token_request

if TYPE_CHECKING:
    from ._token import Token

__all__ = [
    "DEVICE_CODE_GRANT",
    "DeviceAuthorization",
    "poll_for_token",
    "print_prompt",
    "request_device_authorization",
]

logger = logging.getLogger("eid_auth")

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# What older EmpowerID pages call the same grant.
_SHORT_GRANT = "device_code"
# RFC 8628 section 3.2: 5 s when the server says nothing; section 3.5: +5 s on slow_down.
DEFAULT_INTERVAL = 5.0
SLOW_DOWN_SECONDS = 5.0
# A server that says "poll every 0 s" is not taken at its word.
_MIN_INTERVAL = 0.1
# expires_in is required; a server that leaves it out gets RFC 8628's example figure.
_DEFAULT_EXPIRES_IN = 1800.0


@dataclass(frozen=True)
class DeviceAuthorization:
    """What the person needs to sign in on another device, as the server sent it.

    Attributes:
        verification_uri: the page where the person enters ``user_code``.
        user_code: the short code to enter there.
        verification_uri_complete: the same page with the code filled in, when the
            server gives one (fit for a QR code).
        expires_in: seconds until the codes expire.
        interval: seconds between two polls of the token endpoint.
        device_code: what this device polls with; a secret, never in the ``repr``.
        requested_at: ``time.monotonic()`` when the request was sent: the codes
            expire ``expires_in`` after it at the latest.

    Example:
        >>> def show(device):  # doctest: +SKIP
        ...     print(f"Go to {device.verification_uri} and enter {device.user_code}")
        >>> token = eid.login_with_device(scope="openid", prompt=show)  # doctest: +SKIP
    """

    verification_uri: str
    user_code: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float
    device_code: str = field(repr=False)
    requested_at: float = field(default_factory=time.monotonic, repr=False, compare=False)


def print_prompt(device: DeviceAuthorization) -> None:
    """The default prompt: tells the person on stderr where to go and what to enter."""
    minutes = max(1, round(device.expires_in / 60))
    lines = [
        "To sign in, open this address in a browser on any device:",
        "",
        f"    {device.verification_uri}",
        "",
        f"and enter the code {device.user_code} (it expires in about {minutes} minute(s)).",
    ]
    if device.verification_uri_complete:
        lines += ["", f"Or open {device.verification_uri_complete}"]
    print("\n".join(lines), file=sys.stderr, flush=True)


def request_device_authorization(
    client: HTTPClient,
    url: str,
    *,
    client_id: str,
    scope: str | None,
    headers: Mapping[str, str],
    timeout: float,
    secrets: tuple[str | None, ...],
) -> DeviceAuthorization:
    """POST ``client_id`` and ``scope`` to the device authorization endpoint
    (EmpowerID's documented form) and read its answer.

    Raises:
        SignInError: the endpoint refused (its OAuth error in ``error``), could
            not be reached, or answered something that is not a device authorization.
    """
    from urllib.parse import urlencode

    form = {"client_id": client_id, **({"scope": scope} if scope else {})}
    # expires_in counts from when the server answered: from the request, to be safe.
    requested_at = time.monotonic()
    answer = send_token_request(
        client,
        url,
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "Cache-Control": "no-cache",
            **headers,
        },
        urlencode(form).encode(),
        timeout,
    )
    if isinstance(answer, Failure):
        raise SignInError(
            f"device authorization endpoint {url} failed: {answer.reason}"
        ) from answer.cause
    if answer.too_large:
        raise SignInError(
            f"device authorization endpoint {url} answered HTTP {answer.status} with a body "
            f"over {MAX_RESPONSE_BYTES // 1024} KiB; is it the right URL?"
        )
    try:
        body: Any = json.loads(answer.content)
    except (ValueError, RecursionError):
        body = None
    successful = 200 <= answer.status < 300
    if not successful or not isinstance(body, dict) or body.get("error"):
        error = body.get("error") if isinstance(body, dict) else None
        description = body.get("error_description") if isinstance(body, dict) else None
        hidden = (*secrets, *secrets_in_answer(body, successful=successful))
        code = redact(error, hidden)[:100] if isinstance(error, str) and error else None
        detail = (
            redact(description, hidden)[:300]
            if isinstance(description, str) and description not in ("", "null")
            else None
        )
        raise SignInError(
            f"device authorization endpoint {url} answered HTTP {answer.status}"
            + (f" ({code}{': ' + detail if detail else ''})" if code else "")
            + ("" if code else "; is device_authorization_endpoint the right URL?"),
            error=code,
            error_description=detail,
        )
    return _read_authorization(url, body, requested_at)


def _read_authorization(
    url: str, body: Mapping[str, Any], requested_at: float
) -> DeviceAuthorization:
    strings = {}
    for name in ("device_code", "user_code", "verification_uri"):
        value = body.get(name)
        if name == "verification_uri" and not value:
            value = body.get("verification_url")  # an older draft's spelling
        if not isinstance(value, str) or not value:
            raise SignInError(
                f"device authorization endpoint {url} answered without a usable {name}"
            )
        strings[name] = value
    complete = body.get("verification_uri_complete")
    # EmpowerID's text says polling_interval, its example interval: either will do.
    interval = _seconds(body.get("interval"), None)
    if interval is None:
        interval = _seconds(body.get("polling_interval"), DEFAULT_INTERVAL)
    assert interval is not None
    expires_in = _seconds(body.get("expires_in"), _DEFAULT_EXPIRES_IN)
    assert expires_in is not None
    return DeviceAuthorization(
        verification_uri=strings["verification_uri"],
        user_code=strings["user_code"],
        verification_uri_complete=complete if isinstance(complete, str) and complete else None,
        expires_in=expires_in,
        interval=max(interval, _MIN_INTERVAL),
        device_code=strings["device_code"],
        requested_at=requested_at,
    )


def _seconds(value: object, default: float | None) -> float | None:
    # A number, or a number in a string (JSON from .NET sometimes quotes them).
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    if not math.isfinite(value) or value < 0:
        return default
    return float(value)


def poll_for_token(
    device: DeviceAuthorization,
    request_token: Callable[[str], Token],
    *,
    timeout: float | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> Token:
    """Poll the token endpoint until the person has signed in, refused, or the
    code expired.

    ``request_token(grant_type)`` sends one poll and returns the token or raises
    ``TokenEndpointError``. Polls are ``device.interval`` apart, 5 s more after
    each ``slow_down``; none is sent after ``expires_in`` (or ``timeout``) passed.

    Raises:
        AccessDeniedError: the person refused (``access_denied``).
        SignInTimeoutError: the code expired (``expired_token``, or ``expires_in``
            or ``timeout`` passed) before the person signed in.
        TokenEndpointError: any other refusal by the token endpoint.
    """
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < float("inf")
    ):
        raise ConfigurationError("timeout must be a number of seconds > 0, or None")
    expires_at = device.requested_at + device.expires_in
    deadline = expires_at if timeout is None else min(expires_at, time.monotonic() + timeout)
    limit = device.expires_in if timeout is None or deadline == expires_at else float(timeout)
    interval = device.interval
    grant_type = DEVICE_CODE_GRANT
    wait = interval
    while True:
        # No poll once the codes expired: the person can no longer sign in with them.
        if time.monotonic() + wait >= deadline:
            raise _gave_up(limit, deadline == expires_at)
        sleep(wait)
        if time.monotonic() >= deadline:
            raise _gave_up(limit, deadline == expires_at)
        wait = interval
        try:
            return request_token(grant_type)
        except TokenEndpointError as exc:
            error = exc.error
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += SLOW_DOWN_SECONDS
                wait = interval
                logger.info("the token endpoint asked to poll slower: every %gs now", interval)
                continue
            if error == "unsupported_grant_type" and grant_type == DEVICE_CODE_GRANT:
                # An older server that knows only the short name: ask again at once.
                logger.info(
                    "the token endpoint does not know %s; trying %s", grant_type, _SHORT_GRANT
                )
                grant_type = _SHORT_GRANT
                wait = 0.0
                continue
            if error == "access_denied":
                raise AccessDeniedError(
                    "the device sign-in was refused (access_denied)",
                    error=error,
                    error_description=exc.error_description,
                ) from exc
            if error == "expired_token":
                raise SignInTimeoutError(
                    "the device code expired before the sign-in was finished "
                    "(expired_token); start it again",
                    error=error,
                    error_description=exc.error_description,
                ) from exc
            raise


def _gave_up(limit: float, expired: bool) -> SignInTimeoutError:
    return SignInTimeoutError(
        f"the device sign-in was not finished within {limit:g}s "
        f"({'the codes expired' if expired else 'timeout'}); start it again"
    )
