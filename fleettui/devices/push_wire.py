"""The text formats of the ZKTeco push protocol (ADMS / iclock), as the server reads them.

A push device dials out over HTTP and speaks plain text: tab-separated
records, ``key=value`` pairs, one per line (LF or CRLF). This module turns
those bodies into domain values and back, and knows nothing of HTTP or of the
store: the push gateway in ``engine/`` uses it, the listener only carries bytes.

Parsing never fails a whole body: a line that cannot be read is returned as
``BadLine`` (logged by the caller), because a device that gets an error for a
batch sends the same batch again, forever.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from fleettui.domain import PushUser, RawPunch

#: serial numbers we accept from a device (the query's ``SN=``)
SERIAL = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: a command id we send (``C:<id>:``): digits, at most 16 characters
MAX_COMMAND_ID = 10**16 - 1

#: what a device's ``Return=`` code means (0 is success)
RETURN_CODES: Mapping[int, str] = {
    -1: "bad parameter, or nothing to do",
    -2: "file operation failed",
    -3: "read/write error on the device",
    -10: "no such user on the device",
    -1001: "the device is full (capacity reached)",
    -1002: "the device does not support this command",
    -1003: "the device timed out",
    -1004: "data and configuration do not match on the device",
    -1005: "the device is busy",
}

_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S")


def return_text(code: int) -> str:
    """A device's return code in words (``-1005`` → "the device is busy (-1005)")."""
    if code == 0:
        return "ok"
    return f"{RETURN_CODES.get(code, 'failed')} ({code})"


def decode(body: bytes) -> str:
    """A body as text: UTF-8, else GB18030 (older firmware's names), else Latin-1."""
    for encoding in ("utf-8", "gb18030"):
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            continue
    return body.decode("latin-1")


def _lines(text: str) -> list[str]:
    return [line.strip("\r") for line in text.split("\n") if line.strip()]


def parse_time(text: str) -> datetime:
    """A device's local time (``YYYY-MM-DD HH:MM:SS``, seconds optional); ValueError if not."""
    text = text.strip()
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(f"not a time: {text[:40]!r}")


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that could not be read: its number in the body (from 1) and why."""

    number: int
    reason: str


@dataclass(slots=True)
class AttLog:
    """An ATTLOG upload read: the punches, and the lines that were not punches."""

    punches: list[RawPunch] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)

    @property
    def lines(self) -> int:
        """Every line the upload held (what the device is told was taken)."""
        return len(self.punches) + len(self.bad)


def parse_attlog(text: str) -> AttLog:
    """ATTLOG lines: ``PIN\\tTime\\tStatus\\tVerify[\\tWorkcode\\t…]`` (5, 7 or 10 fields)."""
    out = AttLog()
    for number, line in enumerate(_lines(text), start=1):
        fields = line.split("\t")
        if len(fields) < 4:
            out.bad.append(BadLine(number, f"{len(fields)} field(s), expected at least 4"))
            continue
        pin = fields[0].strip()
        if not pin or len(pin) > 24 or not pin.isprintable():
            out.bad.append(BadLine(number, "no readable user id"))
            continue
        try:
            when = parse_time(fields[1])
            state = int(fields[2] or 0)
            verify = int(fields[3] or 0)
        except ValueError as e:
            out.bad.append(BadLine(number, str(e)))
            continue
        if not (0 <= state <= 255 and 0 <= verify <= 255):
            out.bad.append(BadLine(number, "status or verify type out of range"))
            continue
        out.punches.append(RawPunch(pin, when, state, verify))
    return out


def pairs(text: str, separator: str = "\t") -> dict[str, str]:
    """``key=value`` fields split by ``separator`` (keys without their ``~``)."""
    out: dict[str, str] = {}
    for part in text.split(separator):
        key, eq, value = part.partition("=")
        if eq and key.strip():
            out[key.strip().lstrip("~")] = value.strip()
    return out


@dataclass(frozen=True, slots=True)
class OpLogRecord:
    """An ``OPLOG`` line: something done on the device (0 start-up, 21 clock set, …)."""

    op: int
    operator: str
    at: datetime | None
    values: tuple[str, ...]


#: operation codes worth naming in the event log
OPERATIONS: Mapping[int, str] = {
    0: "started up", 1: "shut down", 3: "alarm", 4: "menu entered", 5: "settings changed",
    6: "fingerprint enrolled", 9: "user deleted", 21: "clock set", 30: "user added",
}


@dataclass(slots=True)
class OperLog:
    """An OPERLOG upload read: users, operations, and what was neither."""

    users: list[PushUser] = field(default_factory=list)
    operations: list[OpLogRecord] = field(default_factory=list)
    other: int = 0  # fingerprint, face and photo lines: taken, not kept
    bad: list[BadLine] = field(default_factory=list)

    @property
    def lines(self) -> int:
        """Every line the upload held."""
        return len(self.users) + len(self.operations) + self.other + len(self.bad)


def parse_operlog(text: str) -> OperLog:
    """OPERLOG lines: ``OPLOG op\\tadmin\\ttime\\t…``, ``USER PIN=…\\tName=…``, FP/BIODATA…"""
    out = OperLog()
    for number, line in enumerate(_lines(text), start=1):
        tag, _, rest = line.partition(" ")
        if tag == "USER":
            f = pairs(rest)
            pin = f.get("PIN", "")
            if not pin:
                out.bad.append(BadLine(number, "USER line without PIN"))
                continue
            try:
                privilege = int(f.get("Pri") or 0)
            except ValueError:
                privilege = 0
            out.users.append(PushUser(pin, f.get("Name", ""), privilege, f.get("Card", "")))
        elif tag == "OPLOG":
            fields = rest.split("\t")
            try:
                op = int(fields[0])
            except ValueError:
                out.bad.append(BadLine(number, "OPLOG line without an operation code"))
                continue
            at: datetime | None = None
            if len(fields) > 2:
                try:
                    at = parse_time(fields[2])
                except ValueError:
                    at = None
            out.operations.append(OpLogRecord(op, fields[1] if len(fields) > 1 else "", at,
                                              tuple(fields[3:])))
        elif tag in ("FP", "BIODATA", "FACE", "USERPIC", "BIOPHOTO"):
            out.other += 1
        else:
            out.bad.append(BadLine(number, f"unknown record {tag[:20]!r}"))
    return out


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a heartbeat's ``INFO=`` (or an ``INFO`` command's result) says of the device."""

    firmware: str = ""
    users: int | None = None
    fingers: int | None = None
    records: int | None = None
    address: str = ""
    records_cap: int | None = None
    model: str = ""


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def parse_info(text: str) -> DeviceInfo:
    """``INFO=<fw>,<users>,<fingers>,<records>,<ip>,…`` of a getrequest (positional)."""
    f = [part.strip() for part in text.split(",")] + [""] * 5
    return DeviceInfo(firmware=f[0][:60], users=_int(f[1]), fingers=_int(f[2]),
                      records=_int(f[3]), address=f[4][:45])


