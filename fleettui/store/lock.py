"""One poller per database: an OS file lock beside the database file.

The lock is held for as long as the owning process lives and is released by
the kernel when it dies, even by kill -9, so a crashed poller never blocks
its successor. The lock file says who owns it, so the second poller can say
so in its refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class PollerRunning(RuntimeError):
    """Another poller owns this database."""

    def __init__(self, db: Path, owner: dict[str, Any]) -> None:
        who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
        since = owner.get("started_at")
        mode = owner.get("mode", "poller")
        text = f"{db} is already polled by a {mode} ({who}"
        text += f", since {since})" if since else ")"
        super().__init__(text)
        self.owner = owner


class PollerLock:
    """Exclusive ownership of a database's polling (a context manager)."""

    def __init__(self, db: Path, mode: str = "headless poller") -> None:
        self.db = Path(db)
        self.path = self.db.with_name(self.db.name + ".lock")
        self.mode = mode
        self._fd: int | None = None

    def acquire(self) -> PollerLock:
        """Take the lock or raise PollerRunning naming the owner."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = self.owner()
            os.close(fd)
            raise PollerRunning(self.db, owner) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "mode": self.mode,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def owner(self) -> dict[str, Any]:
        """Who holds the lock, as written in the lock file (may be empty)."""
        try:
            data = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def held_elsewhere(self) -> bool:
        """Whether another process owns polling right now (without taking the lock)."""
        if self._fd is not None:
            return False
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def release(self) -> None:
        """Give the lock up."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PollerLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
