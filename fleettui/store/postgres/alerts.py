"""Alerts (opened, escalated, reminded, resolved, acknowledged) and silences.

Several pollers may judge the same fleet at once. Each change is a
conditional write on the alert as its caller read it, so that a change two
processes decide together is made, and told (event, webhook), once: the
second opener of an alert gets the one already open (``alerts_one_open``),
and a change to an alert another process changed meanwhile is not made again.
"""

from __future__ import annotations

from datetime import datetime

from fleettui.domain import Alert, AlertKind, EventKind, Silence
from fleettui.store.postgres.connection import Db, PostgresConnection, append_lock
from fleettui.store.postgres.events import write_event
from fleettui.store.postgres.outbox import write_device_fact, write_outbox
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

#: open an alert unless one of its kind is open on its target already (nothing returned)
_OPEN = (
    "INSERT INTO alerts (target_kind, target, site_id, kind, severity, reason, since,"
    " opened_at, notified, last_notified_at, notifications)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $9 THEN $8::timestamptz END,"
    " CASE WHEN $9 THEN 1 ELSE 0 END)"
    " ON CONFLICT (target_kind, target, kind) WHERE state = 'open' DO NOTHING"
    f" RETURNING {ALERT_COLUMNS}"
)
#: one change ($4) to an open alert, made only if the alert still is as the caller read it:
#: not escalated yet, not told yet, or last reminded when the caller saw ($6)
_CHANGE = (
    "UPDATE alerts SET"
    " last_notified_at = CASE WHEN $2 THEN $3 ELSE last_notified_at END,"
    " notifications = notifications + CASE WHEN $2 THEN 1 ELSE 0 END,"
    " state = CASE WHEN $4::text = 'resolved' THEN 'resolved' ELSE state END,"
    " resolved_at = CASE WHEN $4 = 'resolved' THEN $3 ELSE resolved_at END,"
    " severity = CASE WHEN $4 = 'escalated' THEN $5::text ELSE severity END,"
    " escalated_at = CASE WHEN $4 = 'escalated' THEN $3 ELSE escalated_at END,"
    " notified = notified OR $4 = 'notified'"
    " WHERE id = $1 AND state = 'open' AND CASE $4"
    "   WHEN 'escalated' THEN escalated_at IS NULL WHEN 'notified' THEN NOT notified"
    "   WHEN 'reminder' THEN last_notified_at IS NOT DISTINCT FROM $6::timestamptz ELSE true END"
    f" RETURNING {ALERT_COLUMNS}"
)


