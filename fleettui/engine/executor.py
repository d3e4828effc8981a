"""Running one queued command on its device, and what each command means in pyzk terms.

Called by the device's poller after a successful check, for each queued
command in order. A command either ends ``done`` with a result, or
``failed`` with the device's reason; nothing here retries, so nothing runs
twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from fleettui.commands import COMMANDS
from fleettui.devices.base import DeviceFailure, DeviceUser, Driver
from fleettui.domain import Command
from fleettui.engine.sync import SyncResult, make_punch
from fleettui.store import Store


class CommandRefused(Exception):
    """The engine will not run this command now (the reason is for the operator)."""


class CommandTarget(Protocol):
    """What running a command needs of the device's poller (DevicePoller is one)."""

    device_id: str
    zone: ZoneInfo
    driver: Driver
    store: Store
    clock: Callable[[], datetime]

    async def sync(self) -> SyncResult:
        """Download the device's log and store what is new."""
        ...


#: punches stored per transaction by resend_punches
RESEND_BATCH = 5000

Handler = Callable[[CommandTarget, dict[str, Any]], Awaitable[dict[str, Any]]]
#: what each command of the table (fleettui/commands.py) does on a pull device
PULL_HANDLERS: dict[str, Handler] = {}


def _pull(name: str) -> Callable[[Handler], Handler]:
    """Register a command's pull-device handler under its table name."""
    if name not in COMMANDS:
        raise KeyError(f"no command {name!r} in the command table")

    def register(handler: Handler) -> Handler:
        PULL_HANDLERS[name] = handler
        return handler

    return register


async def execute(target: CommandTarget, command: Command) -> dict[str, Any]:
    """Run ``command`` on the target's device; returns its result. Raises on failure."""
    handler = PULL_HANDLERS.get(command.command)
    if handler is None:
        raise CommandRefused(f"this poller does not know the command {command.command!r}")
    return await handler(target, command.params)


@_pull("restart")
async def _restart(target: CommandTarget, _params: dict[str, Any]) -> dict[str, Any]:
    await target.driver.restart()
    return {"restarted_at": target.clock().isoformat()}


@_pull("sync_time")
async def _sync_time(target: CommandTarget, _params: dict[str, Any]) -> dict[str, Any]:
    local = _site_now(target)
    await target.driver.set_time(local)
    return {"set_to": local.isoformat()}


@_pull("refresh_info")
async def _refresh_info(target: CommandTarget, _params: dict[str, Any]) -> dict[str, Any]:
    sizes = await target.driver.check()
    ident = target.driver.identity
    return {
        "serial": ident.serial if ident else None,
        "firmware": ident.firmware if ident else None,
        "model": ident.model if ident else None,
        "users": sizes.users,
        "records": sizes.records,
        "records_capacity": sizes.records_cap,
    }


@_pull("enable")
async def _enable(target: CommandTarget, _params: dict[str, Any]) -> dict[str, Any]:
    await target.driver.set_enabled(True)
    return {"enabled": True}


@_pull("disable")
async def _disable(target: CommandTarget, _params: dict[str, Any]) -> dict[str, Any]:
    await target.driver.set_enabled(False)
    return {"enabled": False}


@_pull("unlock")
async def _unlock(target: CommandTarget, params: dict[str, Any]) -> dict[str, Any]:
    seconds = int(params.get("seconds", 3))
    await target.driver.unlock(seconds)
    return {"seconds": seconds}


@_pull("set_option")
async def _set_option(target: CommandTarget, params: dict[str, Any]) -> dict[str, Any]:
    await target.driver.set_option(params["key"], params["value"])
    return {"key": params["key"], "value": params["value"]}


def _cut(text: str, size: int) -> str:
    return text.encode()[:size].decode("utf-8", errors="ignore").strip()


def _site_now(target: CommandTarget) -> datetime:
    return target.clock().astimezone(target.zone).replace(tzinfo=None, microsecond=0)


@_pull("sync_employees")
async def _sync_employees(target: CommandTarget, params: dict[str, Any]) -> dict[str, Any]:
    drv = target.driver
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


@_pull("resend_punches")
async def _resend_punches(target: CommandTarget, params: dict[str, Any]) -> dict[str, Any]:
    """Read the device's whole log again and store the records of the range that are
    missing (the sync cursor is left alone: the next sync reads on as before)."""
    since = datetime.fromisoformat(params["since"])
    until = datetime.fromisoformat(params["until"])
    dump = await target.driver.read_attendance()
    now = target.clock()
    punches = sorted(
        (make_punch(target.device_id, r, target.zone, source="sync", received_at=now,
                    clock_drift_s=None)
         for r in dump.records if since <= r.local_time <= until),
        key=lambda p: p.local_time)
    new = 0
    for i in range(0, len(punches), RESEND_BATCH):
        new += await target.store.insert_punches(target.device_id,
                                                 punches[i : i + RESEND_BATCH])
    return {"since": params["since"], "until": params["until"], "in_range": len(punches),
            "new": new, "bad_records": dump.bad_records}


@_pull("clear_attendance")
async def _clear_attendance(target: CommandTarget, _params: dict[str, Any]) -> dict[str, Any]:
    """Clear the log only once every record on it is confirmed stored.

    The device is disabled first so no punch can land between the last sync
    and the clear, and enabled again whatever happens.
    """
    drv = target.driver
    await drv.set_enabled(False)
    try:
        result = await target.sync()
        stored = (await target.store.sync_cursor(target.device_id)).stored
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
