"""Profiles: a named sign-in shared by the ``eid-auth`` command line and the library.

A profile names an EmpowerID server, an OAuth application and where its token
lives. Profiles are kept in a TOML file in the user's configuration directory
(``config.toml``, mode 0600); each profile's token in a ``FileTokenStore`` in the
user's data directory (``tokens/<profile>.json``), or in the OS keyring. The
command line signs in (``eid-auth login``) and ``EmpowerIDAuth.from_profile()``
uses the same token and the same refresh.

The file never holds a secret: a client secret (or API key) is named by the
environment variable that holds it (``client_secret_env``), or kept in the OS
keyring (``client_secret_keyring = true``)::

    [profiles.default]
    server = "https://eid.example.com"
    client_id = "my-app"
    scope = "openid profile"
    client_auth = "client_secret_post"
    client_secret_env = "EID_CLIENT_SECRET"
    token_store = "file"

``EID_AUTH_CONFIG_DIR`` and ``EID_AUTH_DATA_DIR`` replace the two directories;
``EID_PROFILE`` names the profile used when none is given.

This module is read by ``eid-auth token`` on every call: it imports nothing
heavier than the standard library, ``platformdirs`` and the file store.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ._exceptions import ConfigurationError, TokenStoreError
from .stores._file import FileTokenStore, _make_private_directories

if TYPE_CHECKING:
    from ._auth import EmpowerIDAuth
    from ._client import EmpowerIDClient
    from .stores._base import TokenStore

    AuthT = TypeVar("AuthT", bound=EmpowerIDAuth)

__all__ = [
    "CONFIG_DIR_VARIABLE",
    "DATA_DIR_VARIABLE",
    "DEFAULT_PROFILE",
    "PROFILE_VARIABLE",
    "Profile",
    "auth_from_profile",
    "check_profile_name",
    "config_dir",
    "config_path",
    "data_dir",
    "hide_value",
    "load_profile",
    "load_profiles",
    "profile_name",
    "save_profile",
]

DEFAULT_PROFILE = "default"
PROFILE_VARIABLE = "EID_PROFILE"
CONFIG_DIR_VARIABLE = "EID_AUTH_CONFIG_DIR"
DATA_DIR_VARIABLE = "EID_AUTH_DATA_DIR"
# The application's name in platformdirs' directories and in the keyring.
APP_NAME = "eid-auth"
# _config.TOKEN_PATH, repeated so that the fast path of "eid-auth token" need not
# import the modules of the token endpoint.
TOKEN_PATH = "/oauth/v2/token"
# Longest wait for another process changing config.toml (a write takes milliseconds).
CONFIG_LOCK_TIMEOUT = 30.0

# A profile name becomes a file name: letters, digits, '.', '_' and '-', not
# starting with a dot (no path separators, no '..', no hidden files).
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CLIENT_AUTH_METHODS = ("client_secret_post", "client_secret_basic")
TOKEN_STORES = ("file", "keyring")
# Keys a profile may hold; anything else is a typo worth reporting.
_KEYS = frozenset(
    {
        "server",
        "client_id",
        "scope",
        "client_auth",
        "client_secret_env",
        "client_secret_keyring",
        "api_key_env",
        "token_store",
    }
)


def config_dir() -> Path:
    """Where ``config.toml`` lives: ``$EID_AUTH_CONFIG_DIR``, else the user's
    configuration directory (``~/.config/eid-auth`` on Linux)."""
    return _directory(CONFIG_DIR_VARIABLE, "user_config_dir")


def data_dir() -> Path:
    """Where tokens live (``tokens/<profile>.json``): ``$EID_AUTH_DATA_DIR``, else the
    user's data directory (``~/.local/share/eid-auth`` on Linux)."""
    return _directory(DATA_DIR_VARIABLE, "user_data_dir")


def _directory(variable: str, kind: str) -> Path:
    given = os.environ.get(variable)
    if given:
        return Path(given).expanduser().absolute()
    try:
        import platformdirs
    except ImportError:
        raise ConfigurationError(
            "profiles need the platformdirs package: pip install 'eid-auth[cli]' "
            f"(or set {variable} to a directory)"
        ) from None
    return Path(getattr(platformdirs, kind)(APP_NAME, appauthor=False))


