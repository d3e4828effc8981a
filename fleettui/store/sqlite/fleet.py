"""Sites and devices: the fleet as configured, and devices registered through the API."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from fleettui.domain import (
    DeviceChanges,
    DeviceSpec,
    DeviceState,
    DeviceStatus,
    EventKind,
    Site,
)
from fleettui.store.errors import ConflictKind, FleetConflict
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, select
from fleettui.store.sqlite.events import write_event

_DEVICE_COLUMNS = (
    "id, serial, site_id, host, port, transport, name, enabled, model, firmware, platform, mac,"
    " status, status_reason, status_since, last_seen, users, users_cap, records, records_cap,"
    " clock_drift_s, clock_checked_at, last_sync_at, last_punch_at, synced_records, origin,"
    " push_address"
)


class FleetQueries(SqliteConnection):
    """The fleet: sites, devices, and the devices of the store's own."""

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
        def write(db: sqlite3.Connection) -> None:
            db.execute("UPDATE sites SET removed = 1 WHERE origin = 'config'")
            db.executemany(
                "INSERT INTO sites (id, name, timezone, address, removed) VALUES (?, ?, ?, ?, 0)"
                " ON CONFLICT(id) DO UPDATE SET name=excluded.name, timezone=excluded.timezone,"
                " address=excluded.address, removed=0, origin='config'",
                [(s.id, s.name, s.timezone, s.address) for s in sites],
            )
            db.execute("UPDATE devices SET removed = 1 WHERE origin = 'config'")
            db.executemany(
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
            db.execute(
                "UPDATE sites SET removed = 0, origin = 'api' WHERE removed = 1"
                " AND origin = 'config' AND id IN"
                " (SELECT site_id FROM devices WHERE origin = 'api' AND removed = 0)")
        await self._transaction(write)

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
        def write(db: sqlite3.Connection) -> list[DeviceState]:
            if site is not None:
                if self._device_row(db, site.id) is not None:
                    raise FleetConflict(ConflictKind.TAKEN, "id",
                                        f"id {site.id!r} is already taken")
                cur = db.execute(
                    "INSERT OR IGNORE INTO sites (id, name, timezone, address, removed, origin)"
                    " VALUES (?, ?, ?, ?, 0, 'api')",
                    (site.id, site.name, site.timezone, site.address),
                )
                if not cur.rowcount:
                    raise FleetConflict(ConflictKind.TAKEN, "id",
                                        f"id {site.id!r} is already taken")
                write_event(db, now, EventKind.SITE_CREATED,
                            f"site {site.id} created ({site.name})", site_id=site.id)
            ids: list[str] = []
            for i, spec in enumerate(devices):
                index = i if site is not None else None
                self._check_device(db, spec, index)
                db.execute(
                    "INSERT INTO devices (id, serial, site_id, host, port, transport, name,"
                    " enabled, removed, origin, comm_key, live_capture)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 'api', ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET site_id=excluded.site_id,"
                    " host=excluded.host, port=excluded.port, transport=excluded.transport,"
                    " name=excluded.name, enabled=excluded.enabled, removed=0, origin='api',"
                    " comm_key=excluded.comm_key, live_capture=excluded.live_capture",
                    _spec_row(spec),
                )
                write_event(db, now, EventKind.DEVICE_REGISTERED,
                            f"{spec.id} registered at {spec.site_id} ({spec.host})",
                            device_id=spec.id)
                ids.append(spec.id)
            for j, device_id in enumerate(move, start=len(devices)):
                assert site is not None, "devices move into a new site only"
                row = self._device_row(db, device_id)
                if row is None or row["removed"]:
                    raise FleetConflict(ConflictKind.BAD_REFERENCE, "id",
                                        f"no device {device_id!r}", j)
                if row["origin"] != "api":
                    raise FleetConflict(
                        ConflictKind.CONFIG_OWNED, "id",
                        f"{device_id!r} is placed by the config file (site "
                        f"{row['site_id']!r}): change its site there", j)
                db.execute("UPDATE devices SET site_id = ? WHERE id = ?",
                           (site.id, device_id))
                write_event(db, now, EventKind.DEVICE_MOVED,
                            f"{device_id} moved from {row['site_id']} to {site.id}",
                            device_id=device_id, data={"from": row["site_id"]})
                ids.append(device_id)
            rows = [select(db, f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?",
                                 (device_id,)) for device_id in ids]
            return [device_of_row(r[0]) for r in rows]
        return await self._transaction(write)

    async def update_api_device(self, device_id: str, changes: DeviceChanges,
                                now: datetime) -> DeviceState:
        """Change a device of the store's own: any of site_id, host, port, transport,
        comm_key, live_capture, name, enabled. FleetConflict: unknown (404), placed
        by the config file (409), or the change collides with another device."""
        def write(db: sqlite3.Connection) -> DeviceState:
            row = self._api_row(db, device_id)
            current = _spec_of_row(row)
            spec = DeviceSpec(**{**_spec_fields(current), **changes})
            self._check_device(db, spec, None, creating=False)
            db.execute(
                "UPDATE devices SET site_id = ?, host = ?, port = ?, transport = ?, name = ?,"
                " enabled = ?, comm_key = ?, live_capture = ? WHERE id = ?",
                (*_spec_row(spec)[2:], device_id),
            )
            changed = sorted(k for k in changes if k != "comm_key"
                             and getattr(spec, k) != getattr(current, k))
            if "comm_key" in changes and spec.comm_key != current.comm_key:
                changed.append("comm_key")  # named, never shown
            write_event(db, now, EventKind.DEVICE_UPDATED,
                        f"{device_id} changed: {', '.join(changed) or 'nothing'}",
                        device_id=device_id, data={"fields": changed})
            rows = select(db, f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?",
                                (device_id,))
            return device_of_row(rows[0])
        return await self._transaction(write)

    async def remove_api_device(self, device_id: str, now: datetime) -> None:
        """Stop knowing a device of the store's own: marked removed, never deleted (its
        punches and history stay). FleetConflict: unknown (404), or the config's (409)."""
        def write(db: sqlite3.Connection) -> None:
            self._api_row(db, device_id)
            write_event(db, now, EventKind.DEVICE_REMOVED, f"{device_id} removed",
                        device_id=device_id)
            db.execute("UPDATE devices SET removed = 1 WHERE id = ?", (device_id,))
        await self._transaction(write)

    async def api_device_specs(self) -> list[DeviceSpec]:
        """The devices of the store's own that are enabled, with their site's time zone."""
        rows = await fetch(
            self._db,
            "SELECT d.*, s.timezone AS tz FROM devices d JOIN sites s ON s.id = d.site_id"
            " WHERE d.origin = 'api' AND d.removed = 0 AND d.enabled = 1 ORDER BY d.id",
        )
        return [DeviceSpec(**{**_spec_fields(_spec_of_row(r)), "timezone": r["tz"]})
                for r in rows]

    def _device_row(self, db: sqlite3.Connection, device_id: str) -> Any:
        """The device's row (all columns, removed or not), or None."""
        rows = select(db, "SELECT * FROM devices WHERE id = ?", (device_id,))
        return rows[0] if rows else None

    def _api_row(self, db: sqlite3.Connection, device_id: str) -> Any:
        """The row of a live device of the store's own; FleetConflict otherwise."""
        row = self._device_row(db, device_id)
        if row is None or row["removed"]:
            raise FleetConflict(ConflictKind.NOT_FOUND, "id", f"no device {device_id!r}")
        if row["origin"] != "api":
            raise FleetConflict(ConflictKind.CONFIG_OWNED, "id",
                                f"{device_id!r} is declared in the config file: "
                                "change or remove it there")
        return row

    def _check_device(self, db: sqlite3.Connection, spec: DeviceSpec,
                            index: int | None, *, creating: bool = True) -> None:
        """Refuse a device whose site is unknown or whose id, serial or address is taken
        (``creating``: a new device, or one removed coming back with its serial)."""
        def taken(field: str, message: str) -> FleetConflict:
            return FleetConflict(ConflictKind.TAKEN, field, message, index)

        if not select(db, "SELECT 1 FROM sites WHERE id = ? AND removed = 0",
                            (spec.site_id,)):
            raise FleetConflict(ConflictKind.BAD_REFERENCE, "site",
                                f"no site {spec.site_id!r}", index)
        row = self._device_row(db, spec.id)
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
        if select(db, "SELECT 1 FROM sites WHERE id = ? AND removed = 0", (spec.id,)):
            raise taken("id", f"id {spec.id!r} is a site's id (commands name either)")
        others = select(
            db, "SELECT id FROM devices WHERE removed = 0 AND id != ? AND serial = ?",
            (spec.id, spec.serial))
        if others:
            raise taken("serial_number",
                        f"serial {spec.serial!r} is already the device {others[0]['id']!r}")
        if spec.transport == "push":
            return  # it dials in: it has no address of its own to clash with another's
        others = select(
            db, "SELECT id FROM devices WHERE removed = 0 AND id != ? AND lower(host) = ?"
            " AND port = ? AND transport = ?",
            (spec.id, spec.host.lower(), spec.port, spec.transport))
        if others:
            raise taken("host", f"{spec.host}:{spec.port} ({spec.transport}) is already the "
                        f"address of {others[0]['id']!r}")

    async def sites(self) -> list[Site]:
        """Every configured site."""
        rows = await fetch(
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
        rows = await fetch(self._db, sql + " ORDER BY id", args)
        return [device_of_row(r) for r in rows]

    async def device(self, device_id: str, *, removed: bool = True) -> DeviceState | None:
        """One device, or None; ``removed=False``: None for a device no longer in the fleet."""
        sql = f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?"
        rows = await fetch(self._db, sql if removed else sql + " AND removed = 0", (device_id,))
        return device_of_row(rows[0]) if rows else None


def device_of_row(r: Any) -> DeviceState:
    """A devices row (``_DEVICE_COLUMNS``) as a DeviceState."""
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
        push_address=r["push_address"],
    )


def _spec_of_row(r: Any) -> DeviceSpec:
    """A devices row (all columns) as the DeviceSpec it was registered with."""
    live = r["live_capture"]
    return DeviceSpec(
        id=r["id"], serial=r["serial"], site_id=r["site_id"], host=r["host"], port=r["port"],
        transport=r["transport"], comm_key=r["comm_key"],
        live_capture=None if live is None else bool(live), name=r["name"],
        enabled=bool(r["enabled"]), origin=r["origin"],
    )


def _spec_fields(spec: DeviceSpec) -> dict[str, Any]:
    """A DeviceSpec's fields by name (to make a changed copy)."""
    return {name: getattr(spec, name) for name in DeviceSpec.__slots__}


def _spec_row(spec: DeviceSpec) -> tuple[Any, ...]:
    """(id, serial, site_id, host, port, transport, name, enabled, comm_key, live_capture)."""
    live = None if spec.live_capture is None else int(spec.live_capture)
    return (spec.id, spec.serial, spec.site_id, spec.host, spec.port, spec.transport,
            spec.name, int(spec.enabled), spec.comm_key, live)
