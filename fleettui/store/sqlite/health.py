"""Device health: status transitions, their history, uptime, and flap state."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fleettui.domain import DeviceStatus, Event, FlapState, Liveness, StatusChange
from fleettui.store.shared.health_rules import online_share, status_fact
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, ts
from fleettui.store.sqlite.events import write_event
from fleettui.store.sqlite.outbox import write_device_fact


class HealthQueries(SqliteConnection):
    """What the poller learns of each device's health, and what it remembers of flapping."""

    async def record_status(self, change: StatusChange) -> Event:
        """A status transition: device row, history, event log and webhook fact, in one
        transaction (see ``Store.record_status``)."""
        fact = status_fact(change)
        def write(db: sqlite3.Connection) -> Event:
            db.execute(
                "UPDATE devices SET status = ?, status_reason = ?, status_since = ? WHERE id = ?",
                (change.status.value, change.reason, ts(change.at), change.device_id),
            )
            db.execute(
                "INSERT INTO status_history (device_id, status, reason, at) VALUES (?, ?, ?, ?)",
                (change.device_id, change.status.value, change.reason, ts(change.at)),
            )
            if fact.webhook is not None:
                write_device_fact(db, change.device_id, fact.webhook, change.at, fact.extra)
            return write_event(db, change.at, fact.kind, fact.message,
                               device_id=change.device_id, data=fact.data)
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
        """Share of ``window`` before ``now`` the device was online (see ``Store.uptime``)."""
        start = now - window
        return online_share(await self.status_history(device_id, since=start), start, now)

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
