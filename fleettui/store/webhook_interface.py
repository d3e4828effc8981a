"""What the store answers about webhooks: the delivery queues and the endpoints.

Part of the ``Store`` interface (``interface.py``), apart because the
dispatcher and the webhook views are the only ones asking.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Protocol

from fleettui.domain import (
    ConfigEndpoint,
    DeliveryResult,
    DeliveryStats,
    DueDelivery,
    EndpointChanges,
    WebhookDelivery,
    WebhookEndpoint,
)


class WebhookStore(Protocol):
    """The webhook questions of the store: queues over the outbox, attempts, endpoints."""

    # --- webhook deliveries ----------------------------------------------------
    async def webhook_enqueue(self, endpoint: str, events: Sequence[str], now: datetime, *,
                              registered: bool = False) -> int:
        """Give an endpoint every outbox event it has not seen and wants; returns how many.

        ``registered``: the endpoint is one of the store's own (API-created), and
        nothing is queued unless it still exists: a dispatcher round that began
        before a delete must not find the cursor gone and start again from 0.
        """
        ...

    async def webhook_due(
        self, endpoint: str, now: datetime, per_device: int = 100, *,
        sites: Collection[str] | None = None, deviceless: bool = True,
    ) -> list[DueDelivery]:
        """Deliveries to attempt now, oldest first: for each device whose oldest pending
        event is due, up to ``per_device`` of its pending events, to send in order.

        What a poller sharing the database sends: ``sites`` None is every device's
        deliveries, else only those of devices whose site is in ``sites``;
        ``deviceless`` False leaves out the deliveries of no device (and of a
        device the store does not know: they are the fleet's, like those of none).
        A device's deliveries are all in or all out, so its order holds.
        """
        ...

    async def webhook_results(
        self, endpoint: str, results: Sequence[DeliveryResult], now: datetime
    ) -> None:
        """Record delivery attempts in one transaction: delivered, to retry at their
        ``retry_at``, or dead (each with a webhook.dead event saying its error class)."""
        ...

    async def webhook_replay(
        self, endpoint: str | None, now: datetime, outbox_ids: Sequence[int] | None = None
    ) -> int:
        """Put dead deliveries (of one endpoint, or all; only ``outbox_ids`` if given)
        back in the queue; returns how many."""
        ...

    async def webhook_deliveries(
        self, endpoint: str, state: str | None = None, limit: int = 100
    ) -> list[WebhookDelivery]:
        """One endpoint's deliveries (in ``state`` if given), newest first."""
        ...

    async def webhook_dead_count(self) -> int:
        """How many deliveries, of every endpoint, are dead (gave up; waiting for a replay)."""
        ...

    async def webhook_dead(self, limit: int = 100) -> list[WebhookDelivery]:
        """Dead deliveries of every endpoint, newest first, each with its endpoint's
        id and URL (None for a queue whose endpoint is gone from the config)."""
        ...

    async def webhook_stats(self, endpoint: str | None = None) -> DeliveryStats:
        """Deliveries by state, and the mean latency of delivered ones (ms)."""
        ...

    # --- webhook endpoints -----------------------------------------------------
    async def sync_webhook_endpoints(self, endpoints: Sequence[ConfigEndpoint],
                                     now: datetime) -> None:
        """Mirror the config's endpoints (their queue is keyed by URL) so that every view
        lists them. Their secrets stay in the config file."""
        ...

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
        cursor starts at the newest outbox event (no replay of the whole history)."""
        ...

    async def webhook_endpoints(self, *, with_secrets: bool = False,
                                origin: str | None = None) -> list[WebhookEndpoint]:
        """Every endpoint the store knows, by creation; the secret only if asked
        (the dispatcher asks; views never do)."""
        ...

    async def webhook_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        """One endpoint (never its secret), or None."""
        ...

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
        ...

    async def webhook_forget_previous_secrets(self, now: datetime) -> int:
        """Clear the previous secrets whose overlap is over (rotation done); returns how many."""
        ...

    async def delete_webhook_endpoint(self, endpoint_id: str, now: datetime) -> bool:
        """Remove an API-created endpoint with its queue (pending and dead deliveries
        are dropped); False if there is no such API endpoint."""
        ...
