"""What each command of the table (``fleettui/commands.py``) does on a push device.

A push device cannot be called: it takes commands as ``C:<id>:<text>`` lines in
the answer to its next heartbeat and posts their results later. So a handler
here does not run anything: it *plans* the lines that carry the command and
the report the command ends with once every line is answered. Commands
without a handler here cannot run on a push device, and are refused when
queued (``PUSH_HANDLERS`` is what ``enqueue`` checks).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from fleettui.commands import COMMANDS
from fleettui.devices import push_wire
from fleettui.domain import PushLine, PushUser
from fleettui.store import Store


class PushTarget(Protocol):
    """What planning a command needs of its push device."""

    @property
    def device_id(self) -> str:
        """The device the command is for."""
        ...

    @property
    def store(self) -> Store:
        """Where its users and counts are read."""
        ...


@dataclass(slots=True)
class PushPlan:
    """The lines that carry a command, and what it reports once they are all answered.

    ``refused`` (with no lines) ends the command failed at once, with that reason;
    no lines and no refusal end it done at once (a dry run, nothing to change).
    """

    lines: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    refused: str | None = None


PushHandler = Callable[[PushTarget, dict[str, Any]], Awaitable[PushPlan]]
#: what each command of the table does on a push device
PUSH_HANDLERS: dict[str, PushHandler] = {}


def _push(name: str) -> Callable[[PushHandler], PushHandler]:
    """Register a command's push-device handler under its table name."""
    if name not in COMMANDS:
        raise KeyError(f"no command {name!r} in the command table")

    def register(handler: PushHandler) -> PushHandler:
        PUSH_HANDLERS[name] = handler
        return handler

    return register


def runs_on_push(command: str) -> bool:
    """Whether a push device can run ``command``."""
    return command in PUSH_HANDLERS


@_push("restart")
async def _restart(_target: PushTarget, _params: dict[str, Any]) -> PushPlan:
    return PushPlan(["REBOOT"], {"restarted": True})


@_push("sync_time")
async def _sync_time(_target: PushTarget, _params: dict[str, Any]) -> PushPlan:
    # a push device sets its clock from the Date header of every answer it gets; CHECK
    # makes it handshake again, which also hands it the site's time zone
    return PushPlan(["CHECK"], {"set_from": "the server's clock (HTTP Date header)"})


@_push("refresh_info")
async def _refresh_info(_target: PushTarget, _params: dict[str, Any]) -> PushPlan:
    return PushPlan(["INFO"], {})


@_push("unlock")
async def _unlock(_target: PushTarget, params: dict[str, Any]) -> PushPlan:
    seconds = int(params.get("seconds", 3))
    return PushPlan([f"AC_UNLOCK {seconds}"], {"seconds": seconds})


@_push("set_option")
async def _set_option(_target: PushTarget, params: dict[str, Any]) -> PushPlan:
    return PushPlan([f"SET OPTION {params['key']}={params['value']}"],
                    {"key": params["key"], "value": params["value"]})


@_push("resend_punches")
async def _resend_punches(target: PushTarget, params: dict[str, Any]) -> PushPlan:
    """The device is asked to upload the range again (DATA QUERY ATTLOG); what it sends
    arrives as ATTLOG uploads, stored once like any other, before it answers."""
    since, until = (datetime.fromisoformat(params[k]) for k in ("since", "until"))
    return PushPlan([push_wire.query_attlog_command(since, until)],
                    {"since": params["since"], "until": params["until"],
                     "stored_before": await target.store.punch_count(target.device_id)})


#: a plan's stage that reads the device's users first (they arrive as an OPERLOG upload)
READING_USERS = "reading users"


@_push("sync_employees")
async def _sync_employees(target: PushTarget, _params: dict[str, Any]) -> PushPlan:
    """First the device is asked for its users (DATA QUERY USERINFO: it uploads them as
    USER lines, then answers); ``sync_employees_lines`` then plans the changes."""
    await target.store.record_push_users(
        target.device_id, [], [u.pin for u in await target.store.push_users(target.device_id)])
    return PushPlan(["DATA QUERY USERINFO"], {"stage": READING_USERS})


