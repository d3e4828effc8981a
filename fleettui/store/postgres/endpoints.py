"""Webhook endpoints: mirrored from the config, or the store's own."""

from __future__ import annotations

from fleettui.store.postgres.connection import PostgresConnection


class WebhookEndpointQueries(PostgresConnection):
    """Webhook endpoints: mirrored from the config, or the store's own."""
