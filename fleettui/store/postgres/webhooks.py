"""Webhook deliveries: queues over the outbox, attempts, stats."""

from __future__ import annotations

from fleettui.store.postgres.connection import PostgresConnection


class WebhookDeliveryQueries(PostgresConnection):
    """Webhook deliveries: queues over the outbox, attempts, stats."""
