"""Webhook endpoints: mirrored from the config, or the store's own (API-created)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fleettui.domain import ConfigEndpoint, EndpointChanges, EventKind, WebhookEndpoint
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
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, select, ts
from fleettui.store.sqlite.events import write_event


class WebhookEndpointQueries(SqliteConnection):
    """Webhook endpoints, their secrets and rotation."""

    async def sync_webhook_endpoints(self, endpoints: Sequence[ConfigEndpoint],
                                     now: datetime) -> None:
        """Mirror the config's endpoints (their queue is keyed by URL) so that every view
        lists them. Their secrets stay in the config file."""
        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM webhook_endpoints WHERE origin = 'config'")
            db.executemany(
                "INSERT OR IGNORE INTO webhook_endpoints (id, origin, delivery_key, url, events,"
                " enabled, hex_signature_header, timeout_s, created_at)"
                " VALUES (?, 'config', ?, ?, ?, ?, ?, ?, ?)",
                [(e.id, e.url, e.url, json.dumps(list(e.events)), int(e.enabled),
                  e.hex_signature_header, float(e.timeout_s), ts(now))
                 for e in endpoints],
            )
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
        """Add an endpoint of the store's own. It hears events from now on: its
        cursor starts at the newest outbox row (no replay of the whole history)."""
        def write(db: sqlite3.Connection) -> WebhookEndpoint:
            db.execute(
                "INSERT INTO webhook_endpoints (id, origin, delivery_key, url, events, secret,"
                " enabled, hex_signature_header, timeout_s, created_at)"
                " VALUES (?, 'api', ?, ?, ?, ?, ?, ?, ?, ?)",
                (endpoint_id, endpoint_id, url, json.dumps(list(events)), secret, int(enabled),
                 hex_signature_header, timeout_s, ts(now)),
            )
            db.execute(
                "INSERT INTO webhook_cursors (endpoint, last_outbox_id)"
                " SELECT ?, COALESCE(MAX(id), 0) FROM webhook_outbox WHERE true"
                " ON CONFLICT(endpoint) DO UPDATE SET last_outbox_id = excluded.last_outbox_id",
                (endpoint_id,),
            )
            write_event(db, now, EventKind.WEBHOOK_CREATED,
                        created_text(endpoint_id, url))
            rows = select(db, f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints"
                                " WHERE id = ?", (endpoint_id,))
            return _endpoint(rows[0], False)
        return await self._transaction(write)

    async def webhook_endpoints(self, *, with_secrets: bool = False,
                                origin: str | None = None) -> list[WebhookEndpoint]:
        """Every endpoint the store knows, by creation; the secret only if asked
        (the dispatcher asks; views never do)."""
        sql = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints"
        args: tuple[Any, ...] = ()
        if origin is not None:
            sql += " WHERE origin = ?"
            args = (origin,)
        rows = await fetch(self._db, sql + " ORDER BY created_at, id", args)
        return [_endpoint(r, with_secrets) for r in rows]

    async def webhook_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        """One endpoint (never its secret), or None."""
        rows = await fetch(self._db, f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints"
                            " WHERE id = ?", (endpoint_id,))
        return _endpoint(rows[0], False) if rows else None

    async def update_webhook_endpoint(
        self, endpoint_id: str, changes: EndpointChanges, now: datetime, *,
        new_secret: str | None = None, previous_until: datetime | None = None,
    ) -> WebhookEndpoint | None:
        """Change an API-created endpoint's url, events, enabled, hex_signature_header or
        timeout_s; None if there is no such API endpoint. Its queue and cursor stay: a
        disabled endpoint enabled again hears what was committed meanwhile.

        With ``new_secret`` the secret is rotated in the same transaction: the
        current one becomes the previous secret, which keeps signing next to the
        new one until ``previous_until`` (None or not after ``now``: not at all).
        A secret rotated again during an overlap replaces the older previous one.
        """
        values = endpoint_values(changes)
        if "events" in values:
            values["events"] = json.dumps(values["events"])
        if "enabled" in values:
            values["enabled"] = int(values["enabled"])
        until = overlap_until(previous_until, now)
        def write(db: sqlite3.Connection) -> WebhookEndpoint | None:
            rows = select(db, "SELECT id FROM webhook_endpoints WHERE id = ?"
                                " AND origin = 'api'", (endpoint_id,))
            if not rows:
                return None
            said = sorted(values)
            if values:
                sets = ", ".join(f"{k} = ?" for k in values)
                db.execute(f"UPDATE webhook_endpoints SET {sets} WHERE id = ?",
                           (*values.values(), endpoint_id))
            if new_secret is not None:
                until_text = ts(until) if until is not None else None
                # the right-hand sides read the row as it was: the old secret moves over
                db.execute(
                    "UPDATE webhook_endpoints SET previous_secret = CASE WHEN ? IS NULL"
                    " THEN '' ELSE secret END, previous_secret_until = ?, secret = ?"
                    " WHERE id = ?", (until_text, until_text, new_secret, endpoint_id),
                )
                said.append(rotation_text(until))
            if said:
                write_event(db, now, EventKind.WEBHOOK_UPDATED, changed_text(endpoint_id, said))
            rows = select(db, f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints"
                                " WHERE id = ?", (endpoint_id,))
            return _endpoint(rows[0], False)
        return await self._transaction(write)

    async def webhook_forget_previous_secrets(self, now: datetime) -> int:
        """Clear the previous secrets whose overlap is over (rotation done); returns how many."""
        def write(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "UPDATE webhook_endpoints SET previous_secret = '', previous_secret_until = NULL"
                " WHERE previous_secret_until IS NOT NULL AND previous_secret_until <= ?",
                (ts(now),),
            )
            return cur.rowcount
        return await self._transaction(write)

    async def delete_webhook_endpoint(self, endpoint_id: str, now: datetime) -> bool:
        """Remove an API-created endpoint with its queue (pending and dead deliveries
        are dropped); False if there is no such API endpoint."""
        def write(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "DELETE FROM webhook_endpoints WHERE id = ? AND origin = 'api'", (endpoint_id,)
            )
            if not cur.rowcount:
                return False
            db.execute("DELETE FROM webhook_deliveries WHERE endpoint = ?", (endpoint_id,))
            db.execute("DELETE FROM webhook_cursors WHERE endpoint = ?", (endpoint_id,))
            write_event(db, now, EventKind.WEBHOOK_DELETED,
                        deleted_text(endpoint_id))
            return True
        return await self._transaction(write)



def _endpoint(r: Any, with_secret: bool) -> WebhookEndpoint:
    """A webhook_endpoints row as a WebhookEndpoint (its secrets only if asked)."""
    return endpoint_of_row(r, json.loads(r["events"]), with_secret=with_secret, when=from_ts)