def info_of_pairs(values: Mapping[str, str]) -> DeviceInfo:
    """The key=value form (an INFO command's result, a ``table=options`` upload)."""
    cap = _int(values.get("MaxAttLogCount"))
    return DeviceInfo(
        firmware=values.get("FWVersion", "")[:60], users=_int(values.get("UserCount")),
        fingers=_int(values.get("FPCount")), records=_int(values.get("TransactionCount")),
        address=values.get("IPAddress", "")[:45],
        records_cap=cap * 10_000 if cap is not None and cap < 1000 else cap,
        model=values.get("DeviceName", "")[:60],
    )


@dataclass(frozen=True, slots=True)
class CommandResult:
    """One ``ID=…&Return=…&CMD=…`` result of a devicecmd post, with any lines after it."""

    id: int
    code: int
    verb: str
    extra: dict[str, str] = field(default_factory=dict)


def parse_results(text: str) -> tuple[list[CommandResult], list[BadLine]]:
    """The results of a devicecmd post: ``ID=..&Return=..&CMD=..`` lines, one or more; a
    result's following ``key=value`` lines (an INFO's answer) belong to it."""
    results: list[CommandResult] = []
    bad: list[BadLine] = []
    lines = _lines(text)
    current: dict[str, str] | None = None
    extra: dict[str, str] = {}
    number = 0

    def close() -> None:
        if current is None:
            return
        try:
            results.append(CommandResult(int(current["ID"]), int(current.get("Return", "0")),
                                         current.get("CMD", ""), dict(extra)))
        except (KeyError, ValueError):
            bad.append(BadLine(number, "result without a numeric ID and Return"))

    for number, line in enumerate(lines, start=1):
        if line.startswith("ID="):
            close()
            extra = {}
            current = pairs(line, "&")
            if "Return" not in current:  # the multi-line variant: ID=, Return=, CMD= alone
                current = {"ID": current.get("ID", "")}
        elif current is not None and line.startswith(("Return=", "CMD=")) and \
                ("Return" not in current or "CMD" not in current):
            key, _, value = line.partition("=")
            current[key] = value.strip()
        elif current is not None:
            extra.update(pairs(line, "\n"))
        else:
            bad.append(BadLine(number, "line before any ID="))
    close()
    return results, bad


