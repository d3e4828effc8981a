"""The event log: appended in the transaction of the fact it tells, tailed by views."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fleettui.domain import Event, EventKind, FleetChanges
from fleettui.store.postgres.connection import Db, PostgresConnection, append_lock


class EventQueries(PostgresConnection):
    """The event log, appended and tailed."""

    async def add_event(
        self,
        kind: EventKind,
        message: str,
        *,
        at: datetime,
        device_id: str | None = None,
        site_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Event:
        """Append one line to the event log."""
        async def write(db: Db) -> Event:
            await append_lock(db)
            return await write_event(db, at, kind, message, device_id=device_id,
                                     site_id=site_id, data=data)
        return await self._transaction(write)

    async def last_event_id(self) -> int:
        """The id of the newest event (0 when the log is empty)."""
        return int(await self._fetchval("SELECT COALESCE(MAX(id), 0) FROM events"))

    async def devices_changed_after(self, last_id: int) -> FleetChanges:
        """The devices with a ``device.*`` event above ``last_id``, up to the newest event
        (see ``Store.devices_changed_after``)."""
        newest = await self.last_event_id()
        rows = await self._fetch(
            "SELECT DISTINCT device_id FROM events WHERE id > $1 AND id <= $2"
            " AND kind LIKE 'device.%' AND device_id IS NOT NULL ORDER BY device_id",
            last_id, newest)
        return FleetChanges(newest, [r[0] for r in rows])

    async def events_after(self, last_id: int = 0, limit: int = 1000) -> list[Event]:
        """Events with an id above ``last_id``, in order: how views tail the log."""
        rows = await self._fetch(
            "SELECT id, at, kind, device_id, site_id, message, data FROM events WHERE id > $1"
            " ORDER BY id LIMIT $2", last_id, limit)
        return [Event(r["id"], r["at"], EventKind.read(r["kind"]), r["message"],
                      r["device_id"], r["site_id"], r["data"]) for r in rows]


async def write_event(
    db: Db,
    at: datetime,
    kind: EventKind,
    message: str,
    *,
    device_id: str | None = None,
    site_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    """Append one line to the event log, in the transaction of ``db`` (which took the
    append lock first; taken here again, harmlessly, in case it did not)."""
    await append_lock(db)
    if site_id is None and device_id is not None:
        site_id = await db.fetchval("SELECT site_id FROM devices WHERE id = $1", device_id)
    event_id = await db.fetchval(
        "INSERT INTO events (at, kind, device_id, site_id, message, data)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        at, kind, device_id, site_id, message, data or {})
    return Event(int(event_id), at, kind, message, device_id, site_id, data or {})
