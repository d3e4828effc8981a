"""Webhook deliveries: each endpoint's queue over the outbox, attempts, dead letters."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fleettui.domain import (
    DeliveryResult,
    DeliveryStats,
    DueDelivery,
    EventKind,
    WebhookDelivery,
)
from fleettui.egress import redacted_url
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, select, ts
from fleettui.store.sqlite.events import write_event

_DELIVERY_SELECT = (
    "SELECT d.endpoint, e.id AS endpoint_id, e.url, d.outbox_id, o.event_type, d.device_id,"
    " d.state, d.attempts, d.last_error, d.created_at, d.next_attempt_at, d.delivered_at,"
    " d.latency_ms FROM webhook_deliveries d JOIN webhook_outbox o ON o.id = d.outbox_id"
    " LEFT JOIN webhook_endpoints e ON e.delivery_key = d.endpoint"
)


class WebhookDeliveryQueries(SqliteConnection):
    """Each endpoint's queue: filled from the outbox, attempted, replayed."""

    async def webhook_enqueue(self, endpoint: str, events: Sequence[str], now: datetime, *,
                              registered: bool = False) -> int:
        """Give an endpoint every outbox row it has not seen and wants; returns how many.

        ``registered``: the endpoint is one of the store's own (API-created), and
        nothing is queued unless it still exists: a dispatcher round that began
        before a delete must not find the cursor gone and start again from 0.
        """
        clauses: list[str] = []
        args: list[str] = []
        if "*" not in events:
            for pattern in events:
                if pattern.endswith("*"):
                    clauses.append("event_type LIKE ?")
                    args.append(pattern[:-1] + "%")
                else:
                    clauses.append("event_type = ?")
                    args.append(pattern)
        wanted = f" AND ({' OR '.join(clauses)})" if clauses else ""
        def write(db: sqlite3.Connection) -> int:
            if registered and not select(
                db, "SELECT 1 FROM webhook_endpoints WHERE delivery_key = ? AND origin = 'api'",
                (endpoint,),
            ):
                return 0
            rows = select(
                db, "SELECT last_outbox_id FROM webhook_cursors WHERE endpoint = ?", (endpoint,)
            )
            last = int(rows[0][0]) if rows else 0
            top = select(db, "SELECT COALESCE(MAX(id), 0) FROM webhook_outbox")
            newest = int(top[0][0])
            if newest <= last:
                return 0
            cur = db.execute(
                "INSERT OR IGNORE INTO webhook_deliveries (endpoint, outbox_id, device_id,"
                " created_at, next_attempt_at) SELECT ?, id, device_id, ?, ? FROM webhook_outbox"
                f" WHERE id > ? AND id <= ?{wanted} ORDER BY id",
                (endpoint, ts(now), ts(now), last, newest, *args),
            )
            db.execute(
                "INSERT INTO webhook_cursors (endpoint, last_outbox_id) VALUES (?, ?)"
                " ON CONFLICT(endpoint) DO UPDATE SET last_outbox_id = excluded.last_outbox_id",
                (endpoint, newest),
            )
            return cur.rowcount
        return await self._transaction(write)

    async def webhook_due(
        self, endpoint: str, now: datetime, per_device: int = 100
    ) -> list[DueDelivery]:
        """Deliveries to attempt now, oldest first: for each device whose oldest pending
        event is due, up to ``per_device`` of its pending events, to send in order."""
        rows = await fetch(
            self._db,
            "WITH heads AS (SELECT COALESCE(device_id, '') AS dk, MIN(outbox_id) AS head"
            "   FROM webhook_deliveries WHERE endpoint = ? AND state = 'pending' GROUP BY dk),"
            " due AS (SELECT heads.dk FROM heads JOIN webhook_deliveries d"
            "   ON d.endpoint = ? AND d.outbox_id = heads.head WHERE d.next_attempt_at <= ?),"
            " ranked AS (SELECT d.outbox_id, d.device_id, d.attempts, d.created_at,"
            "   ROW_NUMBER() OVER (PARTITION BY COALESCE(d.device_id, '') ORDER BY d.outbox_id)"
            "   AS rn FROM webhook_deliveries d WHERE d.endpoint = ? AND d.state = 'pending'"
            "   AND COALESCE(d.device_id, '') IN (SELECT dk FROM due))"
            " SELECT r.outbox_id, r.device_id, r.attempts, r.created_at, o.event_type, o.payload"
            " FROM ranked r JOIN webhook_outbox o ON o.id = r.outbox_id WHERE r.rn <= ?"
            " ORDER BY r.outbox_id",
            (endpoint, endpoint, ts(now), endpoint, per_device),
        )
        return [
            DueDelivery(outbox_id=r["outbox_id"], device_id=r["device_id"],
                        event_type=r["event_type"], payload=r["payload"],
                        attempts=r["attempts"],
                        created_at=from_ts(r["created_at"]))  # type: ignore[arg-type]
            for r in rows
        ]

    async def webhook_results(
        self, endpoint: str, results: Sequence[DeliveryResult], now: datetime
    ) -> None:
        """Record delivery attempts in one transaction: delivered, to retry at their
        ``retry_at``, or dead (each with a webhook.dead event saying its error class)."""
        if not results:
            return
        rows = [
            ("delivered" if r.ok else "dead" if r.dead else "pending",
             r.latency_ms, r.error, int(r.ok), ts(now),
             ts(r.retry_at) if r.retry_at else None, endpoint, r.outbox_id)
            for r in results
        ]
        def write(db: sqlite3.Connection) -> None:
            # one statement for the batch: thousands of separate ones cost a thread hop each
            db.executemany(
                "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1,"
                " latency_ms = COALESCE(?, latency_ms), last_error = ?,"
                " delivered_at = CASE WHEN ? THEN ? ELSE delivered_at END,"
                " next_attempt_at = COALESCE(?, next_attempt_at)"
                " WHERE endpoint = ? AND outbox_id = ?",
                rows,
            )
            for r in results:
                if r.dead:
                    write_event(
                        db, now, EventKind.WEBHOOK_DEAD,
                        f"webhook to {redacted_url(endpoint) if '://' in endpoint else endpoint}"
                        f" gave up on event {r.outbox_id}: {r.error_class or r.error}",
                        data={"outbox_id": r.outbox_id},
                    )
        await self._transaction(write)

    async def webhook_replay(
        self, endpoint: str | None, now: datetime, outbox_ids: Sequence[int] | None = None
    ) -> int:
        """Put dead deliveries (of one endpoint, or all; only ``outbox_ids`` if given)
        back in the queue; returns how many."""
        sql = "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ?, created_at = ?"
        sql += " WHERE state = 'dead'"
        args: list[Any] = [ts(now), ts(now)]
        if endpoint is not None:
            sql += " AND endpoint = ?"
            args.append(endpoint)
        if outbox_ids is not None:
            if not outbox_ids:
                return 0
            sql += f" AND outbox_id IN ({', '.join('?' * len(outbox_ids))})"
            args.extend(outbox_ids)
        def write(db: sqlite3.Connection) -> int:
            cur = db.execute(sql, args)
            return cur.rowcount
        return await self._transaction(write)

    async def webhook_deliveries(
        self, endpoint: str, state: str | None = None, limit: int = 100
    ) -> list[WebhookDelivery]:
        """One endpoint's deliveries (in ``state`` if given), newest first."""
        sql = _DELIVERY_SELECT + " WHERE d.endpoint = ?"
        args: list[Any] = [endpoint]
        if state is not None:
            sql += " AND d.state = ?"
            args.append(state)
        sql += " ORDER BY d.outbox_id DESC LIMIT ?"
        args.append(limit)
        return [_delivery(r) for r in await fetch(self._db, sql, args)]

    async def webhook_dead_count(self) -> int:
        """How many deliveries, of every endpoint, are dead (gave up; waiting for a replay)."""
        rows = await fetch(self._db,
                            "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'dead'")
        return int(rows[0][0])

    async def webhook_dead(self, limit: int = 100) -> list[WebhookDelivery]:
        """Dead deliveries of every endpoint, newest first, each with its endpoint's
        id and URL (None for a queue whose endpoint is gone from the config)."""
        sql = _DELIVERY_SELECT + " WHERE d.state = 'dead' ORDER BY d.outbox_id DESC LIMIT ?"
        return [_delivery(r) for r in await fetch(self._db, sql, (limit,))]

    async def webhook_stats(self, endpoint: str | None = None) -> DeliveryStats:
        """Deliveries by state, and the mean latency of delivered ones (ms)."""
        where, args = ("WHERE endpoint = ?", (endpoint,)) if endpoint else ("", ())
        rows = await fetch(
            self._db,
            f"SELECT state, COUNT(*), AVG(latency_ms) FROM webhook_deliveries {where}"
            " GROUP BY state",
            args,
        )
        counts = {str(r[0]): int(r[1]) for r in rows}
        latency = next((r[2] for r in rows if r[0] == "delivered"), None)
        return DeliveryStats(pending=counts.get("pending", 0),
                             delivered=counts.get("delivered", 0), dead=counts.get("dead", 0),
                             avg_latency_ms=latency)


def _delivery(r: Any) -> WebhookDelivery:
    """A delivery row (``_DELIVERY_SELECT``) as a WebhookDelivery."""
    return WebhookDelivery(
        endpoint=r["endpoint"], endpoint_id=r["endpoint_id"], url=r["url"],
        outbox_id=r["outbox_id"], event_type=r["event_type"], device_id=r["device_id"],
        state=r["state"], attempts=r["attempts"], last_error=r["last_error"],
        created_at=from_ts(r["created_at"]),  # type: ignore[arg-type]
        next_attempt_at=from_ts(r["next_attempt_at"]),
        delivered_at=from_ts(r["delivered_at"]), latency_ms=r["latency_ms"],
    )
