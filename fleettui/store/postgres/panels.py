"""The control room's panel queries."""

from __future__ import annotations

from fleettui.store.postgres.connection import PostgresConnection


class PanelQueries(PostgresConnection):
    """The control room's panel queries."""
