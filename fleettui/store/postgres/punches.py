"""Punches, the sync cursor, and the punch.created outbox rows written with them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from fleettui.domain import Punch, SyncCursor, TzFlag, WebhookEvent
from fleettui.store.postgres.connection import Db, PostgresConnection, append_lock
from fleettui.store.shared.timetext import local_text, ts

#: how far a device's local time can be from UTC (zones run from -12 h to +14 h), and an
#: hour to spare
LOCAL_MARGIN = timedelta(hours=15)
_PUNCH_COLUMNS = (
    "id, device_id, user_id, local_time, timezone, utc_time, tz_flag, state, verify,"
    " clock_drift_s, source, received_at"
)
#: the punches of one sync, as arrays (one round trip however many there are); the ones
#: already stored are skipped by the unique key
_INSERT = (
    "INSERT INTO punches (device_id, user_id, local_time, timezone, utc_time, tz_flag, state,"
    " verify, clock_drift_s, source, received_at)"
    " SELECT $1, * FROM unnest($2::text[], $3::timestamp[], $4::text[], $5::timestamptz[],"
    " $6::text[], $7::int[], $8::int[], $9::float8[], $10::text[], $11::timestamptz[])"
    " ON CONFLICT DO NOTHING"
    " RETURNING id, user_id, local_time, timezone, utc_time, state, verify, received_at"
)


class PunchQueries(PostgresConnection):
    """Punches in, with their outbox rows; punches out, filtered."""

    async def insert_punches(
        self,
        device_id: str,
        punches: Sequence[Punch],
        *,
        cursor: SyncCursor | None = None,
        synced_at: datetime | None = None,
    ) -> int:
        """Store punches not stored yet, with their outbox rows, in one transaction (see
        ``Store.insert_punches``); their months' partitions are made first."""
        if punches:
            await self._partitions.ensure(self._pool, (p.local_time for p in punches))
        columns = (
            [p.user_id for p in punches], [p.local_time for p in punches],
            [p.timezone for p in punches], [p.utc_time for p in punches],
            [p.tz_flag.value for p in punches], [p.state for p in punches],
            [p.verify for p in punches], [p.clock_drift_s for p in punches],
            [p.source for p in punches], [p.received_at for p in punches],
        )

        async def write(db: Db) -> int:
            await append_lock(db)
            new = await db.fetch(_INSERT, device_id, *columns) if punches else []
            if new:
                await db.executemany(
                    "INSERT INTO webhook_outbox (event_type, device_id, payload, created_at)"
                    " VALUES ($1, $2, $3, $4)",
                    [(WebhookEvent.PUNCH_CREATED.value, device_id,
                      _punch_payload(device_id, r), r["received_at"])
                     for r in sorted(new, key=lambda r: r["id"])],
                )
                await db.execute(
                    "UPDATE devices SET last_punch_at = GREATEST(last_punch_at, $1)"
                    " WHERE id = $2", max(r["utc_time"] for r in new), device_id)
            if cursor is not None:
                stored, tail = cursor
                await db.execute(
                    "UPDATE devices SET synced_records = $1, synced_tail = $2,"
                    " last_sync_at = COALESCE($3, last_sync_at) WHERE id = $4",
                    stored, tail, synced_at, device_id)
            return len(new)

        return await self._transaction(write)

    async def sync_cursor(self, device_id: str) -> SyncCursor:
        """How far the device's log is stored (nothing stored yet: 0 records)."""
        row = await self._fetchrow(
            "SELECT synced_records, synced_tail FROM devices WHERE id = $1", device_id)
        return SyncCursor(int(row[0]), str(row[1])) if row else SyncCursor(0, "")

    async def punches(
        self,
        *,
        since: datetime | None = None,
        site_id: str | None = None,
        device_id: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        until: datetime | None = None,
    ) -> list[Punch]:
        """Stored punches in UTC order (then id), filtered: a UTC time in [since, until)."""
        sql, args = punch_query(_PUNCH_COLUMNS, since=since, until=until, site_id=site_id,
                                device_id=device_id, after_id=after_id)
        sql += " ORDER BY utc_time, id"
        if limit is not None:
            args.append(limit)
            sql += f" LIMIT ${len(args)}"
        return [punch_of_row(r) for r in await self._fetch(sql, *args)]

    async def punch_count(self, device_id: str | None = None) -> int:
        """How many punches are stored (for one device, if given)."""
        if device_id is None:
            return int(await self._fetchval("SELECT COUNT(*) FROM punches"))
        return int(await self._fetchval(
            "SELECT COUNT(*) FROM punches WHERE device_id = $1", device_id))

    async def outbox_count(self) -> int:
        """Rows waiting in the webhook outbox."""
        return int(await self._fetchval("SELECT COUNT(*) FROM webhook_outbox"))


def punch_query(columns: str, *, since: datetime | None, until: datetime | None,
                site_id: str | None = None, device_id: str | None = None,
                after_id: int = 0) -> tuple[str, list[Any]]:
    """A query of punches by UTC time, site and device, and its arguments.

    The partitions are by month of local time, and a local time is its UTC time
    moved by the zone's offset (-12 h to +14 h): a UTC range adds the local range
    it implies (with an hour to spare), so only the months it can touch are read.
    """
    sql = f"SELECT {columns} FROM punches WHERE id > $1"
    args: list[Any] = [after_id]
    if since is not None:
        args.extend([since, since.astimezone(UTC).replace(tzinfo=None) - LOCAL_MARGIN])
        sql += f" AND utc_time >= ${len(args) - 1} AND local_time >= ${len(args)}"
    if until is not None:
        args.extend([until, until.astimezone(UTC).replace(tzinfo=None) + LOCAL_MARGIN])
        sql += f" AND utc_time < ${len(args) - 1} AND local_time < ${len(args)}"
    if device_id is not None:
        args.append(device_id)
        sql += f" AND device_id = ${len(args)}"
    if site_id is not None:
        args.append(site_id)
        sql += f" AND device_id IN (SELECT id FROM devices WHERE site_id = ${len(args)})"
    return sql, args


def _punch_payload(device_id: str, r: asyncpg.Record) -> str:
    """A punch.created body, byte for byte what the SQLite store writes for the same punch."""
    return json.dumps({
        "event": WebhookEvent.PUNCH_CREATED.value,
        "punch": {"id": r["id"], "device_id": device_id, "user_id": r["user_id"],
                  "local_time": local_text(r["local_time"]), "timezone": r["timezone"],
                  "timestamp": ts(r["utc_time"]), "state": r["state"], "verify": r["verify"]},
    }, separators=(",", ":"), ensure_ascii=False)


def punch_of_row(r: asyncpg.Record) -> Punch:
    """A punches row as a Punch."""
    return Punch(
        id=r["id"], device_id=r["device_id"], user_id=r["user_id"],
        local_time=r["local_time"], timezone=r["timezone"], utc_time=r["utc_time"],
        tz_flag=TzFlag(r["tz_flag"]), state=r["state"], verify=r["verify"],
        clock_drift_s=r["clock_drift_s"], source=r["source"], received_at=r["received_at"],
    )
