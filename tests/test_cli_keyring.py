"""The profile's token and client secret in the OS keyring (``KeyringTokenStore``),
through the console script, with a file-backed keyring backend shared by the
processes (``tests/keyring_backend.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eid_auth.testing import EmpowerIDTestServer

from .conftest import CLIENT_ID, CLIENT_SECRET
from .test_cli import CLI, SECRET_VARIABLE, api_status, base_env, login_args

pytest.importorskip("keyring")


@pytest.fixture
def keyring_cli(tmp_path: Path) -> CLI:
    env = base_env(tmp_path)
    env["PYTHON_KEYRING_BACKEND"] = "tests.keyring_backend.FileKeyring"
    env["TEST_KEYRING_FILE"] = str(tmp_path / "keyring.json")
    return CLI(env, tmp_path / "config", tmp_path / "data")


def test_token_and_client_secret_in_the_keyring(
    keyring_cli: CLI, server: EmpowerIDTestServer, tmp_path: Path
) -> None:
    cli = keyring_cli
    done = cli(
        *login_args(server),
        "--client-secret-keyring",
        "--token-store",
        "keyring",
    )
    assert done.returncode == 0, done.stderr
    config = (tmp_path / "config" / "config.toml").read_text()
    assert "client_secret_keyring = true" in config
    assert 'token_store = "keyring"' in config
    assert SECRET_VARIABLE not in config  # the secret was copied; the variable is not needed
    assert not cli.token_file.exists()
    entries = json.loads((tmp_path / "keyring.json").read_text())
    assert entries["eid-auth\0default/client_secret"] == CLIENT_SECRET
    record = json.loads(entries["eid-auth\0default/token"])
    assert record["client_id"] == CLIENT_ID

    # Without the variable: the secret comes from the keyring (status asks tokeninfo).
    status = cli("status", env={SECRET_VARIABLE: ""})
    assert status.returncode == 0, status.stderr
    assert "accepted by server: yes" in status.stdout
    token = cli("token", "--force-refresh", env={SECRET_VARIABLE: ""})
    assert token.returncode == 0, token.stderr
    assert api_status(server, token.stdout.strip()) == 200
    assert server.grants_served["refresh_token"] == 1
    stored = json.loads(
        json.loads((tmp_path / "keyring.json").read_text())["eid-auth\0default/token"]
    )
    assert stored["token"]["access_token"] == token.stdout.strip()

    logout = cli("logout", env={SECRET_VARIABLE: ""})
    assert logout.returncode == 0, logout.stderr
    assert "eid-auth\0default/token" not in json.loads((tmp_path / "keyring.json").read_text())
    assert cli("token").returncode == 3


def test_moving_the_token_to_the_keyring_leaves_no_token_file(
    keyring_cli: CLI, server: EmpowerIDTestServer, tmp_path: Path
) -> None:
    # A person who signed in with the default file store asks for the keyring:
    # the refresh token must not stay behind in clear in the old token file.
    cli = keyring_cli
    cli.login(server)
    assert cli.token_file.exists()
    moved = cli("login", "--token-store", "keyring")
    assert moved.returncode == 0, moved.stderr
    assert not cli.token_file.exists()
    assert "eid-auth\0default/token" in json.loads((tmp_path / "keyring.json").read_text())
    token = cli("token")
    assert token.returncode == 0, token.stderr
    assert api_status(server, token.stdout.strip()) == 200

    # And back: the keyring entry goes once the token is in the file again.
    back = cli("login", "--token-store", "file")
    assert back.returncode == 0, back.stderr
    assert cli.token_file.exists()
    assert "eid-auth\0default/token" not in json.loads((tmp_path / "keyring.json").read_text())
