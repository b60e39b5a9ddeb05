"""``KeyringTokenStore``: the token in the operating system's keyring, the lock in a file.

Needs the ``keyring`` package: ``pip install 'eid-auth[keyring]'``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._exceptions import ConfigurationError, TokenStoreError
from ._base import StoredToken, TokenStore, encode
from ._file import FileTokenStore

__all__ = ["KeyringTokenStore", "get_secret", "set_secret"]


class KeyringTokenStore(TokenStore):
    """Keeps the token in the OS keyring (macOS Keychain, Windows Credential
    Locker, the Secret Service on a Linux desktop), encrypted at rest, for the
    processes of one machine and user.

    The keyring has no lock, so refreshes are serialised with a file lock
    (``flock`` on ``lock_path``, as ``FileTokenStore`` does): processes sharing
    the entry still send one refresh grant between them. Headless Linux and CI
    machines usually have no keyring backend: use ``FileTokenStore`` there.

    Args:
        entry: the keyring entry's name (its "username"), one per grant.
        lock_path: the lock file; ``~`` is expanded, missing directories are
            created with mode 0700.
        service: the keyring service the entry belongs to.

    Example:
        >>> store = KeyringTokenStore(  # doctest: +SKIP
        ...     "billing-api", lock_path="~/.local/share/my-app/billing-api.lock"
        ... )
        >>> auth = EmpowerIDAuth(..., store=store)  # doctest: +SKIP
    """

    def __init__(
        self, entry: str, *, lock_path: str | os.PathLike[str], service: str = "eid-auth"
    ) -> None:
        for name, value in (("entry", entry), ("service", service)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"KeyringTokenStore needs a non-empty {name}")
        self._keyring = _keyring_module()
        self.entry = entry
        self.service = service
        # FileTokenStore's flock, fork handling and private directories, on our lock file.
        self._locker = FileTokenStore(lock_path)
        self._locker.lock_path = Path(lock_path).expanduser().absolute()
        self.lock_path = self._locker.lock_path

    def describe(self) -> str:
        return f"keyring entry {self.entry!r} of service {self.service!r}"

    def read(self) -> StoredToken | None:
        try:
            data = self._keyring.get_password(self.service, self.entry)
        except Exception as exc:  # every backend has errors of its own
            raise self._error("cannot be read", exc) from None
        if data is None:
            return None
        return StoredToken.from_json(data, self.describe())

    def write(self, record: StoredToken) -> None:
        data = encode(record, self.describe())
        try:
            self._keyring.set_password(self.service, self.entry, data.decode())
        except Exception as exc:
            raise self._error("cannot be written; the previous token is intact", exc) from None

    @contextmanager
    def lock(self, *, timeout: float) -> Iterator[None]:
        with self._locker.lock(timeout=timeout):
            yield

    def clear(self) -> None:
        errors = _errors()
        try:
            self._keyring.delete_password(self.service, self.entry)
        except errors.PasswordDeleteError:
            pass  # nothing stored: cleared already
        except Exception as exc:
            raise self._error("cannot be cleared", exc) from None

    def _error(self, what: str, exc: Exception) -> TokenStoreError:
        return TokenStoreError(f"{self.describe()} {what}: {_reason(exc)}")


def get_secret(service: str, entry: str) -> str | None:
    """The secret the keyring holds for ``entry`` of ``service``, or ``None``.

    Raises:
        ConfigurationError: no keyring package, or no usable keyring backend.
    """
    try:
        secret = _keyring_module().get_password(service, entry)
    except Exception as exc:
        raise ConfigurationError(
            f"the OS keyring cannot be read ({_reason(exc)}); on a machine without one "
            "(headless Linux, CI) keep secrets in environment variables"
        ) from None
    return secret if isinstance(secret, str) else None


def set_secret(service: str, entry: str, secret: str) -> None:
    """Keep ``secret`` in the keyring as ``entry`` of ``service``."""
    try:
        _keyring_module().set_password(service, entry, secret)
    except Exception as exc:
        raise ConfigurationError(
            f"the OS keyring cannot be written ({_reason(exc)}); on a machine without one "
            "(headless Linux, CI) keep secrets in environment variables"
        ) from None


def _keyring_module() -> Any:
    try:
        import keyring
    except ImportError:
        raise ConfigurationError(
            "the OS keyring needs the keyring package: pip install 'eid-auth[keyring]'"
        ) from None
    return keyring


def _errors() -> Any:
    import keyring.errors

    return keyring.errors


def _reason(exc: Exception) -> str:
    # A backend's message names the backend or the reason; it never holds the
    # value asked for (the keyring API returns values, it does not echo them).
    errors = _errors()
    if isinstance(exc, errors.NoKeyringError):
        return "no keyring backend is available here"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
