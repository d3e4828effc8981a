"""Pollers sharing the database and the leases on its sites (see ``LeaseStore``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from fleettui.domain import FLEET_LEASE, PollerInfo, SiteLease
from fleettui.store.postgres.connection import Db, PostgresConnection
from fleettui.store.shared.lease_rows import (
    FORGET_AFTER,
    LEASE_COLUMNS,
    POLLER_COLUMNS,
    lease_of_row,
    pollers_of_rows,
)
from fleettui.store.shared.row_times import native_time

#: up to $2 sites nobody holds (no lease, or one run out at $3), in id order; rows another
#: claimer is looking at are skipped (SKIP LOCKED), and a lease still running is never
#: taken (the ON CONFLICT's WHERE)
_CLAIM = (
    "WITH free AS ("
    " SELECT s.id FROM sites s LEFT JOIN site_leases l ON l.site_id = s.id"
    " WHERE NOT s.removed AND (l.site_id IS NULL OR l.expires_at <= $3)"
    " ORDER BY s.id LIMIT $2 FOR UPDATE OF s SKIP LOCKED)"
    " INSERT INTO site_leases (site_id, poller_id, since, expires_at)"
    " SELECT id, $1, $3, $4 FROM free"
    " ON CONFLICT (site_id) DO UPDATE SET poller_id = excluded.poller_id,"
    " since = excluded.since, expires_at = excluded.expires_at"
    " WHERE site_leases.expires_at <= $3"
    " RETURNING site_id"
)


class LeaseQueries(PostgresConnection):
    """Who polls what, when several pollers share the database (a poller's own writes go
    through the lease keeper's connection, apart from the pool)."""

    @property
    def shared(self) -> bool:
        """Several pollers may share a PostgreSQL database."""
        return True

    async def poller_alive(self, poller: PollerInfo, now: datetime, lease: timedelta) -> None:
        """See ``LeaseStore.poller_alive`` (pollers dead long ago are forgotten here)."""
        async def write(db: Db) -> None:
            await db.execute(
                f"INSERT INTO pollers ({POLLER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at,"
                " expires_at = excluded.expires_at",
                poller.id, poller.pid, poller.host, poller.mode, poller.started_at, now,
                now + lease)
            await db.execute(
                "DELETE FROM pollers p WHERE p.expires_at < $1 AND NOT EXISTS"
                " (SELECT 1 FROM site_leases l WHERE l.poller_id = p.id AND l.expires_at > $2)",
                now - FORGET_AFTER, now)
        await self._lease_transaction(write)

    async def renew_leases(self, poller_id: str, now: datetime, lease: timedelta) -> list[str]:
        """See ``LeaseStore.renew_leases``."""
        async def write(db: Db) -> list[str]:
            rows = await db.fetch(
                "UPDATE site_leases SET expires_at = $2 WHERE poller_id = $1 RETURNING site_id",
                poller_id, now + lease)
            return sorted(r[0] for r in rows)
        return await self._lease_transaction(write)

    async def claim_leases(self, poller_id: str, count: int, now: datetime, lease: timedelta,
                           *, fleet: bool = False) -> list[str]:
        """See ``LeaseStore.claim_leases``."""
        async def write(db: Db) -> list[str]:
            taken = [r[0] for r in await db.fetch(_CLAIM, poller_id, count, now, now + lease)
                     ] if count > 0 else []
            if fleet:
                row = await db.fetchrow(
                    "INSERT INTO site_leases (site_id, poller_id, since, expires_at)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT (site_id) DO UPDATE SET"
                    " poller_id = excluded.poller_id, since = excluded.since,"
                    " expires_at = excluded.expires_at WHERE site_leases.expires_at <= $3"
                    " RETURNING site_id", FLEET_LEASE, poller_id, now, now + lease)
                if row is not None:
                    taken.append(FLEET_LEASE)
            return sorted(taken)
        return await self._lease_transaction(write)

    async def release_leases(self, poller_id: str, site_ids: Sequence[str]) -> None:
        """See ``LeaseStore.release_leases``."""
        async def write(db: Db) -> None:
            await db.execute(
                "DELETE FROM site_leases WHERE poller_id = $1 AND site_id = ANY($2::text[])",
                poller_id, list(site_ids))
        await self._lease_transaction(write)

    async def poller_gone(self, poller_id: str) -> None:
        """See ``LeaseStore.poller_gone``."""
        async def write(db: Db) -> None:
            await db.execute("DELETE FROM site_leases WHERE poller_id = $1", poller_id)
            await db.execute("DELETE FROM pollers WHERE id = $1", poller_id)
        await self._lease_transaction(write)

    async def pollers(self) -> list[PollerInfo]:
        """See ``LeaseStore.pollers``."""
        rows = await self._fetch(f"SELECT {POLLER_COLUMNS} FROM pollers ORDER BY started_at, id")
        return pollers_of_rows(rows, await self.site_leases(), native_time)

    async def site_leases(self) -> list[SiteLease]:
        """See ``LeaseStore.site_leases``."""
        rows = await self._fetch(f"SELECT {LEASE_COLUMNS} FROM site_leases ORDER BY site_id")
        return [lease_of_row(r, native_time) for r in rows]
