"""One poller per PostgreSQL database: a session advisory lock, held for as long as the
process lives.

The rule of one poller per database (DESIGN.md) holds for PostgreSQL as it
does for a SQLite file: a second ``fleettui run`` on the same database is
refused naming the owner, and the control room becomes a viewer. (Several
pollers on one database, each holding leases on a share of the sites, is the
next step; this lock is what keeps two pollers from polling every device
twice until then.)

The lock is held by a connection of its own, opened in a thread with its own
event loop, so that taking it is a plain call like the file lock's. The
server frees it when that connection ends, however the process ends (kill -9
included). Who holds it is told by the holder's ``application_name`` and
``backend_start`` in ``pg_stat_activity``: nothing to clean up after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg

from fleettui.store.errors import PollerRunning
from fleettui.store.where import DatabaseUrl

T = TypeVar("T")

#: the session advisory lock of "this database's poller" (fleettui's own key)
POLLER_LOCK = 0x666C_7475_0010
_PREFIX = "fleettui"


def _application_name(mode: str) -> str:
    """Who we are, as the lock holder's connection says it (PostgreSQL keeps 63 bytes)."""
    return f"{_PREFIX}|{os.getpid()}|{mode}|{socket.gethostname()}"[:63]


def _owner_of(name: str, since: Any) -> dict[str, Any]:
    """An ``_application_name`` read back, as the file lock's owner dictionary."""
    parts = name.split("|", 3)
    if len(parts) < 4 or parts[0] != _PREFIX:
        return {}
    pid = int(parts[1]) if parts[1].isdigit() else parts[1]
    owner: dict[str, Any] = {"pid": pid, "mode": parts[2], "host": parts[3]}
    if since is not None:
        owner["started_at"] = since.isoformat(timespec="seconds")
    return owner


class PostgresPollerLock:
    """Exclusive ownership of a PostgreSQL database's polling (``acquire``/``release``,
    as ``fleettui.store.lock.PollerLock``)."""

    def __init__(self, db: DatabaseUrl, mode: str = "headless poller") -> None:
        self.db = db
        self.mode = mode
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: asyncpg.Connection | None = None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the lock's own loop (started on first use), and wait for it."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="fleettui-poller-lock",
                                      daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self.db.url, server_settings={"application_name": _application_name(self.mode)})

    def acquire(self) -> PostgresPollerLock:
        """Take the lock or raise PollerRunning naming the owner."""
        async def take() -> bool:
            conn = await self._connect()
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", POLLER_LOCK):
                self._conn = conn
                return True
            await conn.close()
            return False

        if not self._run(take()):
            owner = self.owner()
            self.release()
            raise PollerRunning(self.db, owner)
        return self

    def owner(self) -> dict[str, Any]:
        """Who holds the lock (pid, host, mode, since), or {} when nobody does."""
        async def read() -> dict[str, Any]:
            conn = await asyncpg.connect(self.db.url)
            try:
                row = await conn.fetchrow(
                    "SELECT a.application_name, a.backend_start FROM pg_locks l"
                    " JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted"
                    " AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1"
                    " AND l.database = (SELECT oid FROM pg_database"
                    "                   WHERE datname = current_database())",
                    POLLER_LOCK >> 32, POLLER_LOCK & 0xFFFF_FFFF)
            finally:
                await conn.close()
            return _owner_of(row[0], row[1]) if row else {}

        return self._run(read())

    def held_elsewhere(self) -> bool:
        """Whether another process owns polling right now (without keeping the lock)."""
        if self._conn is not None:
            return False

        async def probe() -> bool:
            conn = await asyncpg.connect(self.db.url)
            try:
                free = await conn.fetchval("SELECT pg_try_advisory_lock($1)", POLLER_LOCK)
                if free:
                    await conn.execute("SELECT pg_advisory_unlock($1)", POLLER_LOCK)
                return not free
            finally:
                await conn.close()

        return self._run(probe())

    def release(self) -> None:
        """Give the lock up (closing its connection frees it) and stop the lock's thread."""
        loop, thread, conn = self._loop, self._thread, self._conn
        self._loop = self._thread = self._conn = None
        if loop is None:
            return
        if conn is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(conn.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)
        loop.close()

    def __enter__(self) -> PostgresPollerLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
