"""Which HTTP client libraries eid_auth loads, and what it says when one is missing.

``import eid_auth`` loads none of them: a program pays only for the library it
uses. A program on httpx2 alone never loads requests or httpx, across refreshes
too, and works where they are not installed at all. A library that is missing
is named in the error, with what to install. One ``EmpowerIDAuth`` passes the
``isinstance`` check of every client that makes one, whenever that client's
library was imported.

Each check runs in a fresh interpreter, as this test session has loaded
everything already. "Not installed" is ``sys.modules[name] = None``, which makes
``import name`` fail as it does for a library that is not there; or, where
eid_auth would also look for the library on the path, an import hook that
refuses it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from eid_auth.testing import EmpowerIDTestServer

from .conftest import CLIENT_ID, CLIENT_SECRET

CLIENT_LIBRARIES = ("requests", "httpx", "httpx2", "aiohttp")
# Loaded on first use only: the HTTP libraries and what the flows need from
# around them (anyio for async waits, authlib for nothing a request needs).
LAZY = (*CLIENT_LIBRARIES, "httpcore", "httpcore2", "anyio", "authlib", "urllib3")


# An import hook that refuses the libraries named in BLOCKED, as if not installed.
_REFUSE = """
class _Refuse:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Refuse)
"""


def _run(
    code: str, *, blocked: tuple[str, ...] = (), hook: bool = False, **values: object
) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter with ``blocked`` libraries made
    impossible to import (by ``sys.modules[name] = None``, or by an import hook);
    ``values`` are its globals. Its ``result`` dict comes back, with ``loaded``:
    which of ``LAZY`` it had imported by the end."""
    script = "\n".join(
        [
            "import json, sys",
            f"BLOCKED = {blocked!r}",
            _REFUSE if hook else "for _name in BLOCKED:\n    sys.modules[_name] = None",
            *(f"{name} = {value!r}" for name, value in values.items()),
            "result = {}",
            textwrap.dedent(code),
            f"result['loaded'] = sorted(m for m in {LAZY!r} if sys.modules.get(m) is not None)",
            "print(json.dumps(result))",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


@pytest.mark.parametrize(
    "statement",
    ["import eid_auth", "from eid_auth import EmpowerIDAuth", "import eid_auth.stores"],
)
def test_importing_eid_auth_loads_no_http_library(statement: str) -> None:
    assert _run(statement)["loaded"] == []


def test_making_an_auth_loads_no_http_library() -> None:
    code = """
    from eid_auth import EmpowerIDAuth
    auth = EmpowerIDAuth(
        token_endpoint="https://eid.example.com/oauth/v2/token",
        client_id="c", client_secret="s", refresh_token="rt", api_key="k",
    )
    result["repr"] = repr(auth)
    auth.close()
    """
    assert _run(code)["loaded"] == []


_HTTPX2_ALONE = """
import asyncio
import httpx2
from eid_auth import EmpowerIDAuth

auth = EmpowerIDAuth(
    token_endpoint=token_endpoint, client_id=client_id, client_secret=client_secret,
    refresh_token=refresh_token,
)
answers = []
with httpx2.Client(auth=auth, timeout=10) as client:
    for _ in range(3):  # the first refresh; a 401, refresh, re-send; as is
        response = client.get(url)
        answers.append([response.status_code, [h.status_code for h in response.history]])

async def main():
    async with httpx2.AsyncClient(auth=auth, timeout=10) as client:
        response = await client.get(url)
        answers.append([response.status_code, [h.status_code for h in response.history]])
    await auth.arefresh()

asyncio.run(main())
auth.refresh()  # no request chose a library: the one loaded, httpx2
auth.close()
result["answers"] = answers
"""


@pytest.mark.parametrize(
    "blocked", [(), ("requests", "httpx")], ids=["others-installed", "others-not-installed"]
)
def test_a_program_on_httpx2_alone_loads_neither_requests_nor_httpx(
    server: EmpowerIDTestServer, blocked: tuple[str, ...]
) -> None:
    calls: list[int] = []

    def expire_before_the_second_request() -> None:
        calls.append(1)
        if len(calls) == 2:
            server.expire_access_tokens()

    server.on_api_request = expire_before_the_second_request
    result = _run(
        _HTTPX2_ALONE,
        blocked=blocked,
        hook=True,
        token_endpoint=server.token_endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=server.issue_grant()["refresh_token"],
        url=server.api_url("/api/x"),
    )
    assert result["answers"] == [[200, []], [200, [401]], [200, []], [200, []]]
    # The first request, the 401, the explicit arefresh() and refresh().
    assert server.grants_served == {"refresh_token": 4}
    loaded = result["loaded"]
    assert isinstance(loaded, list)
    assert {"httpx2", "httpcore2"} <= set(loaded)
    assert not {"requests", "httpx", "httpcore", "aiohttp", "urllib3"} & set(loaded)


@pytest.mark.parametrize(
    ("library", "install"),
    [
        ("requests", "pip install requests"),
        ("httpx", "pip install httpx"),
        ("httpx2", "pip install 'eid-auth[httpx2]'"),
        ("aiohttp", "pip install 'eid-auth[aiohttp]'"),
    ],
)
def test_a_missing_library_is_named_with_what_to_install(library: str, install: str) -> None:
    code = """
    from eid_auth import ConfigurationError
    from eid_auth._libraries import require
    try:
        require(library)
    except ConfigurationError as exc:
        result["error"] = str(exc)
    """
    result = _run(code, blocked=(library,), library=library)
    assert result["error"] == f"{library} is not installed: {install}"


def test_a_refresh_with_no_http_library_installed_says_what_to_install() -> None:
    code = """
    from eid_auth import ConfigurationError, EmpowerIDAuth
    auth = EmpowerIDAuth(
        token_endpoint="http://127.0.0.1:9/oauth/v2/token",
        client_id="c", client_secret="s", refresh_token="rt",
    )
    try:
        auth.refresh()
    except ConfigurationError as exc:
        result["error"] = str(exc)
    """
    result = _run(code, blocked=CLIENT_LIBRARIES)
    assert result["error"] == "httpx is not installed: pip install httpx"


def test_one_auth_passes_every_clients_isinstance_check_whenever_its_library_loads() -> None:
    code = """
    from eid_auth import EmpowerIDAuth
    auth = EmpowerIDAuth(
        token_endpoint="https://eid.example.com/oauth/v2/token",
        client_id="c", client_secret="s", refresh_token="rt",
    )
    import httpx2  # after the auth was made
    result["httpx2"] = isinstance(auth, httpx2.Auth)
    result["before_others"] = sorted(m for m in ("requests", "httpx") if m in sys.modules)
    import httpx, requests
    result["httpx"] = isinstance(auth, httpx.Auth)
    result["requests"] = isinstance(auth, requests.auth.AuthBase)
    result["still_httpx2"] = isinstance(auth, httpx2.Auth)
    result["type"] = type(auth).__name__
    result["not_a_str"] = isinstance(auth, str)
    httpx2.Client(auth=auth).close()  # the clients' own checks accept it
    httpx.Client(auth=auth).close()
    auth.close()
    """
    result = _run(code)
    assert result["httpx2"] is True
    assert result["before_others"] == []
    assert (result["httpx"], result["requests"], result["still_httpx2"]) == (True, True, True)
    assert result["type"] == "EmpowerIDAuth"
    assert result["not_a_str"] is False


_ALIASED = """
import httpx2
httpx2.alias_httpx()  # an application moving to httpx2: its dependencies' httpx is httpx2
import httpx
from eid_auth import EmpowerIDAuth

auth = EmpowerIDAuth(
    token_endpoint=token_endpoint, client_id=client_id, client_secret=client_secret,
    refresh_token=refresh_token,
)
with httpx.Client(auth=auth, timeout=10) as client:
    result["status"] = client.get(url).status_code
result["same"] = httpx is httpx2
auth.close()
"""


def test_an_application_that_aliases_httpx_to_httpx2_can_use_the_auth(
    server: EmpowerIDTestServer,
) -> None:
    # httpx2.alias_httpx() puts httpx2 in sys.modules["httpx"]: the auth then
    # passes one Auth class's check under two names.
    httpx2 = pytest.importorskip("httpx2")
    if not hasattr(httpx2, "alias_httpx"):
        pytest.skip(f"httpx2 {httpx2.__version__} has no alias_httpx() (later releases do)")
    result = _run(
        _ALIASED,
        token_endpoint=server.token_endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=server.issue_grant()["refresh_token"],
        url=server.api_url("/api/x"),
    )
    assert (result["same"], result["status"]) == (True, 200)
    assert server.refresh_grants == 1


_SYNC_PROGRAM = """
import importlib
library = importlib.import_module(library_name)
from eid_auth import EmpowerIDAuth

auth = EmpowerIDAuth(
    token_endpoint=token_endpoint, client_id=client_id, client_secret=client_secret,
    refresh_token=refresh_token,
)
if library_name == "requests":
    result["status"] = library.get(url, auth=auth, timeout=10).status_code
else:
    with library.Client(auth=auth, timeout=10) as client:
        result["status"] = client.get(url).status_code
auth.refresh()
auth.close()
result["asyncio"] = "asyncio" in sys.modules
"""


@pytest.mark.parametrize("library", ["requests", "httpx", "httpx2"])
def test_a_synchronous_program_refreshes_without_loading_asyncio(
    server: EmpowerIDTestServer, library: str
) -> None:
    # Only aiohttp's token requests need an event loop; the others' do not
    # pay for importing asyncio (eid-auth token at expiry, a serverless start).
    result = _run(
        _SYNC_PROGRAM,
        library_name=library,
        token_endpoint=server.token_endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=server.issue_grant()["refresh_token"],
        url=server.api_url("/api/x"),
    )
    assert (result["status"], result["asyncio"]) == (200, False)
    assert server.refresh_grants == 2