def config_path() -> Path:
    """The profiles file: ``<config dir>/config.toml``."""
    return config_dir() / "config.toml"


def check_profile_name(name: object) -> str:
    """``name`` if it can name a profile (and a file), else ``ConfigurationError``.

    Example:
        >>> check_profile_name("work-eu")
        'work-eu'
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"{name!r} cannot name a profile: use 1 to 64 letters, digits, '.', '_' or '-', "
            "not starting with '.' or '-'"
        )
    return name


def profile_name(name: str | None = None) -> str:
    """The profile meant: ``name``, else ``$EID_PROFILE``, else ``"default"``."""
    if name is None:
        name = os.environ.get(PROFILE_VARIABLE) or DEFAULT_PROFILE
        try:
            return check_profile_name(name)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{PROFILE_VARIABLE}: {exc}") from None
    return check_profile_name(name)


@dataclass(frozen=True)
class Profile:
    """One sign-in's settings, as ``config.toml`` keeps them (never a secret).

    Attributes:
        name: the profile's name.
        server: the EmpowerID server's base URL.
        client_id: the OAuth application's client ID.
        scope: the scope a sign-in asks for.
        client_auth: how the client secret is sent (``client_secret_post`` or
            ``client_secret_basic``); ignored for a public client.
        client_secret_env: the environment variable holding the client secret.
        client_secret_keyring: the client secret is in the OS keyring.
        api_key_env: the environment variable holding EmpowerID's API key.
        token_store: ``"file"`` (the default) or ``"keyring"``.
    """

    name: str
    server: str
    client_id: str
    scope: str | None = None
    client_auth: str = "client_secret_post"
    client_secret_env: str | None = None
    client_secret_keyring: bool = False
    api_key_env: str | None = None
    token_store: str = "file"

    def __post_init__(self) -> None:
        check_profile_name(self.name)
        where = f"profile {self.name!r}"
        for key in ("server", "client_id"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{where}: {key} must be a non-empty string")
        if self.scope is not None and not isinstance(self.scope, str):
            raise ConfigurationError(f"{where}: scope must be a string")
        if self.client_auth not in CLIENT_AUTH_METHODS:
            raise ConfigurationError(
                f"{where}: client_auth must be one of {', '.join(CLIENT_AUTH_METHODS)}"
            )
        for key in ("client_secret_env", "api_key_env"):
            value = getattr(self, key)
            if value is not None and (
                not isinstance(value, str) or not _VARIABLE.fullmatch(value)
            ):
                raise ConfigurationError(
                    f"{where}: {key} must name an environment variable (letters, digits, '_')"
                )
        if not isinstance(self.client_secret_keyring, bool):
            raise ConfigurationError(f"{where}: client_secret_keyring must be true or false")
        if self.client_secret_keyring and self.client_secret_env is not None:
            raise ConfigurationError(
                f"{where}: give client_secret_env or client_secret_keyring, not both"
            )
        if self.token_store not in TOKEN_STORES:
            raise ConfigurationError(
                f"{where}: token_store must be one of {', '.join(TOKEN_STORES)}"
            )

    @property
    def confidential(self) -> bool:
        """Whether the application has a client secret (else it is a public client)."""
        return self.client_secret_env is not None or self.client_secret_keyring

    @property
    def token_endpoint(self) -> str:
        """The token endpoint the profile's tokens come from (names them in the store)."""
        return self.server.rstrip("/") + TOKEN_PATH

    @property
    def token_path(self) -> Path:
        """The token file: ``<data dir>/tokens/<name>.json`` (with ``token_store = "file"``)."""
        return data_dir() / "tokens" / f"{self.name}.json"

    def describe_store(self) -> str:
        """Where the token is, for messages."""
        if self.token_store == "keyring":
            return f"the OS keyring (service {APP_NAME!r}, entry {self.name + '/token'!r})"
        return f"token file {self.token_path}"

    def store(self) -> TokenStore:
        """The profile's token store, the same one for the command line and the library."""
        if self.token_store == "keyring":
            from .stores._keyring import KeyringTokenStore

            return KeyringTokenStore(
                f"{self.name}/token",
                lock_path=data_dir() / "tokens" / f"{self.name}.keyring.lock",
                service=APP_NAME,
            )
        return FileTokenStore(self.token_path)

    def client_secret(self) -> str | None:
        """The client secret, from the environment variable or the keyring the
        profile names; ``None`` for a public client.

        Raises:
            ConfigurationError: the variable is unset, or the keyring has no entry.
        """
        if self.client_secret_env is not None:
            secret = os.environ.get(self.client_secret_env)
            if not secret:
                raise ConfigurationError(
                    f"profile {self.name!r} reads its client secret from the environment "
                    f"variable {self.client_secret_env}, which is not set: set it, or run "
                    f"eid-auth login --profile {self.name} --client-secret-env VAR"
                )
            return secret
        if self.client_secret_keyring:
            from .stores._keyring import get_secret

            secret = get_secret(APP_NAME, self.secret_entry)
            if not secret:
                raise ConfigurationError(
                    f"profile {self.name!r} reads its client secret from the OS keyring "
                    f"(service {APP_NAME!r}, entry {self.secret_entry!r}), which has none: "
                    f"run eid-auth login --profile {self.name} --client-secret-keyring"
                )
            return secret
        return None

    @property
    def secret_entry(self) -> str:
        """The keyring entry of the client secret (service ``eid-auth``)."""
        return f"{self.name}/client_secret"

    def api_key(self) -> str | None:
        """EmpowerID's API key, from the environment variable the profile names."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigurationError(
                f"profile {self.name!r} reads its API key from the environment variable "
                f"{self.api_key_env}, which is not set"
            )
        return key

    def client(self, **settings: Any) -> EmpowerIDClient:
        """An ``EmpowerIDClient`` for the profile's server and application;
        ``settings`` go to it too (``timeout=``...)."""
        from ._client import EmpowerIDClient

        secret = self.client_secret()
        try:
            return EmpowerIDClient(
                server=self.server,
                client_id=self.client_id,
                client_secret=secret,
                client_auth=self.client_auth if secret is not None else "client_secret_post",  # type: ignore[arg-type]
                api_key=self.api_key(),
                **settings,
            )
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"profile {self.name!r} in {config_path()}: {hide_value(str(exc), self.server)}"
            ) from None

    def to_table(self) -> dict[str, Any]:
        """The profile's TOML table (what ``config.toml`` holds under ``[profiles.<name>]``)."""
        table: dict[str, Any] = {"server": self.server, "client_id": self.client_id}
        if self.scope is not None:
            table["scope"] = self.scope
        if self.confidential:
            table["client_auth"] = self.client_auth
        if self.client_secret_env is not None:
            table["client_secret_env"] = self.client_secret_env
        if self.client_secret_keyring:
            table["client_secret_keyring"] = True
        if self.api_key_env is not None:
            table["api_key_env"] = self.api_key_env
        table["token_store"] = self.token_store
        return table

    @classmethod
    def from_table(cls, name: str, table: object) -> Profile:
        """A profile from its TOML table; ``ConfigurationError`` names what is wrong."""
        where = f"profile {name!r} in {config_path()}"
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"{where} is not a table")
        if "client_secret" in table or "api_key" in table:
            raise ConfigurationError(
                f"{where} holds a secret in clear, which eid-auth never reads: remove it and "
                'name the environment variable holding it (client_secret_env = "VAR", '
                'api_key_env = "VAR") or use client_secret_keyring = true'
            )
        unknown = sorted(set(table) - _KEYS)
        if unknown:
            raise ConfigurationError(
                f"{where} has unknown keys: {', '.join(unknown)} "
                f"(known: {', '.join(sorted(_KEYS))})"
            )
        for key in ("server", "client_id"):
            if key not in table:
                raise ConfigurationError(f"{where} has no {key}")
        try:
            return cls(name=name, **dict(table))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc} ({config_path()})") from None


