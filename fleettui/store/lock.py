"""One poller per database: OS file locks on the database's identity (``poller_lock``
picks PostgreSQL's own lock for a ``postgresql://`` database).

The lock is held for as long as the owning process lives and is released by
the kernel when it dies, even by kill -9, so a crashed poller never blocks
its successor. The lock files say who owns them, so the second poller can say
so in its refusal.

A database has many spellings: relative or absolute, through a symlink, under
another hard link, through a bind mount. Two locks cover them all:

- ``<db>.lock`` beside the database's real path (symlinks resolved), as a
  reader of the folder expects to find it;
- a lock named by the file's device and inode numbers, in a folder private to
  the user (``$XDG_RUNTIME_DIR/fleettui``, else ``<tmp>/fleettui-<uid>``):
  every name of one file meets there, hard links included.

The database file is created (empty, owner-only) when it is missing, since a
file must exist to have an identity; SQLite takes an empty file as a new
database. This module never opens the database file itself: closing any
descriptor of it would drop the POSIX locks SQLite holds in this process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from fleettui.store.errors import PollerRunning
from fleettui.store.where import DatabaseUrl, StoreTarget

__all__ = ["DatabaseLock", "PollerLock", "PollerRunning", "poller_lock"]

log = logging.getLogger(__name__)


class DatabaseLock(Protocol):
    """What a front end holds while it polls a database (a file lock, or PostgreSQL's)."""

    def acquire(self) -> DatabaseLock:
        """Take the lock or raise PollerRunning naming the owner."""
        ...

    def release(self) -> None:
        """Give the lock up."""
        ...

    def owner(self) -> dict[str, Any]:
        """Who holds the lock (pid, host, mode, started_at), as far as is known."""
        ...

    def held_elsewhere(self) -> bool:
        """Whether another process owns polling right now (without taking the lock)."""
        ...


def poller_lock(db: StoreTarget, mode: str = "headless poller") -> DatabaseLock:
    """The poller lock of a store: the file locks of a SQLite database, or a PostgreSQL
    database's advisory lock (``postgres/poller_lock.py``)."""
    if isinstance(db, DatabaseUrl):
        from fleettui.store.postgres.poller_lock import PostgresPollerLock

        return PostgresPollerLock(db, mode)
    return PollerLock(db, mode)


def _identity_folder() -> Path | None:
    """The user's private folder of identity locks, or None when it cannot be trusted (not
    a folder of ours, or open to others): then only the lock beside the database holds."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = (Path(runtime) / "fleettui" if runtime
              else Path(tempfile.gettempdir()) / f"fleettui-{os.getuid()}")
    try:
        folder.mkdir(mode=0o700, parents=bool(runtime), exist_ok=True)
        info = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return folder


def _open_lock(path: Path, *, create: bool) -> int | None:
    """A descriptor of a lock file (never through a symlink), or None if it is not there."""
    flags = os.O_RDWR | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:
        return None


def _take(fd: int) -> bool:
    """Try to take an exclusive lock on ``fd`` without waiting."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class PollerLock:
    """Exclusive ownership of a database's polling (a context manager)."""

    def __init__(self, db: Path, mode: str = "headless poller") -> None:
        self.db = Path(db)
        #: the database's real path: symlinks resolved, relative spellings made absolute
        self.real = Path(os.path.realpath(self.db))
        self.path = self.real.with_name(self.real.name + ".lock")
        self.mode = mode
        self._fds: list[int] = []

    def identity_path(self) -> Path | None:
        """The identity lock of the database file as it is now (None: no such file, or no
        trusted folder for it)."""
        try:
            info = os.stat(self.real)
        except OSError:
            return None
        folder = _identity_folder()
        return folder / f"db-{info.st_dev}-{info.st_ino}.lock" if folder else None

    def _lock_paths(self) -> list[Path]:
        identity = self.identity_path()
        return [self.path] + ([identity] if identity is not None else [])

    def acquire(self) -> PollerLock:
        """Take the lock or raise PollerRunning naming the owner."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.real.exists():
            with contextlib.suppress(FileExistsError):  # another process just made it
                os.close(os.open(self.real, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        links = os.stat(self.real).st_nlink
        if links > 1:
            log.warning("%s has %d names (hard links): SQLite names its journal after the path, "
                        "so a process that opens it by another name may lose or corrupt "
                        "writes; open it by one name only", self.real, links)
        info = json.dumps({
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "mode": self.mode,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "db": str(self.real),
        }).encode()
        for path in self._lock_paths():
            fd = _open_lock(path, create=True)
            assert fd is not None  # created if missing
            if not _take(fd):
                owner = _read_owner(path)
                os.close(fd)
                self.release()
                raise PollerRunning(self.db, owner)
            os.ftruncate(fd, 0)
            os.write(fd, info)
            os.fsync(fd)
            self._fds.append(fd)
        return self

    def owner(self) -> dict[str, Any]:
        """Who holds the lock, as written in the lock files (may be empty)."""
        for path in self._lock_paths():
            if self._held_at(path) and (found := _read_owner(path)):
                return found
        return _read_owner(self.path)

    @staticmethod
    def _held_at(path: Path) -> bool:
        fd = _open_lock(path, create=False)
        if fd is None:
            return False
        try:
            if _take(fd):
                fcntl.flock(fd, fcntl.LOCK_UN)
                return False
            return True
        finally:
            os.close(fd)

    def held_elsewhere(self) -> bool:
        """Whether another process owns polling right now (without taking the lock)."""
        if self._fds:
            return False
        return any(self._held_at(path) for path in self._lock_paths())

    def release(self) -> None:
        """Give the lock up."""
        for fd in self._fds:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._fds = []

    def __enter__(self) -> PollerLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_owner(path: Path) -> dict[str, Any]:
    """The owner a lock file names (empty if it names none)."""
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
