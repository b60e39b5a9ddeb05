"""Pytest plugin providing the ``empowerid_server`` fixture.

It is registered automatically (``pytest11`` entry point ``eid_auth``) once ``eid-auth`` is
installed, so there is nothing to add to ``conftest.py``; in particular don't also list it in
``pytest_plugins``, which would register the module twice.

``empowerid_server`` is function-scoped: each test gets a fresh, started
`EmpowerIDTestServer` with default settings (client ``test-client`` /
``test-client-secret``, one-hour access tokens, rotation and reuse detection on), stopped
after the test.

To customise, write your own fixture that constructs the server::

    import pytest
    from eid_auth.testing import EmpowerIDTestServer

    @pytest.fixture
    def empowerid_server_with_key():
        with EmpowerIDTestServer(api_key="k-123", access_token_lifetime=60) as server:
            yield server

or override ``empowerid_server`` itself under the same name in your ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eid_auth.testing._server import EmpowerIDTestServer

__all__ = ["empowerid_server"]


@pytest.fixture
def empowerid_server() -> Iterator[EmpowerIDTestServer]:
    """A started `EmpowerIDTestServer` with default settings, stopped after the test.

    Example:
        >>> def test_whoami(empowerid_server):  # doctest: +SKIP
        ...     tokens = empowerid_server.issue_grant()
        ...     url = empowerid_server.api_url("/api/whoami")
        ...     auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        ...     assert requests.get(url, headers=auth).json()["id"] == tokens["id"]
    """
    with EmpowerIDTestServer() as server:
        yield server
