"""A keyring backend for tests, named in ``PYTHON_KEYRING_BACKEND``:
``tests.keyring_backend.FileKeyring`` keeps entries in the JSON file that
``TEST_KEYRING_FILE`` names, so that processes share them as they would share the
OS keyring (no encryption: tests only)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class FileKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    @staticmethod
    def _path() -> Path:
        return Path(os.environ["TEST_KEYRING_FILE"])

    def _entries(self) -> dict[str, str]:
        try:
            entries: dict[str, str] = json.loads(self._path().read_text())
        except FileNotFoundError:
            return {}
        return entries

    def get_password(self, service: str, username: str) -> str | None:
        return self._entries().get(f"{service}\0{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        entries = self._entries()
        entries[f"{service}\0{username}"] = password
        # Atomic, as the token store expects of a keyring.
        temporary = self._path().with_suffix(".tmp")
        temporary.write_text(json.dumps(entries))
        temporary.replace(self._path())

    def delete_password(self, service: str, username: str) -> None:
        entries = self._entries()
        if entries.pop(f"{service}\0{username}", None) is None:
            raise PasswordDeleteError("no such entry")
        self._path().write_text(json.dumps(entries))
