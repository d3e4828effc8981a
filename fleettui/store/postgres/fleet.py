"""Sites and devices: the fleet as configured, and devices registered through the API.

Several processes change the fleet at once (pollers syncing their config at start,
API servers registering devices), and a change is decided by what the store holds
(is this serial taken?). So every change to the fleet takes ``FLEET_LOCK`` and
reads what it collides with after it: two registrations of one serial run one
after the other, and the second sees the first. A change that writes events
takes the append lock first (the order of every transaction that takes both);
``sync_fleet`` writes none and takes the fleet lock alone. A device row is
locked before it is changed, ``sync_fleet`` all of them in id order first, as
``record_seen_many`` does, so neither waits on the other holding what it needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from fleettui.domain import DeviceChanges, DeviceSpec, DeviceState, EventKind, Site
from fleettui.store.postgres.connection import Db, PostgresConnection, append_lock
from fleettui.store.postgres.events import write_event
from fleettui.store.shared import fleet_rules as rules
from fleettui.store.shared.row_times import native_time

#: the advisory lock every change to the fleet takes (after the append lock, if any)
FLEET_LOCK = 0x666C_7475_0F1E

_SYNC_SITES = (
    "INSERT INTO sites (id, name, timezone, address, removed)"
    " SELECT *, false FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
    " ON CONFLICT (id) DO UPDATE SET name = excluded.name, timezone = excluded.timezone,"
    " address = excluded.address, removed = false, origin = 'config'"
)
_SYNC_DEVICES = (
    "INSERT INTO devices (id, serial, site_id, host, port, transport, name, enabled, removed)"
    " SELECT *, false FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[],"
    " $6::text[], $7::text[], $8::boolean[])"
    " ON CONFLICT (id) DO UPDATE SET serial = excluded.serial, site_id = excluded.site_id,"
    " host = excluded.host, port = excluded.port, transport = excluded.transport,"
    " name = excluded.name, enabled = excluded.enabled, removed = false, origin = 'config',"
    " comm_key = 0, live_capture = NULL"
)
_REGISTER = (
    "INSERT INTO devices (id, serial, site_id, host, port, transport, name, enabled, comm_key,"
    " live_capture, removed, origin) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, false,"
    " 'api') ON CONFLICT (id) DO UPDATE SET site_id = excluded.site_id, host = excluded.host,"
    " port = excluded.port, transport = excluded.transport, name = excluded.name,"
    " enabled = excluded.enabled, removed = false, origin = 'api',"
    " comm_key = excluded.comm_key, live_capture = excluded.live_capture"
)
#: what a device ($1, of site $2, serial $3, address $4:$5/$6) could collide with
_FACTS = (
    "SELECT EXISTS (SELECT 1 FROM sites WHERE id = $2 AND NOT removed),"
    " EXISTS (SELECT 1 FROM sites WHERE id = $1 AND NOT removed),"
    " (SELECT id FROM devices WHERE NOT removed AND id <> $1 AND serial = $3"
    "  ORDER BY id LIMIT 1),"
    " (SELECT id FROM devices WHERE NOT removed AND id <> $1 AND lower(host) = $4"
    "  AND port = $5 AND transport = $6 ORDER BY id LIMIT 1)"
)


async def fleet_lock(db: Db) -> None:
    """Take the fleet lock for the rest of this transaction (see the module's docstring)."""
    await db.execute("SELECT pg_advisory_xact_lock($1)", FLEET_LOCK)


class FleetQueries(PostgresConnection):
    """The fleet: sites, devices, and the devices of the store's own."""

    async def sync_fleet(self, sites: Iterable[Site], devices: Iterable[DeviceState]) -> None:
        """Make the store's sites and devices match the configuration (see
        ``Store.sync_fleet``)."""
        site_columns = _columns(((s.id, s.name, s.timezone, s.address) for s in sites), 4)
        device_columns = _columns(
            ((d.id, d.serial, d.site_id, d.host, d.port, d.transport, d.name, d.enabled)
             for d in devices), 8)

        async def write(db: Db) -> None:
            await fleet_lock(db)
            await db.execute(
                "SELECT count(*) FROM (SELECT 1 FROM devices ORDER BY id FOR UPDATE) locked")
            await db.execute("UPDATE sites SET removed = true WHERE origin = 'config'")
            await db.execute(_SYNC_SITES, *site_columns)
            await db.execute("UPDATE devices SET removed = true WHERE origin = 'config'")
            await db.execute(_SYNC_DEVICES, *device_columns)
            # a site the config dropped while devices registered over the API stand there
            # stays, as the store's own (else those devices would stand nowhere)
            await db.execute(
                "UPDATE sites SET removed = false, origin = 'api' WHERE removed"
                " AND origin = 'config' AND id IN"
                " (SELECT site_id FROM devices WHERE origin = 'api' AND NOT removed)")
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
        async def write(db: Db) -> list[DeviceState]:
            await append_lock(db)
            await fleet_lock(db)
            await _lock_devices(db, [*(d.id for d in devices), *move])
            if site is not None:
                if await _known(db, site.id) is not None:
                    raise rules.site_taken(site)
                made = await db.fetchval(
                    "INSERT INTO sites (id, name, timezone, address, removed, origin)"
                    " VALUES ($1, $2, $3, $4, false, 'api') ON CONFLICT (id) DO NOTHING"
                    " RETURNING id", site.id, site.name, site.timezone, site.address)
                if made is None:
                    raise rules.site_taken(site)
                await write_event(db, now, EventKind.SITE_CREATED, rules.site_created_text(site),
                                  site_id=site.id)
            ids: list[str] = []
            for i, spec in enumerate(devices):
                rules.refuse_device(spec, await _facts(db, spec), i if site is not None else None)
                await db.execute(_REGISTER, *rules.spec_values(spec))
                await write_event(db, now, EventKind.DEVICE_REGISTERED, rules.registered_text(spec),
                                  device_id=spec.id)
                ids.append(spec.id)
            for j, device_id in enumerate(move, start=len(devices)):
                assert site is not None, "devices move into a new site only"
                known = rules.refuse_move(device_id, await _known(db, device_id), j)
                await db.execute("UPDATE devices SET site_id = $1 WHERE id = $2",
                                 site.id, device_id)
                await write_event(db, now, EventKind.DEVICE_MOVED,
                                  rules.moved_text(device_id, known, site.id),
                                  device_id=device_id, data={"from": known.site_id})
                ids.append(device_id)
            rows = await db.fetch(
                f"SELECT {rules.DEVICE_COLUMNS} FROM devices WHERE id = ANY($1::text[])", ids)
            by_id = {r["id"]: r for r in rows}
            return [rules.device_of_row(by_id[i], native_time) for i in ids]
        return await self._transaction(write)

    async def update_api_device(self, device_id: str, changes: DeviceChanges,
                                now: datetime) -> DeviceState:
        """Change a device of the store's own (see ``Store.update_api_device``)."""
        async def write(db: Db) -> DeviceState:
            await append_lock(db)
            await fleet_lock(db)
            row = await db.fetchrow("SELECT * FROM devices WHERE id = $1 FOR UPDATE",
                                    device_id)
            rules.refuse_api_device(device_id, rules.Known.of_row(row))
            current = rules.spec_of_row(row)
            spec = rules.changed_spec(current, changes)
            rules.refuse_device(spec, await _facts(db, spec), None, creating=False)
            await db.execute(
                "UPDATE devices SET site_id = $1, host = $2, port = $3, transport = $4,"
                " name = $5, enabled = $6, comm_key = $7, live_capture = $8 WHERE id = $9",
                *rules.spec_values(spec)[2:], device_id)
            changed = rules.changed_fields(current, spec, changes)
            await write_event(db, now, EventKind.DEVICE_UPDATED,
                              rules.updated_text(device_id, changed),
                              device_id=device_id, data={"fields": changed})
            row = await db.fetchrow(
                f"SELECT {rules.DEVICE_COLUMNS} FROM devices WHERE id = $1", device_id)
            return rules.device_of_row(row, native_time)
        return await self._transaction(write)

    async def remove_api_device(self, device_id: str, now: datetime) -> None:
        """Mark a device of the store's own removed (see ``Store.remove_api_device``)."""
        async def write(db: Db) -> None:
            await append_lock(db)
            await fleet_lock(db)
            await _lock_devices(db, [device_id])
            rules.refuse_api_device(device_id, await _known(db, device_id))
            await write_event(db, now, EventKind.DEVICE_REMOVED, rules.removed_text(device_id),
                              device_id=device_id)
            await db.execute("UPDATE devices SET removed = true WHERE id = $1", device_id)
        await self._transaction(write)

    async def api_device_specs(self) -> list[DeviceSpec]:
        """The devices of the store's own that are enabled, with their site's time zone."""
        rows = await self._fetch(
            "SELECT d.*, s.timezone AS tz FROM devices d JOIN sites s ON s.id = d.site_id"
            " WHERE d.origin = 'api' AND NOT d.removed AND d.enabled ORDER BY d.id")
        return [rules.spec_of_row(r, r["tz"]) for r in rows]

    async def sites(self) -> list[Site]:
        """Every configured site."""
        rows = await self._fetch(
            "SELECT id, name, timezone, address FROM sites WHERE NOT removed ORDER BY id")
        return [Site(r["id"], r["name"], r["timezone"], r["address"]) for r in rows]

    async def devices(self, site_id: str | None = None) -> list[DeviceState]:
        """Every configured device (of one site, if given), in id order."""
        sql = f"SELECT {rules.DEVICE_COLUMNS} FROM devices WHERE NOT removed"
        args: list[Any] = []
        if site_id is not None:
            sql += " AND site_id = $1"
            args.append(site_id)
        rows = await self._fetch(sql + " ORDER BY id", *args)
        return [rules.device_of_row(r, native_time) for r in rows]

    async def device(self, device_id: str, *, removed: bool = True) -> DeviceState | None:
        """One device, or None; ``removed=False``: None for a device no longer in the fleet."""
        sql = f"SELECT {rules.DEVICE_COLUMNS} FROM devices WHERE id = $1"
        row = await self._fetchrow(sql if removed else sql + " AND NOT removed", device_id)
        return rules.device_of_row(row, native_time) if row is not None else None


def _columns(rows: Iterable[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as columns: one array per column, for ``unnest``."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


async def _lock_devices(db: Db, device_ids: Sequence[str]) -> None:
    """Lock the rows of these devices (those that exist) in id order."""
    if device_ids:
        await db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM devices WHERE id = ANY($1::text[])"
            " ORDER BY id FOR UPDATE) locked", list(device_ids))


async def _known(db: Db, device_id: str) -> rules.Known | None:
    """The device under ``device_id`` (removed or not), or None."""
    return rules.Known.of_row(await db.fetchrow(
        "SELECT serial, site_id, removed, origin FROM devices WHERE id = $1", device_id))


async def _facts(db: Db, spec: DeviceSpec) -> rules.DeviceFacts:
    """What ``spec`` could collide with, as this transaction sees it (under the fleet
    lock: no other change to the fleet is under way)."""
    row = await db.fetchrow(_FACTS, spec.id, spec.site_id, spec.serial, spec.host.lower(),
                            spec.port, spec.transport)
    assert row is not None  # one row, always
    return rules.DeviceFacts(site_known=row[0], known=await _known(db, spec.id),
                             id_is_site=row[1], serial_owner=row[2], address_owner=row[3])
