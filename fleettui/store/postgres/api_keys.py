"""API keys, stored as hashes."""

from __future__ import annotations

from fleettui.store.postgres.connection import PostgresConnection


class ApiKeyQueries(PostgresConnection):
    """API keys, stored as hashes."""
