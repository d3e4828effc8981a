"""Punches, the sync cursor, and the punch.created outbox rows written with them."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fleettui.domain import (
    Punch,
    SyncCursor,
    TzFlag,
    WebhookEvent,
)
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, local_text, ts

#: one punch.created outbox row per punch with an id above ?, payload built by SQLite
_OUTBOX_FROM_NEW_PUNCHES = (
    "INSERT INTO webhook_outbox (event_type, device_id, payload, created_at)"
    f" SELECT '{WebhookEvent.PUNCH_CREATED.value}', device_id,"
    f" json_object('event', '{WebhookEvent.PUNCH_CREATED.value}', 'punch', json_object('id', id,"
    " 'device_id', device_id, 'user_id', user_id, 'local_time', local_time,"
    " 'timezone', timezone, 'timestamp', utc_time, 'state', state, 'verify', verify)),"
    " received_at FROM punches WHERE id > ? ORDER BY id"
)
_PUNCH_COLUMNS = (
    "id, device_id, user_id, local_time, timezone, utc_time, tz_flag, state, verify,"
    " clock_drift_s, source, received_at"
)


class PunchQueries(SqliteConnection):
    """Punches in, with their outbox rows; punches out, filtered."""

    async def insert_punches(
        self,
        device_id: str,
        punches: Sequence[Punch],
        *,
        cursor: SyncCursor | None = None,
        synced_at: datetime | None = None,
    ) -> int:
        """Store punches not stored yet, with their webhook outbox rows, in one transaction.

        Duplicates (same device, user, local time, state and verify type) are
        ignored. ``cursor`` (records now stored, fingerprint of the last one)
        advances the device's sync cursor in the same transaction, so a crash
        can never leave the cursor ahead of the punches. Returns how many
        punches were new.
        """
        received: dict[datetime, str] = {}  # a sync's punches share one received_at
        rows = [
            (
                device_id,
                p.user_id,
                local_text(p.local_time),
                p.timezone,
                ts(p.utc_time),
                p.tz_flag.value,
                p.state,
                p.verify,
                p.clock_drift_s,
                p.source,
                received.get(p.received_at) or received.setdefault(p.received_at,
                                                                    ts(p.received_at)),
            )
            for p in punches
        ]
        def write(db: sqlite3.Connection) -> int:
            row = (db.execute("SELECT COALESCE(MAX(id), 0) FROM punches")).fetchone()
            before = int(row[0]) if row else 0
            db.executemany(
                "INSERT OR IGNORE INTO punches (device_id, user_id, local_time, timezone,"
                " utc_time, tz_flag, state, verify, clock_drift_s, source, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            # the outbox rows are made by SQLite from the rows just inserted: one per new
            # punch, none for a duplicate, in the same transaction
            db.execute(_OUTBOX_FROM_NEW_PUNCHES, (before,))
            row = (
                db.execute(
              "SELECT COUNT(*), MAX(utc_time) FROM punches WHERE id > ?", (before,)
                )
            ).fetchone()
            new, newest = (int(row[0]), row[1]) if row else (0, None)
            if newest is not None:
                db.execute(
                    "UPDATE devices SET last_punch_at = MAX(COALESCE(last_punch_at, ''), ?)"
                    " WHERE id = ?",
                    (newest, device_id),
                )
            if cursor is not None:
                stored, tail = cursor
                db.execute(
                    "UPDATE devices SET synced_records = ?, synced_tail = ?,"
                    " last_sync_at = COALESCE(?, last_sync_at) WHERE id = ?",
                    (stored, tail, ts(synced_at) if synced_at else None, device_id),
                )
            return new
        return await self._transaction(write)

    async def sync_cursor(self, device_id: str) -> SyncCursor:
        """How far the device's log is stored (nothing stored yet: 0 records)."""
        rows = await fetch(
            self._db, "SELECT synced_records, synced_tail FROM devices WHERE id = ?", (device_id,)
        )
        return SyncCursor(int(rows[0][0]), str(rows[0][1])) if rows else SyncCursor(0, "")

    async def punches(
        self,
        *,
        since: datetime | None = None,
        site_id: str | None = None,
        device_id: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        until: datetime | None = None,
    ) -> list[Punch]:
        """Stored punches in UTC order (then id), filtered: a UTC time in [since, until)."""
        sql = f"SELECT {_PUNCH_COLUMNS} FROM punches WHERE id > ?"
        args: list[Any] = [after_id]
        if since is not None:
            sql += " AND utc_time >= ?"
            args.append(ts(since))
        if until is not None:
            sql += " AND utc_time < ?"
            args.append(ts(until))
        if device_id is not None:
            sql += " AND device_id = ?"
            args.append(device_id)
        if site_id is not None:
            sql += " AND device_id IN (SELECT id FROM devices WHERE site_id = ?)"
            args.append(site_id)
        sql += " ORDER BY utc_time, id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [punch_of_row(r) for r in await fetch(self._db, sql, args)]

    async def punch_count(self, device_id: str | None = None) -> int:
        """How many punches are stored (for one device, if given)."""
        if device_id is None:
            rows = await fetch(self._db, "SELECT COUNT(*) FROM punches")
        else:
            rows = await fetch(
                self._db, "SELECT COUNT(*) FROM punches WHERE device_id = ?", (device_id,)
            )
        return int(rows[0][0])

    async def outbox_count(self) -> int:
        """Rows waiting in the webhook outbox."""
        rows = await fetch(self._db, "SELECT COUNT(*) FROM webhook_outbox")
        return int(rows[0][0])


def punch_of_row(r: Any) -> Punch:
    """A punches row as a Punch."""
    return Punch(
        id=r["id"],
        device_id=r["device_id"],
        user_id=r["user_id"],
        local_time=datetime.fromisoformat(r["local_time"]),
        timezone=r["timezone"],
        utc_time=from_ts(r["utc_time"]),  # type: ignore[arg-type]
        tz_flag=TzFlag(r["tz_flag"]),
        state=r["state"],
        verify=r["verify"],
        clock_drift_s=r["clock_drift_s"],
        source=r["source"],
        received_at=from_ts(r["received_at"]),  # type: ignore[arg-type]
    )
