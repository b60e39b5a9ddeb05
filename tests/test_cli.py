"""The ``eid-auth`` command line, run as users run it: the installed console script in a
subprocess, against the loopback EmpowerID server, with the profile and token in
temporary directories (``EID_AUTH_CONFIG_DIR``, ``EID_AUTH_DATA_DIR``).

The browser of the browser sign-in is ``tests/fake_browser.py`` named in ``BROWSER``;
the device sign-in is approved by the test after reading the user code from the
prompt, as a person would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eid_auth import EmpowerIDClient, Token
from eid_auth.stores import FileTokenStore, StoredToken
from eid_auth.testing import EmpowerIDTestServer

from .conftest import CLIENT_ID, CLIENT_SECRET

HERE = Path(__file__).resolve().parent
FAKE_BROWSER = HERE / "fake_browser.py"
CONSOLE_SCRIPT = Path(sys.executable).with_name("eid-auth")
SECRET_VARIABLE = "TEST_EID_CLIENT_SECRET"
COMMANDS = ["login", "token", "header", "status", "userinfo", "logout", "profiles"]


def login_args(server: EmpowerIDTestServer) -> list[str]:
    """``eid-auth login`` for the test server's confidential application."""
    return [
        "login",
        "--server",
        server.url,
        "--client-id",
        CLIENT_ID,
        "--client-secret-env",
        SECRET_VARIABLE,
    ]


def eid_auth_command() -> list[str]:
    """The installed console script, else ``python -m eid_auth`` (the same ``main``)."""
    if CONSOLE_SCRIPT.exists():
        return [str(CONSOLE_SCRIPT)]
    return [sys.executable, "-m", "eid_auth"]


@dataclasses.dataclass
class CLI:
    """Runs ``eid-auth`` with a private environment and remembers every output."""

    env: dict[str, str]
    config_dir: Path
    data_dir: Path
    outputs: list[tuple[list[str], str, str]] = dataclasses.field(default_factory=list)

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*eid_auth_command(), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.outputs.append((list(args), done.stdout, done.stderr))
        return done

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*eid_auth_command(), *args],
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def token_file(self) -> Path:
        return self.data_dir / "tokens" / "default.json"

    def login(self, server: EmpowerIDTestServer, *more: str) -> subprocess.CompletedProcess[str]:
        done = self(*login_args(server), *more)
        assert done.returncode == 0, done.stderr
        return done


def base_env(tmp_path: Path) -> dict[str, str]:
    # No EID_* variable, browser or display of the machine running the tests.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("EID_", "PYTHON_KEYRING"))
        and key not in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY", "SSH_CONNECTION")
    }
    env.update(
        EID_AUTH_CONFIG_DIR=str(tmp_path / "config"),
        EID_AUTH_DATA_DIR=str(tmp_path / "data"),
        PYTHONPATH=str(HERE.parent),
        BROWSER=f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_BROWSER))} %s",
    )
    env[SECRET_VARIABLE] = CLIENT_SECRET
    return env


@pytest.fixture
def cli(tmp_path: Path, server: EmpowerIDTestServer) -> Iterator[CLI]:
    runner = CLI(base_env(tmp_path), tmp_path / "config", tmp_path / "data")
    yield runner
    # Nothing but the access token (printed by token and header, on purpose)
    # ever reaches stdout or stderr: no refresh token, ID token, code or secret.
    secrets = {s for s in server.issued_secrets if len(s) >= 6}
    for args, stdout, stderr in runner.outputs:
        printed_token = args[:1] in (["token"], ["header"])
        for secret in secrets:
            assert secret not in stderr, f"a secret on stderr of eid-auth {' '.join(args)}"
            if secret in stdout and not (printed_token and secret.startswith("at_")):
                raise AssertionError(f"a secret on stdout of eid-auth {' '.join(args)}")


def api_status(server: EmpowerIDTestServer, access_token: str) -> int:
    answer = httpx.get(
        server.api_url("/api/whoami"),
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )
    return answer.status_code


def expire_stored_token(path: Path) -> StoredToken:
    """Make the stored access token look expired (the server still knows it)."""
    store = FileTokenStore(path)
    with store.lock(timeout=10):
        record = store.read()
        assert record is not None
        assert record.token is not None
        expired = dataclasses.replace(record.token, expires_at=time.time() - 1)
        record = dataclasses.replace(record, token=expired, generation=record.generation + 1)
        store.write(record)
    return record


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- signing in -------------------------------------------------------------------


