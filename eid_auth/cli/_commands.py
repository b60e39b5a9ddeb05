"""The ``eid-auth`` commands (click): login, token, header, status, userinfo,
logout, profiles. Each is a thin layer over ``_login`` and ``_session``; errors
become one line on stderr and an exit code from ``_exit``."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, NoReturn, TypeVar

import click

from .._exceptions import ConfigurationError, EndpointError
from .._profiles import config_path, load_profiles, profile_name
from ._exit import classify
from ._tokens import as_json, header

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["app"]


def _profile_option(f: F) -> F:
    return click.option(
        "--profile",
        "-p",
        metavar="NAME",
        help="The profile to use (default: $EID_PROFILE, else 'default').",
    )(f)


def _debug_option(f: F) -> F:
    return click.option(
        "--debug",
        is_flag=True,
        help="Log eid_auth's steps and show a traceback on failure (never a secret).",
    )(f)


def _fail(exc: BaseException, profile: str | None, debug: bool) -> NoReturn:
    code, message = classify(exc, profile)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    click.echo(f"eid-auth: {message}", err=True)
    sys.exit(code)


def _run(profile: str | None, debug: bool, body: Callable[[], int | None]) -> None:
    """Run a command's ``body`` with the logging and error handling every command has."""
    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("eid_auth")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        profile = profile_name(profile)
    except ConfigurationError as exc:
        if profile is None:  # from $EID_PROFILE, which the message names
            raise click.UsageError(str(exc)) from None
        raise click.BadParameter(str(exc), param_hint="--profile") from None
    try:
        code = body()
    except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except Exception as exc:
        _fail(exc, profile, debug)
    if code:
        sys.exit(code)


class _Group(click.Group):
    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("prog_name", "eid-auth")
        return super().main(*args, **kwargs)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="eid-auth", prog_name="eid-auth")
def app() -> None:
    """Sign in to EmpowerID once; then print a fresh access token whenever a
    shell, a script or a program needs one.

    \b
    Example:
        eid-auth login --server https://eid.example.com --client-id my-app
        curl -H "$(eid-auth header)" https://eid.example.com/api/webui/v1/Person/GetMe

    Profiles live in config.toml in the user's configuration directory
    ($EID_AUTH_CONFIG_DIR), tokens in the user's data directory
    ($EID_AUTH_DATA_DIR). Exit codes: 0 success, 1 failure, 2 usage error,
    3 sign-in needed, 4 server or network failure.
    """


