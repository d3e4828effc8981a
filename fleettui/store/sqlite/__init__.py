"""The SQLite backend of the store (the embedded default).

One class, ``SqliteStore``, made of one mixin per question the store
answers (fleet, health, punches, commands, ...), all on the connections of
``connection.SqliteConnection``: writes through the one writer, reads on a
query-only reader that sees committed data only.
"""

from __future__ import annotations

from fleettui.store.sqlite.alerts import AlertQueries
from fleettui.store.sqlite.api_keys import ApiKeyQueries
from fleettui.store.sqlite.commands import CommandQueries
from fleettui.store.sqlite.endpoints import WebhookEndpointQueries
from fleettui.store.sqlite.events import EventQueries
from fleettui.store.sqlite.fleet import FleetQueries
from fleettui.store.sqlite.health import HealthQueries
from fleettui.store.sqlite.leases import LeaseQueries
from fleettui.store.sqlite.panels import PanelQueries
from fleettui.store.sqlite.punches import PunchQueries
from fleettui.store.sqlite.push import PushQueries
from fleettui.store.sqlite.sessions import SessionQueries
from fleettui.store.sqlite.webhooks import WebhookDeliveryQueries


class SqliteStore(
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
    """fleettui's database in one SQLite file, the ``Store`` of ``fleettui.store.open_store``."""


__all__ = ["SqliteStore"]
