"""Device health: status transitions, their history, uptime, and flap state."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fleettui.domain import (
    DeviceStatus,
    Event,
    EventKind,
    FlapState,
    Liveness,
    StatusChange,
    WebhookEvent,
)
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, ts
from fleettui.store.sqlite.events import write_event
from fleettui.store.sqlite.outbox import write_device_fact


class HealthQueries(SqliteConnection):
    """What the poller learns of each device's health, and what it remembers of flapping."""

    async def record_status(self, change: StatusChange) -> Event:
        """A status transition: device row, history and event log, in one transaction."""
        data = {"status": change.status.value, "reason": change.reason}
        if change.previous is not None:
            data["previous"] = change.previous.value
        message = f"{change.device_id} {change.status.value}"
        if change.reason:
            message += f": {change.reason}"
        def write(db: sqlite3.Connection) -> Event:
            db.execute(
                "UPDATE devices SET status = ?, status_reason = ?, status_since = ? WHERE id = ?",
                (change.status.value, change.reason, ts(change.at), change.device_id),
            )
            db.execute(
                "INSERT INTO status_history (device_id, status, reason, at) VALUES (?, ?, ?, ?)",
                (change.device_id, change.status.value, change.reason, ts(change.at)),
            )
            if change.status is not DeviceStatus.UNKNOWN:
                # other systems hear "online" or "offline" (an error is offline, with its reason)
                kind = (WebhookEvent.DEVICE_ONLINE if change.status is DeviceStatus.ONLINE
                        else WebhookEvent.DEVICE_OFFLINE)
                write_device_fact(db, change.device_id, kind, change.at,
                                  {"reason": change.reason} if change.reason else {})
            return write_event(
                db,
                change.at,
                EventKind.for_status(change.status),
                message,
                device_id=change.device_id,
                data=data,
            )
        return await self._transaction(write)

    async def record_seen(
        self,
        device_id: str,
        at: datetime,
        *,
        users: int | None = None,
        users_cap: int | None = None,
        records: int | None = None,
        records_cap: int | None = None,
    ) -> None:
        """A successful check: last seen, and the device's counters."""
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE devices SET last_seen = ?, users = COALESCE(?, users),"
                " users_cap = COALESCE(?, users_cap), records = COALESCE(?, records),"
                " records_cap = COALESCE(?, records_cap) WHERE id = ?",
                (ts(at), users, users_cap, records, records_cap, device_id),
            )
        await self._transaction(write)

    async def record_seen_many(self, seen: Sequence[Liveness]) -> None:
        """Many successful checks in one transaction (the engine's liveness batch)."""
        if not seen:
            return
        rows = [(ts(s.at), s.users, s.users_cap, s.records, s.records_cap, s.device_id)
                for s in seen]
        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "UPDATE devices SET last_seen = ?, users = COALESCE(?, users),"
                " users_cap = COALESCE(?, users_cap), records = COALESCE(?, records),"
                " records_cap = COALESCE(?, records_cap) WHERE id = ?",
                rows,
            )
        await self._transaction(write)

    async def record_identity(
        self, device_id: str, *, model: str, firmware: str, platform: str, mac: str
    ) -> None:
        """What the device said it is, read on connect."""
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE devices SET model = ?, firmware = ?, platform = ?, mac = ? WHERE id = ?",
                (model, firmware, platform, mac, device_id),
            )
        await self._transaction(write)

    async def record_clock(self, device_id: str, drift_s: float, at: datetime) -> None:
        """The device clock's offset from true local time, measured at ``at``."""
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE devices SET clock_drift_s = ?, clock_checked_at = ? WHERE id = ?",
                (drift_s, ts(at), device_id),
            )
        await self._transaction(write)

    async def status_history(
        self, device_id: str, since: datetime | None = None
    ) -> list[StatusChange]:
        """Transitions of a device, oldest first; with ``since``, the one in force then too."""
        rows: list[Any] = []
        if since is not None:
            rows = await fetch(
                self._db,
                "SELECT status, reason, at FROM status_history WHERE device_id = ?"
                " AND at < ? ORDER BY at DESC, id DESC LIMIT 1",
                (device_id, ts(since)),
            )
            rows += await fetch(
                self._db,
                "SELECT status, reason, at FROM status_history WHERE device_id = ? AND at >= ?"
                " ORDER BY at, id",
                (device_id, ts(since)),
            )
        else:
            rows = await fetch(
                self._db,
                "SELECT status, reason, at FROM status_history WHERE device_id = ? ORDER BY at, id",
                (device_id,),
            )
        return [
            StatusChange(device_id, DeviceStatus(r["status"]), r["reason"], from_ts(r["at"]))  # type: ignore[arg-type]
            for r in rows
        ]

    async def uptime(self, device_id: str, window: timedelta, now: datetime) -> float | None:
        """Share of ``window`` before ``now`` the device was online, 0..1.

        Time before its first known status (or while unknown) does not count;
        None when nothing is known in the window.
        """
        start = now - window
        history = await self.status_history(device_id, since=start)
        online = known = 0.0
        for i, change in enumerate(history):
            begin = max(change.at, start)
            end = history[i + 1].at if i + 1 < len(history) else now
            span = max((end - begin).total_seconds(), 0.0)
            if change.status is DeviceStatus.UNKNOWN:
                continue
            known += span
            if change.status is DeviceStatus.ONLINE:
                online += span
        return online / known if known else None

    async def flap_states(self) -> dict[str, FlapState]:
        """Each device's remembered flap state, by device id."""
        rows = await fetch(
            self._db, "SELECT device_id, history, flapping, percent FROM flap_state"
        )
        return {r["device_id"]: FlapState(r["device_id"], r["history"], bool(r["flapping"]),
                                          r["percent"]) for r in rows}

    async def save_flap_states(
        self, states: Sequence[FlapState], now: datetime
    ) -> None:
        """Remember each device's flap state (changed at ``now``)."""
        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO flap_state (device_id, history, flapping, percent, changed_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET"
                " history = excluded.history, flapping = excluded.flapping,"
                " percent = excluded.percent, changed_at = excluded.changed_at",
                [(s.device_id, s.history, int(s.flapping), s.percent, ts(now)) for s in states],
            )
        await self._transaction(write)