# --- what the server writes ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    """The handshake's answer: how often to call, what to send, in which zone."""

    serial: str
    delay_s: int = 10
    error_delay_s: int = 30
    trans_interval_min: int = 1
    timezone_minutes: int = 0
    attlog_stamp: str = "0"
    operlog_stamp: str = "0"
    legacy_stamps: bool = False  # no pushver in the handshake: Stamp= / OpStamp=
    server_version: str = "2.4.1"


def render_options(o: Options) -> str:
    """The ``GET OPTION FROM: <SN>`` block (LF lines)."""
    if o.legacy_stamps:
        stamps = [f"Stamp={o.attlog_stamp}", f"OpStamp={o.operlog_stamp}", "PhotoStamp=0"]
    else:
        stamps = [f"ATTLOGStamp={o.attlog_stamp}", f"OPERLOGStamp={o.operlog_stamp}",
                  "ATTPHOTOStamp=0"]
    tz = o.timezone_minutes
    # whole hours are written in hours; others in minutes (India: 330), as firmware reads them
    zone = str(tz // 60) if tz % 60 == 0 else str(tz)
    lines = [
        f"GET OPTION FROM: {o.serial}",
        *stamps,
        f"ErrorDelay={o.error_delay_s}",
        f"Delay={o.delay_s}",
        "TransTimes=00:00;14:05",
        f"TransInterval={o.trans_interval_min}",
        # words, not the 10-bit mask: attendance and operations only, never biometric data
        "TransFlag=TransData AttLog\tOpLog\tEnrollUser\tChgUser",
        f"TimeZone={zone}",
        "Realtime=1",
        "Encrypt=None",
        f"ServerVer={o.server_version}",
        f"PushProtVer={o.server_version}",
    ]
    return "\n".join(lines) + "\n"


def render_commands(commands: Iterable[tuple[int, str]]) -> str:
    """A getrequest answer: ``C:<id>:<command>`` lines, or ``OK`` when there are none."""
    lines = [f"C:{cid}:{text}" for cid, text in commands]
    return "\n".join(lines) + "\n" if lines else "OK"


def user_command(pin: str, name: str, privilege: int = 0, password: str = "", card: str = "",
                 group: int = 1) -> str:
    """``DATA UPDATE USERINFO``: add or change a user (fields tab-separated)."""
    clean = [_field(v) for v in (pin, name, password, card)]
    return (f"DATA UPDATE USERINFO PIN={clean[0]}\tName={clean[1]}\tPri={privilege}"
            f"\tPasswd={clean[2]}\tCard={clean[3]}\tGrp={group}\tTZ=0000000100000000\tVerify=0")


def delete_user_command(pin: str) -> str:
    """``DATA DELETE USERINFO``: remove a user."""
    return f"DATA DELETE USERINFO PIN={_field(pin)}"


def query_attlog_command(start: datetime, end: datetime) -> str:
    """``DATA QUERY ATTLOG``: send the records of a local-time range again."""
    return (f"DATA QUERY ATTLOG StartTime={start:%Y-%m-%d %H:%M:%S}"
            f"\tEndTime={end:%Y-%m-%d %H:%M:%S}")


def _field(value: str) -> str:
    """A value safe inside a tab-separated command line (no tab, line break or NUL)."""
    return re.sub(r"[\t\r\n\x00]", " ", value)


def is_reboot(text: str) -> bool:
    """Whether a command restarts the device (nothing after it in an answer runs)."""
    return text.split(" ", 1)[0] in ("REBOOT", "RESTART")


def batch_for_answer(pending: Sequence[tuple[int, str]], *, in_flight: int,
                     max_commands: int = 200, max_bytes: int = 40_000) -> list[tuple[int, str]]:
    """The commands one getrequest answer carries, in order: at most ``max_commands`` and
    ``max_bytes``; a reboot only alone, once nothing else is awaiting its result."""
    out: list[tuple[int, str]] = []
    size = 0
    for cid, text in pending:
        if is_reboot(text):
            if not out and in_flight == 0:
                out.append((cid, text))
            break
        size += len(text) + 24
        if out and (len(out) >= max_commands or size > max_bytes):
            break
        out.append((cid, text))
    return out