def test_browser_login_then_every_command(cli: CLI, server: EmpowerIDTestServer) -> None:
    done = cli.login(server)
    assert "Signed in as jdoe" in done.stderr
    assert server.grants_served == {"authorization_code": 1}

    # The profile and the token: private files in private directories, no secret.
    config = cli.config_dir / "config.toml"
    assert mode(config) == 0o600
    assert mode(cli.config_dir) == 0o700
    assert mode(cli.token_file) == 0o600
    assert mode(cli.token_file.parent) == 0o700
    text = config.read_text()
    assert CLIENT_SECRET not in text
    assert f'client_secret_env = "{SECRET_VARIABLE}"' in text
    assert f'server = "{server.url}"' in text

    token = cli("token")
    assert token.returncode == 0, token.stderr
    access_token = token.stdout.strip()
    assert api_status(server, access_token) == 200

    header = cli("header")
    assert header.stdout == f"Authorization: Bearer {access_token}\n"

    document = json.loads(cli("token", "--json").stdout)
    assert set(document) == {"access_token", "token_type", "expires_at", "expires_in", "scope"}
    assert document["access_token"] == access_token
    assert document["token_type"] == "Bearer"
    assert 3500 < document["expires_in"] <= 3600
    assert document["scope"] == "openid profile"

    status = cli("status")
    assert status.returncode == 0, status.stderr
    assert "signed in as: jdoe" in status.stdout
    assert "accepted by server: yes" in status.stdout
    assert f"stored in: token file {cli.token_file}" in status.stdout
    facts = json.loads(cli("status", "--json").stdout)
    assert facts["signed_in"] is True
    assert facts["scope"] == "openid profile"
    assert facts["refresh_token"] is True  # whether there is one, never its value

    info = cli("userinfo")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["username"] == "jdoe"

    listed = cli("profiles")
    assert listed.stdout.startswith(f"* default\t{server.url}\t{CLIENT_ID}\tsigned in")

    # Nothing was renewed: every command used the sign-in's token.
    assert server.grants_served == {"authorization_code": 1}


def test_device_login_approved_by_the_person(tmp_path: Path) -> None:
    # A public client (no secret) on another device: the test reads the prompt
    # and approves the code, as the person would on their phone.
    with EmpowerIDTestServer(client_id="native-app", client_secret=None) as server:
        server.device_interval = 0.2
        cli = CLI(base_env(tmp_path), tmp_path / "config", tmp_path / "data")
        process = cli.popen(
            "login", "--device", "--server", server.url, "--client-id", "native-app"
        )
        assert process.stderr is not None
        prompt = ""
        for _ in range(50):  # the prompt is a few lines
            line = process.stderr.readline()
            prompt += line
            found = re.search(r"enter the code (\S+)", line)
            if found or not line:
                break
        assert found, prompt
        server.approve_device(found.group(1))
        _, rest = process.communicate(timeout=60)
        assert process.returncode == 0, prompt + rest
        assert "Signed in as jdoe" in rest
        assert server.grants_served == {"urn:ietf:params:oauth:grant-type:device_code": 1}
        assert "client_secret" not in (tmp_path / "config" / "config.toml").read_text()

        token = cli("token").stdout.strip()
        assert api_status(server, token) == 200

        # A public client cannot revoke (tokenrevoke needs the secret): logout
        # says so, deletes the token here, and prints the logout address.
        logout = cli("logout")
        assert logout.returncode == 0, logout.stderr
        assert "cannot revoke" in logout.stderr
        assert logout.stdout.startswith(f"{server.url}/oauth/v2/ui/logout?")
        assert not cli.token_file.exists()


