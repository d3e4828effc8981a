"""The fleet's rules, the same in every backend: what a change to the fleet may not do
(the ``FleetConflict`` it raises), how its events word it, and a devices row as the
domain objects.

A backend reads the facts a change could collide with (``DeviceFacts``, ``Known``)
in its own SQL, inside the change's transaction; the decision and its words are
here, so that both backends refuse the same change with the same kind, field,
index and message.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any

from fleettui.domain import DeviceChanges, DeviceSpec, DeviceState, DeviceStatus, Site
from fleettui.store.errors import ConflictKind, FleetConflict
from fleettui.store.shared.row_times import TimeOf

#: the devices columns a DeviceState is read from (``device_of_row``)
DEVICE_COLUMNS = (
    "id, serial, site_id, host, port, transport, name, enabled, model, firmware, platform, mac,"
    " status, status_reason, status_since, last_seen, users, users_cap, records, records_cap,"
    " clock_drift_s, clock_checked_at, last_sync_at, last_punch_at, synced_records, origin,"
    " push_address"
)


@dataclass(frozen=True, slots=True)
class Known:
    """The device the store already holds under an id (removed or not)."""

    serial: str
    site_id: str
    removed: bool
    origin: str

    @classmethod
    def of_row(cls, r: Any) -> Known | None:
        """A devices row (with serial, site_id, removed, origin) as Known; None for none."""
        if r is None:
            return None
        return cls(r["serial"], r["site_id"], bool(r["removed"]), r["origin"])


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What the store holds that a new or changed device could collide with."""

    #: its site exists and is not removed
    site_known: bool
    #: the device already under its id, if any
    known: Known | None
    #: its id is a live site's
    id_is_site: bool
    #: another live device with its serial (the first by id)
    serial_owner: str | None
    #: another live device at its host:port/transport (the first by id)
    address_owner: str | None


def refuse_device(spec: DeviceSpec, facts: DeviceFacts, index: int | None, *,
                  creating: bool = True) -> None:
    """Raise FleetConflict if ``spec`` cannot be written: its site is unknown, or its id,
    serial or address is taken. ``creating``: a new device, or a removed one coming back
    (only with its serial); otherwise a change to the device already under its id."""
    def taken(field: str, message: str) -> FleetConflict:
        return FleetConflict(ConflictKind.TAKEN, field, message, index)

    if not facts.site_known:
        raise FleetConflict(ConflictKind.BAD_REFERENCE, "site", f"no site {spec.site_id!r}",
                            index)
    known = facts.known
    if known is not None and not creating:
        if known.serial != spec.serial:
            raise taken("id", f"id {spec.id!r} is the device with serial {known.serial!r}")
    elif known is not None:
        if not known.removed:
            owner = " (by the config file)" if known.origin != "api" else ""
            raise taken("id", f"id {spec.id!r} is already taken{owner}")
        if known.serial != spec.serial:
            raise taken("id", f"id {spec.id!r} is already taken by a removed device"
                        " (its punches keep the id)")
    if facts.id_is_site:
        raise taken("id", f"id {spec.id!r} is a site's id (commands name either)")
    if facts.serial_owner is not None:
        raise taken("serial_number",
                    f"serial {spec.serial!r} is already the device {facts.serial_owner!r}")
    # a push device dials in: it has no address of its own to clash with another's
    if spec.transport != "push" and facts.address_owner is not None:
        raise taken("host", f"{spec.host}:{spec.port} ({spec.transport}) is already the "
                    f"address of {facts.address_owner!r}")


def site_taken(site: Site) -> FleetConflict:
    """The refusal of a new site whose id is a device's or another site's (removed or
    not: a removed site's punches and history still name it)."""
    return FleetConflict(ConflictKind.TAKEN, "id", f"id {site.id!r} is already taken")


async def created(registration: Awaitable[object]) -> bool:
    """Whether a site's registration (``Store.create_site``) went through: False if it
    was refused, its id being taken."""
    try:
        await registration
    except FleetConflict:
        return False
    return True


def refuse_api_device(device_id: str, known: Known | None) -> Known:
    """The live device of the store's own under ``device_id``; FleetConflict otherwise
    (unknown, or declared in the config file)."""
    if known is None or known.removed:
        raise FleetConflict(ConflictKind.NOT_FOUND, "id", f"no device {device_id!r}")
    if known.origin != "api":
        raise FleetConflict(ConflictKind.CONFIG_OWNED, "id",
                            f"{device_id!r} is declared in the config file: "
                            "change or remove it there")
    return known