def hide_value(message: str, value: str) -> str:
    """``message`` with ``value`` left out: a URL may carry a password, and the
    library's URL checks quote the URL they refuse.

    Example:
        >>> hide_value("server 'https://u:pw@h' must not carry credentials", "https://u:pw@h")
        'server (the value given) must not carry credentials'
    """
    for shown in {value, value.rstrip("/")}:
        message = message.replace(repr(shown), "(the value given)")
    return message


def _read_config() -> dict[str, Any]:
    path = config_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigurationError(
            f"{path} cannot be read: {exc.strerror or type(exc).__name__}"
        ) from None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
    try:
        document: dict[str, Any] = tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    return document


def load_profiles() -> dict[str, Profile]:
    """Every profile of ``config.toml``, by name (empty when there is no file).

    Raises:
        ConfigurationError: the file cannot be read, or a profile in it is invalid.
    """
    profiles = _read_config().get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigurationError(f"{config_path()}: 'profiles' is not a table")
    found = {}
    for name, table in profiles.items():
        try:
            check_profile_name(name)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{config_path()}: {exc}") from None
        found[name] = Profile.from_table(name, table)
    return found


def load_profile(name: str | None = None) -> Profile:
    """The profile ``name`` (``None``: ``$EID_PROFILE``, else ``"default"``).

    Raises:
        ConfigurationError: there is no such profile (the message says how to
            make one), or it is invalid.
    """
    name = profile_name(name)
    profile = load_profiles().get(name)
    if profile is None:
        raise ConfigurationError(
            f"there is no profile {name!r} (in {config_path()}): sign in first with "
            f"eid-auth login --profile {name} --server URL --client-id ID"
        )
    return profile


