"""UDP sessions a poller opened on its devices and has not closed yet."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime

from fleettui.store.sqlite.connection import SqliteConnection, fetch, ts


class SessionQueries(SqliteConnection):
    """Device sessions to say goodbye to after a poller died."""

    async def remember_session(self, device_id: str, session_id: int, at: datetime) -> None:
        """A UDP session was opened on a device (it holds a slot until CMD_EXIT)."""
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO device_sessions (device_id, session_id, opened_at)"
                " VALUES (?, ?, ?)",
                (device_id, session_id, ts(at)),
            )
        await self._transaction(write)

    async def forget_sessions(self, device_id: str, session_ids: Iterable[int]) -> None:
        """Sessions of a device that were said goodbye to."""
        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "DELETE FROM device_sessions WHERE device_id = ? AND session_id = ?",
                [(device_id, sid) for sid in session_ids],
            )
        await self._transaction(write)

    async def open_sessions(self, device_id: str) -> list[int]:
        """The device's sessions not known to be closed, oldest first."""
        rows = await fetch(
            self._db,
            "SELECT session_id FROM device_sessions WHERE device_id = ?"
            " ORDER BY opened_at, session_id",
            (device_id,),
        )
        return [int(r[0]) for r in rows]
