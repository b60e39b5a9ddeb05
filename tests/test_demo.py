"""``python -m eid_auth.demo``, the README's first command, run as a user runs it: its
parts come in order, each shows what it promises, and nothing it prints is a secret.

The demo's server lives in the demo's process, so its ``issued_secrets`` are out of
reach: the output is searched for anything shaped like what the test server issues
(``at_``/``rt_``/``ac_``/``dc_`` followed by a random string, JWTs) and for its fixed
secrets (the client secret, the test user's password).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from eid_auth.testing import EmpowerIDTestServer

# The parts' headings, in the order the demo must print them.
PARTS = [
    "1. a person signs in on another device",
    "2. a person signs in through a browser",
    "3. a service's client credentials token, shared by 4 processes",
    "4. requests, httpx and httpx async share one auth object",
    "5. auth.refresh() forces a refresh",
    "6. the token expires early again",
    "7. 4 processes x 3 threads share one FileTokenStore",
    "8. the command line",
    "done:",
]

# What the test server's secrets look like: a prefix and secrets.token_urlsafe(32),
# or a JWT (ID tokens, signed assertions).
ISSUED = re.compile(r"\b(?:at|rt|ac|dc)_[A-Za-z0-9_-]{16,}|\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eid_auth.demo"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def part(output: str, number: int) -> str:
    """The lines of one part, heading included."""
    start = output.index(PARTS[number - 1])
    return output[start : output.index(PARTS[number], start)]


@pytest.mark.slow
def test_demo_runs_its_parts_in_order(demo: subprocess.CompletedProcess[str]) -> None:
    assert demo.returncode == 0, demo.stderr[-3000:]
    positions = [demo.stdout.find(heading) for heading in PARTS]
    assert -1 not in positions, [h for h, p in zip(PARTS, positions, strict=True) if p == -1]
    assert positions == sorted(positions)


@pytest.mark.slow
def test_demo_signs_in_on_a_device_and_in_a_browser(
    demo: subprocess.CompletedProcess[str],
) -> None:
    device = part(demo.stdout, 1)
    # The prompt: where to go and the user code, which the person must read.
    prompt = re.search(
        r"prompt: open (http://127\.0\.0\.1:\d+/\S+) and enter the code (\S+)", device
    )
    assert prompt, device
    assert re.fullmatch(r"[A-Z]{4}-[A-Z]{4}", prompt.group(2))
    assert f"enters {prompt.group(2)}, signs in as jdoe" in device
    for person, text in (("jdoe", device), ("asmith", part(demo.stdout, 2))):
        assert re.search(
            rf"signed in: {person} \(userinfo\); access token [0-9a-f]{{8}}, "
            r"refresh token [0-9a-f]{8}, ID token [0-9a-f]{8} \(validated\), "
            r"expires in \d\.\ds",
            text,
        ), text
        assert "EmpowerIDAuth(client=eid, token=token): GET /api/whoami -> 200" in text
    browser = part(demo.stdout, 2)
    assert re.search(r"browser: GET http://127\.0\.0\.1:\d+/oauth/v2/ui/authorize -> 302", browser)
    assert re.search(
        r"browser: GET http://127\.0\.0\.1:\d+/callback -> 200 \(You are signed in", browser
    )


@pytest.mark.slow
def test_demo_shares_client_credentials_with_one_grant_per_expiry(
    demo: subprocess.CompletedProcess[str],
) -> None:
    fleet = part(demo.stdout, 3)
    found = re.search(
        r"(\d+) requests succeeded, (\d+) failed; (\d+) client_credentials grant\(s\) between "
        r"the 4 processes = 1 first token \+ (\d+) expiries "
        r"\(one grant per expiry, the grants (\d+\.\d)-(\d+\.\d)s apart\)",
        fleet,
    )
    assert found, fleet
    ok, failed, grants, expiries = (int(found.group(i)) for i in range(1, 5))
    assert ok > 0
    assert failed == 0
    # 9 s of 4 s tokens renewed half-way through their life: about 4 expiries. Four
    # processes fetching their own tokens would need about 4 grants per expiry.
    assert 2 <= expiries <= 8
    assert grants == 1 + expiries
    # Renewed half-way (2 s) plus jitter; well apart, never two for one token.
    assert float(found.group(5)) >= 1.0


@pytest.mark.slow
def test_demo_prints_no_secret(demo: subprocess.CompletedProcess[str]) -> None:
    output = demo.stdout + demo.stderr
    # Counts, not the strings: a failure must not print what leaked.
    leaked = len(ISSUED.findall(output))
    assert leaked == 0
    server = EmpowerIDTestServer()  # the demo's settings; not started
    assert server.client_secret
    for secret in ("Bearer ", server.client_secret, server.test_user.password):
        assert output.count(secret) == 0, f"{secret[:4]}... printed"
    # The browser's addresses are shown without their query (code, state, challenge).
    assert output.count("code=") == 0
    assert output.count("code_verifier") == 0
