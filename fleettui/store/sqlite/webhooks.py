"""Webhook deliveries: each endpoint's queue over the outbox, attempts, dead letters."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from fleettui.domain import (
    DeliveryResult,
    DeliveryStats,
    DueDelivery,
    EventKind,
    WebhookDelivery,
)
from fleettui.store.shared.webhook_texts import (
    DELIVERY_SELECT,
    dead_text,
    delivery_of_row,
    due_of_row,
    due_sql,
    event_filter,
    result_state,
    stats_of_rows,
)
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, select, ts
from fleettui.store.sqlite.events import write_event


class WebhookDeliveryQueries(SqliteConnection):
    """Each endpoint's queue: filled from the outbox, attempted, replayed."""

    async def webhook_enqueue(self, endpoint: str, events: Sequence[str], now: datetime, *,
                              registered: bool = False) -> int:
        """Give an endpoint every outbox row it has not seen and wants; returns how many.

        ``registered``: the endpoint is one of the store's own (API-created), and
        nothing is queued unless it still exists: a dispatcher round that began
        before a delete must not find the cursor gone and start again from 0.
        """
        wanted, args = event_filter(events, lambda n: "?")
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
        self, endpoint: str, now: datetime, per_device: int = 100, *,
        sites: Collection[str] | None = None, deviceless: bool = True,
    ) -> list[DueDelivery]:
        """Deliveries to attempt now, oldest first (see ``Store.webhook_due``); the sites
        go as one JSON array, read by ``json_each``: one statement text however many."""
        if sites is not None and not sites and not deviceless:
            return []
        args: list[Any] = [endpoint, ts(now), per_device]
        if sites is not None:
            args.append(json.dumps(sorted(sites)))
        sql = due_sql(lambda n: f"?{n}",
                      lambda n: f"v.site_id IN (SELECT value FROM json_each(?{n}))",
                      by_site=sites is not None, deviceless=deviceless)
        return [due_of_row(r, from_ts) for r in await fetch(self._db, sql, args)]

    async def webhook_results(
        self, endpoint: str, results: Sequence[DeliveryResult], now: datetime
    ) -> None:
        """Record delivery attempts in one transaction: delivered, to retry at their
        ``retry_at``, or dead (each with a webhook.dead event saying its error class)."""
        if not results:
            return
        rows = [
            (result_state(r), r.latency_ms, r.error, int(r.ok), ts(now),
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
                    write_event(db, now, EventKind.WEBHOOK_DEAD, dead_text(endpoint, r),
                                data={"outbox_id": r.outbox_id})
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
        sql = DELIVERY_SELECT + " WHERE d.endpoint = ?"
        args: list[Any] = [endpoint]
        if state is not None:
            sql += " AND d.state = ?"
            args.append(state)
        sql += " ORDER BY d.outbox_id DESC LIMIT ?"
        args.append(limit)
        return [delivery_of_row(r, from_ts) for r in await fetch(self._db, sql, args)]

    async def webhook_dead_count(self) -> int:
        """How many deliveries, of every endpoint, are dead (gave up; waiting for a replay)."""
        rows = await fetch(self._db,
                            "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'dead'")
        return int(rows[0][0])

    async def webhook_dead(self, limit: int = 100) -> list[WebhookDelivery]:
        """Dead deliveries of every endpoint, newest first, each with its endpoint's
        id and URL (None for a queue whose endpoint is gone from the config)."""
        sql = DELIVERY_SELECT + " WHERE d.state = 'dead' ORDER BY d.outbox_id DESC LIMIT ?"
        return [delivery_of_row(r, from_ts) for r in await fetch(self._db, sql, (limit,))]

    async def webhook_stats(self, endpoint: str | None = None) -> DeliveryStats:
        """Deliveries by state, and the mean latency of delivered ones (ms)."""
        where, args = ("WHERE endpoint = ?", (endpoint,)) if endpoint else ("", ())
        rows = await fetch(
            self._db,
            f"SELECT state, COUNT(*), AVG(latency_ms) FROM webhook_deliveries {where}"
            " GROUP BY state",
            args,
        )
        return stats_of_rows(rows)