@app.command()
@_profile_option
@click.option("--server", metavar="URL", help="The EmpowerID server, https://eid.example.com.")
@click.option("--client-id", metavar="ID", help="The OAuth application's client ID.")
@click.option("--scope", metavar="SCOPE", help="The scope to ask for (default: openid profile).")
@click.option("--device", is_flag=True, help="Sign in on another device (a code to enter).")
@click.option(
    "--no-browser",
    is_flag=True,
    help="Print the sign-in address instead of opening a browser.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Loopback port for the browser's redirect (0: any free port).",
)
@click.option(
    "--client-secret-env",
    metavar="VAR",
    help="The environment variable holding the client secret (the profile keeps its name).",
)
@click.option(
    "--client-secret-keyring",
    is_flag=True,
    help="Keep the client secret in the OS keyring (asked for, or copied from "
    "--client-secret-env).",
)
@click.option("--public-client", is_flag=True, help="The application has no client secret.")
@click.option(
    "--client-auth",
    type=click.Choice(["client_secret_post", "client_secret_basic"]),
    help="How the client secret is sent (default: client_secret_post).",
)
@click.option("--api-key-env", metavar="VAR", help="The variable holding EmpowerID's API key.")
@click.option(
    "--token-store",
    type=click.Choice(["file", "keyring"]),
    help="Where the token is kept (default: file; keyring needs eid-auth[keyring]).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds to wait for the browser sign-in.",
)
@_debug_option
def login(
    profile: str | None,
    server: str | None,
    client_id: str | None,
    scope: str | None,
    device: bool,
    no_browser: bool,
    port: int,
    client_secret_env: str | None,
    client_secret_keyring: bool,
    public_client: bool,
    client_auth: str | None,
    api_key_env: str | None,
    token_store: str | None,
    timeout: float,
    debug: bool,
) -> None:
    """Sign in and save the profile and its token.

    Opens the browser (authorization code with PKCE, redirected to this
    machine); signs in on another device instead with --device, or when no
    browser can be opened (an SSH session, no display). The profile keeps the
    server, client ID, scope and where the secret is, never the secret.

    \b
    Example:
        export EID_CLIENT_SECRET=...
        eid-auth login --server https://eid.example.com --client-id my-app \\
            --client-secret-env EID_CLIENT_SECRET
        eid-auth login --profile work --device
    """
    from ._login import LoginRequest
    from ._login import login as sign_in

    if public_client and (client_secret_env or client_secret_keyring):
        raise click.UsageError("--public-client has no client secret: leave out the others")
    request = LoginRequest(
        profile=profile,
        server=server,
        client_id=client_id,
        scope=scope,
        device=device,
        no_browser=no_browser,
        port=port,
        client_secret_env=client_secret_env,
        client_secret_keyring=client_secret_keyring,
        public_client=public_client,
        client_auth=client_auth,
        api_key_env=api_key_env,
        token_store=token_store,
        timeout=timeout,
    )

    def body() -> None:
        saved, token, who = sign_in(request)
        click.echo(
            f"Signed in{f' as {who}' if who else ''} (profile {saved.name!r}); the token is in "
            f"{saved.describe_store()}, {_expiry(token.expires_at)}.",
            err=True,
        )

    _run(profile, debug, body)


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    # FloatRange lets nan and inf through (every comparison with nan is false).
    if value is not None and not math.isfinite(value):
        raise click.BadParameter("must be a number of seconds", ctx, param)
    return value


def _token_options(f: F) -> F:
    f = click.option(
        "--min-valid",
        type=click.FloatRange(min=0),
        callback=_finite,
        metavar="SECONDS",
        help="Renew first unless the token stays valid this long (default: 60, or half "
        "the token's lifetime if shorter).",
    )(f)
    return click.option(
        "--force-refresh", is_flag=True, help="Renew the token now, even if still valid."
    )(f)


@app.command()
@_profile_option
@_token_options
@click.option("--json", "as_json_", is_flag=True, help="Print the token's public fields as JSON.")
@_debug_option
def token(
    profile: str | None,
    min_valid: float | None,
    force_refresh: bool,
    as_json_: bool,
    debug: bool,
) -> None:
    """Print the access token, renewed first when needed.

    With --json: access_token, token_type, expires_at, expires_in and scope
    (never the refresh token). Many processes asking at once send one refresh
    grant between them.

    \b
    Example:
        curl -H "Authorization: Bearer $(eid-auth token)" https://eid.example.com/api/...
        eid-auth token --json --min-valid 300
    """

    def body() -> None:
        found = _fresh(profile, min_valid, force_refresh)
        click.echo(as_json(found) if as_json_ else found.access_token)

    _run(profile, debug, body)


@app.command(name="header")
@_profile_option
@_token_options
@_debug_option
def header_command(
    profile: str | None, min_valid: float | None, force_refresh: bool, debug: bool
) -> None:
    """Print an Authorization header with the access token, renewed first when needed.

    \b
    Example:
        curl -H "$(eid-auth header)" https://eid.example.com/api/webui/v1/Person/GetMe
    """

    def body() -> None:
        click.echo(header(_fresh(profile, min_valid, force_refresh)))

    _run(profile, debug, body)


def _fresh(name: str | None, min_valid: float | None, force_refresh: bool) -> Any:
    from ._session import fresh_token, open_profile

    profile = open_profile(name)
    with profile.client() as eid:
        return fresh_token(profile, eid, min_valid=min_valid, force_refresh=force_refresh)


