"""What a push terminal does with each ``C:<id>:<command>`` the server sends.

Every command runs against the device state and yields one result block for
``POST /iclock/devicecmd``: ``ID=<id>&Return=<code>&CMD=<verb>``, followed, for
``INFO``, by ``key=value`` lines. Return codes follow the push notes: 0 done,
-1 bad parameter or no data, -10 no such PIN, -1001 capacity, -1002 unknown
command. A ``command_returns`` fault forces a code per verb (e.g. DATA -1005).
"""

from __future__ import annotations

from typing import Protocol

from fleettui.emulator import push_wire as w
from fleettui.emulator.device import Device, User


class PushTerminal(Protocol):
    """What commands act on: the terminal's device and its upload state (push_device)."""

    device: Device
    profile: w.PushProfile
    cursor: int
    oplog: list[str]
    query_uploads: list[list[str]]
    need_handshake: bool
    check_stamps: bool
    push_now: bool
    reboot_after_results: bool

    def user_changed(self, user: User) -> None:
        """A user was created or changed."""
        ...

#: records per ATTLOG post when re-uploading a DATA QUERY range
QUERY_BATCH = 100


def verb_of(command: str) -> str:
    """The ``CMD=`` of a result: the command's first word (``DATA``, ``INFO``)."""
    return command.split(" ", 1)[0].split("\t", 1)[0]


def forced_code(term: PushTerminal, command: str) -> int | None:
    """The return code a ``command_returns`` fault forces for this command, if any."""
    forced = term.device.faults.command_returns
    if not forced:
        return None
    best: tuple[int, int] | None = None
    upper = command.upper()
    for key, code in forced.items():
        k = key.upper()
        if (upper == k or upper.startswith(k + " ")) and (best is None or len(k) > best[0]):
            best = (len(k), code)
    return None if best is None else best[1]


def execute(term: PushTerminal, cid: str, command: str) -> str:
    """Run one command on the terminal's device; returns its result block."""
    verb = verb_of(command)
    code = forced_code(term, command)
    extra: list[str] = []
    if code is None:
        code, extra = _run(term, command)
    elif verb.upper() == "REBOOT" and code == 0:
        term.reboot_after_results = True
    return "\n".join([w.result_line(cid, code, verb), *extra])


def _run(term: PushTerminal, command: str) -> tuple[int, list[str]]:
    head, _, rest = command.partition(" ")
    head = head.upper()
    if head == "REBOOT":
        term.reboot_after_results = True
        return w.RC_OK, []
    if head == "DATA":
        return _data(term, rest), []
    if head == "INFO":
        return w.RC_OK, _info(term)
    if head == "CLEAR":
        what = rest.strip().upper()
        dev = term.device
        if what == "LOG":
            dev.log.clear()
            term.cursor = 0
        elif what == "DATA":
            dev.log.clear()
            dev.users.clear()
            dev.templates.clear()
            term.cursor = 0
        elif what != "PHOTO":
            return w.RC_UNSUPPORTED, []
        return w.RC_OK, []
    if head == "AC_UNLOCK":
        term.device.unlock_door(float(term.device.options.get("LockOn", "30") or 30) / 10)
        return w.RC_OK, []
    if head == "CHECK":
        term.need_handshake = True
        term.check_stamps = True
        return w.RC_OK, []
    if head == "LOG":
        term.push_now = True
        return w.RC_OK, []
    if head in ("SET", "RELOAD"):
        return _option(term, head, rest), []
    return w.RC_UNSUPPORTED, []


def _option(term: PushTerminal, head: str, rest: str) -> int:
    word, _, kv = rest.partition(" ")
    if head == "RELOAD":
        return w.RC_OK if word.upper() == "OPTIONS" else w.RC_UNSUPPORTED
    if word.upper() not in ("OPTION", "OPTIONS"):
        return w.RC_UNSUPPORTED
    key, sep, value = kv.partition("=")
    if not sep or not key.strip():
        return w.RC_BAD_PARAMETER
    term.device.options[key.strip()] = value.strip()
    return w.RC_OK


def _data(term: PushTerminal, rest: str) -> int:
    action, _, rest = rest.partition(" ")
    table, _, args = rest.partition(" ")
    action, table = action.upper(), table.upper()
    fields = w.parse_fields(args)
    dev = term.device
    if table == "USERINFO" and action == "UPDATE":
        pin = fields.get("PIN", "").strip()
        if not pin or len(pin) > 24:
            return w.RC_BAD_PARAMETER
        old = dev.user_by_id(pin)
        try:
            card = int(fields.get("Card", "") or (old.card if old else 0))
            privilege = int(fields.get("Pri", "") or (old.privilege if old else 0))
        except ValueError:
            return w.RC_BAD_PARAMETER
        user = User(
            uid=old.uid if old else dev.next_uid(),
            user_id=pin,
            name=fields.get("Name", old.name if old else ""),
            privilege=privilege,
            password=fields.get("Passwd", old.password if old else ""),
            card=card,
            group_id=fields.get("Grp", old.group_id if old else "1"),
        )
        if not dev.put_user(user):
            return w.RC_CAPACITY
        term.user_changed(user)
        return w.RC_OK
    if table == "USERINFO" and action == "DELETE":
        gone = dev.user_by_id(fields.get("PIN", "").strip())
        if gone is None:
            return w.RC_NO_PIN
        dev.delete_user(gone.uid)
        term.oplog.append(w.oplog_line(w.OP_DELETE_USER, "0", dev.local_time(), gone.user_id))
        return w.RC_OK
    if table == "USERINFO" and action == "QUERY":
        pin = fields.get("PIN", "").strip()
        users = [u for u in sorted(dev.users.values(), key=lambda u: u.uid)
                 if not pin or u.user_id == pin]
        if not users:
            return w.RC_BAD_PARAMETER
        term.oplog.extend(w.user_line(u) for u in users)
        return w.RC_OK
    if table == "ATTLOG" and action == "QUERY":
        start = w.parse_time(fields.get("StartTime", ""))
        end = w.parse_time(fields.get("EndTime", ""))
        if start is None or end is None:
            return w.RC_BAD_PARAMETER
        lines = [w.attlog_line(p, term.profile.attlog_fields)
                 for p in dev.log.records() if start <= p.at <= end]
        if not lines:
            return w.RC_BAD_PARAMETER  # -1 when the range is empty (s0x90, real device)
        for i in range(0, len(lines), QUERY_BATCH):
            term.query_uploads.append(lines[i : i + QUERY_BATCH])
        return w.RC_OK
    return w.RC_UNSUPPORTED


def _info(term: PushTerminal) -> list[str]:
    dev, p = term.device, term.device.profile
    return [
        f"~DeviceName={p.device_name}",
        f"MAC={dev.config.mac}",
        f"TransactionCount={len(dev.log)}",
        f"~MaxAttLogCount={max(p.records_cap // 10_000, 1)}",
        f"UserCount={len(dev.users)}",
        f"~MaxUserCount={p.users_cap}",
        f"FPCount={len(dev.templates)}",
        f"~MaxFingerCount={max(p.fingers_cap // 100, 1)}",
        f"FWVersion={p.firmware}",
        f"IPAddress={dev.config.host}",
        f"~SerialNumber={dev.config.serial}",
        f"~Platform={p.platform}",
        f"PushVersion={term.profile.pushver or '2.2.14'}",
    ]