def refuse_move(device_id: str, known: Known | None, index: int) -> Known:
    """The device of the store's own a new site takes (the ``index``-th of the batch);
    FleetConflict if there is none or the config file places it."""
    if known is None or known.removed:
        raise FleetConflict(ConflictKind.BAD_REFERENCE, "id", f"no device {device_id!r}",
                            index)
    if known.origin != "api":
        raise FleetConflict(
            ConflictKind.CONFIG_OWNED, "id",
            f"{device_id!r} is placed by the config file (site "
            f"{known.site_id!r}): change its site there", index)
    return known


# --- the events' words -----------------------------------------------------------------


def site_created_text(site: Site) -> str:
    """The site.created event's message."""
    return f"site {site.id} created ({site.name})"


def registered_text(spec: DeviceSpec) -> str:
    """The device.registered event's message."""
    return f"{spec.id} registered at {spec.site_id} ({spec.host})"


def moved_text(device_id: str, known: Known, site_id: str) -> str:
    """The device.moved event's message (its data: ``{"from": known.site_id}``)."""
    return f"{device_id} moved from {known.site_id} to {site_id}"


def changed_fields(current: DeviceSpec, spec: DeviceSpec, changes: DeviceChanges) -> list[str]:
    """The fields a change really changed, sorted; the comm key last, named, never shown."""
    changed = sorted(k for k in changes if k != "comm_key"
                     and getattr(spec, k) != getattr(current, k))
    if "comm_key" in changes and spec.comm_key != current.comm_key:
        changed.append("comm_key")
    return changed


def updated_text(device_id: str, changed: list[str]) -> str:
    """The device.updated event's message (its data: ``{"fields": changed}``)."""
    return f"{device_id} changed: {', '.join(changed) or 'nothing'}"


def removed_text(device_id: str) -> str:
    """The device.removed event's message."""
    return f"{device_id} removed"


# --- rows and specs ----------------------------------------------------------------------


def device_of_row(r: Any, when: TimeOf) -> DeviceState:
    """A devices row (``DEVICE_COLUMNS``) as a DeviceState; ``when`` reads a time column
    as the backend stores it (``row_times``)."""
    return DeviceState(
        id=r["id"], serial=r["serial"], site_id=r["site_id"], host=r["host"], port=r["port"],
        transport=r["transport"], name=r["name"], enabled=bool(r["enabled"]),
        model=r["model"], firmware=r["firmware"], platform=r["platform"], mac=r["mac"],
        status=DeviceStatus(r["status"]), status_reason=r["status_reason"],
        status_since=when(r["status_since"]), last_seen=when(r["last_seen"]),
        users=r["users"], users_cap=r["users_cap"], records=r["records"],
        records_cap=r["records_cap"], clock_drift_s=r["clock_drift_s"],
        clock_checked_at=when(r["clock_checked_at"]), last_sync_at=when(r["last_sync_at"]),
        last_punch_at=when(r["last_punch_at"]), synced_records=r["synced_records"],
        origin=r["origin"], push_address=r["push_address"],
    )


def spec_of_row(r: Any, timezone: str = "") -> DeviceSpec:
    """A devices row (all columns) as the DeviceSpec it was registered with."""
    live = r["live_capture"]
    return DeviceSpec(
        id=r["id"], serial=r["serial"], site_id=r["site_id"], host=r["host"], port=r["port"],
        transport=r["transport"], comm_key=r["comm_key"],
        live_capture=None if live is None else bool(live), name=r["name"],
        enabled=bool(r["enabled"]), origin=r["origin"], timezone=timezone,
    )


def changed_spec(current: DeviceSpec, changes: DeviceChanges) -> DeviceSpec:
    """``current`` with ``changes`` made."""
    return replace(current, **changes)


def spec_values(spec: DeviceSpec) -> tuple[Any, ...]:
    """(id, serial, site_id, host, port, transport, name, enabled, comm_key,
    live_capture): a device of the store's own as written."""
    return (spec.id, spec.serial, spec.site_id, spec.host, spec.port, spec.transport,
            spec.name, spec.enabled, spec.comm_key, spec.live_capture)
