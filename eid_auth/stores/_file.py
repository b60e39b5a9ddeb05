"""``FileTokenStore``: a JSON file shared by the processes of one machine."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .._exceptions import ConfigurationError, TokenStoreError
from ._base import MAX_RECORD_SIZE, StoredToken, TokenStore, encode, record_error

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FileTokenStore"]

# File descriptors holding a flock now. A forked child inherits them, and with
# them the lock: it closes its copies, so that a holder killed later does not
# leave the lock to a child that knows nothing of it.
_held_fds: set[int] = set()


class FileTokenStore(TokenStore):
    """Keeps the token in a JSON file, for every process of one machine.

    The file is created with mode 0600 and replaced atomically on each write
    (temporary file, ``fsync``, rename), so a reader never sees half a file,
    even if the writer is killed. Refreshes are serialised with an OS lock
    (``flock``) on ``<path>.lock``; the kernel releases it when its holder
    exits or is killed, so a crashed process never blocks the others.

    A token file that other users can read or write, or that belongs to
    another user, is refused (as ssh refuses such a key).

    Needs POSIX file locks (Linux, macOS, the BSDs) and a local file system.

    Args:
        path: the token file; ``~`` is expanded. Each missing parent
            directory is created with mode 0700, whatever the umask;
            existing ones are left as they are.

    Example:
        >>> from eid_auth import EmpowerIDAuth
        >>> auth = EmpowerIDAuth(  # doctest: +SKIP
        ...     server="https://eid.example.com", client_id="app", client_secret="s",
        ...     refresh_token=os.environ["EID_REFRESH_TOKEN"],  # seeds an empty file
        ...     store=FileTokenStore("/var/lib/myapp/eid-token.json"),
        ... )
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            raise ConfigurationError(
                "FileTokenStore needs POSIX file locks (Linux, macOS); on this system use "
                "RedisTokenStore, or MemoryTokenStore for a single process"
            )
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ConfigurationError("FileTokenStore needs a file path")
        self.path = Path(path).expanduser().absolute()
        if self.path.name in ("", ".", ".."):
            raise ConfigurationError(f"{self.path} is not a file path")
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def describe(self) -> str:
        return f"token file {self.path}"

    # -- reading ------------------------------------------------------------

    def read(self) -> StoredToken | None:
        try:
            # O_NONBLOCK: a FIFO put at the path must not hang the reader.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error("cannot be opened", exc) from None
        try:
            self._check_private(os.fstat(fd), self.path)
            # Bounded: a file that grows while it is read is not ours either.
            data = _read_all(fd, MAX_RECORD_SIZE + 1)
        except OSError as exc:
            raise self._error("cannot be read", exc) from None
        finally:
            os.close(fd)
        return StoredToken.from_json(data, self.describe())

    @staticmethod
    def _check_private(st: os.stat_result, path: Path) -> None:
        if not stat.S_ISREG(st.st_mode):
            raise TokenStoreError(f"token file {path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise TokenStoreError(
                f"token file {path} belongs to user id {st.st_uid}, not to this process's "
                f"user (id {os.geteuid()}); refusing a token file another user controls. "
                f"Fix: run as its owner, or remove it to seed a new one."
            )
        if st.st_mode & 0o077:
            raise TokenStoreError(
                f"token file {path} can be read or written by other users "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); refusing to use it. "
                f"Fix: chmod 600 {path}"
            )
        if st.st_size > MAX_RECORD_SIZE:
            raise record_error(f"token file {path}", f"larger than {MAX_RECORD_SIZE // 1024} kB")

    # -- writing ------------------------------------------------------------

    def write(self, record: StoredToken) -> None:
        data = encode(record, self.describe())
        self._make_directory()
        try:
            # mkstemp creates the file with mode 0600, in the same directory so
            # that the rename below is atomic.
            fd, temporary = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
            )
        except OSError as exc:
            raise self._error(
                "cannot be written (creating a temporary file failed)", exc
            ) from None
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise self._error("cannot be written; the previous token is intact", exc) from None
        _fsync_directory(self.path.parent)
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        # Writes happen under the lock, so any other temporary file of ours was
        # left by a writer killed mid-write; it holds a token: remove it.
        for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _make_directory(self) -> None:
        try:
            _make_private_directories(self.path.parent)
        except OSError as exc:
            raise self._error("cannot be created (its directory cannot be made)", exc) from None

    # -- locking ------------------------------------------------------------

    @contextmanager
    def lock(self, *, timeout: float) -> Iterator[None]:
        self._make_directory()
        try:
            fd = os.open(
                self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600
            )
        except OSError as exc:
            raise TokenStoreError(
                f"lock file {self.lock_path} cannot be opened: {_reason(exc)}"
            ) from None
        try:
            _flock(fd, timeout, self.lock_path)
            _held_fds.add(fd)
            try:
                yield
            finally:
                _held_fds.discard(fd)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _error(self, what: str, exc: OSError) -> TokenStoreError:
        return TokenStoreError(f"{self.describe()} {what}: {_reason(exc)}")


def _after_fork_in_child() -> None:
    for fd in list(_held_fds):
        with contextlib.suppress(OSError):
            os.close(fd)  # our copy only: the parent still holds its lock
    _held_fds.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _flock(fd: int, timeout: float, path: Path) -> None:
    # flock has no timeout: poll without blocking, backing off up to 50 ms.
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise TokenStoreError(
                    f"lock file {path} cannot be locked: {_reason(exc)}"
                ) from None
        else:
            return
        if time.monotonic() >= deadline:
            raise TokenStoreError(
                f"lock file {path} stayed locked for {timeout:.0f}s: another process's "
                "refresh did not finish (a stopped or hung process holds it)"
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _make_private_directories(directory: Path) -> None:
    """Create ``directory`` and each missing parent with mode 0700, whatever the umask.

    ``mkdir(parents=True, mode=...)`` gives the mode to the last directory only
    and leaves the umask on all of them. Directories that exist already, or
    that another process creates at the same moment, are left as they are.
    """
    missing = []
    while not os.path.isdir(directory) and directory.parent != directory:
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        try:
            # Never wider than 0700 (the umask only removes bits), even before the chmod.
            os.mkdir(path, 0o700)
        except FileExistsError:
            if os.path.isdir(path):
                continue  # another process made it meanwhile
            raise
        os.chmod(path, 0o700)


def _read_all(fd: int, limit: int) -> bytes:
    chunks = []
    size = 0
    while size < limit and (chunk := os.read(fd, min(65536, limit - size))):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; some file systems cannot, which is fine.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
