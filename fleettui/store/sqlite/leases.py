"""Pollers and site leases in a SQLite store (see ``LeaseStore``).

A SQLite file is one poller's (its lock says whose), so the engine keeps no
lease on one (``shared`` is False); the tables and their queries are here so
that every backend answers the same questions, and tested alike.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta

from fleettui.domain import FLEET_LEASE, PollerInfo, SiteLease
from fleettui.store.shared.lease_rows import (
    FORGET_AFTER,
    LEASE_COLUMNS,
    POLLER_COLUMNS,
    lease_of_row,
    pollers_of_rows,
)
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, select, ts

#: see the PostgreSQL claim: SQLite's one writer makes the row locks unneeded
_CLAIM = (
    "INSERT INTO site_leases (site_id, poller_id, since, expires_at)"
    " SELECT s.id, ?, ?, ? FROM sites s LEFT JOIN site_leases l ON l.site_id = s.id"
    " WHERE NOT s.removed AND (l.site_id IS NULL OR l.expires_at <= ?)"
    " ORDER BY s.id LIMIT ?"
    " ON CONFLICT (site_id) DO UPDATE SET poller_id = excluded.poller_id,"
    " since = excluded.since, expires_at = excluded.expires_at"
    " WHERE site_leases.expires_at <= ?"
    " RETURNING site_id"
)


class LeaseQueries(SqliteConnection):
    """Who polls what (one poller, on a SQLite file)."""

    @property
    def shared(self) -> bool:
        """A SQLite file is one poller's."""
        return False

    async def poller_alive(self, poller: PollerInfo, now: datetime, lease: timedelta) -> None:
        """See ``LeaseStore.poller_alive``."""
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                f"INSERT INTO pollers ({POLLER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at,"
                " expires_at = excluded.expires_at",
                (poller.id, poller.pid, poller.host, poller.mode, ts(poller.started_at), ts(now),
                 ts(now + lease)))
            db.execute(
                "DELETE FROM pollers WHERE expires_at < ? AND NOT EXISTS (SELECT 1 FROM"
                " site_leases l WHERE l.poller_id = pollers.id AND l.expires_at > ?)",
                (ts(now - FORGET_AFTER), ts(now)))
        await self._transaction(write)

    async def renew_leases(self, poller_id: str, now: datetime, lease: timedelta) -> list[str]:
        """See ``LeaseStore.renew_leases``."""
        def write(db: sqlite3.Connection) -> list[str]:
            rows = select(db, "UPDATE site_leases SET expires_at = ? WHERE poller_id = ?"
                          " RETURNING site_id", (ts(now + lease), poller_id))
            return sorted(r[0] for r in rows)
        return await self._transaction(write)

    async def claim_leases(self, poller_id: str, count: int, now: datetime, lease: timedelta,
                           *, fleet: bool = False) -> list[str]:
        """See ``LeaseStore.claim_leases``."""
        start, until = ts(now), ts(now + lease)
        def write(db: sqlite3.Connection) -> list[str]:
            taken = [r[0] for r in select(db, _CLAIM, (poller_id, start, until, start, count,
                                                       start))] if count > 0 else []
            if fleet and select(
                    db, "INSERT INTO site_leases (site_id, poller_id, since, expires_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (site_id) DO UPDATE SET"
                    " poller_id = excluded.poller_id, since = excluded.since,"
                    " expires_at = excluded.expires_at WHERE site_leases.expires_at <= ?"
                    " RETURNING site_id", (FLEET_LEASE, poller_id, start, until, start)):
                taken.append(FLEET_LEASE)
            return sorted(taken)
        return await self._transaction(write)

    async def release_leases(self, poller_id: str, site_ids: Sequence[str]) -> None:
        """See ``LeaseStore.release_leases``."""
        def write(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM site_leases WHERE poller_id = ? AND site_id = ?",
                           [(poller_id, s) for s in site_ids])
        await self._transaction(write)

    async def poller_gone(self, poller_id: str) -> None:
        """See ``LeaseStore.poller_gone``."""
        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM site_leases WHERE poller_id = ?", (poller_id,))
            db.execute("DELETE FROM pollers WHERE id = ?", (poller_id,))
        await self._transaction(write)

    async def pollers(self) -> list[PollerInfo]:
        """See ``LeaseStore.pollers``."""
        rows = await fetch(self._db,
                           f"SELECT {POLLER_COLUMNS} FROM pollers ORDER BY started_at, id")
        return pollers_of_rows(rows, await self.site_leases(), from_ts)

    async def site_leases(self) -> list[SiteLease]:
        """See ``LeaseStore.site_leases``."""
        rows = await fetch(self._db,
                           f"SELECT {LEASE_COLUMNS} FROM site_leases ORDER BY site_id")
        return [lease_of_row(r, from_ts) for r in rows]
