"""UDP sessions a poller opened on its devices."""

from __future__ import annotations

from fleettui.store.postgres.connection import PostgresConnection


class SessionQueries(PostgresConnection):
    """UDP sessions a poller opened on its devices."""
