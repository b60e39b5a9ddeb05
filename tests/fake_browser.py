"""A browser for tests, to be named in ``BROWSER``: ``python tests/fake_browser.py %s``.

It does what a person's browser does in a sign-in that needs no typing: GET the
authorization URL without following its redirect, then GET the ``Location`` the
server sent back (the loopback listener of ``login_in_browser``). With
``FAKE_BROWSER_PAGE`` set, the last page is written to that file. Exits 0 once both
answered, 2 when the server did not redirect.
"""

from __future__ import annotations

import http.client
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit


def get(url: str) -> tuple[int, str | None, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = connection.getresponse()
        return response.status, response.getheader("Location"), response.read()
    finally:
        connection.close()


def main(url: str) -> int:
    status, location, _ = get(url)
    if status != 302 or not location:
        return 2
    _, _, page = get(location)
    target = os.environ.get("FAKE_BROWSER_PAGE")
    if target:
        Path(target).write_bytes(page)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
