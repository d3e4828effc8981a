"""What the store answers about pollers sharing one database: who is alive, and which
sites each holds.

Part of the ``Store`` interface (``interface.py``), apart because only the
lease keeper (``fleettui/engine/leases.py``) writes it and ``fleettui
pollers`` / ``status`` read it. A lease is a row: the site, its poller, and
until when it holds (``expires_at``); a poller that stops renewing loses its
leases when they run out, and any live poller may take them then. Times are
the callers' clock (``now``), as everywhere in the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from fleettui.domain import PollerInfo, SiteLease


class LeaseStore(Protocol):
    """The lease questions of the store: pollers alive, leases renewed, claimed, let go."""

    @property
    def shared(self) -> bool:
        """Whether several pollers may share this database (PostgreSQL: True; a SQLite file
        is one poller's, by its lock)."""
        ...

    async def poller_alive(self, poller: PollerInfo, now: datetime, lease: timedelta) -> None:
        """This poller is alive until ``now + lease`` (its row made, or renewed)."""
        ...

    async def renew_leases(self, poller_id: str, now: datetime, lease: timedelta) -> list[str]:
        """Extend every lease the poller still holds to ``now + lease``; those site ids (a
        lease taken over by another poller after it ran out is not among them)."""
        ...

    async def claim_leases(self, poller_id: str, count: int, now: datetime, lease: timedelta,
                           *, fleet: bool = False) -> list[str]:
        """Take up to ``count`` sites nobody holds (no lease, or one run out), in id order,
        until ``now + lease``; with ``fleet``, the ``"*"`` lease too when it is free. Two
        pollers claiming at once never take the same site. The site ids taken."""
        ...

    async def release_leases(self, poller_id: str, site_ids: Sequence[str]) -> None:
        """Let these sites go (only those this poller holds)."""
        ...

    async def poller_gone(self, poller_id: str) -> None:
        """A poller stopped cleanly: its row and every lease it held are removed."""
        ...

    async def pollers(self) -> list[PollerInfo]:
        """Every poller known (live ones, and those whose time ran out and are not cleared
        yet), each with the sites it holds, oldest first."""
        ...

    async def site_leases(self) -> list[SiteLease]:
        """Every lease, by site id."""
        ...
