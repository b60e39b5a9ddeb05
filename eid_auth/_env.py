"""``EmpowerIDAuth.from_env()``: the auth a container or CI job describes in ``EID_*``
environment variables.

======================  ====================================================
variable                meaning
======================  ====================================================
``EID_SERVER``          the server's base URL (or ``EID_TOKEN_ENDPOINT``)
``EID_TOKEN_ENDPOINT``  instead of ``EID_SERVER``: the token endpoint's URL
``EID_CLIENT_ID``       the OAuth application's client ID (required)
``EID_CLIENT_SECRET``   its secret (required for client_credentials)
``EID_CLIENT_AUTH``     ``client_secret_post`` (default) or ``client_secret_basic``
``EID_SCOPE``           the scope to ask for
``EID_GRANT``           ``refresh_token`` (default), ``client_credentials``, ``password``
``EID_REFRESH_TOKEN``   refresh_token: the refresh token (seeds ``EID_TOKEN_STORE``)
``EID_USERNAME``        password: the person; client_credentials: EmpowerID's ``username``
``EID_PASSWORD``        password: the person's password
``EID_API_KEY``         sent as ``X-EmpowerID-API-Key``
``EID_TOKEN_STORE``     a token file path, or a ``redis://`` / ``rediss://`` URL
``EID_TOKEN_STORE_KEY`` the Redis key (default: client ID, grant and username)
``EID_PROFILE``         when none of ``EID_SERVER``, ``EID_TOKEN_ENDPOINT`` and
                        ``EID_CLIENT_ID`` is set: that profile (``from_profile``)
======================  ====================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ._exceptions import ConfigurationError
from ._profiles import CLIENT_AUTH_METHODS, hide_value

if TYPE_CHECKING:
    from ._auth import EmpowerIDAuth
    from .stores._base import TokenStore

    AuthT = TypeVar("AuthT", bound=EmpowerIDAuth)

__all__ = ["GRANTS", "auth_from_env"]

GRANTS = ("refresh_token", "client_credentials", "password")
# Where the server, client and store are described; their absence (and a set
# EID_PROFILE) means the profile is meant.
_DESCRIBING = ("EID_SERVER", "EID_TOKEN_ENDPOINT", "EID_CLIENT_ID")


def auth_from_env(cls: type[AuthT], environ: Mapping[str, str] | None = None) -> AuthT:
    """``cls(...)``, ``cls.client_credentials(...)`` or ``cls.password(...)`` as the
    ``EID_*`` variables of ``environ`` (default: ``os.environ``) describe it.

    Raises:
        ConfigurationError: one error naming every variable that is missing or
            wrong (never a variable's value).
    """
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if v != ""}
    if env.get("EID_PROFILE") and not any(name in env for name in _DESCRIBING):
        from ._profiles import auth_from_profile

        return auth_from_profile(cls, env["EID_PROFILE"])
    grant = env.get("EID_GRANT", "refresh_token")
    problems: list[str] = []
    if grant not in GRANTS:
        problems.append(f"EID_GRANT must be one of {', '.join(GRANTS)}")
    if "EID_SERVER" in env and "EID_TOKEN_ENDPOINT" in env:
        problems.append("set EID_SERVER or EID_TOKEN_ENDPOINT, not both")
    missing = []
    if "EID_SERVER" not in env and "EID_TOKEN_ENDPOINT" not in env:
        missing.append("EID_SERVER (or EID_TOKEN_ENDPOINT)")
    missing.append("EID_CLIENT_ID")
    if grant == "client_credentials":
        missing.append("EID_CLIENT_SECRET")
    if grant == "password":
        missing += ["EID_USERNAME", "EID_PASSWORD"]
    if grant == "refresh_token" and "EID_TOKEN_STORE" not in env:
        # A store may already hold the token; without one, nothing to start from.
        missing.append("EID_REFRESH_TOKEN (or EID_TOKEN_STORE holding a token)")
    missing = [name for name in missing if name.split()[0] not in env]
    if missing:
        problems.insert(0, f"missing: {', '.join(missing)}")
    problems += _wrong_urls(env)
    if env.get("EID_CLIENT_AUTH", CLIENT_AUTH_METHODS[0]) not in CLIENT_AUTH_METHODS:
        problems.append(f"EID_CLIENT_AUTH must be one of {', '.join(CLIENT_AUTH_METHODS)}")
    store: TokenStore | None = None
    if "EID_TOKEN_STORE" in env and "EID_CLIENT_ID" in env:
        try:
            store = _store(env, grant)
        except ValueError as exc:  # ConfigurationError, or the URL parser's own
            reason = hide_value(str(exc), env["EID_TOKEN_STORE"])
            problems.append(
                f"EID_TOKEN_STORE is not a usable token file path or redis:// URL ({reason})"
            )
    if problems:
        raise ConfigurationError(
            f"EmpowerIDAuth.from_env(): {'; '.join(problems)} (or set EID_PROFILE to a "
            "profile signed in with eid-auth login)"
        )
    settings: dict[str, Any] = {
        "server": env.get("EID_SERVER"),
        "token_endpoint": env.get("EID_TOKEN_ENDPOINT"),
        "client_id": env["EID_CLIENT_ID"],
        "client_secret": env.get("EID_CLIENT_SECRET"),
        "client_auth": env.get("EID_CLIENT_AUTH"),
        "scope": env.get("EID_SCOPE"),
        "api_key": env.get("EID_API_KEY"),
    }
    if store is not None:
        settings["store"] = store
    if grant == "client_credentials":
        return cls.client_credentials(username=env.get("EID_USERNAME"), **settings)
    if grant == "password":
        return cls.password(username=env["EID_USERNAME"], password=env["EID_PASSWORD"], **settings)
    if "client_secret" in settings and settings["client_secret"] is None:
        # A public client: only its ID is sent.
        from ._client import EmpowerIDClient

        client = EmpowerIDClient(
            server=settings.pop("server"),
            token_endpoint=settings.pop("token_endpoint"),
            client_id=settings.pop("client_id"),
            api_key=settings.pop("api_key"),
        )
        settings = {"client": client, "scope": settings["scope"], "store": settings.get("store")}
    return cls(refresh_token=env.get("EID_REFRESH_TOKEN"), **settings)


def _wrong_urls(env: Mapping[str, str]) -> list[str]:
    """What is wrong with ``EID_SERVER`` and ``EID_TOKEN_ENDPOINT``, by name only
    (a URL may carry a password)."""
    from ._config import endpoint_url, server_base_url

    problems = []
    for name, check in (
        ("EID_SERVER", server_base_url),
        ("EID_TOKEN_ENDPOINT", lambda url: endpoint_url("token_endpoint", url)),
    ):
        if name in env:
            try:
                check(env[name])
            except ConfigurationError as exc:
                problems.append(f"{name}: {hide_value(str(exc), env[name])}")
    return problems


def _store(env: Mapping[str, str], grant: str) -> TokenStore:
    where = env["EID_TOKEN_STORE"]
    if where.startswith(("redis://", "rediss://", "unix://")):
        from .stores._redis import RedisTokenStore

        default_key = ":".join(
            part for part in (env["EID_CLIENT_ID"], grant, env.get("EID_USERNAME")) if part
        )
        return RedisTokenStore.from_url(where, key=env.get("EID_TOKEN_STORE_KEY", default_key))
    from .stores._file import FileTokenStore

    return FileTokenStore(where)
