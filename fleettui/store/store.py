"""The store: SQLite through aiosqlite, the source of truth every view reads.

Every SQL statement of fleettui lives here, and the interface speaks in domain
objects, so that a later PostgreSQL store can take its place.

Durability: WAL mode with ``synchronous=NORMAL``. An application crash
(kill -9) loses nothing that was committed. A power cut may roll back the
last transactions written before it; nothing is lost for good because
fleettui never clears a device's records, so the next sync reads them again
and the unique key keeps them from being stored twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite

from fleettui.domain import (
    Alert,
    AlertKind,
    Command,
    CommandRequest,
    CommandState,
    DeviceSpec,
    DeviceState,
    DeviceStatus,
    Event,
    Punch,
    Silence,
    Site,
    StatusChange,
    TzFlag,
)
from fleettui.egress import redacted_url
from fleettui.store.schema import MIGRATIONS

# aiosqlite logs every statement with its parameters at DEBUG, and parameters can be
# secrets (a webhook endpoint's secret): its log never goes below INFO
logging.getLogger("aiosqlite").setLevel(logging.INFO)

_DEVICE_COLUMNS = (
    "id, serial, site_id, host, port, transport, name, enabled, model, firmware, platform, mac,"
    " status, status_reason, status_since, last_seen, users, users_cap, records, records_cap,"
    " clock_drift_s, clock_checked_at, last_sync_at, last_punch_at, synced_records, origin"
)
#: one punch.created outbox row per punch with an id above ?, payload built by SQLite
_OUTBOX_FROM_NEW_PUNCHES = (
    "INSERT INTO webhook_outbox (event_type, device_id, payload, created_at)"
    " SELECT 'punch.created', device_id,"
    " json_object('event', 'punch.created', 'punch', json_object('id', id,"
    " 'device_id', device_id, 'user_id', user_id, 'local_time', local_time,"
    " 'timezone', timezone, 'timestamp', utc_time, 'state', state, 'verify', verify)),"
    " received_at FROM punches WHERE id > ? ORDER BY id"
)
_ALERT_COLUMNS = (
    "id, target_kind, target, site_id, kind, severity, state, reason, since, opened_at,"
    " resolved_at, escalated_at, acknowledged_at, acknowledged_by, notified, last_notified_at,"
    " notifications"
)
_SILENCE_COLUMNS = "id, target, until, reason, created_by, created_at, ended_at"
_COMMAND_COLUMNS = (
    "id, request_id, device_id, command, params, state, attempts, result, error, created_at,"
    " updated_at, expires_at"
)
#: API roles, each allowed what the ones before it are
API_ROLES = ("viewer", "operator", "admin")
#: how long an idempotency key guards against a repeated request
IDEMPOTENCY_WINDOW = timedelta(days=7)
_ENDPOINT_COLUMNS = (
    "id, origin, delivery_key, url, events, secret, enabled, hex_signature_header, timeout_s,"
    " created_at, previous_secret, previous_secret_until"
)
_DELIVERY_SELECT = (
    "SELECT d.endpoint, e.id AS endpoint_id, e.url, d.outbox_id, o.event_type, d.device_id,"
    " d.state, d.attempts, d.last_error, d.created_at, d.next_attempt_at, d.delivered_at,"
    " d.latency_ms FROM webhook_deliveries d JOIN webhook_outbox o ON o.id = d.outbox_id"
    " LEFT JOIN webhook_endpoints e ON e.delivery_key = d.endpoint"
)
_PUNCH_COLUMNS = (
    "id, device_id, user_id, local_time, timezone, utc_time, tz_flag, state, verify,"
    " clock_drift_s, source, received_at"
)


def ts(dt: datetime) -> str:
    """An aware datetime as the store's UTC text (sorts as time)."""
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def from_ts(text: str | None) -> datetime | None:
    """The store's UTC text back to an aware datetime."""
    if not text:
        return None
    return datetime.fromisoformat(text)  # the trailing Z reads as UTC (Python 3.11+)


