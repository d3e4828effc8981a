"""Webhook deliveries: each endpoint's queue over the outbox, attempts, dead letters.

An endpoint's cursor is the id of the last outbox row it was given. Every
transaction that appends to the outbox holds the append lock, so outbox ids
are committed in order and a cursor over them skips nothing. Two processes
filling one endpoint's queue at once take turns on its cursor row (``FOR
UPDATE``): the second starts where the first left off, and no event is handed
to an endpoint twice.
"""

from __future__ import annotations

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
from fleettui.store.postgres.connection import Db, PostgresConnection, append_lock
from fleettui.store.postgres.events import write_event
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

#: a batch of attempts, as arrays: one statement however many there are
_RESULTS = (
    "UPDATE webhook_deliveries d SET state = r.state, attempts = d.attempts + 1,"
    " latency_ms = COALESCE(r.latency_ms, d.latency_ms), last_error = r.error,"
    " delivered_at = CASE WHEN r.ok THEN $2 ELSE d.delivered_at END,"
    " next_attempt_at = COALESCE(r.retry_at, d.next_attempt_at)"
    " FROM unnest($3::bigint[], $4::text[], $5::float8[], $6::text[], $7::boolean[],"
    "   $8::timestamptz[]) AS r(outbox_id, state, latency_ms, error, ok, retry_at)"
    " WHERE d.endpoint = $1 AND d.outbox_id = r.outbox_id"
)


def _count(status: str) -> int:
    """The rows a statement's status (``INSERT 0 5``, ``UPDATE 3``) says it wrote."""
    return int(status.rsplit(" ", 1)[-1])


async def _locked_cursor(db: Db, endpoint: str) -> int:
    """An endpoint's cursor, its row locked until the transaction ends (made at 0 if it
    has none yet): a second process filling the same queue waits, then reads where this
    one left it."""
    select = "SELECT last_outbox_id FROM webhook_cursors WHERE endpoint = $1 FOR UPDATE"
    last = await db.fetchval(select, endpoint)
    if last is None:
        # made by one of two processes at once; the other waits for it, then locks it
        await db.execute("INSERT INTO webhook_cursors (endpoint) VALUES ($1)"
                         " ON CONFLICT DO NOTHING", endpoint)
        last = await db.fetchval(select, endpoint)
    return int(last)


