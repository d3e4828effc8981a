"""Webhook endpoints: mirrored from the config, or the store's own (API-created).

Secrets are columns like any other here: they are passed to the server as
query arguments, never put in a statement's text, an event or a log line.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from fleettui.domain import ConfigEndpoint, EndpointChanges, EventKind, WebhookEndpoint
from fleettui.store.postgres.connection import Db, PostgresConnection, append_lock
from fleettui.store.postgres.events import write_event
from fleettui.store.shared.webhook_texts import (
    ENDPOINT_COLUMNS,
    changed_text,
    created_text,
    deleted_text,
    endpoint_of_row,
    endpoint_values,
    overlap_until,
    rotation_text,
)


def _endpoint(r: asyncpg.Record, with_secret: bool = False) -> WebhookEndpoint:
    """A webhook_endpoints row as a WebhookEndpoint (its secrets only if asked)."""
    return endpoint_of_row(r, r["events"], with_secret=with_secret)


class WebhookEndpointQueries(PostgresConnection):
    """Webhook endpoints, their secrets and rotation."""

    async def sync_webhook_endpoints(self, endpoints: Sequence[ConfigEndpoint],
                                     now: datetime) -> None:
        """Mirror the config's endpoints (see ``Store.sync_webhook_endpoints``). Two pollers
        mirroring at once: the second one's rows that the first wrote are left as they are
        (``ON CONFLICT DO NOTHING``), as an id or a queue taken by another endpoint is."""
        rows = [(e.id, e.url, list(e.events), e.enabled, e.hex_signature_header,
                 float(e.timeout_s), now) for e in endpoints]

        async def write(db: Db) -> None:
            await db.execute("DELETE FROM webhook_endpoints WHERE origin = 'config'")
            await db.executemany(
                "INSERT INTO webhook_endpoints (id, origin, delivery_key, url, events,"
                " enabled, hex_signature_header, timeout_s, created_at)"
                " VALUES ($1, 'config', $2, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                rows)
        await self._transaction(write)

    async def create_webhook_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str,
        events: Sequence[str],
        secret: str,
        enabled: bool,
        hex_signature_header: str | None,
        timeout_s: float,
        now: datetime,
    ) -> WebhookEndpoint:
        """Add an endpoint of the store's own (see ``Store.create_webhook_endpoint``): its
        cursor starts at the newest outbox row, read under the append lock."""
        async def write(db: Db) -> WebhookEndpoint:
            await append_lock(db)
            row = await db.fetchrow(
                "INSERT INTO webhook_endpoints (id, origin, delivery_key, url, events, secret,"
                " enabled, hex_signature_header, timeout_s, created_at)"
                " VALUES ($1, 'api', $1, $2, $3, $4, $5, $6, $7, $8)"
                f" RETURNING {ENDPOINT_COLUMNS}",
                endpoint_id, url, list(events), secret, enabled, hex_signature_header,
                timeout_s, now)
            assert row is not None
            await db.execute(
                "INSERT INTO webhook_cursors (endpoint, last_outbox_id)"
                " SELECT $1, COALESCE(MAX(id), 0) FROM webhook_outbox"
                " ON CONFLICT (endpoint) DO UPDATE SET last_outbox_id = excluded.last_outbox_id",
                endpoint_id)
            await write_event(db, now, EventKind.WEBHOOK_CREATED, created_text(endpoint_id, url))
            return _endpoint(row)
        return await self._transaction(write)

    async def webhook_endpoints(self, *, with_secrets: bool = False,
                                origin: str | None = None) -> list[WebhookEndpoint]:
        """Every endpoint the store knows, by creation; the secret only if asked
        (the dispatcher asks; views never do)."""
        sql = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints"
        args: list[Any] = []
        if origin is not None:
            sql += " WHERE origin = $1"
            args.append(origin)
        rows = await self._fetch(sql + " ORDER BY created_at, id", *args)
        return [_endpoint(r, with_secrets) for r in rows]

    async def webhook_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        """One endpoint (never its secret), or None."""
        row = await self._fetchrow(
            f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1", endpoint_id)
        return _endpoint(row) if row is not None else None

    async def update_webhook_endpoint(
        self, endpoint_id: str, changes: EndpointChanges, now: datetime, *,
        new_secret: str | None = None, previous_until: datetime | None = None,
    ) -> WebhookEndpoint | None:
        """Change an API-created endpoint, or rotate its secret, in one statement (see
        ``Store.update_webhook_endpoint``). Two rotations at once take turns on the row:
        the second moves the first one's new secret to the previous one, as in series."""
        values = endpoint_values(changes)
        until = overlap_until(previous_until, now)
        said = sorted(values) + ([rotation_text(until)] if new_secret is not None else [])
        args: list[Any] = [endpoint_id]
        sets: list[str] = []
        for column, value in values.items():
            args.append(value)
            sets.append(f"{column} = ${len(args)}")
        if new_secret is not None:
            args += [until, new_secret]
            # the right-hand sides read the row as it was: the old secret moves over
            sets.append(f"previous_secret = CASE WHEN ${len(args) - 1}::timestamptz IS NULL"
                        f" THEN '' ELSE secret END, previous_secret_until = ${len(args) - 1},"
                        f" secret = ${len(args)}")

        async def write(db: Db) -> WebhookEndpoint | None:
            if not said:
                row = await db.fetchrow(f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints"
                                        " WHERE id = $1 AND origin = 'api'", endpoint_id)
                return _endpoint(row) if row is not None else None
            await append_lock(db)
            row = await db.fetchrow(
                f"UPDATE webhook_endpoints SET {', '.join(sets)}"
                f" WHERE id = $1 AND origin = 'api' RETURNING {ENDPOINT_COLUMNS}", *args)
            if row is None:
                return None
            await write_event(db, now, EventKind.WEBHOOK_UPDATED,
                              changed_text(endpoint_id, said))
            return _endpoint(row)
        return await self._transaction(write)

    async def webhook_forget_previous_secrets(self, now: datetime) -> int:
        """Clear the previous secrets whose overlap is over (rotation done); returns how many."""
        status = await self._transaction(lambda db: db.execute(
            "UPDATE webhook_endpoints SET previous_secret = '', previous_secret_until = NULL"
            " WHERE previous_secret_until IS NOT NULL AND previous_secret_until <= $1", now))
        return int(status.rsplit(" ", 1)[-1])

    async def delete_webhook_endpoint(self, endpoint_id: str, now: datetime) -> bool:
        """Remove an API-created endpoint with its queue (pending and dead deliveries
        are dropped); False if there is no such API endpoint. A queue being filled at
        the time (``webhook_enqueue`` holds the endpoint's row) is dropped once it is."""
        async def write(db: Db) -> bool:
            await append_lock(db)
            gone = await db.fetchval("DELETE FROM webhook_endpoints WHERE id = $1"
                                     " AND origin = 'api' RETURNING id", endpoint_id)
            if gone is None:
                return False
            await db.execute("DELETE FROM webhook_deliveries WHERE endpoint = $1", endpoint_id)
            await db.execute("DELETE FROM webhook_cursors WHERE endpoint = $1", endpoint_id)
            await write_event(db, now, EventKind.WEBHOOK_DELETED, deleted_text(endpoint_id))
            return True
        return await self._transaction(write)