def _local(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


async def _connect(path: Path) -> aiosqlite.Connection:
    """A connection in autocommit (transactions are begun explicitly), rows by name."""
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = aiosqlite.Row
    try:
        await db.execute("PRAGMA busy_timeout=10000")
    except BaseException:
        await db.close()
        raise
    return db


async def _migrate(db: aiosqlite.Connection) -> None:
    """Run the migrations not run yet, all in one transaction.

    The version is read inside the write transaction, so two processes
    opening a new database at once (a poller creating it, ``fleettui
    status`` reading it) never run a migration twice.
    """
    await db.execute("BEGIN IMMEDIATE")
    try:
        row = await (await db.execute("PRAGMA user_version")).fetchone()
        version = int(row[0]) if row else 0
        for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in sql.split(";"):
                if statement.strip():
                    await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {number}")
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise


class FleetConflict(ValueError):
    """A change to the fleet the store refuses, and why: nothing of it was written.

    ``status`` is what an HTTP answer would say (400 bad reference, 404 unknown
    device, 409 taken or owned by the config file); ``index`` is the device's
    place in a batch (None for a single device) and ``field`` the field at fault.
    """

    def __init__(self, status: int, field: str, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message
        self.index = index


class IdempotencyConflict(ValueError):
    """An idempotency key already names a different request."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used for a different command or target"
        )
        self.key = key


class Store:
    """fleettui's database. Open with ``await Store.open(path)``.

    Two connections: every write transaction goes through the writer, one at a
    time (SQLite has one writer); every read goes through the reader, which
    is query-only and in autocommit, so it sees what is committed and nothing
    else. With one shared connection a read made while another coroutine's
    transaction was open saw rows that were then rolled back (the control
    room's event tail took a rolled-back event's id and skipped the next real
    one, which got the same id).
    """

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
                 path: Path) -> None:
        self._writer = writer
        #: the read connection (the name every read method uses)
        self._db = reader
        self.path = path
        self._write = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        """Open (creating if needed, readable by its owner only) and migrate."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        writer = await _connect(path)
        try:
            await _set_wal(writer)
            await writer.execute("PRAGMA synchronous=NORMAL")
            await writer.execute("PRAGMA foreign_keys=ON")
            await _migrate(writer)
            reader = await _connect(path)
        except BaseException:
            await writer.close()
            raise
        try:
            await reader.execute("PRAGMA query_only=ON")  # a write sent here is a bug: refused
        except BaseException:
            await reader.close()
            await writer.close()
            raise
        return cls(writer, reader, path)

    async def close(self) -> None:
        """Close both connections (waits for the write in progress)."""
        async with self._write:
            await self._db.close()
            await self._writer.close()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time, on the writer; rolled back on any error. What
        it writes is seen by reads once it commits, not before."""
        async with self._write:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")

    async def schema_version(self) -> int:
        """How many migrations have run."""
        row = await (await self._db.execute("PRAGMA user_version")).fetchone()
        return int(row[0]) if row else 0

    # --- fleet ----------------------------------------------------------

    async def sync_fleet(self, sites: Iterable[Site], devices: Iterable[DeviceState]) -> None:
        """Make the store's sites and devices match the configuration.

        Configuration fields are updated; what the poller learned (status,
        identity, counters, sync cursor) is kept. Devices no longer
        configured are marked removed, never deleted (their punches stay).
        Sites and devices created through the API (origin "api") are the store's
        own and are kept; a configured one of the same id takes such a one over.
        """
        sites = list(sites)
        devices = list(devices)
        async with self._tx() as db:
            await db.execute("UPDATE sites SET removed = 1 WHERE origin = 'config'")
            await db.executemany(
                "INSERT INTO sites (id, name, timezone, address, removed) VALUES (?, ?, ?, ?, 0)"
                " ON CONFLICT(id) DO UPDATE SET name=excluded.name, timezone=excluded.timezone,"
                " address=excluded.address, removed=0, origin='config'",
                [(s.id, s.name, s.timezone, s.address) for s in sites],
            )
            await db.execute("UPDATE devices SET removed = 1 WHERE origin = 'config'")
            await db.executemany(
                "INSERT INTO devices (id, serial, site_id, host, port, transport, name, enabled,"
                " removed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)"
                " ON CONFLICT(id) DO UPDATE SET serial=excluded.serial, site_id=excluded.site_id,"
                " host=excluded.host, port=excluded.port, transport=excluded.transport,"
                " name=excluded.name, enabled=excluded.enabled, removed=0, origin='config',"
                " comm_key=0, live_capture=NULL",
                [
                    (d.id, d.serial, d.site_id, d.host, d.port, d.transport, d.name, int(d.enabled))
                    for d in devices
                ],
            )
            # a site the config dropped while devices registered over the API stand there
            # stays, as the store's own (else those devices would stand nowhere)
            await db.execute(
                "UPDATE sites SET removed = 0, origin = 'api' WHERE removed = 1"
                " AND origin = 'config' AND id IN"
                " (SELECT site_id FROM devices WHERE origin = 'api' AND removed = 0)")

    async def create_site(self, site: Site, now: datetime) -> bool:
        """Add a site of the store's own (origin "api"); False if the id is taken.

        A site once configured and since removed keeps its id (its punches
        and history still name it), so that id is taken too; so is a device's.
        """
        try:
            await self.register_devices([], now, site=site)
        except FleetConflict:
            return False
        return True

    # --- devices of the store's own (registered through the API) ------------

    async def register_devices(
        self, devices: Sequence[DeviceSpec], now: datetime, *, site: Site | None = None,
        move: Sequence[str] = (),
    ) -> list[DeviceState]:
        """Add devices of the store's own (origin "api"), all or none.

        With ``site``, the site is created first (origin "api") and every device
        is placed there, including the existing API devices named in ``move``.
        A device whose id was removed comes back (history and sync cursor kept)
        only with the same serial. Raises FleetConflict for a taken id, serial
        or address, an unknown site, or a device the config file places.
        """
        async with self._tx() as db:
            if site is not None:
                if await self._device_row(db, site.id) is not None:
                    raise FleetConflict(409, "id", f"id {site.id!r} is already taken")
                cur = await db.execute(
                    "INSERT OR IGNORE INTO sites (id, name, timezone, address, removed, origin)"
                    " VALUES (?, ?, ?, ?, 0, 'api')",
                    (site.id, site.name, site.timezone, site.address),
                )
                if not cur.rowcount:
                    raise FleetConflict(409, "id", f"id {site.id!r} is already taken")
                await self._event(db, now, "site.created", f"site {site.id} created ({site.name})",
                                  site_id=site.id)
            ids: list[str] = []
            for i, spec in enumerate(devices):
                index = i if site is not None else None
                await self._check_device(db, spec, index)
                await db.execute(
                    "INSERT INTO devices (id, serial, site_id, host, port, transport, name,"
                    " enabled, removed, origin, comm_key, live_capture)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 'api', ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET site_id=excluded.site_id,"
                    " host=excluded.host, port=excluded.port, transport=excluded.transport,"
                    " name=excluded.name, enabled=excluded.enabled, removed=0, origin='api',"
                    " comm_key=excluded.comm_key, live_capture=excluded.live_capture",
                    _spec_row(spec),
                )
                await self._event(db, now, "device.registered",
                                  f"{spec.id} registered at {spec.site_id} ({spec.host})",
                                  device_id=spec.id)
                ids.append(spec.id)
            for j, device_id in enumerate(move, start=len(devices)):
                assert site is not None, "devices move into a new site only"
                row = await self._device_row(db, device_id)
                if row is None or row["removed"]:
                    raise FleetConflict(400, "id", f"no device {device_id!r}", j)
                if row["origin"] != "api":
                    raise FleetConflict(
                        409, "id", f"{device_id!r} is placed by the config file (site "
                        f"{row['site_id']!r}): change its site there", j)
                await db.execute("UPDATE devices SET site_id = ? WHERE id = ?",
                                 (site.id, device_id))
                await self._event(db, now, "device.moved",
                                  f"{device_id} moved from {row['site_id']} to {site.id}",
                                  device_id=device_id, data={"from": row["site_id"]})
                ids.append(device_id)
            rows = [await _fetch(db, f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?",
                                 (device_id,)) for device_id in ids]
            return [_device(r[0]) for r in rows]

    async def update_api_device(self, device_id: str, changes: dict[str, Any],
                                now: datetime) -> DeviceState:
        """Change a device of the store's own: any of site_id, host, port, transport,
        comm_key, live_capture, name, enabled. FleetConflict: unknown (404), placed
        by the config file (409), or the change collides with another device."""
        async with self._tx() as db:
            row = await self._api_row(db, device_id)
            current = _spec_of_row(row)
            spec = DeviceSpec(**{**_spec_fields(current), **changes})
            await self._check_device(db, spec, None, creating=False)
            await db.execute(
                "UPDATE devices SET site_id = ?, host = ?, port = ?, transport = ?, name = ?,"
                " enabled = ?, comm_key = ?, live_capture = ? WHERE id = ?",
                (*_spec_row(spec)[2:], device_id),
            )
            changed = sorted(k for k in changes if k != "comm_key"
                             and getattr(spec, k) != getattr(current, k))
            if "comm_key" in changes and spec.comm_key != current.comm_key:
                changed.append("comm_key")  # named, never shown
            await self._event(db, now, "device.updated",
                              f"{device_id} changed: {', '.join(changed) or 'nothing'}",
                              device_id=device_id, data={"fields": changed})
            rows = await _fetch(db, f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?",
                                (device_id,))
            return _device(rows[0])

    async def remove_api_device(self, device_id: str, now: datetime) -> None:
        """Stop knowing a device of the store's own: marked removed, never deleted (its
        punches and history stay). FleetConflict: unknown (404), or the config's (409)."""
        async with self._tx() as db:
            await self._api_row(db, device_id)
            await self._event(db, now, "device.removed", f"{device_id} removed",
                              device_id=device_id)
            await db.execute("UPDATE devices SET removed = 1 WHERE id = ?", (device_id,))

    async def api_device_specs(self) -> list[DeviceSpec]:
        """The devices of the store's own that are enabled, with their site's time zone."""
        rows = await _fetch(
            self._db,
            "SELECT d.*, s.timezone AS tz FROM devices d JOIN sites s ON s.id = d.site_id"
            " WHERE d.origin = 'api' AND d.removed = 0 AND d.enabled = 1 ORDER BY d.id",
        )
        return [DeviceSpec(**{**_spec_fields(_spec_of_row(r)), "timezone": r["tz"]})
                for r in rows]

    async def _device_row(self, db: aiosqlite.Connection, device_id: str) -> Any:
        rows = await _fetch(db, "SELECT * FROM devices WHERE id = ?", (device_id,))
        return rows[0] if rows else None

    async def _api_row(self, db: aiosqlite.Connection, device_id: str) -> Any:
        row = await self._device_row(db, device_id)
        if row is None or row["removed"]:
            raise FleetConflict(404, "id", f"no device {device_id!r}")
        if row["origin"] != "api":
            raise FleetConflict(409, "id", f"{device_id!r} is declared in the config file: "
                                "change or remove it there")
        return row

    async def _check_device(self, db: aiosqlite.Connection, spec: DeviceSpec,
                            index: int | None, *, creating: bool = True) -> None:
        """Refuse a device whose site is unknown or whose id, serial or address is taken
        (``creating``: a new device, or one removed coming back with its serial)."""
        def taken(field: str, message: str) -> FleetConflict:
            return FleetConflict(409, field, message, index)

        if not await _fetch(db, "SELECT 1 FROM sites WHERE id = ? AND removed = 0",
                            (spec.site_id,)):
            raise FleetConflict(400, "site", f"no site {spec.site_id!r}", index)
        row = await self._device_row(db, spec.id)
        if row is not None and not creating:
            if row["serial"] != spec.serial:
                raise taken("id", f"id {spec.id!r} is the device with serial {row['serial']!r}")
        elif row is not None:
            if not row["removed"]:
                owner = " (by the config file)" if row["origin"] != "api" else ""
                raise taken("id", f"id {spec.id!r} is already taken{owner}")
            if row["serial"] != spec.serial:
                gone = " by a removed device (its punches keep the id)" if row["removed"] else ""
                raise taken("id", f"id {spec.id!r} is already taken{gone}")
        if await _fetch(db, "SELECT 1 FROM sites WHERE id = ? AND removed = 0", (spec.id,)):
            raise taken("id", f"id {spec.id!r} is a site's id (commands name either)")
        others = await _fetch(
            db, "SELECT id FROM devices WHERE removed = 0 AND id != ? AND serial = ?",
            (spec.id, spec.serial))
        if others:
            raise taken("serial_number",
                        f"serial {spec.serial!r} is already the device {others[0]['id']!r}")
        others = await _fetch(
            db, "SELECT id FROM devices WHERE removed = 0 AND id != ? AND lower(host) = ?"
            " AND port = ? AND transport = ?",
            (spec.id, spec.host.lower(), spec.port, spec.transport))
        if others:
            raise taken("host", f"{spec.host}:{spec.port} ({spec.transport}) is already the "
                        f"address of {others[0]['id']!r}")

    async def sites(self) -> list[Site]:
        """Every configured site."""
        rows = await _fetch(
            self._db, "SELECT id, name, timezone, address FROM sites WHERE removed = 0 ORDER BY id"
        )
        return [Site(r["id"], r["name"], r["timezone"], r["address"]) for r in rows]

    async def devices(self, site_id: str | None = None) -> list[DeviceState]:
        """Every configured device (of one site, if given), in id order."""
        sql = f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE removed = 0"
        args: tuple[Any, ...] = ()
        if site_id is not None:
            sql += " AND site_id = ?"
            args = (site_id,)
        rows = await _fetch(self._db, sql + " ORDER BY id", args)
        return [_device(r) for r in rows]

    async def device(self, device_id: str, *, removed: bool = True) -> DeviceState | None:
        """One device, or None; ``removed=False``: None for a device no longer in the fleet."""
        sql = f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?"
        rows = await _fetch(self._db, sql if removed else sql + " AND removed = 0", (device_id,))
        return _device(rows[0]) if rows else None

    # --- health ---------------------------------------------------------

    async def record_status(self, change: StatusChange) -> Event:
        """A status transition: device row, history and event log, in one transaction."""
        data = {"status": change.status.value, "reason": change.reason}
        if change.previous is not None:
            data["previous"] = change.previous.value
        message = f"{change.device_id} {change.status.value}"
        if change.reason:
            message += f": {change.reason}"
        async with self._tx() as db:
            await db.execute(
                "UPDATE devices SET status = ?, status_reason = ?, status_since = ? WHERE id = ?",
                (change.status.value, change.reason, ts(change.at), change.device_id),
            )
            await db.execute(
                "INSERT INTO status_history (device_id, status, reason, at) VALUES (?, ?, ?, ?)",
                (change.device_id, change.status.value, change.reason, ts(change.at)),
            )
            if change.status is not DeviceStatus.UNKNOWN:
                # other systems hear "online" or "offline" (an error is offline, with its reason)
                kind = "device.online" if change.status is DeviceStatus.ONLINE else "device.offline"
                await self._device_fact(db, change.device_id, kind, change.at,
                                        {"reason": change.reason} if change.reason else {})
            return await self._event(
                db,
                change.at,
                f"device.{change.status.value}",
                message,
                device_id=change.device_id,
                data=data,
            )

    async def _device_fact(
        self,
        db: aiosqlite.Connection,
        device_id: str,
        kind: str,
        at: datetime,
        extra: dict[str, Any],
    ) -> None:
        """A webhook outbox row about a device, in the article's shape."""
        rows = await _fetch(
            db, "SELECT serial, site_id, last_seen FROM devices WHERE id = ?", (device_id,)
        )
        serial, site, last_seen = (rows[0][0], rows[0][1], rows[0][2]) if rows else (None,) * 3
        payload = {
            "event": kind,
            "device": {"id": device_id, "serial_number": serial, "site": site,
                       "last_seen": last_seen, **extra},
            "timestamp": ts(at),
        }
        await db.execute(
            "INSERT INTO webhook_outbox (event_type, device_id, payload, created_at)"
            " VALUES (?, ?, ?, ?)",
            (kind, device_id, json.dumps(payload), ts(at)),
        )

    async def record_seen(
        self,
        device_id: str,
        at: datetime,
        *,
        users: int | None = None,
        users_cap: int | None = None,
        records: int | None = None,
        records_cap: int | None = None,
    ) -> None:
        """A successful check: last seen, and the device's counters."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE devices SET last_seen = ?, users = COALESCE(?, users),"
                " users_cap = COALESCE(?, users_cap), records = COALESCE(?, records),"
                " records_cap = COALESCE(?, records_cap) WHERE id = ?",
                (ts(at), users, users_cap, records, records_cap, device_id),
            )

    async def record_identity(
        self, device_id: str, *, model: str, firmware: str, platform: str, mac: str
    ) -> None:
        """What the device said it is, read on connect."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE devices SET model = ?, firmware = ?, platform = ?, mac = ? WHERE id = ?",
                (model, firmware, platform, mac, device_id),
            )

    async def record_clock(self, device_id: str, drift_s: float, at: datetime) -> None:
        """The device clock's offset from true local time, measured at ``at``."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE devices SET clock_drift_s = ?, clock_checked_at = ? WHERE id = ?",
                (drift_s, ts(at), device_id),
            )

    async def status_history(
        self, device_id: str, since: datetime | None = None
    ) -> list[StatusChange]:
        """Transitions of a device, oldest first; with ``since``, the one in force then too."""
        rows: list[Any] = []
        if since is not None:
            rows = await _fetch(
                self._db,
                "SELECT status, reason, at FROM status_history WHERE device_id = ?"
                " AND at < ? ORDER BY at DESC, id DESC LIMIT 1",
                (device_id, ts(since)),
            )
            rows += await _fetch(
                self._db,
                "SELECT status, reason, at FROM status_history WHERE device_id = ? AND at >= ?"
                " ORDER BY at, id",
                (device_id, ts(since)),
            )
        else:
            rows = await _fetch(
                self._db,
                "SELECT status, reason, at FROM status_history WHERE device_id = ? ORDER BY at, id",
                (device_id,),
            )
        return [
            StatusChange(device_id, DeviceStatus(r["status"]), r["reason"], from_ts(r["at"]))  # type: ignore[arg-type]
            for r in rows
        ]

    async def uptime(self, device_id: str, window: timedelta, now: datetime) -> float | None:
        """Share of ``window`` before ``now`` the device was online, 0..1.

        Time before its first known status (or while unknown) does not count;
        None when nothing is known in the window.
        """
        start = now - window
        history = await self.status_history(device_id, since=start)
        online = known = 0.0
        for i, change in enumerate(history):
            begin = max(change.at, start)
            end = history[i + 1].at if i + 1 < len(history) else now
            span = max((end - begin).total_seconds(), 0.0)
            if change.status is DeviceStatus.UNKNOWN:
                continue
            known += span
            if change.status is DeviceStatus.ONLINE:
                online += span
        return online / known if known else None

    # --- punches --------------------------------------------------------

    async def insert_punches(
        self,
        device_id: str,
        punches: Sequence[Punch],
        *,
        cursor: tuple[int, str] | None = None,
        synced_at: datetime | None = None,
    ) -> int:
        """Store punches not stored yet, with their webhook outbox rows, in one transaction.

        Duplicates (same device, user, local time, state and verify type) are
        ignored. ``cursor`` (records now stored, fingerprint of the last one)
        advances the device's sync cursor in the same transaction, so a crash
        can never leave the cursor ahead of the punches. Returns how many
        punches were new.
        """
        received: dict[datetime, str] = {}  # a sync's punches share one received_at
        rows = [
            (
                device_id,
                p.user_id,
                _local(p.local_time),
                p.timezone,
                ts(p.utc_time),
                p.tz_flag.value,
                p.state,
                p.verify,
                p.clock_drift_s,
                p.source,
                received.get(p.received_at) or received.setdefault(p.received_at,
                                                                    ts(p.received_at)),
            )
            for p in punches
        ]
        async with self._tx() as db:
            row = await (await db.execute("SELECT COALESCE(MAX(id), 0) FROM punches")).fetchone()
            before = int(row[0]) if row else 0
            await db.executemany(
                "INSERT OR IGNORE INTO punches (device_id, user_id, local_time, timezone,"
                " utc_time, tz_flag, state, verify, clock_drift_s, source, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            # the outbox rows are made by SQLite from the rows just inserted: one per new
            # punch, none for a duplicate, in the same transaction
            await db.execute(_OUTBOX_FROM_NEW_PUNCHES, (before,))
            row = await (
                await db.execute(
                    "SELECT COUNT(*), MAX(utc_time) FROM punches WHERE id > ?", (before,)
                )
            ).fetchone()
            new, newest = (int(row[0]), row[1]) if row else (0, None)
            if newest is not None:
                await db.execute(
                    "UPDATE devices SET last_punch_at = MAX(COALESCE(last_punch_at, ''), ?)"
                    " WHERE id = ?",
                    (newest, device_id),
                )
            if cursor is not None:
                await db.execute(
                    "UPDATE devices SET synced_records = ?, synced_tail = ?,"
                    " last_sync_at = COALESCE(?, last_sync_at) WHERE id = ?",
                    (cursor[0], cursor[1], ts(synced_at) if synced_at else None, device_id),
                )
            return new

    async def sync_cursor(self, device_id: str) -> tuple[int, str]:
        """(records already stored from the device, fingerprint of the last one)."""
        rows = await _fetch(
            self._db, "SELECT synced_records, synced_tail FROM devices WHERE id = ?", (device_id,)
        )
        return (int(rows[0][0]), str(rows[0][1])) if rows else (0, "")

    async def punches(
        self,
        *,
        since: datetime | None = None,
        site_id: str | None = None,
        device_id: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
    ) -> list[Punch]:
        """Stored punches in UTC order (then id), filtered."""
        sql = f"SELECT {_PUNCH_COLUMNS} FROM punches WHERE id > ?"
        args: list[Any] = [after_id]
        if since is not None:
            sql += " AND utc_time >= ?"
            args.append(ts(since))
        if device_id is not None:
            sql += " AND device_id = ?"
            args.append(device_id)
        if site_id is not None:
            sql += " AND device_id IN (SELECT id FROM devices WHERE site_id = ?)"
            args.append(site_id)
        sql += " ORDER BY utc_time, id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_punch(r) for r in await _fetch(self._db, sql, args)]

    async def punch_count(self, device_id: str | None = None) -> int:
        """How many punches are stored (for one device, if given)."""
        if device_id is None:
            rows = await _fetch(self._db, "SELECT COUNT(*) FROM punches")
        else:
            rows = await _fetch(
                self._db, "SELECT COUNT(*) FROM punches WHERE device_id = ?", (device_id,)
            )
        return int(rows[0][0])

    async def outbox_count(self) -> int:
        """Rows waiting in the webhook outbox."""
        rows = await _fetch(self._db, "SELECT COUNT(*) FROM webhook_outbox")
        return int(rows[0][0])

    # --- commands -------------------------------------------------------

    async def submit_command(
        self,
        *,
        target: str,
        target_kind: str,
        device_ids: Sequence[str],
        command: str,
        params: dict[str, Any],
        fingerprint: str,
        source: str,
        now: datetime,
        idempotency_key: str | None = None,
        ttl: timedelta | None = None,
    ) -> tuple[CommandRequest, bool]:
        """Queue one command per device as one request; returns (request, created).

        With an idempotency key already used for the same request, nothing is
        queued and the existing request comes back (created False); used for a
        different request, IdempotencyConflict. Keys older than
        IDEMPOTENCY_WINDOW are forgotten, so the key can be used again.
        """
        async with self._tx() as db:
            if idempotency_key is not None:
                rows = await _fetch(
                    db,
                    "SELECT id, fingerprint, created_at FROM command_requests"
                    " WHERE idempotency_key = ?",
                    (idempotency_key,),
                )
                if rows:
                    old = rows[0]
                    created = from_ts(old["created_at"])
                    if created is not None and now - created > IDEMPOTENCY_WINDOW:
                        await db.execute(
                            "UPDATE command_requests SET idempotency_key = NULL WHERE id = ?",
                            (old["id"],),
                        )
                    elif old["fingerprint"] != fingerprint:
                        raise IdempotencyConflict(idempotency_key)
                    else:
                        request = await self._request(db, int(old["id"]))
                        assert request is not None
                        return request, False
            cur = await db.execute(
                "INSERT INTO command_requests (idempotency_key, target, target_kind, command,"
                " params, fingerprint, source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (idempotency_key, target, target_kind, command, json.dumps(params),
                 fingerprint, source, ts(now)),
            )
            request_id = int(cur.lastrowid or 0)
            expires = ts(now + ttl) if ttl is not None else None
            await db.executemany(
                "INSERT INTO commands (request_id, device_id, command, params, created_at,"
                " updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (request_id, d, command, json.dumps(params), ts(now), ts(now), expires)
                    for d in device_ids
                ],
            )
            await self._event(
                db, now, "command.queued",
                f"{command} queued for {target_kind} {target} ({len(device_ids)} device(s))",
                site_id=target if target_kind == "site" else None,
                device_id=target if target_kind == "device" else None,
                data={"request_id": request_id, "command": command, "source": source},
            )
            request = await self._request(db, request_id)
            assert request is not None
            return request, True

    async def command_request(self, request_id: int) -> CommandRequest | None:
        """A request with its commands."""
        return await self._request(self._db, request_id)

    async def _request(self, db: aiosqlite.Connection, request_id: int) -> CommandRequest | None:
        rows = await _fetch(
            db,
            "SELECT id, idempotency_key, target, target_kind, command, params, source,"
            " created_at FROM command_requests WHERE id = ?",
            (request_id,),
        )
        if not rows:
            return None
        r = rows[0]
        commands = await _fetch(
            db, f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE request_id = ? ORDER BY id",
            (request_id,),
        )
        return CommandRequest(
            id=r["id"], target=r["target"], target_kind=r["target_kind"], command=r["command"],
            params=json.loads(r["params"]), source=r["source"],
            created_at=from_ts(r["created_at"]),  # type: ignore[arg-type]
            idempotency_key=r["idempotency_key"], commands=[_command(c) for c in commands],
        )

    async def due_commands(self, device_id: str, now: datetime) -> list[Command]:
        """A device's queued commands in order, after expiring those past their time to live."""
        async with self._tx() as db:
            expired = await _fetch(
                db,
                "SELECT id, command FROM commands WHERE device_id = ? AND state = 'queued'"
                " AND expires_at IS NOT NULL AND expires_at <= ?",
                (device_id, ts(now)),
            )
            for row in expired:
                await db.execute(
                    "UPDATE commands SET state = 'expired', updated_at = ?,"
                    " error = 'time to live ran out before the device could take it'"
                    " WHERE id = ?",
                    (ts(now), row["id"]),
                )
                await self._event(
                    db, now, "command.expired", f"{device_id}: {row['command']} expired",
                    device_id=device_id, data={"command_id": row["id"]},
                )
            rows = await _fetch(
                db,
                f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE device_id = ? AND state = 'queued'"
                " ORDER BY id",
                (device_id,),
            )
        return [_command(r) for r in rows]

    async def start_command(self, command_id: int, now: datetime) -> None:
        """The poller is about to run a command on its device."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE commands SET state = 'sent', attempts = attempts + 1, updated_at = ?"
                " WHERE id = ?",
                (ts(now), command_id),
            )

    async def finish_command(
        self,
        command: Command,
        state: CommandState,
        now: datetime,
        *,
        result: dict[str, Any] | None = None,
        error: str = "",
    ) -> Event:
        """A command ended (done or failed): state, result and an event, in one transaction."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE commands SET state = ?, result = ?, error = ?, updated_at = ? WHERE id = ?",
                (state.value, json.dumps(result) if result is not None else None, error,
                 ts(now), command.id),
            )
            message = f"{command.device_id}: {command.command} {state.value}"
            if error:
                message += f": {error}"
            if state in (CommandState.DONE, CommandState.FAILED):
                kind = "command.completed" if state is CommandState.DONE else "command.failed"
                payload = {
                    "event": kind,
                    "command": {"id": command.id, "request_id": command.request_id,
                                "device_id": command.device_id, "command": command.command,
                                "status": state.value, "result": result, "error": error or None},
                    "timestamp": ts(now),
                }
                await db.execute(
                    "INSERT INTO webhook_outbox (event_type, device_id, payload, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (kind, command.device_id, json.dumps(payload), ts(now)),
                )
            return await self._event(
                db, now, f"command.{state.value}", message, device_id=command.device_id,
                data={"command_id": command.id, "request_id": command.request_id,
                      "command": command.command, "result": result, "error": error},
            )

    async def interrupt_sent_commands(self, now: datetime) -> int:
        """Commands left 'sent' by a poller that died: failed, never run a second time."""
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE commands SET state = 'failed', updated_at = ?, error = 'interrupted:"
                " the poller stopped while it ran; it may or may not have taken effect'"
                " WHERE state = 'sent'",
                (ts(now),),
            )
            return cur.rowcount

    async def commands(
        self, *, device_id: str | None = None, limit: int = 100
    ) -> list[Command]:
        """The newest commands (of one device, if given), newest first."""
        sql = f"SELECT {_COMMAND_COLUMNS} FROM commands"
        args: list[Any] = []
        if device_id is not None:
            sql += " WHERE device_id = ?"
            args.append(device_id)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [_command(r) for r in await _fetch(self._db, sql, args)]

    # --- alerts ---------------------------------------------------------

    async def open_alert(
        self,
        *,
        target_kind: str,
        target: str,
        site_id: str | None,
        kind: AlertKind,
        severity: str,
        reason: str,
        since: datetime,
        now: datetime,
        notify: bool,
    ) -> Alert:
        """Open an alert (event, and webhook outbox row when notified, in one transaction)."""
        async with self._tx() as db:
            cur = await db.execute(
                "INSERT INTO alerts (target_kind, target, site_id, kind, severity, reason, since,"
                " opened_at, notified, last_notified_at, notifications)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (target_kind, target, site_id, kind.value, severity, reason, ts(since), ts(now),
                 int(notify), ts(now) if notify else None, int(notify)),
            )
            alert = await self._alert(db, int(cur.lastrowid or 0))
            await self._alert_fact(db, alert, "alert.opened", now, notify)
            return alert

    async def update_alert(
        self,
        alert: Alert,
        now: datetime,
        *,
        change: str,
        notify: bool,
        severity: str | None = None,
    ) -> Alert:
        """Resolve, escalate or remind: ``change`` is "resolved", "escalated" or "reminder"."""
        async with self._tx() as db:
            sets = ["last_notified_at = CASE WHEN ? THEN ? ELSE last_notified_at END",
                    "notifications = notifications + ?"]
            args: list[Any] = [int(notify), ts(now), int(notify)]
            if change == "resolved":
                sets.append("state = 'resolved', resolved_at = ?")
                args.append(ts(now))
            elif change == "escalated":
                sets.append("severity = ?, escalated_at = ?")
                args += [severity or "critical", ts(now)]
            elif change == "notified":
                sets.append("notified = 1")
            args.append(alert.id)
            await db.execute(f"UPDATE alerts SET {', '.join(sets)} WHERE id = ?", args)
            fresh = await self._alert(db, alert.id)
            kind = {"resolved": "alert.resolved", "escalated": "alert.escalated",
                    "reminder": "alert.reminder", "notified": "alert.opened"}[change]
            await self._alert_fact(db, fresh, kind, now, notify)
            return fresh

    async def acknowledge_alert(self, alert_id: int, by: str, now: datetime) -> Alert | None:
        """Acknowledge an open alert (stops its reminders); None if no such open alert."""
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ?"
                " WHERE id = ? AND state = 'open'",
                (ts(now), by, alert_id),
            )
            if not cur.rowcount:
                return None
            alert = await self._alert(db, alert_id)
            await self._event(db, now, "alert.acknowledged",
                              f"alert {alert_id} acknowledged" + (f" by {by}" if by else ""),
                              device_id=alert.target if alert.target_kind == "device" else None,
                              site_id=alert.site_id, data={"alert_id": alert_id})
            return alert

    async def alerts(self, *, open_only: bool = True, limit: int = 500) -> list[Alert]:
        """Alerts, newest first (only open ones by default)."""
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts"
        if open_only:
            sql += " WHERE state = 'open'"
        sql += " ORDER BY id DESC LIMIT ?"
        return [_alert(r) for r in await _fetch(self._db, sql, (limit,))]

    async def _alert(self, db: aiosqlite.Connection, alert_id: int) -> Alert:
        rows = await _fetch(db, f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,))
        return _alert(rows[0])

    async def _alert_fact(
        self, db: aiosqlite.Connection, alert: Alert, kind: str, now: datetime, notify: bool
    ) -> None:
        payload = {
            "event": kind,
            "alert": {
                "id": alert.id, "kind": alert.kind.value, "severity": alert.severity,
                "target": alert.target, "target_kind": alert.target_kind, "site": alert.site_id,
                "reason": alert.reason, "since": ts(alert.since),
                "acknowledged": alert.acknowledged_at is not None,
            },
            "timestamp": ts(now),
        }
        await self._event(
            db, now, kind, f"{alert.kind.value} {alert.target_kind} {alert.target}: {kind}"
            + (f" ({alert.reason})" if alert.reason else ""),
            device_id=alert.target if alert.target_kind == "device" else None,
            site_id=alert.site_id, data={"alert_id": alert.id, "notified": notify},
        )
        if alert.kind is AlertKind.FLAPPING and kind in ("alert.opened", "alert.resolved"):
            await self._device_fact(
                db, alert.target, "device.flapping" if kind == "alert.opened" else "device.stable",
                now, {"reason": alert.reason} if kind == "alert.opened" else {},
            )
        if notify and kind != "alert.reminder":
            await db.execute(
                "INSERT INTO webhook_outbox (event_type, device_id, payload, created_at)"
                " VALUES (?, ?, ?, ?)",
                (kind, alert.target if alert.target_kind == "device" else None,
                 json.dumps(payload), ts(now)),
            )

    # --- silences -------------------------------------------------------

    async def add_silence(
        self, target: str, until: datetime, reason: str, by: str, now: datetime
    ) -> Silence:
        """Silence a device or a site until ``until``."""
        async with self._tx() as db:
            cur = await db.execute(
                "INSERT INTO silences (target, until, reason, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (target, ts(until), reason, by, ts(now)),
            )
            await self._event(db, now, "silence.added",
                              f"{target} silenced until {ts(until)}: {reason}",
                              data={"silence_id": cur.lastrowid})
            rows = await _fetch(db, f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE id = ?",
                                (cur.lastrowid,))
            return _silence(rows[0])

    async def end_silence(self, silence_id: int, now: datetime) -> Silence | None:
        """End a silence in force now; None if there is no such silence in force."""
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE silences SET ended_at = ? WHERE id = ? AND ended_at IS NULL"
                " AND until > ?",
                (ts(now), silence_id, ts(now)),
            )
            if not cur.rowcount:
                return None
            rows = await _fetch(db, f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE id = ?",
                                (silence_id,))
            silence = _silence(rows[0])
            await self._event(db, now, "silence.ended", f"silence of {silence.target} ended",
                              data={"silence_id": silence_id})
            return silence

    async def active_silences(self, now: datetime) -> list[Silence]:
        """Silences in force; those past their end are closed (with an event) first."""
        async with self._tx() as db:
            ended = await _fetch(
                db, f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE ended_at IS NULL"
                " AND until <= ?", (ts(now),),
            )
            for row in ended:
                await db.execute("UPDATE silences SET ended_at = ? WHERE id = ?",
                                 (ts(now), row["id"]))
                await self._event(db, now, "silence.expired",
                                  f"silence of {row['target']} ended",
                                  data={"silence_id": row["id"]})
            rows = await _fetch(
                db, f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE ended_at IS NULL"
                " ORDER BY id",
            )
        return [_silence(r) for r in rows]

    # --- flapping -------------------------------------------------------

    async def flap_states(self) -> dict[str, tuple[str, bool, float]]:
        """Per device: (history as a string of 0/1, flapping, percent)."""
        rows = await _fetch(
            self._db, "SELECT device_id, history, flapping, percent FROM flap_state"
        )
        return {r["device_id"]: (r["history"], bool(r["flapping"]), r["percent"]) for r in rows}

    async def save_flap_states(
        self, states: Sequence[tuple[str, str, bool, float]], now: datetime
    ) -> None:
        """Remember each device's flap history (device id, history, flapping, percent)."""
        async with self._tx() as db:
            await db.executemany(
                "INSERT INTO flap_state (device_id, history, flapping, percent, changed_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET"
                " history = excluded.history, flapping = excluded.flapping,"
                " percent = excluded.percent, changed_at = excluded.changed_at",
                [(d, h, int(f), p, ts(now)) for d, h, f, p in states],
            )

    # --- webhook deliveries ---------------------------------------------

    async def webhook_enqueue(self, endpoint: str, events: Sequence[str], now: datetime, *,
                              registered: bool = False) -> int:
        """Give an endpoint every outbox row it has not seen and wants; returns how many.

        ``registered``: the endpoint is one of the store's own (API-created), and
        nothing is queued unless it still exists: a dispatcher round that began
        before a delete must not find the cursor gone and start again from 0.
        """
        clauses: list[str] = []
        args: list[str] = []
        if "*" not in events:
            for pattern in events:
                if pattern.endswith("*"):
                    clauses.append("event_type LIKE ?")
                    args.append(pattern[:-1] + "%")
                else:
                    clauses.append("event_type = ?")
                    args.append(pattern)
        wanted = f" AND ({' OR '.join(clauses)})" if clauses else ""
        async with self._tx() as db:
            if registered and not await _fetch(
                db, "SELECT 1 FROM webhook_endpoints WHERE delivery_key = ? AND origin = 'api'",
                (endpoint,),
            ):
                return 0
            rows = await _fetch(
                db, "SELECT last_outbox_id FROM webhook_cursors WHERE endpoint = ?", (endpoint,)
            )
            last = int(rows[0][0]) if rows else 0
            top = await _fetch(db, "SELECT COALESCE(MAX(id), 0) FROM webhook_outbox")
            newest = int(top[0][0])
            if newest <= last:
                return 0
            cur = await db.execute(
                "INSERT OR IGNORE INTO webhook_deliveries (endpoint, outbox_id, device_id,"
                " created_at, next_attempt_at) SELECT ?, id, device_id, ?, ? FROM webhook_outbox"
                f" WHERE id > ? AND id <= ?{wanted} ORDER BY id",
                (endpoint, ts(now), ts(now), last, newest, *args),
            )
            await db.execute(
                "INSERT INTO webhook_cursors (endpoint, last_outbox_id) VALUES (?, ?)"
                " ON CONFLICT(endpoint) DO UPDATE SET last_outbox_id = excluded.last_outbox_id",
                (endpoint, newest),
            )
            return cur.rowcount

    async def webhook_due(
        self, endpoint: str, now: datetime, per_device: int = 100
    ) -> list[dict[str, Any]]:
        """Deliveries to attempt now, oldest first: for each device whose oldest pending
        event is due, up to ``per_device`` of its pending events, to send in order."""
        rows = await _fetch(
            self._db,
            "WITH heads AS (SELECT COALESCE(device_id, '') AS dk, MIN(outbox_id) AS head"
            "   FROM webhook_deliveries WHERE endpoint = ? AND state = 'pending' GROUP BY dk),"
            " due AS (SELECT heads.dk FROM heads JOIN webhook_deliveries d"
            "   ON d.endpoint = ? AND d.outbox_id = heads.head WHERE d.next_attempt_at <= ?),"
            " ranked AS (SELECT d.outbox_id, d.device_id, d.attempts, d.created_at,"
            "   ROW_NUMBER() OVER (PARTITION BY COALESCE(d.device_id, '') ORDER BY d.outbox_id)"
            "   AS rn FROM webhook_deliveries d WHERE d.endpoint = ? AND d.state = 'pending'"
            "   AND COALESCE(d.device_id, '') IN (SELECT dk FROM due))"
            " SELECT r.outbox_id, r.device_id, r.attempts, r.created_at, o.event_type, o.payload"
            " FROM ranked r JOIN webhook_outbox o ON o.id = r.outbox_id WHERE r.rn <= ?"
            " ORDER BY r.outbox_id",
            (endpoint, endpoint, ts(now), endpoint, per_device),
        )
        return [
            {"outbox_id": r["outbox_id"], "device_id": r["device_id"], "attempts": r["attempts"],
             "created_at": from_ts(r["created_at"]), "event_type": r["event_type"],
             "payload": r["payload"]}
            for r in rows
        ]

    async def webhook_results(
        self, endpoint: str, results: Sequence[dict[str, Any]], now: datetime
    ) -> None:
        """Record delivery attempts in one transaction; each result is a dict with
        outbox_id, ok, and latency_ms, or error with retry_at or dead (and
        error_class: what the webhook.dead event, readable by anyone, says)."""
        if not results:
            return
        rows = [
            ("delivered" if r["ok"] else "dead" if r.get("dead") else "pending",
             r.get("latency_ms"), r.get("error", ""), int(r["ok"]), ts(now),
             ts(r["retry_at"]) if r.get("retry_at") else None, endpoint, r["outbox_id"])
            for r in results
        ]
        async with self._tx() as db:
            # one statement for the batch: thousands of separate ones cost a thread hop each
            await db.executemany(
                "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1,"
                " latency_ms = COALESCE(?, latency_ms), last_error = ?,"
                " delivered_at = CASE WHEN ? THEN ? ELSE delivered_at END,"
                " next_attempt_at = COALESCE(?, next_attempt_at)"
                " WHERE endpoint = ? AND outbox_id = ?",
                rows,
            )
            for r in results:
                if r.get("dead"):
                    await self._event(
                        db, now, "webhook.dead",
                        f"webhook to {redacted_url(endpoint) if '://' in endpoint else endpoint}"
                        f" gave up on event {r['outbox_id']}: {r.get('error_class', r['error'])}",
                        data={"outbox_id": r["outbox_id"]},
                    )

    async def webhook_replay(
        self, endpoint: str | None, now: datetime, outbox_ids: Sequence[int] | None = None
    ) -> int:
        """Put dead deliveries (of one endpoint, or all; only ``outbox_ids`` if given)
        back in the queue; returns how many."""
        sql = "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ?, created_at = ?"
        sql += " WHERE state = 'dead'"
        args: list[Any] = [ts(now), ts(now)]
        if endpoint is not None:
            sql += " AND endpoint = ?"
            args.append(endpoint)
        if outbox_ids is not None:
            if not outbox_ids:
                return 0
            sql += f" AND outbox_id IN ({', '.join('?' * len(outbox_ids))})"
            args.extend(outbox_ids)
        async with self._tx() as db:
            cur = await db.execute(sql, args)
            return cur.rowcount

    async def webhook_deliveries(
        self, endpoint: str, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """One endpoint's deliveries (in ``state`` if given), newest first."""
        sql = _DELIVERY_SELECT + " WHERE d.endpoint = ?"
        args: list[Any] = [endpoint]
        if state is not None:
            sql += " AND d.state = ?"
            args.append(state)
        sql += " ORDER BY d.outbox_id DESC LIMIT ?"
        args.append(limit)
        return [_delivery(r) for r in await _fetch(self._db, sql, args)]

    async def webhook_dead_count(self) -> int:
        """How many deliveries, of every endpoint, are dead (gave up; waiting for a replay)."""
        rows = await _fetch(self._db,
                            "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'dead'")
        return int(rows[0][0])

    async def webhook_dead(self, limit: int = 100) -> list[dict[str, Any]]:
        """Dead deliveries of every endpoint, newest first, each with its endpoint's
        id and URL (None for a queue whose endpoint is gone from the config)."""
        sql = _DELIVERY_SELECT + " WHERE d.state = 'dead' ORDER BY d.outbox_id DESC LIMIT ?"
        return [_delivery(r) for r in await _fetch(self._db, sql, (limit,))]

    # --- webhook endpoints ------------------------------------------------

    async def sync_webhook_endpoints(self, endpoints: Sequence[dict[str, Any]],
                                     now: datetime) -> None:
        """Mirror the config's endpoints (dicts with id, url, events, enabled,
        hex_signature_header, timeout_s; their queue is keyed by URL) so that
        every view lists them. Their secrets stay in the config file."""
        async with self._tx() as db:
            await db.execute("DELETE FROM webhook_endpoints WHERE origin = 'config'")
            await db.executemany(
                "INSERT OR IGNORE INTO webhook_endpoints (id, origin, delivery_key, url, events,"
                " enabled, hex_signature_header, timeout_s, created_at)"
                " VALUES (?, 'config', ?, ?, ?, ?, ?, ?, ?)",
                [(e["id"], e["url"], e["url"], json.dumps(list(e["events"])), int(e["enabled"]),
                  e.get("hex_signature_header"), float(e.get("timeout_s", 10.0)), ts(now))
                 for e in endpoints],
            )

    async def create_webhook_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str,
        events: Sequence[str],
        secret: str,
        enabled: bool,
        hex_signature_header: str | None,
        timeout_s: float,
        now: datetime,
    ) -> dict[str, Any]:
        """Add an endpoint of the store's own. It hears events from now on: its
        cursor starts at the newest outbox row (no replay of the whole history)."""
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO webhook_endpoints (id, origin, delivery_key, url, events, secret,"
                " enabled, hex_signature_header, timeout_s, created_at)"
                " VALUES (?, 'api', ?, ?, ?, ?, ?, ?, ?, ?)",
                (endpoint_id, endpoint_id, url, json.dumps(list(events)), secret, int(enabled),
                 hex_signature_header, timeout_s, ts(now)),
            )
            await db.execute(
                "INSERT INTO webhook_cursors (endpoint, last_outbox_id)"
                " SELECT ?, COALESCE(MAX(id), 0) FROM webhook_outbox WHERE true"
                " ON CONFLICT(endpoint) DO UPDATE SET last_outbox_id = excluded.last_outbox_id",
                (endpoint_id,),
            )
            await self._event(db, now, "webhook.created",
                              f"webhook endpoint {endpoint_id} created for {redacted_url(url)}")
            rows = await _fetch(db, f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints"
                                " WHERE id = ?", (endpoint_id,))
            return _endpoint(rows[0])

    async def webhook_endpoints(self, *, with_secrets: bool = False,
                                origin: str | None = None) -> list[dict[str, Any]]:
        """Every endpoint the store knows, by creation; the secret only if asked
        (the dispatcher asks; views never do)."""
        sql = f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints"
        args: tuple[Any, ...] = ()
        if origin is not None:
            sql += " WHERE origin = ?"
            args = (origin,)
        rows = await _fetch(self._db, sql + " ORDER BY created_at, id", args)
        return [_endpoint(r, with_secrets) for r in rows]

    async def webhook_endpoint(self, endpoint_id: str) -> dict[str, Any] | None:
        """One endpoint (never its secret), or None."""
        rows = await _fetch(self._db, f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints"
                            " WHERE id = ?", (endpoint_id,))
        return _endpoint(rows[0]) if rows else None

    async def update_webhook_endpoint(
        self, endpoint_id: str, changes: dict[str, Any], now: datetime, *,
        new_secret: str | None = None, previous_until: datetime | None = None,
    ) -> dict[str, Any] | None:
        """Change an API-created endpoint's url, events, enabled, hex_signature_header or
        timeout_s; None if there is no such API endpoint. Its queue and cursor stay: a
        disabled endpoint enabled again hears what was committed meanwhile.

        With ``new_secret`` the secret is rotated in the same transaction: the
        current one becomes the previous secret, which keeps signing next to the
        new one until ``previous_until`` (None or not after ``now``: not at all).
        A secret rotated again during an overlap replaces the older previous one.
        """
        allowed = {"url", "events", "enabled", "hex_signature_header", "timeout_s"}
        if set(changes) - allowed:
            raise ValueError(f"cannot change {', '.join(sorted(set(changes) - allowed))}")
        values = {k: json.dumps(list(v)) if k == "events" else int(v) if k == "enabled" else v
                  for k, v in changes.items()}
        async with self._tx() as db:
            rows = await _fetch(db, "SELECT id FROM webhook_endpoints WHERE id = ?"
                                " AND origin = 'api'", (endpoint_id,))
            if not rows:
                return None
            said = sorted(values)
            if values:
                sets = ", ".join(f"{k} = ?" for k in values)
                await db.execute(f"UPDATE webhook_endpoints SET {sets} WHERE id = ?",
                                 (*values.values(), endpoint_id))
            if new_secret is not None:
                until = (ts(previous_until) if previous_until is not None
                         and previous_until > now else None)
                # the right-hand sides read the row as it was: the old secret moves over
                await db.execute(
                    "UPDATE webhook_endpoints SET previous_secret = CASE WHEN ? IS NULL"
                    " THEN '' ELSE secret END, previous_secret_until = ?, secret = ?"
                    " WHERE id = ?", (until, until, new_secret, endpoint_id),
                )
                said.append(f"secret rotated (the previous one also signs until {until})"
                            if until else "secret rotated (the previous one no longer signs)")
            if said:
                await self._event(db, now, "webhook.updated",
                                  f"webhook endpoint {endpoint_id} changed: " + ", ".join(said))
            rows = await _fetch(db, f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints"
                                " WHERE id = ?", (endpoint_id,))
            return _endpoint(rows[0])

    async def webhook_forget_previous_secrets(self, now: datetime) -> int:
        """Clear the previous secrets whose overlap is over (rotation done); returns how many."""
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE webhook_endpoints SET previous_secret = '', previous_secret_until = NULL"
                " WHERE previous_secret_until IS NOT NULL AND previous_secret_until <= ?",
                (ts(now),),
            )
            return cur.rowcount

    async def delete_webhook_endpoint(self, endpoint_id: str, now: datetime) -> bool:
        """Remove an API-created endpoint with its queue (pending and dead deliveries
        are dropped); False if there is no such API endpoint."""
        async with self._tx() as db:
            cur = await db.execute(
                "DELETE FROM webhook_endpoints WHERE id = ? AND origin = 'api'", (endpoint_id,)
            )
            if not cur.rowcount:
                return False
            await db.execute("DELETE FROM webhook_deliveries WHERE endpoint = ?", (endpoint_id,))
            await db.execute("DELETE FROM webhook_cursors WHERE endpoint = ?", (endpoint_id,))
            await self._event(db, now, "webhook.deleted",
                              f"webhook endpoint {endpoint_id} deleted")
            return True

    async def webhook_stats(self, endpoint: str | None = None) -> dict[str, Any]:
        """Deliveries by state, and the mean latency of delivered ones (ms)."""
        where, args = ("WHERE endpoint = ?", (endpoint,)) if endpoint else ("", ())
        rows = await _fetch(
            self._db,
            f"SELECT state, COUNT(*), AVG(latency_ms) FROM webhook_deliveries {where}"
            " GROUP BY state",
            args,
        )
        out: dict[str, Any] = {"pending": 0, "delivered": 0, "dead": 0, "avg_latency_ms": None}
        for r in rows:
            out[r[0]] = int(r[1])
            if r[0] == "delivered":
                out["avg_latency_ms"] = r[2]
        return out

    # --- API keys -------------------------------------------------------

    async def create_api_key(self, role: str, name: str, now: datetime) -> tuple[int, str]:
        """Make a key; returns (id, the key). Only its SHA-256 is stored: show it once."""
        if role not in API_ROLES:
            raise ValueError(f"role: expected one of {', '.join(API_ROLES)}")
        key = "ftk_" + secrets.token_urlsafe(32)
        async with self._tx() as db:
            cur = await db.execute(
                "INSERT INTO api_keys (name, role, prefix, hash, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, role, key[:8], _key_hash(key), ts(now)),
            )
            return int(cur.lastrowid or 0), key

    async def api_key_role(self, key: str, now: datetime, *,
                           record_use: bool = True) -> tuple[int, str] | None:
        """(id, role) of a live key, or None; records its use unless ``record_use`` is False
        (a read only: the HTTP API records uses itself, at most once a minute)."""
        rows = await _fetch(
            self._db, "SELECT id, role FROM api_keys WHERE hash = ? AND revoked_at IS NULL",
            (_key_hash(key),),
        )
        if not rows:
            return None
        if record_use:
            await self.record_api_key_use(int(rows[0]["id"]), now)
        return int(rows[0]["id"]), str(rows[0]["role"])

    async def record_api_key_use(self, key_id: int, now: datetime) -> None:
        """Write that key ``key_id`` was used at ``now`` (its ``last_used_at``)."""
        async with self._tx() as db:
            await db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?",
                             (ts(now), key_id))

    async def api_keys(self) -> list[dict[str, Any]]:
        """Every key's id, name, role, prefix and dates (never the key)."""
        rows = await _fetch(
            self._db, "SELECT id, name, role, prefix, created_at, last_used_at, revoked_at"
            " FROM api_keys ORDER BY id",
        )
        return [dict(r) for r in rows]

    async def revoke_api_key(self, key_id: int, now: datetime) -> bool:
        """Revoke a key; False if there is no such live key."""
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (ts(now), key_id),
            )
            return cur.rowcount > 0

    # --- device sessions ------------------------------------------------

    async def remember_session(self, device_id: str, session_id: int, at: datetime) -> None:
        """A UDP session was opened on a device (it holds a slot until CMD_EXIT)."""
        async with self._tx() as db:
            await db.execute(
                "INSERT OR REPLACE INTO device_sessions (device_id, session_id, opened_at)"
                " VALUES (?, ?, ?)",
                (device_id, session_id, ts(at)),
            )

    async def forget_sessions(self, device_id: str, session_ids: Iterable[int]) -> None:
        """Sessions of a device that were said goodbye to."""
        async with self._tx() as db:
            await db.executemany(
                "DELETE FROM device_sessions WHERE device_id = ? AND session_id = ?",
                [(device_id, sid) for sid in session_ids],
            )

    async def open_sessions(self, device_id: str) -> list[int]:
        """The device's sessions not known to be closed, oldest first."""
        rows = await _fetch(
            self._db,
            "SELECT session_id FROM device_sessions WHERE device_id = ?"
            " ORDER BY opened_at, session_id",
            (device_id,),
        )
        return [int(r[0]) for r in rows]

    # --- events ---------------------------------------------------------

    async def add_event(
        self,
        kind: str,
        message: str,
        *,
        at: datetime,
        device_id: str | None = None,
        site_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Event:
        """Append one line to the event log."""
        async with self._tx() as db:
            return await self._event(
                db, at, kind, message, device_id=device_id, site_id=site_id, data=data
            )

    async def _event(
        self,
        db: aiosqlite.Connection,
        at: datetime,
        kind: str,
        message: str,
        *,
        device_id: str | None = None,
        site_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Event:
        if site_id is None and device_id is not None:
            rows = await _fetch(db, "SELECT site_id FROM devices WHERE id = ?", (device_id,))
            site_id = rows[0][0] if rows else None
        cur = await db.execute(
            "INSERT INTO events (at, kind, device_id, site_id, message, data)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (ts(at), kind, device_id, site_id, message, json.dumps(data or {})),
        )
        return Event(int(cur.lastrowid or 0), at, kind, message, device_id, site_id, data or {})

    async def last_event_id(self) -> int:
        """The id of the newest event (0 when the log is empty)."""
        rows = await _fetch(self._db, "SELECT COALESCE(MAX(id), 0) FROM events")
        return int(rows[0][0])

    async def events_after(self, last_id: int = 0, limit: int = 1000) -> list[Event]:
        """Events with an id above ``last_id``, in order: how views tail the log."""
        rows = await _fetch(
            self._db,
            "SELECT id, at, kind, device_id, site_id, message, data FROM events WHERE id > ?"
            " ORDER BY id LIMIT ?",
            (last_id, limit),
        )
        return [
            Event(
                r["id"],
                from_ts(r["at"]),  # type: ignore[arg-type]
                r["kind"],
                r["message"],
                r["device_id"],
                r["site_id"],
                json.loads(r["data"]),
            )
            for r in rows
        ]

    # --- panel queries (read-only: the TUI's device and site panels) ------
    #
    # Aggregates for the pictures, cheap enough to run every second for the
    # one selected device or site: punches are counted in SQL over the day's
    # range of the ``punches_utc`` index (never loaded into Python), status
    # history over its (device_id, at) index.

    async def punches_per_minute(
        self, start: datetime, end: datetime, *, device_id: str | None = None,
        site_id: str | None = None,
    ) -> dict[datetime, int]:
        """Punches with a UTC time in [start, end), counted per UTC minute.

        ``device_id`` / ``site_id`` narrow it; the unary ``+`` keeps SQLite on
        the time index (one day of the fleet's punches) instead of the unique
        key's device prefix (all of a device's history).
        """
        sql = ("SELECT substr(utc_time, 1, 16) AS minute, COUNT(*) AS n FROM punches"
               " WHERE utc_time >= ? AND utc_time < ?")
        args: list[Any] = [ts(start), ts(end)]
        if device_id is not None:
            sql += " AND +device_id = ?"
            args.append(device_id)
        if site_id is not None:
            sql += " AND +device_id IN (SELECT id FROM devices WHERE site_id = ?)"
            args.append(site_id)
        sql += " GROUP BY minute"
        rows = await _fetch(self._db, sql, args)
        return {datetime.fromisoformat(r["minute"]).replace(tzinfo=UTC): int(r["n"])
                for r in rows}

    async def site_status_history(
        self, site_id: str, since: datetime
    ) -> dict[str, list[StatusChange]]:
        """Each device of a site's transitions since ``since``, with the one in force then.

        (CROSS JOIN keeps the site's few devices as the outer loop, so each
        device's history is a range of the (device_id, at) index.)
        """
        rows = await _fetch(
            self._db,
            "SELECT h.id, h.device_id, h.status, h.reason, h.at FROM devices d"
            " JOIN status_history h ON h.id = (SELECT id FROM status_history"
            " WHERE device_id = d.id AND at < ? ORDER BY at DESC, id DESC LIMIT 1)"
            " WHERE d.site_id = ? AND d.removed = 0"
            " UNION ALL"
            " SELECT h.id, h.device_id, h.status, h.reason, h.at FROM devices d"
            " CROSS JOIN status_history h ON h.device_id = d.id AND h.at >= ?"
            " WHERE d.site_id = ? AND d.removed = 0"
            " ORDER BY 2, 5, 1",
            (ts(since), site_id, ts(since), site_id),
        )
        out: dict[str, list[StatusChange]] = {}
        for r in rows:
            out.setdefault(r["device_id"], []).append(StatusChange(
                r["device_id"], DeviceStatus(r["status"]), r["reason"],
                from_ts(r["at"])))  # type: ignore[arg-type]
        return out

    async def site_requests(self, site_id: str, limit: int = 3) -> list[CommandRequest]:
        """The newest requests aimed at a whole site, newest first, with their commands."""
        rows = await _fetch(
            self._db,
            "SELECT id FROM command_requests WHERE target_kind = 'site' AND target = ?"
            " ORDER BY id DESC LIMIT ?",
            (site_id, limit),
        )
        out = []
        for r in rows:
            request = await self._request(self._db, int(r["id"]))
            if request is not None:
                out.append(request)
        return out

    async def site_commands_in_flight(self, site_id: str, limit: int = 50) -> list[Command]:
        """Commands queued for or running on a site's devices, oldest first."""
        rows = await _fetch(
            self._db,
            f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE state IN ('queued', 'sent')"
            " AND device_id IN (SELECT id FROM devices WHERE site_id = ?) ORDER BY id LIMIT ?",
            (site_id, limit),
        )
        return [_command(r) for r in rows]

    # --- end of panel queries ---------------------------------------------


async def _set_wal(db: aiosqlite.Connection) -> None:
    """Switch to WAL; SQLite answers "locked" at once, busy_timeout or not, while another
    connection switches the same new file, so retry for a while."""
    for attempt in range(200):
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 199:
                raise
            await asyncio.sleep(0.05)


async def _fetch(db: aiosqlite.Connection, sql: str, args: Sequence[Any] = ()) -> list[Any]:
    return list(await db.execute_fetchall(sql, args))


def _device(r: Any) -> DeviceState:
    return DeviceState(
        id=r["id"],
        serial=r["serial"],
        site_id=r["site_id"],
        host=r["host"],
        port=r["port"],
        transport=r["transport"],
        name=r["name"],
        enabled=bool(r["enabled"]),
        model=r["model"],
        firmware=r["firmware"],
        platform=r["platform"],
        mac=r["mac"],
        status=DeviceStatus(r["status"]),
        status_reason=r["status_reason"],
        status_since=from_ts(r["status_since"]),
        last_seen=from_ts(r["last_seen"]),
        users=r["users"],
        users_cap=r["users_cap"],
        records=r["records"],
        records_cap=r["records_cap"],
        clock_drift_s=r["clock_drift_s"],
        clock_checked_at=from_ts(r["clock_checked_at"]),
        last_sync_at=from_ts(r["last_sync_at"]),
        last_punch_at=from_ts(r["last_punch_at"]),
        synced_records=r["synced_records"],
        origin=r["origin"],
    )


def _spec_of_row(r: Any) -> DeviceSpec:
    live = r["live_capture"]
    return DeviceSpec(
        id=r["id"], serial=r["serial"], site_id=r["site_id"], host=r["host"], port=r["port"],
        transport=r["transport"], comm_key=r["comm_key"],
        live_capture=None if live is None else bool(live), name=r["name"],
        enabled=bool(r["enabled"]), origin=r["origin"],
    )


def _spec_fields(spec: DeviceSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in DeviceSpec.__slots__}


def _spec_row(spec: DeviceSpec) -> tuple[Any, ...]:
    """(id, serial, site_id, host, port, transport, name, enabled, comm_key, live_capture)."""
    live = None if spec.live_capture is None else int(spec.live_capture)
    return (spec.id, spec.serial, spec.site_id, spec.host, spec.port, spec.transport,
            spec.name, int(spec.enabled), spec.comm_key, live)


def _key_hash(key: str) -> str:
    # API keys are 256 random bits: a plain SHA-256 is enough (no password stretching)
    return hashlib.sha256(key.encode()).hexdigest()


def _alert(r: Any) -> Alert:
    return Alert(
        id=r["id"], target_kind=r["target_kind"], target=r["target"], site_id=r["site_id"],
        kind=AlertKind(r["kind"]), severity=r["severity"], state=r["state"], reason=r["reason"],
        since=from_ts(r["since"]),  # type: ignore[arg-type]
        opened_at=from_ts(r["opened_at"]),  # type: ignore[arg-type]
        resolved_at=from_ts(r["resolved_at"]), escalated_at=from_ts(r["escalated_at"]),
        acknowledged_at=from_ts(r["acknowledged_at"]), acknowledged_by=r["acknowledged_by"],
        notified=bool(r["notified"]), last_notified_at=from_ts(r["last_notified_at"]),
        notifications=r["notifications"],
    )


def _endpoint(r: Any, with_secret: bool = False) -> dict[str, Any]:
    out = {
        "id": r["id"], "origin": r["origin"], "delivery_key": r["delivery_key"],
        "url": r["url"], "events": json.loads(r["events"]), "enabled": bool(r["enabled"]),
        "hex_signature_header": r["hex_signature_header"], "timeout_s": r["timeout_s"],
        "created_at": from_ts(r["created_at"]),
        # when the previous secret stops signing (not a secret itself; None: no rotation)
        "previous_secret_until": from_ts(r["previous_secret_until"]),
    }
    if with_secret:
        out["secret"] = r["secret"]
        out["previous_secret"] = r["previous_secret"]
    return out


def _delivery(r: Any) -> dict[str, Any]:
    return {
        "endpoint": r["endpoint"], "endpoint_id": r["endpoint_id"], "url": r["url"],
        "outbox_id": r["outbox_id"], "event_type": r["event_type"],
        "device_id": r["device_id"], "state": r["state"], "attempts": r["attempts"],
        "last_error": r["last_error"], "created_at": from_ts(r["created_at"]),
        "next_attempt_at": from_ts(r["next_attempt_at"]),
        "delivered_at": from_ts(r["delivered_at"]), "latency_ms": r["latency_ms"],
    }


def _silence(r: Any) -> Silence:
    return Silence(
        id=r["id"], target=r["target"], until=from_ts(r["until"]),  # type: ignore[arg-type]
        reason=r["reason"], created_by=r["created_by"],
        created_at=from_ts(r["created_at"]),  # type: ignore[arg-type]
        ended_at=from_ts(r["ended_at"]),
    )


def _command(r: Any) -> Command:
    return Command(
        id=r["id"], request_id=r["request_id"], device_id=r["device_id"], command=r["command"],
        params=json.loads(r["params"]), state=CommandState(r["state"]), attempts=r["attempts"],
        created_at=from_ts(r["created_at"]),  # type: ignore[arg-type]
        updated_at=from_ts(r["updated_at"]),  # type: ignore[arg-type]
        expires_at=from_ts(r["expires_at"]),
        result=json.loads(r["result"]) if r["result"] else None, error=r["error"],
    )


def _punch(r: Any) -> Punch:
    return Punch(
        id=r["id"],
        device_id=r["device_id"],
        user_id=r["user_id"],
        local_time=datetime.fromisoformat(r["local_time"]),
        timezone=r["timezone"],
        utc_time=from_ts(r["utc_time"]),  # type: ignore[arg-type]
        tz_flag=TzFlag(r["tz_flag"]),
        state=r["state"],
        verify=r["verify"],
        clock_drift_s=r["clock_drift_s"],
        source=r["source"],
        received_at=from_ts(r["received_at"]),  # type: ignore[arg-type]
    )
