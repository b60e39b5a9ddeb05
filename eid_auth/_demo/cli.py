"""A demo part: the ``eid-auth`` command line against the embedded server.

A person signs in with ``eid-auth login`` (the browser is this module, run as
``BROWSER``: it does over HTTP what a person's browser would), then
``eid-auth token`` prints the token (shown here as a fingerprint), and after the
token has expired, 5 ``eid-auth token`` processes started at once send one
refresh grant between them. The profile and token live in a temporary
directory (``EID_AUTH_CONFIG_DIR``, ``EID_AUTH_DATA_DIR``).
"""

from __future__ import annotations

import http.client
import os
import shlex
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .narration import Say, fingerprint

if TYPE_CHECKING:
    from ..testing import EmpowerIDTestServer

__all__ = ["command_line"]

SECRET_VARIABLE = "EID_DEMO_CLIENT_SECRET"
PROCESSES = 5


def command_line(server: EmpowerIDTestServer, say: Say, number: int = 8) -> None:
    """Sign in with ``eid-auth login``, print tokens with ``eid-auth token``."""
    say(
        f"{number}. the command line: eid-auth login signs a person in (the demo's browser "
        "plays the person), then eid-auth token prints the token for curl and scripts"
    )
    with tempfile.TemporaryDirectory(prefix="eid-auth-demo-") as directory:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EID_")}
        env.update(
            EID_AUTH_CONFIG_DIR=os.path.join(directory, "config"),
            EID_AUTH_DATA_DIR=os.path.join(directory, "data"),
            BROWSER=f"{shlex.quote(sys.executable)} -m eid_auth._demo.cli %s",
        )
        env[SECRET_VARIABLE] = server.client_secret or ""
        server.sign_in_username = None  # the test user, jdoe

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(  # noqa: S603 - this Python, our own package
                [sys.executable, "-m", "eid_auth", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        login = (
            "login",
            "--server",
            server.url,
            "--client-id",
            server.client_id,
            "--client-secret-env",
            SECRET_VARIABLE,
        )
        say(f"  $ eid-auth {' '.join(login)}")
        done = run(*login)
        for line in done.stderr.strip().splitlines():
            say(f"    {line}")
        if done.returncode != 0:
            raise RuntimeError(f"eid-auth login failed with exit code {done.returncode}")

        grants = server.grants_served.get("refresh_token", 0)
        started = time.monotonic()
        printed = run("token").stdout.strip()
        say(
            f"  $ eid-auth token -> access token {fingerprint(printed)} in "
            f"{(time.monotonic() - started) * 1000:.0f} ms "
            + (
                "(the stored token: no request)"
                if server.grants_served.get("refresh_token", 0) == grants
                else "(renewed first: it was about to expire)"
            )
        )

        token_file = os.path.join(directory, "data", "tokens", "default.json")
        say(f"  waiting for the token to expire ({token_file} is shared with from_profile())")
        time.sleep(_seconds_left(token_file) + 0.5)
        grants = server.grants_served.get("refresh_token", 0)
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "eid_auth", "token"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for _ in range(PROCESSES)
        ]
        tokens = {process.communicate(timeout=120)[0].strip() for process in processes}
        renewed = server.grants_served.get("refresh_token", 0) - grants
        say(
            f"  {PROCESSES} x eid-auth token at once, after expiry: "
            f"{renewed} refresh grant(s), all printed {', '.join(map(fingerprint, tokens))}"
        )


def _seconds_left(token_file: str) -> float:
    """Seconds until the stored access token expires (read from the token file)."""
    from ..stores._file import FileTokenStore

    record = FileTokenStore(token_file).read()
    left = None if record is None or record.token is None else record.token.expires_in()
    return max(0.0, left or 0.0)


def _browse(url: str) -> int:
    """The demo's browser: GET the sign-in page, then follow its redirect back to
    ``eid-auth login``'s loopback listener."""
    for _ in range(2):
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        try:
            connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
            answer = connection.getresponse()
            answer.read()
            url = answer.getheader("Location") or ""
        finally:
            connection.close()
        if not url:
            break
    return 0


if __name__ == "__main__":
    sys.exit(_browse(sys.argv[1]))
