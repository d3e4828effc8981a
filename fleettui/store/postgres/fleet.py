"""Sites and devices: the fleet as configured, and devices registered through the API."""

from __future__ import annotations

from fleettui.store.postgres.connection import PostgresConnection


class FleetQueries(PostgresConnection):
    """Sites and devices: the fleet as configured, and devices registered through the API."""
