"""Webhook outbox rows about devices, written in the transaction of the fact they tell."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fleettui.domain import WebhookEvent
from fleettui.store.postgres.connection import Db, append_lock
from fleettui.store.shared.timetext import ts


async def write_outbox(db: Db, kind: str, device_id: str | None, payload: dict[str, Any],
                       at: datetime) -> int:
    """One outbox row (the payload stored as the JSON text that will be signed and sent);
    its id. The transaction took the append lock first (taken again here, harmlessly)."""
    await append_lock(db)
    return int(await db.fetchval(
        "INSERT INTO webhook_outbox (event_type, device_id, payload, created_at)"
        " VALUES ($1, $2, $3, $4) RETURNING id", kind, device_id, json.dumps(payload), at))


async def write_device_fact(
    db: Db, device_id: str, kind: WebhookEvent, at: datetime, extra: dict[str, Any],
) -> None:
    """A webhook outbox row about a device, in the article's shape (the same bytes as the
    SQLite store's ``write_device_fact``)."""
    found = await db.fetchrow(
        "SELECT serial, site_id, last_seen FROM devices WHERE id = $1", device_id)
    serial, site, seen = (found[0], found[1], found[2]) if found else (None, None, None)
    payload = {
        "event": kind,
        "device": {"id": device_id, "serial_number": serial, "site": site,
                   "last_seen": ts(seen) if seen is not None else None, **extra},
        "timestamp": ts(at),
    }
    await write_outbox(db, kind, device_id, payload, at)