def save_profile(profile: Profile) -> Path:
    """Add or replace ``profile`` in ``config.toml``, written atomically with mode
    0600 (its directory 0700); other profiles and settings are kept (comments are not).
    """
    import tomli_w

    with _config_lock():
        document = _read_config()
        profiles = document.setdefault("profiles", {})
        if not isinstance(profiles, dict):
            raise ConfigurationError(f"{config_path()}: 'profiles' is not a table")
        profiles[profile.name] = profile.to_table()
        _write_private(config_path(), tomli_w.dumps(document).encode())
    return config_path()


def delete_profile(name: str) -> bool:
    """Remove profile ``name`` from ``config.toml``; whether it was there."""
    import tomli_w

    with _config_lock():
        document = _read_config()
        profiles = document.get("profiles")
        if not isinstance(profiles, dict) or name not in profiles:
            return False
        del profiles[name]
        _write_private(config_path(), tomli_w.dumps(document).encode())
    return True


@contextlib.contextmanager
def _config_lock() -> Iterator[None]:
    """Held while ``config.toml`` is read, changed and written: two processes
    saving at once (two sign-ins) would otherwise each drop the other's profile.
    The lock is ``config.toml.lock``, an flock as the token files have."""
    try:
        locker = FileTokenStore(config_path())
    except ConfigurationError:  # pragma: no cover - no POSIX file locks
        yield
        return
    try:
        with locker.lock(timeout=CONFIG_LOCK_TIMEOUT):
            yield
    except TokenStoreError as exc:
        raise ConfigurationError(f"{config_path()} cannot be changed: {exc}") from None


def _write_private(path: Path, data: bytes) -> None:
    try:
        _make_private_directories(path.parent)
        # mkstemp creates the file with mode 0600, next to the target for an atomic rename.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as exc:
        raise ConfigurationError(
            f"{path} cannot be written: {exc.strerror or type(exc).__name__}"
        ) from None


def auth_from_profile(cls: type[AuthT], name: str | None = None) -> AuthT:
    """``cls(client=..., store=...)`` for profile ``name`` (``None``: ``$EID_PROFILE``,
    else ``"default"``): its server, application and token store, shared with
    ``eid-auth`` and every other process using the profile.

    Raises:
        ConfigurationError: no such profile, a secret its settings name is
            missing, or the profile has not signed in yet; the message says
            which ``eid-auth login`` to run.
    """
    profile = load_profile(name)
    store = profile.store()
    if store.read() is None:
        raise ConfigurationError(
            f"profile {profile.name!r} is not signed in ({profile.describe_store()} holds "
            f"no token): run eid-auth login --profile {profile.name}"
        )
    return cls(client=profile.client(), store=store)
