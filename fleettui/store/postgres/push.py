"""Push devices: contacts, stamps, command lines, pending serials."""

from __future__ import annotations

from fleettui.store.postgres.connection import PostgresConnection


class PushQueries(PostgresConnection):
    """Push devices: contacts, stamps, command lines, pending serials."""
