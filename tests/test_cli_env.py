"""``EmpowerIDAuth.from_env()`` and ``from_profile()`` in a program: the ``EID_*``
variables, the errors that name what is missing, and a profile's shared token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from eid_auth import ConfigurationError, EmpowerIDAuth, Token
from eid_auth._profiles import Profile, load_profiles, save_profile
from eid_auth.stores import FileTokenStore, StoredToken
from eid_auth.testing import EmpowerIDTestServer

from .conftest import CLIENT_ID, CLIENT_SECRET


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("EID_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("EID_AUTH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("EID_AUTH_DATA_DIR", str(tmp_path / "data"))


def whoami(server: EmpowerIDTestServer, auth: EmpowerIDAuth) -> dict[str, object]:
    answer = httpx.get(server.api_url("/api/whoami"), auth=auth, timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_from_env_names_every_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError) as caught:
        EmpowerIDAuth.from_env()
    message = str(caught.value)
    for name in ("EID_SERVER", "EID_CLIENT_ID", "EID_REFRESH_TOKEN", "EID_PROFILE"):
        assert name in message

    monkeypatch.setenv("EID_GRANT", "password")
    monkeypatch.setenv("EID_SERVER", "https://eid.example.com")
    monkeypatch.setenv("EID_CLIENT_SECRET", "a-secret-not-to-show")
    with pytest.raises(ConfigurationError) as caught:
        EmpowerIDAuth.from_env()
    message = str(caught.value)
    assert "missing: EID_CLIENT_ID, EID_USERNAME, EID_PASSWORD" in message
    assert "EID_SERVER" not in message.split("(or set")[0]
    assert "a-secret-not-to-show" not in message

    monkeypatch.setenv("EID_GRANT", "implicit")
    monkeypatch.setenv("EID_TOKEN_ENDPOINT", "https://eid.example.com/oauth/v2/token")
    with pytest.raises(ConfigurationError, match="EID_GRANT must be one of") as caught:
        EmpowerIDAuth.from_env()
    assert "not both" in str(caught.value)


def test_from_env_client_credentials(
    server: EmpowerIDTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EID_SERVER", server.url)
    monkeypatch.setenv("EID_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("EID_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("EID_GRANT", "client_credentials")
    monkeypatch.setenv("EID_SCOPE", "api")
    with EmpowerIDAuth.from_env() as auth:
        whoami(server, auth)
    assert server.grants_served == {"client_credentials": 1}


def test_from_env_password_and_refresh_token_with_a_token_file(
    server: EmpowerIDTestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EID_TOKEN_ENDPOINT", server.token_endpoint)
    monkeypatch.setenv("EID_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("EID_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("EID_GRANT", "password")
    monkeypatch.setenv("EID_USERNAME", server.test_user.username)
    monkeypatch.setenv("EID_PASSWORD", server.test_user.password)
    with EmpowerIDAuth.from_env() as auth:
        assert whoami(server, auth)["id"] == server.test_user.person_id
    assert server.grants_served == {"password": 1}

    monkeypatch.delenv("EID_GRANT")
    monkeypatch.delenv("EID_USERNAME")
    monkeypatch.delenv("EID_PASSWORD")
    monkeypatch.setenv("EID_REFRESH_TOKEN", server.issue_grant()["refresh_token"])
    monkeypatch.setenv("EID_TOKEN_STORE", str(tmp_path / "token.json"))
    with EmpowerIDAuth.from_env() as auth:
        whoami(server, auth)
    assert json.loads((tmp_path / "token.json").read_text())["client_id"] == CLIENT_ID
    # Once the store holds the token, the refresh token may be left out.
    monkeypatch.delenv("EID_REFRESH_TOKEN")
    with EmpowerIDAuth.from_env() as auth:
        whoami(server, auth)
    assert server.grants_served["refresh_token"] == 1


def signed_in_profile(server: EmpowerIDTestServer, name: str) -> Profile:
    """A profile as ``eid-auth login`` leaves it, signed in with a fresh grant."""
    profile = Profile(
        name=name,
        server=server.url,
        client_id=CLIENT_ID,
        client_secret_env="TEST_EID_CLIENT_SECRET",
    )
    save_profile(profile)
    answer = server.issue_grant()
    token = Token.from_response(answer, requested_at=0.0)  # long expired
    FileTokenStore(profile.token_path).write(
        StoredToken(
            client_id=CLIENT_ID,
            token_endpoint=server.token_endpoint,
            generation=1,
            token=token,
            refresh_token=token.refresh_token,
        )
    )
    return profile


def test_from_profile_and_EID_PROFILE(
    server: EmpowerIDTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_EID_CLIENT_SECRET", CLIENT_SECRET)
    profile = signed_in_profile(server, "work")
    with EmpowerIDAuth.from_profile("work") as auth:
        whoami(server, auth)
    assert server.grants_served == {"refresh_token": 1}
    stored = FileTokenStore(profile.token_path).read()
    assert stored is not None
    assert stored.generation == 2  # renewed into the profile's store

    monkeypatch.setenv("EID_PROFILE", "work")
    with EmpowerIDAuth.from_profile() as auth:
        whoami(server, auth)
    with EmpowerIDAuth.from_env() as auth:  # no EID_SERVER or EID_CLIENT_ID: the profile
        whoami(server, auth)
    assert server.grants_served == {"refresh_token": 1}


def test_from_profile_errors_say_how_to_sign_in(
    server: EmpowerIDTestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="eid-auth login --profile default"):
        EmpowerIDAuth.from_profile()
    save_profile(Profile(name="idle", server=server.url, client_id=CLIENT_ID))
    with pytest.raises(ConfigurationError, match=r"not signed in.*eid-auth login --profile idle"):
        EmpowerIDAuth.from_profile("idle")
    with pytest.raises(ConfigurationError, match="cannot name a profile"):
        EmpowerIDAuth.from_profile("../idle")

    signed_in_profile(server, "work")
    with pytest.raises(ConfigurationError, match="TEST_EID_CLIENT_SECRET, which is not set"):
        EmpowerIDAuth.from_profile("work")

    config = tmp_path / "config" / "config.toml"
    config.write_text(
        config.read_text() + '\n[profiles.leaky]\nserver = "https://eid.example.com"\n'
        'client_id = "app"\nclient_secret = "in-clear"\n'
    )
    with pytest.raises(ConfigurationError, match="holds a secret in clear") as caught:
        EmpowerIDAuth.from_profile("work")
    assert "in-clear" not in str(caught.value)


def test_from_env_names_each_wrong_variable_without_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A URL can carry a password; a wrong value is named by its variable, never shown.
    monkeypatch.setenv("EID_SERVER", "https://svc:hunter2-in-url@eid.example.com")
    monkeypatch.setenv("EID_CLIENT_ID", "app")
    monkeypatch.setenv("EID_CLIENT_SECRET", "a-secret-not-to-show")
    monkeypatch.setenv("EID_GRANT", "client_credentials")
    monkeypatch.setenv("EID_CLIENT_AUTH", "client_secret_jwt")
    monkeypatch.setenv("EID_TOKEN_STORE", "redis://:hunter2-in-url@[::1")
    with pytest.raises(ConfigurationError) as caught:
        EmpowerIDAuth.from_env()
    message = str(caught.value)
    for name in ("EID_SERVER", "EID_CLIENT_AUTH", "EID_TOKEN_STORE"):
        assert name in message
    assert "hunter2" not in message
    assert "a-secret-not-to-show" not in message

    monkeypatch.delenv("EID_SERVER")
    monkeypatch.setenv("EID_TOKEN_ENDPOINT", "http://eid.example.com/oauth/v2/token")
    with pytest.raises(ConfigurationError, match="EID_TOKEN_ENDPOINT") as caught:
        EmpowerIDAuth.from_env()
    assert "https" in str(caught.value)


def test_a_server_url_with_a_password_is_never_shown(
    server: EmpowerIDTestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Written into config.toml by hand: from_profile names the file, not the password.
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.toml").write_text(
        '[profiles.default]\nserver = "https://me:hunter2-in-url@eid.example.com"\n'
        'client_id = "app"\n'
    )
    FileTokenStore(tmp_path / "data" / "tokens" / "default.json").write(
        StoredToken(
            client_id="app",
            token_endpoint="https://eid.example.com/oauth/v2/token",
            generation=1,
            token=None,
            refresh_token="rt-seed-value",
        )
    )
    with pytest.raises(ConfigurationError, match=r"config\.toml") as caught:
        EmpowerIDAuth.from_profile()
    assert "hunter2" not in str(caught.value)


def test_profiles_saved_by_processes_at_once_are_all_kept(tmp_path: Path) -> None:
    # Several eid-auth login runs at once (a setup script signing in to each
    # profile) each add their profile to config.toml: none may be lost.
    program = (
        "import sys\n"
        "from eid_auth._profiles import Profile, load_profiles, save_profile\n"
        "for i in range(10):\n"
        "    save_profile(Profile(name=f'p{sys.argv[1]}-{i}', server='https://eid.example.com',"
        " client_id='app'))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    processes = [
        subprocess.Popen([sys.executable, "-c", program, str(n)], env=env) for n in range(6)
    ]
    for process in processes:
        assert process.wait(timeout=60) == 0
    assert len(load_profiles()) == 60
