"""Sites and devices: the fleet as configured, and devices registered through the API."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from fleettui.domain import DeviceChanges, DeviceSpec, DeviceState, EventKind, Site
from fleettui.store.shared import fleet_rules as rules
from fleettui.store.sqlite.connection import SqliteConnection, fetch, from_ts, select
from fleettui.store.sqlite.events import write_event


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
        """Add a site of the store's own; False if its id is taken (see
        ``Store.create_site``)."""
        return await rules.created(self.register_devices([], now, site=site))

    # --- devices of the store's own (registered through the API) ------------

    async def register_devices(
        self, devices: Sequence[DeviceSpec], now: datetime, *, site: Site | None = None,
        move: Sequence[str] = (),
    ) -> list[DeviceState]:
        """Add devices of the store's own, all or none (see ``Store.register_devices``)."""
        def write(db: sqlite3.Connection) -> list[DeviceState]:
            if site is not None:
                if self._device_row(db, site.id) is not None:
                    raise rules.site_taken(site)
                cur = db.execute(
                    "INSERT OR IGNORE INTO sites (id, name, timezone, address, removed, origin)"
                    " VALUES (?, ?, ?, ?, 0, 'api')",
                    (site.id, site.name, site.timezone, site.address),
                )
                if not cur.rowcount:
                    raise rules.site_taken(site)
                write_event(db, now, EventKind.SITE_CREATED, rules.site_created_text(site),
                            site_id=site.id)
            ids: list[str] = []
            for i, spec in enumerate(devices):
                rules.refuse_device(spec, self._facts(db, spec), i if site is not None else None)
                db.execute(
                    "INSERT INTO devices (id, serial, site_id, host, port, transport, name,"
                    " enabled, comm_key, live_capture, removed, origin)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 'api')"
                    " ON CONFLICT(id) DO UPDATE SET site_id=excluded.site_id,"
                    " host=excluded.host, port=excluded.port, transport=excluded.transport,"
                    " name=excluded.name, enabled=excluded.enabled, removed=0, origin='api',"
                    " comm_key=excluded.comm_key, live_capture=excluded.live_capture",
                    rules.spec_values(spec),
                )
                write_event(db, now, EventKind.DEVICE_REGISTERED, rules.registered_text(spec),
                            device_id=spec.id)
                ids.append(spec.id)
            for j, device_id in enumerate(move, start=len(devices)):
                assert site is not None, "devices move into a new site only"
                row = self._device_row(db, device_id)
                known = rules.refuse_move(device_id, rules.Known.of_row(row), j)
                db.execute("UPDATE devices SET site_id = ? WHERE id = ?",
                           (site.id, device_id))
                write_event(db, now, EventKind.DEVICE_MOVED,
                            rules.moved_text(device_id, known, site.id),
                            device_id=device_id, data={"from": known.site_id})
                ids.append(device_id)
            rows = [select(db, f"SELECT {rules.DEVICE_COLUMNS} FROM devices WHERE id = ?",
                                 (device_id,)) for device_id in ids]
            return [rules.device_of_row(r[0], from_ts) for r in rows]
        return await self._transaction(write)

    async def update_api_device(self, device_id: str, changes: DeviceChanges,
                                now: datetime) -> DeviceState:
        """Change a device of the store's own (see ``Store.update_api_device``)."""
        def write(db: sqlite3.Connection) -> DeviceState:
            row = self._device_row(db, device_id)
            rules.refuse_api_device(device_id, rules.Known.of_row(row))
            current = rules.spec_of_row(row)
            spec = rules.changed_spec(current, changes)
            rules.refuse_device(spec, self._facts(db, spec), None, creating=False)
            db.execute(
                "UPDATE devices SET site_id = ?, host = ?, port = ?, transport = ?, name = ?,"
                " enabled = ?, comm_key = ?, live_capture = ? WHERE id = ?",
                (*rules.spec_values(spec)[2:], device_id),
            )
            changed = rules.changed_fields(current, spec, changes)
            write_event(db, now, EventKind.DEVICE_UPDATED, rules.updated_text(device_id, changed),
                        device_id=device_id, data={"fields": changed})
            rows = select(db, f"SELECT {rules.DEVICE_COLUMNS} FROM devices WHERE id = ?",
                                (device_id,))
            return rules.device_of_row(rows[0], from_ts)
        return await self._transaction(write)

    async def remove_api_device(self, device_id: str, now: datetime) -> None:
        """Mark a device of the store's own removed (see ``Store.remove_api_device``)."""
        def write(db: sqlite3.Connection) -> None:
            rules.refuse_api_device(device_id, rules.Known.of_row(self._device_row(db, device_id)))
            write_event(db, now, EventKind.DEVICE_REMOVED, rules.removed_text(device_id),
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
        return [rules.spec_of_row(r, r["tz"]) for r in rows]

    def _device_row(self, db: sqlite3.Connection, device_id: str) -> Any:
        """The device's row (all columns, removed or not), or None."""
        rows = select(db, "SELECT * FROM devices WHERE id = ?", (device_id,))
        return rows[0] if rows else None

    def _facts(self, db: sqlite3.Connection, spec: DeviceSpec) -> rules.DeviceFacts:
        """What ``spec`` could collide with, as the transaction sees it."""
        def first(sql: str, *args: Any) -> Any:
            rows = select(db, sql, args)
            return rows[0][0] if rows else None

        live_site = "SELECT 1 FROM sites WHERE id = ? AND removed = 0"
        return rules.DeviceFacts(
            site_known=first(live_site, spec.site_id) is not None,
            known=rules.Known.of_row(self._device_row(db, spec.id)),
            id_is_site=first(live_site, spec.id) is not None,
            serial_owner=first(
                "SELECT id FROM devices WHERE removed = 0 AND id != ? AND serial = ?"
                " ORDER BY id LIMIT 1", spec.id, spec.serial),
            address_owner=first(
                "SELECT id FROM devices WHERE removed = 0 AND id != ? AND lower(host) = ?"
                " AND port = ? AND transport = ? ORDER BY id LIMIT 1",
                spec.id, spec.host.lower(), spec.port, spec.transport),
        )

    async def sites(self) -> list[Site]:
        """Every configured site."""
        rows = await fetch(
            self._db, "SELECT id, name, timezone, address FROM sites WHERE removed = 0 ORDER BY id"
        )
        return [Site(r["id"], r["name"], r["timezone"], r["address"]) for r in rows]

    async def devices(self, site_id: str | None = None) -> list[DeviceState]:
        """Every configured device (of one site, if given), in id order."""
        sql = f"SELECT {rules.DEVICE_COLUMNS} FROM devices WHERE removed = 0"
        args: tuple[Any, ...] = ()
        if site_id is not None:
            sql += " AND site_id = ?"
            args = (site_id,)
        rows = await fetch(self._db, sql + " ORDER BY id", args)
        return [rules.device_of_row(r, from_ts) for r in rows]

    async def device(self, device_id: str, *, removed: bool = True) -> DeviceState | None:
        """One device, or None; ``removed=False``: None for a device no longer in the fleet."""
        sql = f"SELECT {rules.DEVICE_COLUMNS} FROM devices WHERE id = ?"
        rows = await fetch(self._db, sql if removed else sql + " AND removed = 0", (device_id,))
        return rules.device_of_row(rows[0], from_ts) if rows else None

