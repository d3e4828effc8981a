"""Device health, the same in every backend: what a status transition tells (event,
webhook fact) and the uptime a device's history adds up to."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fleettui.domain import DeviceStatus, EventKind, StatusChange, WebhookEvent


@dataclass(frozen=True, slots=True)
class StatusFact:
    """What a status transition writes besides the device row and its history."""

    #: the event log's line
    kind: EventKind
    message: str
    data: dict[str, Any]
    #: the webhook fact other systems hear (None: none, for "unknown")
    webhook: WebhookEvent | None
    #: what the fact's ``device`` object says besides the device (its reason, if any)
    extra: dict[str, Any] = field(default_factory=dict)


def status_fact(change: StatusChange) -> StatusFact:
    """The event and webhook fact of a transition: other systems hear "online" or
    "offline" (an error is offline, with its reason), nothing of "unknown"."""
    data = {"status": change.status.value, "reason": change.reason}
    if change.previous is not None:
        data["previous"] = change.previous.value
    message = f"{change.device_id} {change.status.value}"
    if change.reason:
        message += f": {change.reason}"
    webhook: WebhookEvent | None = None
    if change.status is not DeviceStatus.UNKNOWN:
        webhook = (WebhookEvent.DEVICE_ONLINE if change.status is DeviceStatus.ONLINE
                   else WebhookEvent.DEVICE_OFFLINE)
    return StatusFact(EventKind.for_status(change.status), message, data, webhook,
                      {"reason": change.reason} if change.reason else {})


def online_share(history: Sequence[StatusChange], start: datetime,
                 now: datetime) -> float | None:
    """Share of [start, now] a device was online, from its transitions since ``start``
    with the one in force then (``Store.status_history``); None when nothing is known."""
    online = known = 0.0
    for i, change in enumerate(history):
        begin = max(change.at, start)
        end = history[i + 1].at if i + 1 < len(history) else now
        span = max((end - begin).total_seconds(), 0.0)
        if change.status is DeviceStatus.UNKNOWN:
            continue
        known += span
        if change.status is DeviceStatus.ONLINE:
            online += span
    return online / known if known else None


def by_device(changes: Iterable[StatusChange]) -> dict[str, list[StatusChange]]:
    """Transitions grouped by device id, in the order given."""
    out: dict[str, list[StatusChange]] = {}
    for change in changes:
        out.setdefault(change.device_id, []).append(change)
    return out
