"""Alerts and silences."""

from __future__ import annotations

from fleettui.store.postgres.connection import PostgresConnection


class AlertQueries(PostgresConnection):
    """Alerts and silences."""
