"""The event log: appended in the transaction of the fact it tells, tailed by views."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

import asyncpg

from fleettui.domain import Event, EventKind, FleetChanges
from fleettui.store.postgres.connection import Db, PostgresConnection, append_lock

#: a wait not woken by a NOTIFY reads the newest event id again this often (seconds)
RECHECK_S = 2.0
#: the channel every committed event's id is told on (LISTEN/NOTIFY)
EVENTS_CHANNEL = "fleettui_events"


class EventQueries(PostgresConnection):
    """The event log, appended and tailed (views wake on NOTIFY, ``wait_for_events``)."""

    _listener: asyncpg.Connection | None = None
    _heard: int = 0
    _told: asyncio.Event | None = None

    async def wait_for_events(self, after_id: int, timeout_s: float) -> bool:
        """See ``Store.wait_for_events``: woken by NOTIFY, on a connection of its own."""
        if self._told is None:
            self._told = asyncio.Event()
        if self._listener is None or self._listener.is_closed():
            await self._listen()
        if self._heard <= after_id:
            self._heard = max(self._heard, await self.last_event_id())
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._heard <= after_id:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            self._told.clear()
            try:
                await asyncio.wait_for(self._told.wait(), min(left, RECHECK_S))
            except TimeoutError:
                # a NOTIFY can be missed: one queued by a transaction committing just as
                # the LISTEN began is behind the listener's start, while the row is not
                # yet visible to the read after it (3 first waits in 6 missed an event
                # for their whole 30 s with six test processes at once): look again
                self._heard = max(self._heard, await self.last_event_id())
        return True

    async def _listen(self) -> None:
        """Open the listening connection (a lost one is opened again at the next wait)."""
        conn = await asyncpg.connect(self._url)
        await conn.add_listener(EVENTS_CHANNEL, self._on_notify)
        self._listener = conn

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        """An event committed somewhere: note its id, wake whoever waits."""
        if isinstance(payload, str) and payload.isdigit():
            self._heard = max(self._heard, int(payload))
        if self._told is not None:
            self._told.set()

    async def close(self) -> None:
        """Close the listening connection too."""
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        await super().close()

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
    # the views listening hear its id when the transaction commits (not before, and not at
    # all if it rolls back: NOTIFY is transactional)
    event_id = await db.fetchval(
        "WITH e AS (INSERT INTO events (at, kind, device_id, site_id, message, data)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id)"
        f" SELECT id FROM e, pg_notify('{EVENTS_CHANNEL}', e.id::text)",
        at, kind, device_id, site_id, message, data or {})
    return Event(int(event_id), at, kind, message, device_id, site_id, data or {})
