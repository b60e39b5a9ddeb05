"""A tour of eid_auth on its embedded EmpowerID test server: ``python -m eid_auth.demo``.

It starts the loopback server with 4-second access tokens and rotating refresh
tokens, then, in order:

1. a person signs in on another device (``login_with_device``): the demo shows
   the prompt (the address and the user code) and, two seconds later, approves
   the code as the person would;
2. a person signs in through a browser (``login_in_browser``): the demo's own
   browser does over HTTP what a person's would;
3. a service's client credentials token is shared by 4 processes through one
   ``FileTokenStore``: one grant per expiry, whichever process meets it;
4. requests, httpx and httpx async share one auth object across several expiries;
5. a forced 401 is answered with one refresh and one re-send;
6. 50 threads and 200 tasks meet a revoked token at once: one refresh grant;
7. 4 processes share one token file with the refresh grant;
8. the command line: ``eid-auth login`` in a browser the demo plays, then
   ``eid-auth token`` from the stored token, and 5 ``eid-auth token`` processes
   meeting an expired token with one refresh grant between them.

After each sign-in it prints who signed in, the token's expiry and one API
request's status. Tokens are printed as fingerprints (8 hex digits of their
SHA-256), never whole; no authorization code, device code, verifier or secret
is printed (the user code is: the person must read it). About 45 seconds.
The parts are in ``eid_auth._demo``, one module each.
"""

from __future__ import annotations

import argparse

from ._demo import LIFETIME
from ._demo.cli import command_line
from ._demo.fleet import client_credentials_fleet
from ._demo.narration import Say
from ._demo.sign_in import browser_sign_in, device_sign_in
from ._demo.tour import tour
from .testing import EmpowerIDTestServer


def main() -> None:
    """Run the demo's eight parts on one test server; takes about 45 seconds."""
    say = Say()
    with EmpowerIDTestServer(access_token_lifetime=LIFETIME) as server:
        say(
            f"EmpowerID test server at {server.url} "
            f"(tokens live {LIFETIME}s, refresh tokens rotate)"
        )
        device_sign_in(server, say)
        browser_sign_in(server, say)
        client_credentials_fleet(server, say)
        tour(server, say)
        command_line(server, say, number=8)
        say(
            f"done: {server.refresh_grants} refresh grants in all, "
            f"{server.reuse_detected} reuse detected"
        )


def cli(argv: list[str] | None = None) -> None:
    """``python -m eid_auth.demo [--help]``: the demo takes no other argument."""
    parser = argparse.ArgumentParser(
        prog="python -m eid_auth.demo",
        description=(
            "A tour of eid_auth on its embedded EmpowerID test server (loopback only, "
            "about 45 seconds): a device sign-in and a browser sign-in that the demo "
            "completes itself, as a person would; a client credentials token shared by "
            "4 processes through one token file, one grant per expiry; then requests, "
            "httpx and httpx async sharing one auth across several token expiries, a "
            "forced 401, 250 concurrent requests meeting a revoked token with one "
            "refresh grant, 4 processes sharing one token file with the refresh "
            "grant, and the eid-auth command line (a browser login, eid-auth token, and "
            "5 eid-auth token processes at expiry with one refresh grant). It prints "
            "tokens as fingerprints, never whole, and no secret: of the "
            "codes, only the user code a person must read."
        ),
    )
    parser.parse_args(argv)
    main()


if __name__ == "__main__":
    cli()