class AlertQueries(PostgresConnection):
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
        target already (another poller opened it first), that one is the answer, and
        nothing more is written: an alert is opened, and told, once."""
        async def write(db: Db) -> Alert:
            await append_lock(db)
            row = await db.fetchrow(_OPEN, target_kind, target, site_id, kind.value, severity,
                                    reason, since, now, notify)
            if row is None:
                # every alert's change holds the append lock: the open one stays open
                row = await db.fetchrow(
                    f"SELECT {ALERT_COLUMNS} FROM alerts WHERE target_kind = $1"
                    " AND target = $2 AND kind = $3 AND state = 'open'",
                    target_kind, target, kind.value)
                assert row is not None, "alerts_one_open refused an alert not there"
                return alert_of_row(row)
            alert = alert_of_row(row)
            await self._alert_fact(db, alert, EventKind.ALERT_OPENED, now, notify)
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
        another process made first (the alert resolved, escalated, told or reminded since
        ``alert`` was read) is not made again: the alert comes back as it stands."""
        told = CHANGE_EVENTS[change]

        async def write(db: Db) -> Alert:
            await append_lock(db)
            row = await db.fetchrow(_CHANGE, alert.id, notify, now, change,
                                    severity or "critical", alert.last_notified_at)
            if row is None:
                row = await db.fetchrow(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1",
                                        alert.id)
                return alert_of_row(row) if row is not None else alert
            fresh = alert_of_row(row)
            await self._alert_fact(db, fresh, told, now, notify)
            return fresh
        return await self._transaction(write)

    async def acknowledge_alert(self, alert_id: int, by: str, now: datetime) -> Alert | None:
        """Acknowledge an open alert (stops its reminders); None if no such open alert."""
        async def write(db: Db) -> Alert | None:
            await append_lock(db)
            row = await db.fetchrow(
                "UPDATE alerts SET acknowledged_at = $1, acknowledged_by = $2"
                f" WHERE id = $3 AND state = 'open' RETURNING {ALERT_COLUMNS}",
                now, by, alert_id)
            if row is None:
                return None
            alert = alert_of_row(row)
            await write_event(db, now, EventKind.ALERT_ACKNOWLEDGED,
                              acknowledged_text(alert_id, by), device_id=alert_device(alert),
                              site_id=alert.site_id, data={"alert_id": alert_id})
            return alert
        return await self._transaction(write)

    async def alerts(self, *, open_only: bool = True, limit: int = 500) -> list[Alert]:
        """Alerts, newest first (only open ones by default)."""
        where = " WHERE state = 'open'" if open_only else ""
        rows = await self._fetch(
            f"SELECT {ALERT_COLUMNS} FROM alerts{where} ORDER BY id DESC LIMIT $1", limit)
        return [alert_of_row(r) for r in rows]

    async def _alert_fact(self, db: Db, alert: Alert, kind: EventKind, now: datetime,
                          notify: bool) -> None:
        """An alert's change told: its event, the device fact of a flap, its outbox row."""
        told = alert_told(alert, kind, now, notify)
        await write_event(db, now, kind, told.message, device_id=told.device_id,
                          site_id=alert.site_id, data=told.data)
        if told.device_fact is not None:
            fact, extra = told.device_fact
            await write_device_fact(db, alert.target, fact, now, extra)
        if told.webhook is not None:
            await write_outbox(db, told.webhook, told.device_id, told.payload, now)

    # --- silences -------------------------------------------------------

    async def add_silence(
        self, target: str, until: datetime, reason: str, by: str, now: datetime
    ) -> Silence:
        """Silence a device or a site until ``until``."""
        async def write(db: Db) -> Silence:
            await append_lock(db)
            row = await db.fetchrow(
                "INSERT INTO silences (target, until, reason, created_by, created_at)"
                f" VALUES ($1, $2, $3, $4, $5) RETURNING {SILENCE_COLUMNS}",
                target, until, reason, by, now)
            assert row is not None
            await write_event(db, now, EventKind.SILENCE_ADDED,
                              silenced_text(target, until, reason),
                              data={"silence_id": row["id"]})
            return silence_of_row(row)
        return await self._transaction(write)

    async def end_silence(self, silence_id: int, now: datetime) -> Silence | None:
        """End a silence in force now; None if there is no such silence in force."""
        async def write(db: Db) -> Silence | None:
            await append_lock(db)
            row = await db.fetchrow(
                "UPDATE silences SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL"
                f" AND until > $1 RETURNING {SILENCE_COLUMNS}", now, silence_id)
            if row is None:
                return None
            silence = silence_of_row(row)
            await write_event(db, now, EventKind.SILENCE_ENDED,
                              silence_ended_text(silence.target),
                              data={"silence_id": silence_id})
            return silence
        return await self._transaction(write)

    async def active_silences(self, now: datetime) -> list[Silence]:
        """Silences in force; those past their end are closed (with an event) first.

        Asked at every evaluation: the append lock is taken only when some silence has
        run out, and each is closed by one process only (the conditional update)."""
        if await self._fetchval(
                "SELECT EXISTS (SELECT 1 FROM silences WHERE ended_at IS NULL"
                " AND until <= $1)", now):
            async def write(db: Db) -> None:
                await append_lock(db)
                ended = await db.fetch(
                    "UPDATE silences SET ended_at = $1 WHERE ended_at IS NULL"
                    " AND until <= $1 RETURNING id, target", now)
                for r in sorted(ended, key=lambda r: int(r["id"])):
                    await write_event(db, now, EventKind.SILENCE_EXPIRED,
                                      silence_ended_text(r["target"]),
                                      data={"silence_id": r["id"]})
            await self._transaction(write)
        rows = await self._fetch(
            f"SELECT {SILENCE_COLUMNS} FROM silences WHERE ended_at IS NULL AND until > $1"
            " ORDER BY id", now)
        return [silence_of_row(r) for r in rows]
