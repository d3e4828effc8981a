"""What an alert's or a silence's change tells, whichever backend stores it.

The event line (text and data), the webhook payload and its event type, the
device fact of a flap, the texts of acknowledgements and silences; and the
rows of ``alerts`` and ``silences`` read back as domain objects. Both backends
build their writes from these, so the two write the same events and the same
webhook bytes for the same change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fleettui.domain import Alert, AlertKind, EventKind, Silence, WebhookEvent
from fleettui.store.shared.row_times import TimeOf, native_time, required_time
from fleettui.store.shared.timetext import ts

#: the columns an Alert is read from, in ``alert_of_row``'s names
ALERT_COLUMNS = (
    "id, target_kind, target, site_id, kind, severity, state, reason, since, opened_at,"
    " resolved_at, escalated_at, acknowledged_at, acknowledged_by, notified, last_notified_at,"
    " notifications"
)
#: the columns a Silence is read from
SILENCE_COLUMNS = "id, target, until, reason, created_by, created_at, ended_at"
#: the event of each change update_alert makes ("notified": a delayed alert finally told)
CHANGE_EVENTS = {"resolved": EventKind.ALERT_RESOLVED, "escalated": EventKind.ALERT_ESCALATED,
                 "reminder": EventKind.ALERT_REMINDER, "notified": EventKind.ALERT_OPENED}

@dataclass(frozen=True, slots=True)
class AlertTold:
    """Everything an alert's change writes besides the alert: its event line, the device
    fact of a flap starting or ending, and the webhook row when receivers hear of it."""

    message: str
    device_id: str | None  # the alert's device (None for a site's alert)
    data: dict[str, Any]
    device_fact: tuple[WebhookEvent, dict[str, Any]] | None
    webhook: WebhookEvent | None
    payload: dict[str, Any]


def alert_device(alert: Alert) -> str | None:
    """The device an alert is about, or None for a site's alert."""
    return alert.target if alert.target_kind == "device" else None


def alert_told(alert: Alert, kind: EventKind, now: datetime, notify: bool) -> AlertTold:
    """What the change ``kind`` of ``alert`` (as it stands after it) tells, at ``now``."""
    payload = {
        "event": kind.value,
        "alert": {
            "id": alert.id, "kind": alert.kind.value, "severity": alert.severity,
            "target": alert.target, "target_kind": alert.target_kind, "site": alert.site_id,
            "reason": alert.reason, "since": ts(alert.since),
            "acknowledged": alert.acknowledged_at is not None,
        },
        "timestamp": ts(now),
    }
    message = (f"{alert.kind.value} {alert.target_kind} {alert.target}: {kind}"
               + (f" ({alert.reason})" if alert.reason else ""))
    opened = kind is EventKind.ALERT_OPENED
    fact: tuple[WebhookEvent, dict[str, Any]] | None = None
    if alert.kind is AlertKind.FLAPPING and (opened or kind is EventKind.ALERT_RESOLVED):
        fact = ((WebhookEvent.DEVICE_FLAPPING, {"reason": alert.reason}) if opened
                else (WebhookEvent.DEVICE_STABLE, {}))
    # opened, escalated and resolved are told to receivers under the same names
    webhook = (WebhookEvent(kind.value) if notify and kind is not EventKind.ALERT_REMINDER
               else None)
    return AlertTold(message, alert_device(alert), {"alert_id": alert.id, "notified": notify},
                     fact, webhook, payload)


def acknowledged_text(alert_id: int, by: str) -> str:
    """The event line of an acknowledgement."""
    return f"alert {alert_id} acknowledged" + (f" by {by}" if by else "")


def silenced_text(target: str, until: datetime, reason: str) -> str:
    """The event line of a silence added."""
    return f"{target} silenced until {ts(until)}: {reason}"


def silence_ended_text(target: str) -> str:
    """The event line of a silence ended, by hand or by its time running out."""
    return f"silence of {target} ended"


def alert_of_row(r: Any, when: TimeOf = native_time) -> Alert:
    """An ``alerts`` row (``ALERT_COLUMNS``) as an Alert; ``when`` reads its times."""
    return Alert(
        id=r["id"], target_kind=r["target_kind"], target=r["target"], site_id=r["site_id"],
        kind=AlertKind(r["kind"]), severity=r["severity"], state=r["state"], reason=r["reason"],
        since=required_time(when, r["since"]), opened_at=required_time(when, r["opened_at"]),
        resolved_at=when(r["resolved_at"]), escalated_at=when(r["escalated_at"]),
        acknowledged_at=when(r["acknowledged_at"]), acknowledged_by=r["acknowledged_by"],
        notified=bool(r["notified"]), last_notified_at=when(r["last_notified_at"]),
        notifications=r["notifications"],
    )


def silence_of_row(r: Any, when: TimeOf = native_time) -> Silence:
    """A ``silences`` row (``SILENCE_COLUMNS``) as a Silence; ``when`` reads its times."""
    return Silence(
        id=r["id"], target=r["target"], until=required_time(when, r["until"]), reason=r["reason"],
        created_by=r["created_by"], created_at=required_time(when, r["created_at"]),
        ended_at=when(r["ended_at"]),
    )