@app.command()
@_profile_option
@click.option("--json", "as_json_", is_flag=True, help="Print the status as JSON.")
@_debug_option
def status(profile: str | None, as_json_: bool, debug: bool) -> None:
    """Show who is signed in, when the token expires, its scope and where it is kept.

    A confidential client asks the server (tokeninfo) whether the sign-in is
    still accepted. Exits with 3 when the profile is not signed in, or the
    server no longer accepts its sign-in.

    \b
    Example:
        eid-auth status --profile work
        eid-auth status >/dev/null || eid-auth login
    """

    def body() -> int:
        from ._status import status_of

        facts, code = status_of(profile)
        if as_json_:
            click.echo(json.dumps(facts, indent=2))
        else:
            for key, value in facts.items():
                if value is not None and key != "expires_in":  # expires_at says it
                    click.echo(f"{key.replace('_', ' ')}: {_shown(key, value)}")
        return code

    _run(profile, debug, body)


def _shown(key: str, value: object) -> str:
    if key == "expires_at" and isinstance(value, (int, float)):
        return _expiry(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


@app.command()
@_profile_option
@_debug_option
def userinfo(profile: str | None, debug: bool) -> None:
    """Print what the server says of the signed-in person (userinfo), as JSON.

    \b
    Example:
        eid-auth userinfo | jq -r .username
    """

    def body() -> None:
        from ._session import fresh_token, open_profile

        found = open_profile(profile)
        with found.client() as eid:
            current = fresh_token(found, eid)
            try:
                answer = eid.userinfo(current.access_token)
            except EndpointError as exc:
                if exc.status_code != 401:
                    raise
                # Revoked at the server while still valid here: renew once.
                current = fresh_token(found, eid, stale=current)
                answer = eid.userinfo(current.access_token)
        click.echo(json.dumps(answer, indent=2, sort_keys=True))

    _run(profile, debug, body)


@app.command()
@_profile_option
@click.option(
    "--local",
    is_flag=True,
    help="Only delete the token here, without revoking it at the server.",
)
@_debug_option
def logout(profile: str | None, local: bool, debug: bool) -> None:
    """Revoke the sign-in at the server, delete the stored token, and print the
    address that ends the browser's EmpowerID session.

    The profile's settings stay, so a later login needs no options.

    \b
    Example:
        eid-auth logout --profile work
    """

    def body() -> int:
        from ._logout import logout_profile

        return logout_profile(profile, local=local)

    _run(profile, debug, body)


@app.command()
@click.option("--json", "as_json_", is_flag=True, help="Print the profiles as JSON.")
@_debug_option
def profiles(as_json_: bool, debug: bool) -> None:
    """List the profiles; the default one (used without --profile) is marked with *.

    The default is $EID_PROFILE when set, else the profile named 'default'.

    \b
    Example:
        eid-auth profiles
        EID_PROFILE=work eid-auth token
    """

    def body() -> None:
        default = profile_name(None)
        found = load_profiles()
        rows = [
            {
                "name": p.name,
                "default": p.name == default,
                "server": p.server,
                "client_id": p.client_id,
                "signed_in": p.token_path.exists() if p.token_store == "file" else None,
                "token_store": p.token_store,
            }
            for p in found.values()
        ]
        if as_json_:
            click.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            click.echo(f"No profiles in {config_path()}: eid-auth login creates one.", err=True)
            return
        for row in rows:
            signed = "token in the keyring"
            if row["signed_in"] is not None:
                signed = "signed in" if row["signed_in"] else "not signed in"
            mark = "*" if row["default"] else " "
            click.echo(f"{mark} {row['name']}\t{row['server']}\t{row['client_id']}\t{signed}")

    _run(None, debug, body)


def _expiry(expires_at: float | None) -> str:
    if expires_at is None:
        return "no stated expiry"
    left = expires_at - time.time()
    at = datetime.fromtimestamp(expires_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if left <= 0:
        return f"expired at {at}"
    return f"expires in {_duration(left)} ({at})"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m {seconds % 60}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"