def test_no_display_falls_back_to_the_device_sign_in(
    cli: CLI, server: EmpowerIDTestServer
) -> None:
    server.device_interval = 0.2
    server.on_device_authorization = server.approve_device
    env = {**cli.env}
    del env["BROWSER"]  # and no DISPLAY: an SSH session on Linux
    done = subprocess.run(
        [*eid_auth_command(), *login_args(server)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    cli.outputs.append((["login"], done.stdout, done.stderr))
    if not sys.platform.startswith("linux"):
        pytest.skip("the display check is Linux's")
    assert done.returncode == 0, done.stderr
    assert "No browser can be opened here (no DISPLAY or WAYLAND_DISPLAY)" in done.stderr
    assert "enter the code" in done.stderr
    assert server.grants_served == {"urn:ietf:params:oauth:grant-type:device_code": 1}


# -- renewing ---------------------------------------------------------------------


def test_token_renews_an_expired_token_once_then_answers_from_the_store(
    cli: CLI, server: EmpowerIDTestServer
) -> None:
    cli.login(server)
    old = expire_stored_token(cli.token_file)
    assert old.token is not None

    renewed = cli("token").stdout.strip()
    assert renewed != old.token.access_token
    assert api_status(server, renewed) == 200
    assert server.grants_served["refresh_token"] == 1

    assert cli("token").stdout.strip() == renewed
    assert cli("header").stdout.strip() == f"Authorization: Bearer {renewed}"
    assert server.grants_served["refresh_token"] == 1


def test_min_valid_and_force_refresh(cli: CLI, server: EmpowerIDTestServer) -> None:
    cli.login(server)
    first = cli("token", "--min-valid", "60").stdout.strip()
    assert server.grants_served.get("refresh_token", 0) == 0
    # The token lives an hour: asking for two renews it (and it still lives an hour).
    second = cli("token", "--min-valid", "7200").stdout.strip()
    assert second != first
    assert server.grants_served["refresh_token"] == 1
    third = cli("token", "--force-refresh").stdout.strip()
    assert third not in (first, second)
    assert server.grants_served["refresh_token"] == 2
    assert cli("token").stdout.strip() == third


def test_ten_processes_at_expiry_send_one_refresh_grant(
    cli: CLI, server: EmpowerIDTestServer
) -> None:
    cli.login(server)
    expire_stored_token(cli.token_file)
    processes = [cli.popen("token") for _ in range(10)]
    printed = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        cli.outputs.append((["token"], stdout, stderr))
        assert process.returncode == 0, stderr
        printed.append(stdout.strip())
    assert server.grants_served["refresh_token"] == 1
    assert server.reuse_detected == 0
    assert len(set(printed)) == 1
    assert api_status(server, printed[0]) == 200


def test_from_profile_in_a_program_shares_the_command_lines_token(
    cli: CLI, server: EmpowerIDTestServer
) -> None:
    cli.login(server)
    expire_stored_token(cli.token_file)
    program = (
        "import httpx\n"
        "from eid_auth import EmpowerIDAuth\n"
        "with EmpowerIDAuth.from_profile() as auth:\n"
        f"    r = httpx.get({server.api_url('/api/whoami')!r}, auth=auth, timeout=10)\n"
        "print(r.status_code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == "200", done.stderr
    assert server.grants_served["refresh_token"] == 1
    used = server.api_requests[-1].header("Authorization")
    # The command line prints the token the program renewed: no second grant.
    assert f"Bearer {cli('token').stdout.strip()}" == used
    assert server.grants_served["refresh_token"] == 1


# -- exit codes and errors -----------------------------------------------------------


def test_exit_code_3_when_no_profile_or_no_token(cli: CLI) -> None:
    for command in ("token", "header", "status", "userinfo"):
        done = cli(command, "--profile", "work")
        assert done.returncode == 3, (command, done.stderr)
        assert "eid-auth login --profile work" in done.stderr
        assert done.stdout == ""
        assert "Traceback" not in done.stderr


def test_exit_code_3_when_the_server_refuses_the_grant(
    cli: CLI, server: EmpowerIDTestServer
) -> None:
    cli.login(server)
    record = expire_stored_token(cli.token_file)
    assert record.refresh_token is not None
    server.revoke_grant(record.refresh_token)
    for command in ("token", "header"):
        done = cli(command)
        assert done.returncode == 3, done.stderr
        assert "eid-auth login --profile default" in done.stderr
        assert "invalid_grant" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    status = cli("status")
    assert status.returncode == 3
    assert "accepted by server: no" in status.stdout


def test_exit_code_4_when_the_server_cannot_be_reached(
    cli: CLI, server: EmpowerIDTestServer
) -> None:
    cli.login(server)
    expire_stored_token(cli.token_file)
    server.stop()
    done = cli("token")
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith("eid-auth: ")
    assert len(done.stderr.strip().splitlines()) == 1
    # Advice a shell user can follow, not the library's token_client=.
    assert "token_client" not in done.stderr
    assert "HTTPS_PROXY" in done.stderr


def test_a_still_valid_token_is_printed_when_the_early_renewal_fails(
    cli: CLI, server: EmpowerIDTestServer
) -> None:
    # The token has 30 s left, less than the default 60: token renews it first.
    # With the server down for a moment, the still-valid token is printed (as the
    # library keeps sending it), with a note on stderr; a renewal asked for
    # explicitly still fails with 4.
    cli.login(server)
    store = FileTokenStore(cli.token_file)
    with store.lock(timeout=10):
        record = store.read()
        assert record is not None
        assert record.token is not None
        soon = dataclasses.replace(record.token, expires_at=time.time() + 30)
        store.write(dataclasses.replace(record, token=soon, generation=record.generation + 1))
    server.stop()
    for command, printed in (("token", soon.access_token), ("header", header_of(soon))):
        done = cli(command)
        assert done.returncode == 0, done.stderr
        assert done.stdout == printed + "\n"
        assert "could not be renewed" in done.stderr
    for demand in (["--min-valid", "40"], ["--force-refresh"]):
        assert cli("token", *demand).returncode == 4


def header_of(token: Token) -> str:
    return f"Authorization: Bearer {token.access_token}"


def test_exit_code_2_for_usage_errors(cli: CLI, server: EmpowerIDTestServer) -> None:
    assert cli("token", "--no-such-option").returncode == 2
    assert cli("no-such-command").returncode == 2
    assert cli("token", "--min-valid", "soon").returncode == 2
    for endless in ("nan", "inf"):
        assert cli("token", "--min-valid", endless).returncode == 2
    bad_name = cli("token", "--profile", "../../etc/passwd")
    assert bad_name.returncode == 2
    assert "cannot name a profile" in bad_name.stderr
    for command in ("token", "status", "profiles"):
        bad_variable = cli(command, env={"EID_PROFILE": "../x"})
        assert bad_variable.returncode == 2
        assert "EID_PROFILE" in bad_variable.stderr
        assert "--profile" not in bad_variable.stderr  # not given: not to blame
    new = cli("login", "--profile", "work")
    assert new.returncode == 2
    assert "give --server URL and --client-id ID" in new.stderr


def test_a_server_url_with_a_password_is_a_usage_error_that_does_not_show_it(
    cli: CLI,
) -> None:
    url = "https://me:hunter2-in-url@eid.example.com"
    done = cli("login", "--server", url, "--client-id", "x")
    assert done.returncode == 2, done.stderr
    assert "--server" in done.stderr
    assert "must not carry credentials" in done.stderr
    assert "hunter2" not in done.stderr


def test_exit_code_1_for_a_refused_client_secret(cli: CLI, server: EmpowerIDTestServer) -> None:
    done = cli(*login_args(server), env={SECRET_VARIABLE: "not-the-secret"})
    assert done.returncode == 1, done.stderr
    assert "invalid_client" in done.stderr
    assert "not-the-secret" not in done.stderr
    unset = cli("token", env={SECRET_VARIABLE: ""})
    assert unset.returncode == 3  # the failed login saved nothing


def test_debug_shows_a_traceback_and_no_secret(cli: CLI, server: EmpowerIDTestServer) -> None:
    cli.login(server)
    record = expire_stored_token(cli.token_file)
    assert record.refresh_token is not None
    server.revoke_grant(record.refresh_token)
    done = cli("token", "--debug")
    assert done.returncode == 3
    assert "Traceback (most recent call last)" in done.stderr
    assert "InvalidGrantError" in done.stderr
    assert "DEBUG eid_auth" in done.stderr  # the library's own steps
    # The cli fixture checks that no token or secret is in it.


# -- logout -------------------------------------------------------------------------


def test_logout_revokes_at_the_server_and_deletes_the_token(
    cli: CLI, server: EmpowerIDTestServer
) -> None:
    cli.login(server)
    record = FileTokenStore(cli.token_file).read()
    assert record is not None
    assert record.refresh_token is not None
    assert record.token is not None

    done = cli("logout")
    assert done.returncode == 0, done.stderr
    assert "Revoked at the server" in done.stderr
    assert done.stdout.startswith(f"{server.url}/oauth/v2/ui/logout?")
    assert "global_logout=true" in done.stdout
    assert not cli.token_file.exists()
    with EmpowerIDClient(
        server=server.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    ) as eid:
        assert eid.introspect(record.refresh_token, "refresh_token") == {"active": False}
        assert eid.introspect(record.token.access_token) == {"active": False}
    assert api_status(server, record.token.access_token) == 401

    assert cli("token").returncode == 3
    # The profile stays: signing in again needs no options.
    assert cli("login").returncode == 0


def test_logout_keeps_the_token_when_the_server_cannot_be_reached(
    cli: CLI, server: EmpowerIDTestServer
) -> None:
    cli.login(server)
    server.stop()
    done = cli("logout")
    assert done.returncode == 4, done.stderr
    assert "--local" in done.stderr
    assert cli.token_file.exists()
    local = cli("logout", "--local")
    assert local.returncode == 0, local.stderr
    assert not cli.token_file.exists()


def test_logout_revokes_the_refresh_token_a_concurrent_renewal_brings(
    cli: CLI, server: EmpowerIDTestServer
) -> None:
    # Another process (an eid-auth token, a program using from_profile) is
    # renewing: it holds the store's lock, the server has rotated the refresh
    # token, and the new one is not stored yet. Logout must wait for it and
    # revoke the refresh token that is current, not the spent one, and leave no
    # token behind.
    cli.login(server)
    store = FileTokenStore(cli.token_file)
    with EmpowerIDClient(
        server=server.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    ) as eid:
        with store.lock(timeout=10):
            record = store.read()
            assert record is not None
            assert record.refresh_token is not None
            renewed = eid.refresh(record.refresh_token)
            assert renewed.refresh_token not in (None, record.refresh_token)
            process = cli.popen("logout")
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=2)  # time for a logout that ignores the lock to finish
            store.write(record.successor(renewed))
        stdout, stderr = process.communicate(timeout=60)
        cli.outputs.append((["logout"], stdout, stderr))
        assert process.returncode == 0, stderr
        assert store.read() is None
        assert eid.introspect(renewed.refresh_token, "refresh_token") == {"active": False}
        assert api_status(server, renewed.access_token) == 401


def test_logout_local_deletes_a_damaged_token(cli: CLI, server: EmpowerIDTestServer) -> None:
    cli.login(server)
    cli.token_file.write_text("{not json")
    done = cli("logout")
    assert done.returncode == 1, done.stderr
    assert "eid-auth logout --local" in done.stderr
    assert cli.token_file.exists()
    local = cli("logout", "--local")
    assert local.returncode == 0, local.stderr
    assert not cli.token_file.exists()
    assert cli("token").returncode == 3


# -- help ---------------------------------------------------------------------------


def test_every_command_has_help_with_an_example(cli: CLI) -> None:
    for command in COMMANDS:
        done = cli(command, "--help")
        assert done.returncode == 0, done.stderr
        assert "Example:" in done.stdout, command
        assert f"eid-auth {command}" in done.stdout or command == "login"
    top = cli("--help")
    assert all(command in top.stdout for command in COMMANDS)
    assert "3 sign-in needed" in " ".join(top.stdout.split())


# -- the fast path ------------------------------------------------------------------


def imported_modules(cli: CLI, *args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "eid_auth", *args],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    cli.outputs.append(([*args], done.stdout, ""))
    return {
        line.split("|")[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }


HEAVY = ("click", "requests", "httpx", "anyio", "authlib", "joserfc", "keyring")


def test_a_valid_token_is_printed_without_heavy_imports(
    cli: CLI, server: EmpowerIDTestServer
) -> None:
    cli.login(server)
    for args in (["token"], ["header"], ["token", "--json", "--min-valid", "10"]):
        modules = imported_modules(cli, *args)
        assert "eid_auth.cli._fast" in modules
        heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
        assert not heavy, (args, heavy)
        sign_in = ("eid_auth._authorization_code", "eid_auth._device_code", "eid_auth._client")
        assert not any(m.startswith(sign_in) for m in modules)
    # The fast path reads the options as click does: where click would refuse
    # them, it leaves them to click.
    refused = cli("token", "-p=default")
    assert refused.returncode == 2, refused.stdout
    assert refused.stdout == ""
    # A token to renew takes the full path.
    expire_stored_token(cli.token_file)
    assert "click" in imported_modules(cli, "token")


def test_a_burst_of_parallel_token_calls_on_a_valid_token_sends_nothing(
    cli: CLI, server: EmpowerIDTestServer
) -> None:
    cli.login(server)
    before = server.token_requests
    results: list[str] = []

    def call() -> None:
        results.append(cli("token").stdout.strip())

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 5
    assert len(set(results)) == 1
    assert server.token_requests == before
