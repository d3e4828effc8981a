"""The text formats of the ZKTeco push protocol (ADMS / iclock), as a terminal writes them.

Everything a push terminal sends or reads is plain text: query strings, the
``GET OPTION FROM`` block, tab-separated ATTLOG / OPERLOG lines, ``C:<id>:``
command lines and ``ID=..&Return=..&CMD=..`` results. This module holds those
formats and the firmware profiles that differ in them; ``push_device.py``
holds the terminal's behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleettui.emulator.device import Punch, User

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: what a real terminal calls itself (s0x90 findings)
USER_AGENT = "iClock Proxy/1.09"

#: return codes of command results
RC_OK = 0
RC_BAD_PARAMETER = -1
RC_NO_PIN = -10
RC_CAPACITY = -1001
RC_UNSUPPORTED = -1002
RC_BUSY = -1005

#: OPERLOG operation codes used here
OP_STARTUP = 0
OP_DELETE_USER = 9
OP_SET_TIME = 21
OP_NEW_USER = 30


class WireError(ValueError):
    """A server answer the terminal cannot read (it treats the request as failed)."""


@dataclass(frozen=True, slots=True)
class PushProfile:
    """How one firmware family speaks push: what it sends and what it accepts."""

    name: str
    #: ``pushver`` sent in the handshake; None: legacy firmware sends none (= 2.2.14)
    pushver: str | None = "2.4.1"
    #: fields per ATTLOG line: 5 (legacy), 7 (push 2.x) or 10 (mask and temperature)
    attlog_fields: int = 7
    #: line break between upload lines
    crlf: bool = False
    #: records per upload POST
    batch_size: int = 100
    #: whether a bare ``OK`` (no count) takes a batch; 2.x firmware resends it
    bare_ok_accepts: bool = False
    #: after a reboot the upload cursor goes back to 0 and everything is sent again
    resend_all_after_reboot: bool = False
    #: send ``INFO=`` on the first getrequest after a handshake and every n-th after
    info_every: int = 10
    #: after the handshake, post ``table=options`` with the device's identity (push 2.4+)
    post_options: bool = False
    device_type: str = "att"

    def __post_init__(self) -> None:
        if self.attlog_fields not in (5, 7, 10):
            raise ValueError(f"attlog_fields must be 5, 7 or 10, got {self.attlog_fields}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")

    @property
    def legacy_stamps(self) -> bool:
        """Firmware without ``pushver`` reads ``Stamp``/``OpStamp``, not ``ATTLOGStamp``."""
        return self.pushver is None


PROFILES: dict[str, PushProfile] = {
    p.name: p
    for p in (
        # old black-and-white firmware: no pushver, 5-field lines, takes a bare OK
        PushProfile("legacy", pushver=None, attlog_fields=5, crlf=True, bare_ok_accepts=True),
        PushProfile("push2", pushver="2.4.1", attlog_fields=7),
        PushProfile("push2-resend", pushver="2.3.0", attlog_fields=7,
                    resend_all_after_reboot=True),
        PushProfile("biodata", pushver="2.4.2", attlog_fields=10, batch_size=128,
                    post_options=True),
    )
}


@dataclass(slots=True)
class ServerOptions:
    """What the handshake answer told the terminal (defaults: firmware's own)."""

    delay_s: float = 30.0
    error_delay_s: float = 30.0
    realtime: bool = True
    trans_interval_min: float = 1.0
    attlog_stamp: str = "0"
    operlog_stamp: str = "0"
    #: minutes east of GMT, None when the server sent no TimeZone
    timezone_minutes: int | None = None
    raw: dict[str, str] = field(default_factory=dict)


def _number(raw: dict[str, str], key: str, default: float) -> float:
    try:
        return float(raw[key])
    except (KeyError, ValueError):
        return default


def parse_timezone(text: str) -> int | None:
    """A ``TimeZone`` value in minutes: |tz| up to 12 is hours, above 60 minutes (330)."""
    try:
        value = int(text.strip())
    except ValueError:
        return None
    minutes = value * 60 if abs(value) <= 14 else value
    return minutes if abs(minutes) < 24 * 60 else None


def parse_options(text: str, serial: str, profile: PushProfile) -> ServerOptions:
    """Read a ``GET OPTION FROM: <SN>`` block (LF or CRLF lines)."""
    lines = [ln.strip() for ln in text.replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines or not lines[0].startswith("GET OPTION FROM"):
        raise WireError(f"not an option block: {text[:40]!r}")
    head = lines[0].partition(":")[2].strip()
    if head and head != serial:
        raise WireError(f"option block for {head!r}, not {serial!r}")
    raw: dict[str, str] = {}
    for ln in lines[1:]:
        key, sep, value = ln.partition("=")
        if sep:
            raw[key.strip()] = value.strip()
    att_key, op_key = ("Stamp", "OpStamp") if profile.legacy_stamps else (
        "ATTLOGStamp", "OPERLOGStamp")
    opts = ServerOptions(raw=raw)
    opts.delay_s = min(max(_number(raw, "Delay", opts.delay_s), 0.01), 3600.0)
    opts.error_delay_s = min(max(_number(raw, "ErrorDelay", opts.error_delay_s), 0.01), 3600.0)
    opts.realtime = raw.get("Realtime", "1").strip() == "1"
    opts.trans_interval_min = max(_number(raw, "TransInterval", opts.trans_interval_min), 0.0)
    opts.attlog_stamp = raw.get(att_key, "0") or "0"
    opts.operlog_stamp = raw.get(op_key, "0") or "0"
    if "TimeZone" in raw:
        opts.timezone_minutes = parse_timezone(raw["TimeZone"])
    return opts


def handshake_params(serial: str, profile: PushProfile, comm_key: int = 0) -> dict[str, str]:
    """The query of ``GET /iclock/cdata`` that opens a session."""
    q = {"SN": serial, "options": "all"}
    if profile.pushver is not None:
        q["pushver"] = profile.pushver
    q["language"] = "69"
    if profile.pushver is not None:
        q["DeviceType"] = profile.device_type
        q["PushOptionsFlag"] = "1"
    if comm_key:
        q["pushcommkey"] = str(comm_key)
    return q


def attlog_line(p: Punch, fields: int) -> str:
    """One ATTLOG line: PIN, time, status, verify, workcode, reserved x2 [, mask, temp x2]."""
    parts = [p.user_id, p.at.strftime(TIME_FORMAT), str(p.state), str(p.verify), str(p.workcode)]
    if fields >= 7:
        parts += ["0", "0"]
    if fields >= 10:
        parts += ["0", "36.5", "36.5"]
    return "\t".join(parts)


def oplog_line(op: int, admin: str, at: datetime, *values: str) -> str:
    """One OPERLOG operation line: ``OPLOG <op>\\t<admin>\\t<time>\\t<v1..v4>``."""
    vals = [*values, "0", "0", "0", "0"][:4]
    return "\t".join([f"OPLOG {op}", admin, at.strftime(TIME_FORMAT), *vals])


def user_line(u: User) -> str:
    """One OPERLOG user line, as sent after a user is created or changed."""
    return (f"USER PIN={u.user_id}\tName={u.name}\tPri={u.privilege}\tPasswd={u.password}"
            f"\tCard={u.card or ''}\tGrp={u.group_id or '1'}\tTZ=0000000100000000\tVerify=0"
            "\tViceCard=")


def join_lines(lines: list[str], profile: PushProfile) -> str:
    """Upload body: the lines, each ended by LF (CRLF on profiles that write it)."""
    nl = "\r\n" if profile.crlf else "\n"
    return "".join(ln + nl for ln in lines)


def accepted(text: str, status: int, profile: PushProfile) -> bool:
    """Whether an upload answer takes the batch: 200 and ``OK:<n>`` / ``OK: <n>``.

    A bare ``OK`` takes it only on profiles that accept one; push 2.x firmware
    resends (the field note in push-protocol-notes: a bare OK made a real device
    resend the same batch 220 times).
    """
    if status != 200:
        return False
    body = text.strip()
    if body == "OK":
        return profile.bare_ok_accepts
    head, sep, count = body.partition(":")
    return head == "OK" and bool(sep) and count.strip().isdigit()


def parse_commands(text: str) -> list[tuple[str, str]]:
    """``C:<id>:<command>`` lines of a getrequest answer (``OK`` holds none)."""
    out: list[tuple[str, str]] = []
    for ln in text.replace("\r\n", "\n").split("\n"):
        if not ln.startswith("C:"):
            continue
        cid, sep, command = ln[2:].partition(":")
        if sep and cid:
            out.append((cid, command.strip()))
    return out


def parse_fields(text: str) -> dict[str, str]:
    """``Key=value`` pairs separated by tabs (``PIN=1\\tName=Ann``)."""
    out: dict[str, str] = {}
    for part in text.split("\t"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            out[key.strip()] = value
    return out


def result_line(cid: str, code: int, verb: str) -> str:
    """One command result: ``ID=<id>&Return=<code>&CMD=<verb>``."""
    return f"ID={cid}&Return={code}&CMD={verb}"


def parse_time(text: str) -> datetime | None:
    """``YYYY-MM-DD HH:MM:SS`` (naive device time), None when unreadable."""
    try:
        return datetime.strptime(text.strip(), TIME_FORMAT)
    except ValueError:
        return None


def local_from_date(header: str | None, zone: tzinfo, tz_minutes: int | None) -> datetime | None:
    """The device-local time an HTTP ``Date:`` header says, or None without a usable one.

    The server's ``TimeZone`` option, when it sent one, is the offset the
    firmware applies; otherwise the site's own zone.
    """
    if not header:
        return None
    try:
        at = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if tz_minutes is not None:
        zone = timezone(timedelta(minutes=tz_minutes))
    return at.astimezone(zone).replace(tzinfo=None)
