"""Alerts (opened, escalated, reminded, resolved, acknowledged) and silences."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from fleettui.domain import (
    Alert,
    AlertKind,
    EventKind,
    Silence,
    WebhookEvent,
)
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, select, ts
from fleettui.store.sqlite.events import write_event
from fleettui.store.sqlite.outbox import write_device_fact

_ALERT_COLUMNS = (
    "id, target_kind, target, site_id, kind, severity, state, reason, since, opened_at,"
    " resolved_at, escalated_at, acknowledged_at, acknowledged_by, notified, last_notified_at,"
    " notifications"
)
_SILENCE_COLUMNS = "id, target, until, reason, created_by, created_at, ended_at"
#: the event of each change update_alert makes ("notified": a delayed alert finally told)
_CHANGE_EVENTS = {"resolved": EventKind.ALERT_RESOLVED, "escalated": EventKind.ALERT_ESCALATED,
                  "reminder": EventKind.ALERT_REMINDER, "notified": EventKind.ALERT_OPENED}


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
        """Open an alert (event, and webhook outbox row when notified, in one transaction)."""
        def write(db: sqlite3.Connection) -> Alert:
            cur = db.execute(
                "INSERT INTO alerts (target_kind, target, site_id, kind, severity, reason, since,"
                " opened_at, notified, last_notified_at, notifications)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (target_kind, target, site_id, kind.value, severity, reason, ts(since), ts(now),
                 int(notify), ts(now) if notify else None, int(notify)),
            )
            alert = read_alert(db, int(cur.lastrowid or 0))
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
        """Resolve, escalate or remind: ``change`` is "resolved", "escalated" or "reminder"."""
        def write(db: sqlite3.Connection) -> Alert:
            sets = ["last_notified_at = CASE WHEN ? THEN ? ELSE last_notified_at END",
                    "notifications = notifications + ?"]
            args: list[Any] = [int(notify), ts(now), int(notify)]
            if change == "resolved":
                sets.append("state = 'resolved', resolved_at = ?")
                args.append(ts(now))
            elif change == "escalated":
                sets.append("severity = ?, escalated_at = ?")
                args += [severity or "critical", ts(now)]
            elif change == "notified":
                sets.append("notified = 1")
            args.append(alert.id)
            db.execute(f"UPDATE alerts SET {', '.join(sets)} WHERE id = ?", args)
            fresh = read_alert(db, alert.id)
            self._alert_fact(db, fresh, _CHANGE_EVENTS[change], now, notify)
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
            write_event(db, now, EventKind.ALERT_ACKNOWLEDGED,
                        f"alert {alert_id} acknowledged" + (f" by {by}" if by else ""),
                        device_id=alert.target if alert.target_kind == "device" else None,
                        site_id=alert.site_id, data={"alert_id": alert_id})
            return alert
        return await self._transaction(write)

    async def alerts(self, *, open_only: bool = True, limit: int = 500) -> list[Alert]:
        """Alerts, newest first (only open ones by default)."""
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts"
        if open_only:
            sql += " WHERE state = 'open'"
        sql += " ORDER BY id DESC LIMIT ?"
        return [_alert(r) for r in await fetch(self._db, sql, (limit,))]

    def _alert_fact(
        self, db: sqlite3.Connection, alert: Alert, kind: EventKind, now: datetime,
        notify: bool
    ) -> None:
        """An alert's change told: its event, the device fact of a flap, its outbox row."""
        payload = {
            "event": kind.value,
            "alert": {
                "id": alert.id, "kind": alert.kind.value, "severity": alert.severity,
                "target": alert.target, "target_kind": alert.target_kind, "site": alert.site_id,
                "reason": alert.reason, "since": ts(alert.since),
                "acknowledged": alert.acknowledged_at is not None,
            },
            "timestamp": ts(now),
        }
        write_event(
            db, now, kind, f"{alert.kind.value} {alert.target_kind} {alert.target}: {kind}"
            + (f" ({alert.reason})" if alert.reason else ""),
            device_id=alert.target if alert.target_kind == "device" else None,
            site_id=alert.site_id, data={"alert_id": alert.id, "notified": notify},
        )
        opened = kind is EventKind.ALERT_OPENED
        if alert.kind is AlertKind.FLAPPING and (opened or kind is EventKind.ALERT_RESOLVED):
            write_device_fact(
                db, alert.target,
                WebhookEvent.DEVICE_FLAPPING if opened else WebhookEvent.DEVICE_STABLE,
                now, {"reason": alert.reason} if opened else {},
            )
        if notify and kind is not EventKind.ALERT_REMINDER:
            # opened, escalated and resolved are told to receivers under the same names
            db.execute(
                "INSERT INTO webhook_outbox (event_type, device_id, payload, created_at)"
                " VALUES (?, ?, ?, ?)",
                (WebhookEvent(kind.value), alert.target if alert.target_kind == "device" else None,
                 json.dumps(payload), ts(now)),
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
            write_event(db, now, EventKind.SILENCE_ADDED,
                        f"{target} silenced until {ts(until)}: {reason}",
                        data={"silence_id": cur.lastrowid})
            rows = select(db, f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE id = ?",
                                (cur.lastrowid,))
            return _silence(rows[0])
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
            rows = select(db, f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE id = ?",
                                (silence_id,))
            silence = _silence(rows[0])
            write_event(db, now, EventKind.SILENCE_ENDED,
                        f"silence of {silence.target} ended", data={"silence_id": silence_id})
            return silence
        return await self._transaction(write)

    async def active_silences(self, now: datetime) -> list[Silence]:
        """Silences in force; those past their end are closed (with an event) first."""
        def write(db: sqlite3.Connection) -> list[Any]:
            ended = select(
                db, f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE ended_at IS NULL"
                " AND until <= ?", (ts(now),),
            )
            for row in ended:
                db.execute("UPDATE silences SET ended_at = ? WHERE id = ?",
                           (ts(now), row["id"]))
                write_event(db, now, EventKind.SILENCE_EXPIRED,
                            f"silence of {row['target']} ended",
                            data={"silence_id": row["id"]})
            return select(
                db, f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE ended_at IS NULL"
                " ORDER BY id",
            )
        return [_silence(r) for r in await self._transaction(write)]


def read_alert(db: sqlite3.Connection, alert_id: int) -> Alert:
    """One alert as it stands inside a write transaction, with its changes."""
    return _alert(select(db, f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,))[0])


def _alert(r: Any) -> Alert:
    """An alerts row as an Alert."""
    return Alert(
        id=r["id"], target_kind=r["target_kind"], target=r["target"], site_id=r["site_id"],
        kind=AlertKind(r["kind"]), severity=r["severity"], state=r["state"], reason=r["reason"],
        since=from_ts(r["since"]),  # type: ignore[arg-type]
        opened_at=from_ts(r["opened_at"]),  # type: ignore[arg-type]
        resolved_at=from_ts(r["resolved_at"]), escalated_at=from_ts(r["escalated_at"]),
        acknowledged_at=from_ts(r["acknowledged_at"]), acknowledged_by=r["acknowledged_by"],
        notified=bool(r["notified"]), last_notified_at=from_ts(r["last_notified_at"]),
        notifications=r["notifications"],
    )


def _silence(r: Any) -> Silence:
    """A silences row as a Silence."""
    return Silence(
        id=r["id"], target=r["target"], until=from_ts(r["until"]),  # type: ignore[arg-type]
        reason=r["reason"], created_by=r["created_by"],
        created_at=from_ts(r["created_at"]),  # type: ignore[arg-type]
        ended_at=from_ts(r["ended_at"]),
    )