async def sync_employees_lines(target: PushTarget, params: dict[str, Any]) -> PushPlan:
    """Once the device's users are known: new ones are added, changed ones updated, and
    (``remove_missing``) the others removed."""
    current = {u.pin: u for u in await target.store.push_users(target.device_id)}
    wanted = params["employees"]
    names: dict[str, list[str]] = {"added": [], "updated": [], "removed": []}
    lines: list[str] = []
    added = updated = unchanged = removed = 0
    for e in wanted:
        have = current.get(e["user_id"])
        card = str(e["card"] or "")
        if have is not None and (have.name, have.privilege, have.card) == (
                e["name"], e["privilege"], card) and not e["password"]:
            unchanged += 1
            continue
        if have is None:
            added += 1
            _note(names["added"], e["name"] or e["user_id"])
        else:
            updated += 1
            _note(names["updated"], e["name"] or e["user_id"])
        lines.append(push_wire.user_command(e["user_id"], e["name"], e["privilege"],
                                            e["password"], card))
    if params.get("remove_missing"):
        keep = {e["user_id"] for e in wanted}
        for pin, u in current.items():
            if pin not in keep:
                removed += 1
                _note(names["removed"], u.name or pin)
                lines.append(push_wire.delete_user_command(pin))
    report: dict[str, Any] = {"added": added, "updated": updated, "removed": removed,
                              "unchanged": unchanged, "users": len(current) + added - removed}
    if params.get("dry_run"):
        report.update(dry_run=True, names=names)
        return PushPlan([], report)
    return PushPlan(lines, report)


def _note(names: list[str], name: str, keep: int = 5) -> None:
    if len(names) < keep:
        names.append(name)


@_push("clear_attendance")
async def _clear_attendance(target: PushTarget, _params: dict[str, Any]) -> PushPlan:
    """Clear the device's log only when the store holds at least as many of its records
    as the device last said it has (its heartbeat's record count)."""
    device = await target.store.device(target.device_id)
    stored = await target.store.punch_count(target.device_id)
    if device is None or device.records is None:
        return PushPlan(refused="the device has not said how many records it holds yet: "
                                "not clearing")
    if stored < device.records:
        return PushPlan(refused=f"the device holds {device.records} records and {stored} are "
                                "stored: not clearing")
    return PushPlan(["CLEAR LOG"], {"cleared": device.records, "confirmed_stored": stored})


def outcome(lines: Sequence[PushLine], report: dict[str, Any]) -> tuple[bool, dict[str, Any],
                                                                        str]:
    """A command whose lines are all answered: (done, its result, its error if failed)."""
    result = dict(report)
    failed = []
    for line in lines:
        if line.state != "failed":
            continue
        if line.text.startswith("DATA QUERY ATTLOG") and line.return_code == -1:
            result["empty_range"] = True  # firmware answers -1 for a range with no records
            continue
        failed.append(line)
    for line in lines:
        if line.text == "INFO" and line.result:
            result["info"] = dict(line.result)
    if not failed:
        return True, result, ""
    first = failed[0]
    reason = (push_wire.return_text(first.return_code) if first.return_code is not None
              else "not answered")
    verb = first.text.split("\t", 1)[0][:60]
    error = f"{verb}: {reason}"
    if len(lines) > 1:
        error = f"{len(failed)} of {len(lines)} device commands failed; first: {error}"
    return False, result, error


def users_changed(lines: Sequence[PushLine]) -> tuple[list[PushUser], list[str]]:
    """What answered user lines changed on the device: (users now held, pins removed)."""
    users: list[PushUser] = []
    removed: list[str] = []
    for line in lines:
        if line.state != "done":
            continue
        if line.text.startswith("DATA UPDATE USERINFO "):
            f = push_wire.pairs(line.text.removeprefix("DATA UPDATE USERINFO "))
            try:
                privilege = int(f.get("Pri") or 0)
            except ValueError:
                privilege = 0
            users.append(PushUser(f.get("PIN", ""), f.get("Name", ""), privilege,
                                  f.get("Card", "")))
        elif line.text.startswith("DATA DELETE USERINFO "):
            removed.append(push_wire.pairs(line.text.removeprefix("DATA DELETE USERINFO "))
                           .get("PIN", ""))
    return [u for u in users if u.pin], [p for p in removed if p]
