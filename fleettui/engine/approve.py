"""Approving a push device that called without being known: onto a site, kept like a
device registered over the API (the next reconcile answers it; its buffered records follow).

One way in for the CLI (``fleettui push approve``), the HTTP API and the control room.
"""

from __future__ import annotations

import re
from datetime import datetime

from fleettui.config import DEVICE_ID_PATTERN
from fleettui.domain import DeviceSpec, DeviceState
from fleettui.store import Store


class ApprovalError(ValueError):
    """The serial is not waiting, or the site or id cannot take it (the reason says which)."""


async def approve_push_device(store: Store, serial: str, site_id: str, now: datetime, *,
                              device_id: str | None = None, name: str = "") -> DeviceState:
    """Put the pending ``serial`` on ``site_id`` as a push device (id: the serial, lowered,
    unless given). Raises ApprovalError, or the store's FleetConflict for a taken id."""
    pending = {p.serial: p for p in await store.pending_push_devices()}
    if serial not in pending:
        raise ApprovalError(f"no push device {serial!r} is waiting for approval "
                            "(fleettui push pending lists them)")
    new_id = device_id or serial.lower()
    if not re.fullmatch(DEVICE_ID_PATTERN, new_id):
        raise ApprovalError(f"id {new_id!r}: expected letters, digits, '.', '-' or '_' "
                            "(give one with --id)")
    if site_id not in {s.id for s in await store.sites()}:
        raise ApprovalError(f"no site {site_id!r}")
    (state,) = await store.register_devices(
        [DeviceSpec(id=new_id, serial=serial, site_id=site_id, host="", port=0,
                    transport="push", name=name, origin="api")], now)
    await store.forget_pending_push(serial)
    return state
