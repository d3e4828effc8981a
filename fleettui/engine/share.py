"""Which sites this poller holds: what it polls, commands, alerts on and relays webhooks
for, when several pollers share one database.

A ``SiteShare`` is the engine's answer to "is this mine?". Alone on a
database (SQLite, or the only poller) it holds everything. Sharing one, it
holds the sites whose leases it holds (``leases.py`` keeps them), plus, for
one poller at a time, the fleet-wide work that belongs to no site (webhook
events of no device): the ``FLEET`` lease.

Everything that acts for a site asks ``holds(site_id)`` at the moment it
acts; what gains or loses a site hears it through ``on_change``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from fleettui.domain import FLEET_LEASE

log = logging.getLogger(__name__)

#: the lease of the work that belongs to no site (held by one poller at a time)
FLEET = FLEET_LEASE

ChangeListener = Callable[[frozenset[str], frozenset[str]], None]


class SiteShare:
    """The sites a poller holds now, and who wants to hear when that changes."""

    def __init__(self, held: Collection[str] = (), *, everything: bool = False) -> None:
        #: True: alone on the database, everything is ours (no lease is kept)
        self.everything = everything
        self._held: frozenset[str] = frozenset(held)
        self._listeners: list[ChangeListener] = []
        #: changes so far, and the change at which each site was last gained
        self._changes = 0
        self._gained_at: dict[str, int] = {}

    @classmethod
    def whole(cls) -> SiteShare:
        """The share of a poller alone on its database: every site, and the fleet's work."""
        return cls(everything=True)

    def holds(self, site_id: str | None) -> bool:
        """Whether work for this site is ours now (None: work of no site, the ``FLEET``
        lease's)."""
        return self.everything or (FLEET if site_id is None else site_id) in self._held

    def gained_at(self, site_id: str) -> int:
        """The change at which the site was last gained (0: held from the start, or alone
        on the database): what was learnt of its devices before then is stale."""
        return self._gained_at.get(site_id, 0)

    def held_sites(self) -> frozenset[str]:
        """The sites held now (without ``FLEET``); meaningless when ``everything``."""
        return self._held - {FLEET}

    def sites_filter(self) -> frozenset[str] | None:
        """What to narrow a store query to: None (everything), else the sites held."""
        return None if self.everything else self.held_sites()

    def on_change(self, listener: ChangeListener) -> None:
        """Call ``listener(gained, lost)`` after each change of the sites held."""
        self._listeners.append(listener)

    def set(self, held: Collection[str]) -> tuple[frozenset[str], frozenset[str]]:
        """Hold exactly ``held`` from now on; the listeners hear what was gained and lost."""
        new = frozenset(held)
        gained, lost = new - self._held, self._held - new
        self._held = new
        if gained or lost:
            self._changes += 1
            for site in gained:
                self._gained_at[site] = self._changes
            for listener in list(self._listeners):
                try:
                    listener(gained, lost)
                except Exception:
                    log.exception("a listener of the site share failed")
        return gained, lost