class WebhookDeliveryQueries(PostgresConnection):
    """Each endpoint's queue: filled from the outbox, attempted, replayed."""

    async def webhook_enqueue(self, endpoint: str, events: Sequence[str], now: datetime, *,
                              registered: bool = False) -> int:
        """Give an endpoint every outbox row it has not seen and wants; returns how many
        (see ``Store.webhook_enqueue``). A registered endpoint's row is share-locked
        first, so a delete waits for this to end, or this sees the endpoint gone."""
        wanted, args = event_filter(events, lambda n: f"${n}", first=5)

        async def write(db: Db) -> int:
            if registered and await db.fetchval(
                    "SELECT 1 FROM webhook_endpoints WHERE delivery_key = $1"
                    " AND origin = 'api' FOR KEY SHARE", endpoint) is None:
                return 0
            last = await _locked_cursor(db, endpoint)
            # read under the cursor's lock: what a process before us gave is above `last`
            newest = int(await db.fetchval("SELECT COALESCE(MAX(id), 0) FROM webhook_outbox"))
            if newest <= last:
                return 0
            status = await db.execute(
                "INSERT INTO webhook_deliveries (endpoint, outbox_id, device_id, created_at,"
                " next_attempt_at) SELECT $1, id, device_id, $2, $2 FROM webhook_outbox"
                f" WHERE id > $3 AND id <= $4{wanted} ON CONFLICT DO NOTHING",
                endpoint, now, last, newest, *args)
            await db.execute("UPDATE webhook_cursors SET last_outbox_id = $2"
                             " WHERE endpoint = $1", endpoint, newest)
            return _count(status)
        return await self._transaction(write)

    async def webhook_due(
        self, endpoint: str, now: datetime, per_device: int = 100, *,
        sites: Collection[str] | None = None, deviceless: bool = True,
    ) -> list[DueDelivery]:
        """Deliveries to attempt now, oldest first (see ``Store.webhook_due``); the sites
        go as one ``text[]``: one statement text however many."""
        if sites is not None and not sites and not deviceless:
            return []
        extra = [] if sites is None else [sorted(sites)]
        sql = due_sql(lambda n: f"${n}", lambda n: f"v.site_id = ANY(${n}::text[])",
                      by_site=sites is not None, deviceless=deviceless, arrays=True)
        return [due_of_row(r) for r in await self._fetch(sql, endpoint, now, per_device, *extra)]

    async def webhook_results(
        self, endpoint: str, results: Sequence[DeliveryResult], now: datetime
    ) -> None:
        """Record delivery attempts in one transaction (see ``Store.webhook_results``); the
        append lock is taken only when some gave up (their webhook.dead events)."""
        if not results:
            return
        dead = [r for r in results if r.dead]
        columns = ([r.outbox_id for r in results], [result_state(r) for r in results],
                   [r.latency_ms for r in results], [r.error for r in results],
                   [r.ok for r in results], [r.retry_at for r in results])

        async def write(db: Db) -> None:
            if dead:
                await append_lock(db)
            await db.execute(_RESULTS, endpoint, now, *columns)
            for r in dead:
                await write_event(db, now, EventKind.WEBHOOK_DEAD, dead_text(endpoint, r),
                                  data={"outbox_id": r.outbox_id})
        await self._transaction(write)

    async def webhook_replay(
        self, endpoint: str | None, now: datetime, outbox_ids: Sequence[int] | None = None
    ) -> int:
        """Put dead deliveries (of one endpoint, or all; only ``outbox_ids`` if given)
        back in the queue; returns how many (a delivery replayed by two at once counts
        for the first only)."""
        sql = ("UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $1,"
               " created_at = $1 WHERE state = 'dead'")
        args: list[Any] = [now]
        if endpoint is not None:
            args.append(endpoint)
            sql += f" AND endpoint = ${len(args)}"
        if outbox_ids is not None:
            if not outbox_ids:
                return 0
            args.append(list(outbox_ids))
            sql += f" AND outbox_id = ANY(${len(args)}::bigint[])"
        return _count(await self._transaction(lambda db: db.execute(sql, *args)))

    async def webhook_deliveries(
        self, endpoint: str, state: str | None = None, limit: int = 100
    ) -> list[WebhookDelivery]:
        """One endpoint's deliveries (in ``state`` if given), newest first."""
        sql = DELIVERY_SELECT + " WHERE d.endpoint = $1"
        args: list[Any] = [endpoint]
        if state is not None:
            args.append(state)
            sql += f" AND d.state = ${len(args)}"
        args.append(limit)
        sql += f" ORDER BY d.outbox_id DESC LIMIT ${len(args)}"
        return [delivery_of_row(r) for r in await self._fetch(sql, *args)]

    async def webhook_dead_count(self) -> int:
        """How many deliveries, of every endpoint, are dead (gave up; waiting for a replay)."""
        return int(await self._fetchval(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'dead'"))

    async def webhook_dead(self, limit: int = 100) -> list[WebhookDelivery]:
        """Dead deliveries of every endpoint, newest first, each with its endpoint's
        id and URL (None for a queue whose endpoint is gone from the config)."""
        rows = await self._fetch(
            DELIVERY_SELECT + " WHERE d.state = 'dead' ORDER BY d.outbox_id DESC LIMIT $1",
            limit)
        return [delivery_of_row(r) for r in rows]

    async def webhook_stats(self, endpoint: str | None = None) -> DeliveryStats:
        """Deliveries by state, and the mean latency of delivered ones (ms)."""
        where, args = ("WHERE endpoint = $1", [endpoint]) if endpoint else ("", [])
        rows = await self._fetch(
            f"SELECT state, COUNT(*), AVG(latency_ms) FROM webhook_deliveries {where}"
            " GROUP BY state", *args)
        return stats_of_rows(rows)
