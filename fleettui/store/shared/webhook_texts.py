"""What the webhook queues and endpoints write and read, whichever backend stores them.

An endpoint's event filter, how an attempt's result is recorded, the event
lines of dead deliveries and of endpoints created, changed and deleted (URLs
redacted, secrets never in them), the checks of an endpoint's change; and the
rows of ``webhook_deliveries`` and ``webhook_endpoints`` read back as domain
objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from fleettui.domain import (
    DeliveryResult,
    DeliveryStats,
    DueDelivery,
    EndpointChanges,
    WebhookDelivery,
    WebhookEndpoint,
)
from fleettui.egress import redacted_url
from fleettui.store.shared.row_times import TimeOf, native_time, required_time
from fleettui.store.shared.timetext import ts

#: a delivery with its event's type and its endpoint's id and URL (None: gone from the config)
DELIVERY_SELECT = (
    "SELECT d.endpoint, e.id AS endpoint_id, e.url, d.outbox_id, o.event_type, d.device_id,"
    " d.state, d.attempts, d.last_error, d.created_at, d.next_attempt_at, d.delivered_at,"
    " d.latency_ms FROM webhook_deliveries d JOIN webhook_outbox o ON o.id = d.outbox_id"
    " LEFT JOIN webhook_endpoints e ON e.delivery_key = d.endpoint"
)
#: the columns a WebhookEndpoint is read from
ENDPOINT_COLUMNS = (
    "id, origin, delivery_key, url, events, secret, enabled, hex_signature_header, timeout_s,"
    " created_at, previous_secret, previous_secret_until"
)
#: what update_webhook_endpoint may change
_CHANGEABLE = {"url", "events", "enabled", "hex_signature_header", "timeout_s"}


def event_filter(events: Sequence[str], placeholder: Callable[[int], str],
                 first: int = 1) -> tuple[str, list[str]]:
    """The ``AND (...)`` clause on ``event_type`` that keeps the outbox rows an endpoint
    wants (empty for "*"), and its arguments; ``placeholder(n)`` writes the n-th one,
    counted from ``first``. A ``prefix.*`` pattern matches by prefix."""
    if "*" in events:
        return "", []
    clauses: list[str] = []
    args: list[str] = []
    for pattern in events:
        prefix = pattern.endswith("*")
        args.append(pattern[:-1] + "%" if prefix else pattern)
        clauses.append(f"event_type {'LIKE' if prefix else '='} "
                       f"{placeholder(first + len(args) - 1)}")
    return f" AND ({' OR '.join(clauses)})", args


def due_sql(place: Callable[[int], str], in_sites: Callable[[int], str], *,
            by_site: bool, deviceless: bool, arrays: bool = False) -> str:
    """The query of ``webhook_due``: each device's pending deliveries, from its oldest
    one if that one is due, at most ``per_device`` each, oldest first.

    Arguments, by number: 1 the endpoint, 2 now, 3 per_device, 4 the sites (only
    ``by_site``: then only the devices of those sites are in). ``place(n)`` writes
    the n-th placeholder; ``in_sites(n)`` the test of ``v.site_id`` against the n-th
    argument, a list of sites. ``arrays`` (PostgreSQL): the due devices are matched as
    one array, an index condition of the pending rows' index.

    Only the heads (each device's oldest pending delivery) are narrowed to the
    devices wanted; everything after follows its head, so a device's deliveries
    are all in or all out, in their order. A delivery's site is its device's
    (``devices.site_id``, never NULL); one of no device, or of a device the store
    does not know, has none: it is fleet work, in with ``deviceless`` only (so
    nothing is left for no one to send).
    """
    join = where = ""
    if by_site or not deviceless:
        join = " LEFT JOIN devices v ON v.id = d.device_id"
        if by_site and deviceless:
            where = f" AND ({in_sites(4)} OR v.site_id IS NULL)"
        elif by_site:
            where = f" AND {in_sites(4)}"
        else:
            where = " AND v.site_id IS NOT NULL"
    endpoint, now, per_device = place(1), place(2), place(3)
    # Each step stays one index range whatever the planner believes of the tables (on a
    # new PostgreSQL database, with no statistics yet, it believed every step one row long
    # and re-ran the heads for every pending row: 18 s for 20,000 pending, growing with
    # the square): the heads and the due devices are computed once (MATERIALIZED), and a
    # device's pending rows are found by the (endpoint, state, device_id) index, the rows
    # of no device apart (NULL matches nothing in an index lookup).
    pending = (f"FROM webhook_deliveries d WHERE d.endpoint = {endpoint}"
               " AND d.state = 'pending'")
    columns = "d.outbox_id, d.device_id, d.attempts, d.created_at"
    # PostgreSQL: an array computed once, so the lookup is an index condition (a join or
    # an IN was planned as a scan of every pending row for each due device)
    due_devices = ("= ANY (ARRAY(SELECT device_id FROM due WHERE device_id IS NOT NULL))"
                   if arrays else "IN (SELECT device_id FROM due)")
    return (
        "WITH heads AS MATERIALIZED (SELECT d.device_id, MIN(d.outbox_id) AS head"
        f"   FROM webhook_deliveries d{join} WHERE d.endpoint = {endpoint}"
        f"   AND d.state = 'pending'{where} GROUP BY d.device_id),"
        " due AS MATERIALIZED (SELECT heads.device_id FROM heads JOIN webhook_deliveries d"
        f"   ON d.endpoint = {endpoint} AND d.outbox_id = heads.head"
        f"   WHERE d.next_attempt_at <= {now}),"
        f" rows_due AS (SELECT {columns} {pending} AND d.device_id {due_devices}"
        f"   UNION ALL SELECT {columns} {pending} AND d.device_id IS NULL"
        "   AND EXISTS (SELECT 1 FROM due WHERE due.device_id IS NULL)),"
        " ranked AS (SELECT r.*, ROW_NUMBER() OVER (PARTITION BY r.device_id"
        "   ORDER BY r.outbox_id) AS rn FROM rows_due r)"
        " SELECT r.outbox_id, r.device_id, r.attempts, r.created_at, o.event_type, o.payload"
        f" FROM ranked r JOIN webhook_outbox o ON o.id = r.outbox_id WHERE r.rn <= {per_device}"
        " ORDER BY r.outbox_id"
    )


def result_state(r: DeliveryResult) -> str:
    """The state an attempt leaves its delivery in."""
    return "delivered" if r.ok else "dead" if r.dead else "pending"


def dead_text(endpoint: str, r: DeliveryResult) -> str:
    """The webhook.dead event line: the endpoint (a URL redacted) and the error's class."""
    shown = redacted_url(endpoint) if "://" in endpoint else endpoint
    return f"webhook to {shown} gave up on event {r.outbox_id}: {r.error_class or r.error}"


def stats_of_rows(rows: Iterable[Any]) -> DeliveryStats:
    """``(state, count, mean latency)`` rows as DeliveryStats."""
    counts: dict[str, int] = {}
    latency: float | None = None
    for r in rows:
        counts[str(r[0])] = int(r[1])
        if r[0] == "delivered":
            latency = r[2]
    return DeliveryStats(pending=counts.get("pending", 0),
                         delivered=counts.get("delivered", 0), dead=counts.get("dead", 0),
                         avg_latency_ms=latency)


def due_of_row(r: Any, when: TimeOf = native_time) -> DueDelivery:
    """A due delivery's row (with its event's type and payload) as a DueDelivery."""
    return DueDelivery(outbox_id=r["outbox_id"], device_id=r["device_id"],
                       event_type=r["event_type"], payload=r["payload"],
                       attempts=r["attempts"], created_at=required_time(when, r["created_at"]))


def delivery_of_row(r: Any, when: TimeOf = native_time) -> WebhookDelivery:
    """A ``DELIVERY_SELECT`` row as a WebhookDelivery."""
    return WebhookDelivery(
        endpoint=r["endpoint"], endpoint_id=r["endpoint_id"], url=r["url"],
        outbox_id=r["outbox_id"], event_type=r["event_type"], device_id=r["device_id"],
        state=r["state"], attempts=r["attempts"], last_error=r["last_error"],
        created_at=required_time(when, r["created_at"]), next_attempt_at=when(r["next_attempt_at"]),
        delivered_at=when(r["delivered_at"]), latency_ms=r["latency_ms"],
    )


# --- endpoints ---------------------------------------------------------------


def endpoint_values(changes: EndpointChanges) -> dict[str, Any]:
    """An endpoint's change as column values (its events a list); ValueError names a
    field that cannot change."""
    refused = set(changes) - _CHANGEABLE
    if refused:
        raise ValueError(f"cannot change {', '.join(sorted(refused))}")
    values: dict[str, Any] = dict(changes)
    if "events" in changes:
        values["events"] = list(changes["events"])
    if "enabled" in changes:
        values["enabled"] = bool(changes["enabled"])
    return values


def overlap_until(previous_until: datetime | None, now: datetime) -> datetime | None:
    """Until when a rotated-out secret keeps signing: None when not at all."""
    return previous_until if previous_until is not None and previous_until > now else None


def rotation_text(until: datetime | None) -> str:
    """What an endpoint's change event says of a rotation (never the secrets)."""
    return (f"secret rotated (the previous one also signs until {ts(until)})" if until
            else "secret rotated (the previous one no longer signs)")


def created_text(endpoint_id: str, url: str) -> str:
    """The webhook.created event line (the URL redacted: its path may hold a token)."""
    return f"webhook endpoint {endpoint_id} created for {redacted_url(url)}"


def changed_text(endpoint_id: str, said: Sequence[str]) -> str:
    """The webhook.updated event line: the fields changed, and a rotation."""
    return f"webhook endpoint {endpoint_id} changed: " + ", ".join(said)


def deleted_text(endpoint_id: str) -> str:
    """The webhook.deleted event line."""
    return f"webhook endpoint {endpoint_id} deleted"


def endpoint_of_row(r: Any, events: Sequence[str], *, with_secret: bool = False,
                    when: TimeOf = native_time) -> WebhookEndpoint:
    """A ``webhook_endpoints`` row (``ENDPOINT_COLUMNS``) as a WebhookEndpoint, its
    ``events`` as read; its secrets only if asked."""
    return WebhookEndpoint(
        id=r["id"], origin=r["origin"], delivery_key=r["delivery_key"], url=r["url"],
        events=tuple(events), enabled=bool(r["enabled"]),
        hex_signature_header=r["hex_signature_header"], timeout_s=r["timeout_s"],
        created_at=required_time(when, r["created_at"]),
        previous_secret_until=when(r["previous_secret_until"]),
        secret=r["secret"] if with_secret else "",
        previous_secret=r["previous_secret"] if with_secret else "",
    )
