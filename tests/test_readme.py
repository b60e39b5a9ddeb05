"""Every Python example in the README runs as written, on a first run.

Each example runs against a fresh loopback EmpowerID server that knows the README's
placeholders (client ``my-app``, secret ``...``, refresh token ``...``, the person
``jdoe``, the JWT issuer ``my-service``). Only addresses are substituted:
``https://eid.example.com`` becomes the loopback server, the Redis URL a real
loopback redis-server, ``/var/lib/`` a temporary directory. The person at the
browser is ``tests/fake_browser.py`` (through ``BROWSER``), and the person at the
device page approves at once. An example that imports nothing from eid_auth (it
uses the ``auth`` of the one before) continues the one before it. An example that
runs on a command-line profile (``from_profile()``) runs after the README's own
``eid-auth login`` line, run as written in a subprocess.
"""

from __future__ import annotations

import ast
import asyncio
import re
import shlex
import subprocess
import sys
import webbrowser
from pathlib import Path
from typing import Any

import pytest
import requests

from eid_auth import EmpowerIDAuth
from eid_auth.testing import EmpowerIDTestServer

README = Path(__file__).resolve().parent.parent / "README.md"
PLACEHOLDER = "..."
EXAMPLE_SERVER = "https://eid.example.com"
EXAMPLE_REDIS = "rediss://:password@redis.internal:6380/0"
PYTEST_EXAMPLE = "def test_my_client(empowerid_server)"
FAKE_BROWSER = Path(__file__).resolve().parent / "fake_browser.py"
JWT_ISSUER, JWT_SECRET = "my-service", "a-secret-shared-with-eid-of-32-bytes"


def _examples() -> list[tuple[int, str]]:
    text = README.read_text()
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(1))
        for m in re.finditer(r"```python\n(.*?)```", text, re.DOTALL)
    ]


def _groups() -> list[list[tuple[int, str]]]:
    """Examples that build an auth start a group; those that only use one join it."""
    groups: list[list[tuple[int, str]]] = []
    for line, code in _examples():
        if PYTEST_EXAMPLE in code:
            continue  # a test function: run by test_readme_pytest_example
        if "from eid_auth" in code or not groups:
            groups.append([])
        groups[-1].append((line, code))
    return groups


def _login_command() -> list[str]:
    """The README's ``eid-auth login`` command line."""
    (line,) = re.findall(r"^eid-auth login .*$", README.read_text(), re.MULTILINE)
    return shlex.split(line)


def _run(code: str, line: int, namespace: dict[str, Any]) -> None:
    compiled = compile(
        "\n" * (line) + code, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    result = eval(compiled, namespace)  # noqa: S307 - the README's own examples
    if asyncio.iscoroutine(result):  # top-level await, as in an async REPL
        asyncio.run(result)


@pytest.mark.parametrize("group", _groups(), ids=lambda group: f"README.md line {group[0][0]}")
def test_readme_example_runs_as_written(
    group: list[tuple[int, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    if any(EXAMPLE_REDIS in code for _, code in group):
        redis_server_url = request.getfixturevalue("redis_server_url")
    # The person at the browser; webbrowser reads BROWSER once per process.
    browser = f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_BROWSER))} %s"
    monkeypatch.setenv("BROWSER", browser)
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})
    with EmpowerIDTestServer(client_id="my-app", client_secret=PLACEHOLDER) as server:
        server.issue_grant(refresh_token=PLACEHOLDER)
        server.trust_assertion_issuer(JWT_ISSUER, JWT_SECRET)
        # The person at the device page approves at once.
        server.device_interval = 0.1
        server.on_device_authorization = server.approve_device
        # The deployment example reads its settings from the environment.
        monkeypatch.setenv("EID_SERVER", server.url)
        monkeypatch.setenv("EID_CLIENT_ID", "my-app")
        monkeypatch.setenv("EID_CLIENT_SECRET", PLACEHOLDER)
        monkeypatch.setenv("EID_REFRESH_TOKEN", PLACEHOLDER)
        monkeypatch.setenv("EID_TOKEN_FILE", str(tmp_path / "eid-token.json"))
        if any("from_profile(" in code for _, code in group):
            # Signed in from the command line first, as the README says.
            monkeypatch.setenv("EID_AUTH_CONFIG_DIR", str(tmp_path / "config"))
            monkeypatch.setenv("EID_AUTH_DATA_DIR", str(tmp_path / "data"))
            monkeypatch.delenv("EID_PROFILE", raising=False)
            command = [a.replace(EXAMPLE_SERVER, server.url) for a in _login_command()]
            login = subprocess.run(
                [sys.executable, "-m", "eid_auth", *command[1:]],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert login.returncode == 0, login.stderr
        namespace: dict[str, Any] = {"__name__": "readme_example"}
        for line, code in group:
            code = code.replace(EXAMPLE_SERVER, server.url)
            if EXAMPLE_REDIS in code:
                code = code.replace(EXAMPLE_REDIS, redis_server_url)
            code = code.replace('"/var/lib/', f'"{tmp_path}/var/lib/')
            _run(code, line, namespace)
        # What the example prints is what its comments say it prints.
        printed = capsys.readouterr().out.splitlines()
        said = [
            re.search(r"#\s*(.*)$", line)
            for _, code in group
            for line in code.splitlines()
            if line.startswith("print(")
        ]
        assert len(printed) == len(said)
        for out, comment in zip(printed, said, strict=True):
            if comment is not None:
                assert out == comment.group(1)
        auth = namespace.get("auth")
        if isinstance(auth, EmpowerIDAuth):
            try:
                # Whatever the example did, its auth now works against the server.
                response = requests.get(server.api_url("/api/whoami"), auth=auth, timeout=30)
                assert response.status_code == 200
            finally:
                auth.close()
                auth.store.clear()  # a Redis key outlives the test
        else:
            assert auth is None  # an example of the client's own calls
        assert sum(server.grants_served.values()) >= 1
        assert server.reuse_detected == 0


def test_readme_pytest_example(server: EmpowerIDTestServer) -> None:
    (example,) = [code for _, code in _examples() if PYTEST_EXAMPLE in code]
    namespace: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102
    test = namespace["test_my_client"]
    assert callable(test)
    test(server)
    assert server.refresh_grants == 1
