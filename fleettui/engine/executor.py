"""Running one queued command on its device, and what each command means in pyzk terms.

Called by the device's poller after a successful check, for each queued
command in order. A command either ends ``done`` with a result, or
``failed`` with the device's reason; nothing here retries, so nothing runs
twice.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fleettui.devices.base import DeviceFailure, DeviceUser
from fleettui.domain import Command

if TYPE_CHECKING:
    from fleettui.engine.poller import DevicePoller


class CommandRefused(Exception):
    """The engine will not run this command now (the reason is for the operator)."""


async def execute(poller: DevicePoller, command: Command) -> dict[str, Any]:
    """Run ``command`` on the poller's device; returns its result. Raises on failure."""
    drv = poller.driver
    name, params = command.command, command.params
    if name == "restart":
        await drv.restart()
        return {"restarted_at": poller.clock().isoformat()}
    if name == "sync_time":
        local = _site_now(poller)
        await drv.set_time(local)
        return {"set_to": local.isoformat()}
    if name == "refresh_info":
        sizes = await drv.check()
        ident = drv.identity
        return {
            "serial": ident.serial if ident else None,
            "firmware": ident.firmware if ident else None,
            "model": ident.model if ident else None,
            "users": sizes.users,
            "records": sizes.records,
            "records_capacity": sizes.records_cap,
        }
    if name in ("enable", "disable"):
        await drv.set_enabled(name == "enable")
        return {"enabled": name == "enable"}
    if name == "unlock":
        await drv.unlock(int(params.get("seconds", 3)))
        return {"seconds": int(params.get("seconds", 3))}
    if name == "set_option":
        await drv.set_option(params["key"], params["value"])
        return {"key": params["key"], "value": params["value"]}
    if name == "sync_employees":
        return await _sync_employees(poller, params)
    if name == "clear_attendance":
        return await _clear_attendance(poller)
    raise CommandRefused(f"this poller does not know the command {name!r}")


def _cut(text: str, size: int) -> str:
    return text.encode()[:size].decode("utf-8", errors="ignore").strip()


def _site_now(poller: DevicePoller) -> datetime:
    return poller.clock().astimezone(poller.zone).replace(tzinfo=None, microsecond=0)


async def _sync_employees(poller: DevicePoller, params: dict[str, Any]) -> dict[str, Any]:
    drv = poller.driver
    current = {u.user_id: u for u in await drv.users()}
    used = {u.uid for u in current.values()}
    wanted = params["employees"]
    dry_run = bool(params.get("dry_run"))
    names: dict[str, list[str]] = {"added": [], "updated": [], "removed": []}
    # a black-and-white terminal keeps 8 bytes of a name and 5 of a password: compare
    # what it can hold, or every sync would "update" everyone again
    name_len, pw_len = (8, 5) if drv.user_record_size == 28 else (24, 8)
    added = updated = unchanged = removed = 0
    next_uid = 1
    for e in wanted:
        have = current.get(e["user_id"])
        if have is None:
            while next_uid in used:
                next_uid += 1
            uid = next_uid
            used.add(uid)
            added += 1
            _note(names["added"], e["name"] or e["user_id"])
        elif (have.name, have.card, have.privilege, have.password) == (
            _cut(e["name"], name_len), e["card"], e["privilege"],
            _cut(e["password"], pw_len) or have.password,
        ):
            unchanged += 1
            continue
        else:
            uid = have.uid
            updated += 1
            _note(names["updated"], e["name"] or e["user_id"])
        if dry_run:
            continue
        await drv.put_user(DeviceUser(uid, e["user_id"], e["name"], e["card"], e["privilege"],
                                      e["password"] or (have.password if have else "")))
    if params.get("remove_missing"):
        keep = {e["user_id"] for e in wanted}
        for user_id, u in current.items():
            if user_id not in keep:
                if not dry_run:
                    await drv.delete_user(u.uid)
                removed += 1
                _note(names["removed"], u.name or user_id)
    result: dict[str, Any] = {"added": added, "updated": updated, "removed": removed,
                              "unchanged": unchanged,
                              "users": len(current) + added - removed}
    if dry_run:  # a preview: what would change, with a few names to recognise it by
        result.update(dry_run=True, names=names)
    return result


def _note(names: list[str], name: str, keep: int = 5) -> None:
    """Remember the first few names of a change, for the operator's preview."""
    if len(names) < keep:
        names.append(name)


async def _clear_attendance(poller: DevicePoller) -> dict[str, Any]:
    """Clear the log only once every record on it is confirmed stored.

    The device is disabled first so no punch can land between the last sync
    and the clear, and enabled again whatever happens.
    """
    drv = poller.driver
    await drv.set_enabled(False)
    try:
        result = await poller.sync()
        stored, _tail = await poller.store.sync_cursor(poller.device_id)
        sizes = await drv.check()
        if result.bad_records:
            raise CommandRefused(
                f"{result.bad_records} record(s) on the device cannot be read, so cannot be "
                "stored: not clearing"
            )
        if sizes.records != result.read or stored != result.read:
            raise CommandRefused(
                f"the device holds {sizes.records} records and {stored} are confirmed stored: "
                "not clearing"
            )
        await drv.clear_attendance()
    finally:
        # a failure here is reported by the next check; the device also re-enables
        # itself when the session drops
        with contextlib.suppress(DeviceFailure):
            await drv.set_enabled(True)
    return {"cleared": result.read, "confirmed_stored": stored}
