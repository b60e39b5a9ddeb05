"""A process can always exit: at interpreter exit a refresh still running behind
requests gets ``EXIT_GRACE`` seconds to finish, then is abandoned; one that
finishes within the grace period is still saved.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eid_auth import Token
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

from .conftest import CLIENT_ID, CLIENT_SECRET


class _StuckTokenEndpoint:
    """A loopback token endpoint that never finishes an answer: it either says
    nothing ("hang") or sends a header byte every 0.2 s ("trickle"), which no
    per-read timeout ever cuts off."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/oauth/v2/token"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            if self.mode == "trickle":
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not self._stop.wait(0.2):
                if self.mode == "trickle":
                    try:
                        conn.sendall(b"a")
                    except OSError:
                        return  # the client has gone

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()


@pytest.fixture(params=["hang", "trickle"])
def stuck_endpoint(request: pytest.FixtureRequest) -> Iterator[_StuckTokenEndpoint]:
    endpoint = _StuckTokenEndpoint(str(request.param))
    yield endpoint
    endpoint.close()


@pytest.mark.parametrize("caller", ["behind_a_request", "cancelled_task"])
def test_a_hanging_refresh_does_not_keep_the_process_alive(
    server: EmpowerIDTestServer, stuck_endpoint: _StuckTokenEndpoint, caller: str
) -> None:
    # Either a valid token in the early window (50 s left, 60 s leeway): the
    # request goes out with it while a refresh starts on a thread of its own;
    # or an expired token, whose refresh a task starts and then gives up on.
    # The token endpoint never answers in full. Then the program ends.
    grant = server.issue_grant()
    url = server.api_url("/api/x")
    if caller == "behind_a_request":
        expires_in = 50
        request = f"print('status', requests.get({url!r}, auth=auth, timeout=10).status_code)"
    else:
        expires_in = -1
        request = textwrap.dedent(
            f"""
            async def main():
                async with httpx.AsyncClient(auth=auth) as client:
                    await asyncio.wait_for(client.get({url!r}), 0.5)
            try:
                asyncio.run(main())
            except (asyncio.TimeoutError, TimeoutError):
                print("timed out", flush=True)
            """
        )
    program = (
        textwrap.dedent(
            f"""
            import asyncio, logging, time, httpx, requests
            from eid_auth import EmpowerIDAuth
            logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
            auth = EmpowerIDAuth(
                token_endpoint={stuck_endpoint.url!r}, client_id={CLIENT_ID!r},
                client_secret={CLIENT_SECRET!r}, access_token={grant["access_token"]!r},
                refresh_token={grant["refresh_token"]!r}, expires_at=time.time() + {expires_in},
                timeout=30.0,
            )
            """
        )
        + request
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    elapsed = time.monotonic() - started
    assert ("status 200" if caller == "behind_a_request" else "timed out") in done.stdout, (
        done.stderr
    )
    assert stuck_endpoint.connections >= 1  # the refresh really was in flight
    assert done.returncode == 0, done.stderr
    # Exits after the 5 s grace period, where it took 30 s a try (hang) or
    # forever (trickle) before.
    assert elapsed < 20
    assert "abandoned after 5s" in done.stderr
    assert "rotated the refresh token, the new one is lost" in done.stderr


def test_refresh_started_by_a_task_finishes_even_if_the_program_exits(
    server: EmpowerIDTestServer, tmp_path: Path
) -> None:
    saved = tmp_path / "token.json"
    refresh_token = server.issue_grant()["refresh_token"]
    server.fail_next(FaultSpec(status=200, delay=1.0), count=1)
    program = textwrap.dedent(
        f"""
        import asyncio, json, pathlib, httpx
        from eid_auth import EmpowerIDAuth
        auth = EmpowerIDAuth(
            token_endpoint={server.token_endpoint!r}, client_id={CLIENT_ID!r},
            client_secret={CLIENT_SECRET!r}, refresh_token={refresh_token!r},
            on_refresh=lambda t: pathlib.Path({str(saved)!r}).write_text(json.dumps(t.to_dict())),
        )
        async def main():
            async with httpx.AsyncClient(auth=auth) as client:
                await asyncio.wait_for(client.get({server.api_url("/api/x")!r}), 0.2)
        try:
            asyncio.run(main())
        except (asyncio.TimeoutError, TimeoutError):
            print("timed out; exiting")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert "timed out; exiting" in done.stdout, done.stderr
    assert server.refresh_grants == 1
    # The rotated refresh token was saved, not lost with a killed thread.
    assert Token.from_dict(json.loads(saved.read_text())).refresh_token
