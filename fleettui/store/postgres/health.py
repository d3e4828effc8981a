"""Device health: status transitions, their history, uptime, and flap state."""

from __future__ import annotations

from fleettui.store.postgres.connection import PostgresConnection


class HealthQueries(PostgresConnection):
    """Device health: status transitions, their history, uptime, and flap state."""
