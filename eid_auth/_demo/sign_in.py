"""Parts 1 and 2 of the demo: a person signs in, on another device and then in a
browser, and the demo plays the person.

Each part ends the same way: who signed in (userinfo's ``username``), the
token's fingerprints and expiry, and one API request through
``EmpowerIDAuth(client=eid, token=token)``.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import requests

from .._auth import EmpowerIDAuth
from .._client import EmpowerIDClient
from .narration import Say, fingerprint

if TYPE_CHECKING:
    from .._device_code import DeviceAuthorization
    from .._token import Token
    from ..testing import EmpowerIDTestServer

__all__ = ["browser_sign_in", "device_sign_in"]

# The device polls this often (the server states it; EmpowerID's default is 5 s).
DEVICE_INTERVAL = 1.0
# How long the person takes to open the page and enter the code.
PERSON_PAUSE = 2.0
# Bounds every wait of a sign-in, should a part of the demo break.
SIGN_IN_TIMEOUT = 60.0


def device_sign_in(server: EmpowerIDTestServer, say: Say) -> None:
    """Part 1: ``login_with_device``; the person approves the code from a thread."""
    say(
        "1. a person signs in on another device (device authorization, RFC 8628): "
        "the device shows where to go and a code, and polls until the person has signed in"
    )
    server.device_interval = DEVICE_INTERVAL
    person = server.test_user.username

    def approve_later(user_code: str) -> None:
        time.sleep(PERSON_PAUSE)
        say(f"  (the person opens the page on a phone, enters {user_code}, signs in as {person})")
        server.approve_device(user_code)

    def prompt(device: DeviceAuthorization) -> None:
        # The user code is no secret: the person must read it. The device code is.
        say(f"  prompt: open {device.verification_uri} and enter the code {device.user_code}")
        threading.Thread(target=approve_later, args=(device.user_code,), daemon=True).start()

    with _client(server) as eid:
        polls = server.token_requests
        token = eid.login_with_device(
            scope="openid profile", prompt=prompt, timeout=SIGN_IN_TIMEOUT
        )
        say(
            f"  the device polled the token endpoint {server.token_requests - polls} time(s), "
            f"every {DEVICE_INTERVAL:g}s (authorization_pending until the person signed in)"
        )
        _signed_in(server, eid, token, say)


def browser_sign_in(server: EmpowerIDTestServer, say: Say) -> None:
    """Part 2: ``login_in_browser`` with the demo's own browser (``open_browser``)."""
    say(
        "2. a person signs in through a browser (authorization code with PKCE, "
        "loopback redirect): the demo's browser does over HTTP what a person's would"
    )
    # Another person than part 1's, so that userinfo shows whose sign-in it was.
    person = server.add_user(
        "asmith", secrets.token_urlsafe(16), first_name="Alex", last_name="Smith"
    )
    server.sign_in_username = person.username  # who the sign-in page signs in
    with _client(server) as eid:
        token = eid.login_in_browser(
            scope="openid profile", open_browser=partial(_browser, say), timeout=SIGN_IN_TIMEOUT
        )
        _signed_in(server, eid, token, say)


def _browser(say: Say, url: str) -> bool:
    """What a person's browser does when the sign-in needs no typing: GET the
    authorization URL, then the address it redirects to (the loopback listener
    of ``login_in_browser``). Addresses are printed without their query, which
    holds the code."""
    with httpx.Client(timeout=30) as browser:  # follows no redirect by itself
        answer = browser.get(url)
        location = answer.headers.get("Location", "")
        say(
            f"  browser: GET {_without_query(url)} -> {answer.status_code} "
            f"(the server's sign-in page, for {_without_query(location) or 'nowhere'})"
        )
        if answer.status_code != 302 or not location:
            return False  # login_in_browser then prints the address for a person
        page = browser.get(location)
        text = re.search(r"<p>(.*?)</p>", page.text)
        say(
            f"  browser: GET {_without_query(location)} -> {page.status_code} "
            f"({text.group(1) if text else 'no page'})"
        )
    return True


def _signed_in(server: EmpowerIDTestServer, eid: EmpowerIDClient, token: Token, say: Say) -> None:
    """What both sign-ins end with: who, which token, and a request made with it."""
    who = eid.userinfo(token.access_token)["username"]
    expires_in = token.expires_in()
    say(
        f"  signed in: {who} (userinfo); access token {fingerprint(token.access_token)}, "
        f"refresh token {fingerprint(token.refresh_token)}, "
        f"ID token {fingerprint(token.id_token)} (validated), "
        f"expires in {'-' if expires_in is None else f'{expires_in:.1f}s'}"
    )
    with EmpowerIDAuth(client=eid, token=token) as auth, requests.Session() as session:
        session.auth = auth
        status = session.get(server.api_url("/api/whoami"), timeout=10).status_code
    say(f"  EmpowerIDAuth(client=eid, token=token): GET /api/whoami -> {status}")


def _client(server: EmpowerIDTestServer) -> EmpowerIDClient:
    return EmpowerIDClient(
        server=server.url, client_id=server.client_id, client_secret=server.client_secret
    )


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else url
