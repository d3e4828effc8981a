"""Remote commands: requests, their per-device commands, the queue signal."""

from __future__ import annotations

from fleettui.store.postgres.connection import PostgresConnection


class CommandQueries(PostgresConnection):
    """Remote commands: requests, their per-device commands, the queue signal."""
