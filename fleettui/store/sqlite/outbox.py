"""Webhook outbox rows about devices, written in the transaction of the fact they tell."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from fleettui.domain import WebhookEvent
from fleettui.store.sqlite.connection import select, ts


def write_device_fact(
    db: sqlite3.Connection,
    device_id: str,
    kind: WebhookEvent,
    at: datetime,
    extra: dict[str, Any],
) -> None:
    """A webhook outbox row about a device, in the article's shape."""
    found = select(db, "SELECT serial, site_id, last_seen FROM devices WHERE id = ?", (device_id,))
    serial, site, last_seen = (found[0][0], found[0][1], found[0][2]) if found else (None,) * 3
    payload = {
        "event": kind,
        "device": {"id": device_id, "serial_number": serial, "site": site,
                   "last_seen": last_seen, **extra},
        "timestamp": ts(at),
    }
    db.execute(
        "INSERT INTO webhook_outbox (event_type, device_id, payload, created_at)"
        " VALUES (?, ?, ?, ?)",
        (kind, device_id, json.dumps(payload), ts(at)),
    )
