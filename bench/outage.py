"""Token endpoint outages: what users see while the token endpoint is down.

Run by hand (not part of the test suite):

    .venv/bin/python bench/outage.py

Against the embedded EmpowerID server on loopback, 4 threads send requests back
to back with one auth object while the token endpoint, for OUTAGE seconds,
either answers 503 with ``Retry-After: 1`` or hangs past the auth's timeout;
then it recovers. Each case runs three times: with a token valid 50 s more (the
first half of its 60 s refresh window: the refresh runs behind the requests),
valid 25 s more (the second half: requests wait for the refresh, at most until
the token expires), and expired. Reported: user requests served and failed
during the outage, the slowest request, whether the still-valid token kept
being used, how many token requests reached the server during the outage, and
how long after recovery the first new token arrived.
"""

from __future__ import annotations

import os
import platform
import threading
import time

import requests

from eid_auth import EmpowerIDAuth
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

OUTAGE = 8.0
RECOVERY = 20.0
THREADS = 4
TIMEOUT = 1.0


def scenario(fault: FaultSpec, seconds_left: float) -> dict[str, object]:
    with EmpowerIDTestServer(client_id="bench", client_secret="bench-secret") as server:
        grant = server.issue_grant()
        auth = EmpowerIDAuth(
            token_endpoint=server.token_endpoint,
            client_id="bench",
            client_secret="bench-secret",
            access_token=grant["access_token"],
            refresh_token=grant["refresh_token"],
            expires_at=time.time() + seconds_left,
            timeout=TIMEOUT,
        )
        if seconds_left <= 0:
            server.revoke_access_token(grant["access_token"])  # expired at the server too
        url = server.api_url("/api/bench")
        counts = {"ok": 0, "failed": 0, "ok_after": 0, "failed_after": 0}
        slowest = [0.0]
        lock = threading.Lock()
        phase = {"outage": True}
        stop_at = time.monotonic() + OUTAGE + RECOVERY

        def loop() -> None:
            with requests.Session() as session:
                session.auth = auth
                while time.monotonic() < stop_at:
                    sent = time.monotonic()
                    try:
                        ok = session.get(url, timeout=30).status_code == 200
                    except Exception:
                        ok = False
                    took = time.monotonic() - sent
                    key = ("ok" if ok else "failed") + ("" if phase["outage"] else "_after")
                    with lock:
                        counts[key] += 1
                        if phase["outage"]:
                            slowest[0] = max(slowest[0], took)
                    time.sleep(0.005)

        server.fail_next(fault, count=1_000_000)
        threads = [threading.Thread(target=loop) for _ in range(THREADS)]
        for t in threads:
            t.start()
        time.sleep(OUTAGE)
        server.clear_faults()
        phase["outage"] = False
        during = server.token_requests
        recovered_at = time.monotonic()
        first_new = None
        while time.monotonic() < stop_at:
            token = auth.token
            if (
                first_new is None
                and token is not None
                and token.access_token != grant["access_token"]
            ):
                first_new = time.monotonic() - recovered_at
            time.sleep(0.01)
        for t in threads:
            t.join()
        outage_requests = [
            r for r in server.api_requests if r.time - server.api_requests[0].time < OUTAGE
        ]
        old_kept = all(
            r.header("authorization") == f"Bearer {grant['access_token']}" for r in outage_requests
        )
        auth.close()
        return {
            **counts,
            "token_requests": during,
            "old_kept": old_kept if seconds_left > 0 else None,
            "first_new": first_new,
            "slowest": slowest[0],
        }


def main() -> None:
    print(f"# eid-auth token endpoint outages, {time.strftime('%Y-%m-%d')}")
    print(
        f"# {platform.python_implementation()} {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; {THREADS} threads "
        f"sending requests back to back; outage {OUTAGE:g} s, then {RECOVERY:g} s recovered; "
        f"timeout={TIMEOUT:g} s, max_retries=2, backoff_factor=0.5 (defaults but the timeout)"
    )
    print()
    print(
        "| token endpoint | token at the start | requests OK / failed during the outage "
        "| slowest request during the outage | still-valid token kept "
        "| token requests during the outage | OK / failed after "
        "| first new token after recovery |"
    )
    print("|---|---|---:|---:|---|---:|---:|---:|")
    cases = [
        ("503, Retry-After: 1", FaultSpec(status=503, retry_after=1)),
        (
            f"hangs past the {TIMEOUT:g} s timeout",
            FaultSpec(status=200, delay=TIMEOUT + 2, close_connection=True),
        ),
    ]
    for name, fault in cases:
        for label, left in (
            ("valid 50 s more (first half of the window)", 50.0),
            ("valid 25 s more (second half)", 25.0),
            ("expired", -1.0),
        ):
            r = scenario(fault, left)
            kept = "n/a" if r["old_kept"] is None else ("yes" if r["old_kept"] else "NO")
            first = "none" if r["first_new"] is None else f"{r['first_new']:.1f} s"
            print(
                f"| {name} | {label} | {r['ok']} / {r['failed']} | {r['slowest']:.2f} s "
                f"| {kept} | {r['token_requests']} "
                f"| {r['ok_after']} / {r['failed_after']} | {first} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
