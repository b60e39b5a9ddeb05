"""Test helpers: an in-process fake of EmpowerID's OAuth server and a protected API.

`EmpowerIDTestServer` is a real HTTP server on an ephemeral port of 127.0.0.1, run in a
background thread, so your client code talks real HTTP (keep-alive, chunked bodies,
timeouts) without mocks. Besides the standard library it uses only joserfc, to sign ID
tokens and check signed assertions, loaded when first needed.

Example:
    >>> import requests
    >>> from eid_auth.testing import EmpowerIDTestServer, FaultSpec
    >>> with EmpowerIDTestServer() as server:  # doctest: +SKIP
    ...     tokens = server.issue_grant(scope="openid profile")
    ...     server.fail_next(FaultSpec(status=503, retry_after=1))
    ...     form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
    ...             "client_id": "test-client", "client_secret": "test-client-secret"}
    ...     assert requests.post(server.token_endpoint, data=form).status_code == 503
    ...     fresh = requests.post(server.token_endpoint, data=form).json()
    ...     requests.get(server.api_url("/api/whoami"),
    ...                  headers={"Authorization": f"Bearer {fresh['access_token']}"}).json()["ok"]
    True

With pytest, the ``empowerid_server`` fixture (from the plugin installed with this package)
yields a started server with default settings; see `eid_auth.testing.pytest_plugin`.

Where things are: ``_server.py`` is the public `EmpowerIDTestServer`; ``endpoints/`` has one
module per endpoint it serves (``token``, ``authorize``, ``device_authorization``,
``tokeninfo``, ``tokenrevoke``, ``userinfo``, ``jwks``, ``discovery``, ``api``) and the
routing table; ``grants/`` one module per grant of the token endpoint (``refresh_token``,
``authorization_code``, ``device_code``, ``client_credentials``, ``password``,
``jwt_bearer``, ``token_exchange``) and the table of grant types; ``_client_auth.py``,
``_bearer.py`` and ``_id_token.py`` the pieces several endpoints share; ``_state.py`` the
grants, tokens, counters and logs; ``_faults.py`` the injected faults; ``_messages.py``
requests and answers; ``_http.py`` the HTTP server.
"""

from eid_auth.testing._faults import FaultSpec
from eid_auth.testing._messages import RecordedRequest
from eid_auth.testing._server import EmpowerIDTestServer

__all__ = ["EmpowerIDTestServer", "FaultSpec", "RecordedRequest"]
