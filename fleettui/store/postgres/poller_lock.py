"""Pollers on a PostgreSQL database: the "lock" of a database several pollers share.

A SQLite file has one poller (its file lock); a PostgreSQL database has as
many as are started, each holding leases on a share of the sites
(``fleettui/engine/leases.py``). So here a headless poller is never refused:
``acquire`` lets it join. The control room joins only a database nobody
polls yet; with a poller running it is refused, and becomes a viewer, as it
does beside a SQLite file's poller. Who polls is read from the ``pollers``
table (each poller renews its row every few seconds; a dead one's runs out).

Calls are plain (not async), like the file lock's: they run on an event loop
of their own, in a thread, each on a short connection.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg

from fleettui.store.errors import PollerRunning
from fleettui.store.where import DatabaseUrl

T = TypeVar("T")

#: the modes that join a shared database whoever polls it already (the others join only a
#: database nobody polls)
SHARING_MODES = ("headless poller",)


class PostgresPollerLock:
    """A front end's place among a PostgreSQL database's pollers (``acquire``/``release``,
    as ``fleettui.store.lock.PollerLock``)."""

    def __init__(self, db: DatabaseUrl, mode: str = "headless poller") -> None:
        self.db = db
        self.mode = mode
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._held = False

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the lock's own loop (started on first use), and wait for it."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="fleettui-poller-lock",
                                      daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _live_pollers(self) -> list[dict[str, Any]]:
        """The pollers alive now, oldest first (none before the first poller made the
        table), as owner dictionaries."""
        conn = await asyncpg.connect(self.db.url)
        try:
            exists = await conn.fetchval("SELECT to_regclass('pollers') IS NOT NULL")
            rows = await conn.fetch(
                "SELECT pid, host, mode, started_at FROM pollers WHERE expires_at > $1"
                " ORDER BY started_at, id", datetime.now(UTC)) if exists else []
        finally:
            await conn.close()
        return [{"pid": r["pid"], "host": r["host"], "mode": r["mode"],
                 "started_at": r["started_at"].isoformat(timespec="seconds")} for r in rows]

    def acquire(self) -> PostgresPollerLock:
        """Join the database's pollers (a headless poller always may); PollerRunning,
        naming the oldest poller, for another mode when someone polls it already."""
        if self.mode not in SHARING_MODES:
            live = self._run(self._live_pollers())
            if live:
                self.release()
                raise PollerRunning(self.db, live[0])
        self._held = True
        return self

    def owner(self) -> dict[str, Any]:
        """The oldest live poller (pid, host, mode, started_at), or {} when nobody polls."""
        live = self._run(self._live_pollers())
        return live[0] if live else {}

    def held_elsewhere(self) -> bool:
        """Whether a poller (other than through this object) polls the database now."""
        return not self._held and bool(self._run(self._live_pollers()))

    def release(self) -> None:
        """Stop counting as joined, and stop the thread of the calls."""
        self._held = False
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)
        loop.close()

    def __enter__(self) -> PostgresPollerLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
