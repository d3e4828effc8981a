"""The event log: appended in the transaction of the fact it tells, tailed by views."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import datetime
from typing import Any

from fleettui.domain import Event, EventKind, FleetChanges
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, select, ts


class EventQueries(SqliteConnection):
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
        return await self._transaction(lambda db: write_event(
            db, at, kind, message, device_id=device_id, site_id=site_id, data=data
        ))

    async def last_event_id(self) -> int:
        """The id of the newest event (0 when the log is empty)."""
        rows = await fetch(self._db, "SELECT COALESCE(MAX(id), 0) FROM events")
        return int(rows[0][0])

    async def devices_changed_after(self, last_id: int) -> FleetChanges:
        """The devices with a ``device.*`` event (a status transition, a registration,
        a move, an update, a removal) above ``last_id``, up to the newest event: how
        the alert engine follows the fleet without reading all of it."""
        newest = await self.last_event_id()
        rows = await fetch(
            self._db,
            "SELECT DISTINCT device_id FROM events WHERE id > ? AND id <= ?"
            " AND kind LIKE 'device.%' AND device_id IS NOT NULL ORDER BY device_id",
            (last_id, newest),
        )
        return FleetChanges(newest, [r[0] for r in rows])

    async def wait_for_events(self, after_id: int, timeout_s: float) -> bool:
        """See ``Store.wait_for_events``: SQLite tells nobody, so the newest id is read
        four times a second (one indexed read) until it moves or the time is up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while await self.last_event_id() <= after_id:
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.sleep(min(0.25, left))
        return True

    async def events_after(self, last_id: int = 0, limit: int = 1000) -> list[Event]:
        """Events with an id above ``last_id``, in order: how views tail the log."""
        rows = await fetch(
            self._db,
            "SELECT id, at, kind, device_id, site_id, message, data FROM events WHERE id > ?"
            " ORDER BY id LIMIT ?",
            (last_id, limit),
        )
        return [
            Event(
                r["id"],
                from_ts(r["at"]),  # type: ignore[arg-type]
                EventKind.read(r["kind"]),
                r["message"],
                r["device_id"],
                r["site_id"],
                json.loads(r["data"]),
            )
            for r in rows
        ]


def write_event(
    db: sqlite3.Connection,
    at: datetime,
    kind: EventKind,
    message: str,
    *,
    device_id: str | None = None,
    site_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    """Append one line to the event log, in the transaction of ``db``."""
    if site_id is None and device_id is not None:
        found = select(db, "SELECT site_id FROM devices WHERE id = ?", (device_id,))
        site_id = found[0][0] if found else None
    cur = db.execute(
        "INSERT INTO events (at, kind, device_id, site_id, message, data)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (ts(at), kind, device_id, site_id, message, json.dumps(data or {})),
    )
    return Event(int(cur.lastrowid or 0), at, kind, message, device_id, site_id, data or {})
