"""The PostgreSQL backend of the store: several pollers, views and listeners on one
database.

One class, ``PostgresStore``, made of one mixin per question the store
answers (fleet, health, punches, commands, ...), as the SQLite backend is,
all on the pool of ``connection.PostgresConnection``.
"""

from __future__ import annotations

from fleettui.store.postgres.alerts import AlertQueries
from fleettui.store.postgres.api_keys import ApiKeyQueries
from fleettui.store.postgres.commands import CommandQueries
from fleettui.store.postgres.endpoints import WebhookEndpointQueries
from fleettui.store.postgres.events import EventQueries
from fleettui.store.postgres.fleet import FleetQueries
from fleettui.store.postgres.health import HealthQueries
from fleettui.store.postgres.leases import LeaseQueries
from fleettui.store.postgres.panels import PanelQueries
from fleettui.store.postgres.punches import PunchQueries
from fleettui.store.postgres.push import PushQueries
from fleettui.store.postgres.sessions import SessionQueries
from fleettui.store.postgres.webhooks import WebhookDeliveryQueries


class PostgresStore(
    FleetQueries,
    HealthQueries,
    PunchQueries,
    CommandQueries,
    AlertQueries,
    WebhookDeliveryQueries,
    WebhookEndpointQueries,
    ApiKeyQueries,
    SessionQueries,
    PushQueries,
    EventQueries,
    PanelQueries,
    LeaseQueries,
):
    """fleettui's database on a PostgreSQL server, the ``Store`` of
    ``fleettui.store.open_store`` for a ``postgresql://`` address."""


__all__ = ["PostgresStore"]
