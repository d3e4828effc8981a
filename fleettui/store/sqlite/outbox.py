"""Webhook outbox rows about devices, written in the transaction of the fact they tell."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import aiosqlite

from fleettui.domain import WebhookEvent
from fleettui.store.sqlite.connection import fetch, ts


async def write_device_fact(
    db: aiosqlite.Connection,
    device_id: str,
    kind: WebhookEvent,
    at: datetime,
    extra: dict[str, Any],
) -> None:
    """A webhook outbox row about a device, in the article's shape."""
    rows = await fetch(
        db, "SELECT serial, site_id, last_seen FROM devices WHERE id = ?", (device_id,)
    )
    serial, site, last_seen = (rows[0][0], rows[0][1], rows[0][2]) if rows else (None,) * 3
    payload = {
        "event": kind,
        "device": {"id": device_id, "serial_number": serial, "site": site,
                   "last_seen": last_seen, **extra},
        "timestamp": ts(at),
    }
    await db.execute(
        "INSERT INTO webhook_outbox (event_type, device_id, payload, created_at)"
        " VALUES (?, ?, ?, ?)",
        (kind, device_id, json.dumps(payload), ts(at)),
    )
