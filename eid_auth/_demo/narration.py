"""How the demo speaks: timestamped lines, and fingerprints in place of secrets."""

from __future__ import annotations

import hashlib
import time

__all__ = ["Say", "fingerprint"]


class Say:
    """Prints a line with the seconds since the demo started; callable from any thread."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", flush=True)


def fingerprint(secret: str | None) -> str:
    """The first 8 hex digits of the secret's SHA-256: enough to tell two tokens
    apart, nothing to use one with."""
    if secret is None:
        return "-"
    return hashlib.sha256(secret.encode()).hexdigest()[:8]
