"""Alerts (opened, escalated, reminded, resolved, acknowledged) and silences."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from fleettui.domain import Alert, AlertKind, EventKind, Silence
from fleettui.store.shared.alert_texts import (
    ALERT_COLUMNS,
    CHANGE_EVENTS,
    SILENCE_COLUMNS,
    acknowledged_text,
    alert_device,
    alert_of_row,
    alert_told,
    silence_ended_text,
    silence_of_row,
    silenced_text,
)
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, select, ts
from fleettui.store.sqlite.events import write_event
from fleettui.store.sqlite.outbox import write_device_fact


class AlertQueries(SqliteConnection):
    """Alerts and silences, each change with its event and outbox rows."""

    async def open_alert(
        self,
        *,
        target_kind: str,
        target: str,
        site_id: str | None,
        kind: AlertKind,
        severity: str,
        reason: str,
        since: datetime,
        now: datetime,
        notify: bool,
    ) -> Alert:
        """Open an alert (see ``Store.open_alert``). If one of its kind is open on its
        target already, that one is the answer and nothing is written (as on PostgreSQL,
        where another poller may have opened it first)."""
        def write(db: sqlite3.Connection) -> Alert:
            rows = select(
                db,
                "INSERT INTO alerts (target_kind, target, site_id, kind, severity, reason, since,"
                " opened_at, notified, last_notified_at, notifications)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (target_kind, target, kind) WHERE state = 'open' DO NOTHING"
                " RETURNING id",
                (target_kind, target, site_id, kind.value, severity, reason, ts(since), ts(now),
                 int(notify), ts(now) if notify else None, int(notify)),
            )
            if not rows:
                return alert_of_row(select(
                    db, f"SELECT {ALERT_COLUMNS} FROM alerts WHERE target_kind = ?"
                    " AND target = ? AND kind = ? AND state = 'open'",
                    (target_kind, target, kind.value))[0], from_ts)
            alert = read_alert(db, int(rows[0]["id"]))
            self._alert_fact(db, alert, EventKind.ALERT_OPENED, now, notify)
            return alert
        return await self._transaction(write)

    async def update_alert(
        self,
        alert: Alert,
        now: datetime,
        *,
        change: str,
        notify: bool,
        severity: str | None = None,
    ) -> Alert:
        """Resolve, escalate, remind or tell at last (see ``Store.update_alert``). A change
        made since ``alert`` was read (resolved, escalated, told or reminded) is not made
        again: the alert comes back as it stands (as on PostgreSQL)."""
        told = CHANGE_EVENTS[change]

        def write(db: sqlite3.Connection) -> Alert:
            sets = ["last_notified_at = CASE WHEN ? THEN ? ELSE last_notified_at END",
                    "notifications = notifications + ?"]
            args: list[Any] = [int(notify), ts(now), int(notify)]
            unless, still = "", []  # what must still hold for the change to be made
            if change == "resolved":
                sets.append("state = 'resolved', resolved_at = ?")
                args.append(ts(now))
            elif change == "escalated":
                sets.append("severity = ?, escalated_at = ?")
                args += [severity or "critical", ts(now)]
                unless = " AND escalated_at IS NULL"
            elif change == "notified":
                sets.append("notified = 1")
                unless = " AND notified = 0"
            elif change == "reminder":  # not reminded since the caller read it
                unless = " AND last_notified_at IS ?"
                still = [ts(alert.last_notified_at) if alert.last_notified_at else None]
            cur = db.execute(f"UPDATE alerts SET {', '.join(sets)} WHERE id = ?"
                             f" AND state = 'open'{unless}", [*args, alert.id, *still])
            if not cur.rowcount:
                rows = select(db, f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?",
                              (alert.id,))
                return alert_of_row(rows[0], from_ts) if rows else alert
            fresh = read_alert(db, alert.id)
            self._alert_fact(db, fresh, told, now, notify)
            return fresh
        return await self._transaction(write)

    async def acknowledge_alert(self, alert_id: int, by: str, now: datetime) -> Alert | None:
        """Acknowledge an open alert (stops its reminders); None if no such open alert."""
        def write(db: sqlite3.Connection) -> Alert | None:
            cur = db.execute(
                "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ?"
                " WHERE id = ? AND state = 'open'",
                (ts(now), by, alert_id),
            )
            if not cur.rowcount:
                return None
            alert = read_alert(db, alert_id)
            write_event(db, now, EventKind.ALERT_ACKNOWLEDGED, acknowledged_text(alert_id, by),
                        device_id=alert_device(alert), site_id=alert.site_id,
                        data={"alert_id": alert_id})
            return alert
        return await self._transaction(write)

    async def alerts(self, *, open_only: bool = True, limit: int = 500) -> list[Alert]:
        """Alerts, newest first (only open ones by default)."""
        sql = f"SELECT {ALERT_COLUMNS} FROM alerts"
        if open_only:
            sql += " WHERE state = 'open'"
        sql += " ORDER BY id DESC LIMIT ?"
        return [alert_of_row(r, from_ts) for r in await fetch(self._db, sql, (limit,))]

    def _alert_fact(
        self, db: sqlite3.Connection, alert: Alert, kind: EventKind, now: datetime,
        notify: bool
    ) -> None:
        """An alert's change told: its event, the device fact of a flap, its outbox row."""
        told = alert_told(alert, kind, now, notify)
        write_event(db, now, kind, told.message, device_id=told.device_id,
                    site_id=alert.site_id, data=told.data)
        if told.device_fact is not None:
            fact, extra = told.device_fact
            write_device_fact(db, alert.target, fact, now, extra)
        if told.webhook is not None:
            db.execute(
                "INSERT INTO webhook_outbox (event_type, device_id, payload, created_at)"
                " VALUES (?, ?, ?, ?)",
                (told.webhook, told.device_id, json.dumps(told.payload), ts(now)),
            )

    # --- silences -------------------------------------------------------

    async def add_silence(
        self, target: str, until: datetime, reason: str, by: str, now: datetime
    ) -> Silence:
        """Silence a device or a site until ``until``."""
        def write(db: sqlite3.Connection) -> Silence:
            cur = db.execute(
                "INSERT INTO silences (target, until, reason, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (target, ts(until), reason, by, ts(now)),
            )
            write_event(db, now, EventKind.SILENCE_ADDED, silenced_text(target, until, reason),
                        data={"silence_id": cur.lastrowid})
            rows = select(db, f"SELECT {SILENCE_COLUMNS} FROM silences WHERE id = ?",
                          (cur.lastrowid,))
            return silence_of_row(rows[0], from_ts)
        return await self._transaction(write)

    async def end_silence(self, silence_id: int, now: datetime) -> Silence | None:
        """End a silence in force now; None if there is no such silence in force."""
        def write(db: sqlite3.Connection) -> Silence | None:
            cur = db.execute(
                "UPDATE silences SET ended_at = ? WHERE id = ? AND ended_at IS NULL"
                " AND until > ?",
                (ts(now), silence_id, ts(now)),
            )
            if not cur.rowcount:
                return None
            rows = select(db, f"SELECT {SILENCE_COLUMNS} FROM silences WHERE id = ?",
                          (silence_id,))
            silence = silence_of_row(rows[0], from_ts)
            write_event(db, now, EventKind.SILENCE_ENDED, silence_ended_text(silence.target),
                        data={"silence_id": silence_id})
            return silence
        return await self._transaction(write)

    async def active_silences(self, now: datetime) -> list[Silence]:
        """Silences in force; those past their end are closed (with an event) first."""
        def write(db: sqlite3.Connection) -> list[Any]:
            ended = select(
                db, f"SELECT {SILENCE_COLUMNS} FROM silences WHERE ended_at IS NULL"
                " AND until <= ?", (ts(now),),
            )
            for row in ended:
                db.execute("UPDATE silences SET ended_at = ? WHERE id = ?",
                           (ts(now), row["id"]))
                write_event(db, now, EventKind.SILENCE_EXPIRED,
                            silence_ended_text(row["target"]), data={"silence_id": row["id"]})
            return select(
                db, f"SELECT {SILENCE_COLUMNS} FROM silences WHERE ended_at IS NULL"
                " ORDER BY id",
            )
        return [silence_of_row(r, from_ts) for r in await self._transaction(write)]


def read_alert(db: sqlite3.Connection, alert_id: int) -> Alert:
    """One alert as it stands inside a write transaction, with its changes."""
    rows = select(db, f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,))
    return alert_of_row(rows[0], from_ts)
