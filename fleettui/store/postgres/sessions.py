"""Device sessions: the UDP sessions a poller opened and has not said goodbye to."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from fleettui.store.postgres.connection import Db, PostgresConnection


class SessionQueries(PostgresConnection):
    """Device sessions to say goodbye to after a poller died."""

    async def remember_session(self, device_id: str, session_id: int, at: datetime) -> None:
        """A UDP session was opened on a device (it holds a slot until CMD_EXIT); the same
        session remembered again is opened at ``at``."""
        async def write(db: Db) -> None:
            await db.execute(
                "INSERT INTO device_sessions (device_id, session_id, opened_at)"
                " VALUES ($1, $2, $3) ON CONFLICT (device_id, session_id)"
                " DO UPDATE SET opened_at = excluded.opened_at",
                device_id, session_id, at)
        await self._transaction(write)

    async def forget_sessions(self, device_id: str, session_ids: Iterable[int]) -> None:
        """See ``Store.forget_sessions``."""
        ids = list(session_ids)

        async def write(db: Db) -> None:
            await db.execute("DELETE FROM device_sessions WHERE device_id = $1"
                             " AND session_id = ANY($2::bigint[])", device_id, ids)
        if ids:
            await self._transaction(write)

    async def open_sessions(self, device_id: str) -> list[int]:
        """See ``Store.open_sessions``."""
        rows = await self._fetch(
            "SELECT session_id FROM device_sessions WHERE device_id = $1"
            " ORDER BY opened_at, session_id", device_id)
        return [int(r[0]) for r in rows]
