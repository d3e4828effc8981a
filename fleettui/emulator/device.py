"""The state of one emulated terminal: identity, users, attendance log, clock, power.

A ``Device`` knows nothing of sockets; the server feeds it commands through a
session (``session.py``) and the fleet or the control API act on it directly
(punches, faults, power). Everything here runs on the emulator's event loop
thread, so no locking is needed.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fleettui.emulator.faults import Faults, Flap
from fleettui.emulator.protocol import decode_time, encode_time, encode_timehex

Clock = Callable[[], float]
WallClock = Callable[[], datetime]

USER72 = struct.Struct("<HB8s24sI9s24s")
USER28 = struct.Struct("<HB5s8sIxBhI")
REC40 = struct.Struct("<H24sB4sB8s")
REC16 = struct.Struct("<I4sBB2sI")
#: bytes 32..39 of a 40-byte record as an F19 writes them (workcode 0)
REC40_TAIL = b"\x00\x00\x00\x00\xff\x00\x00\x00"


def utc_now() -> datetime:
    """The real wall clock, as an aware UTC datetime (the default WallClock)."""
    return datetime.now(UTC)


@dataclass(slots=True)
class Profile:
    """What kind of terminal this is: identity strings, formats and capacities."""

    firmware: str = "Ver 6.60 Apr 26 2016"
    platform: str = "ZMM210_TFT"
    device_name: str = "F18/ID"
    fp_version: int = 10
    #: None: the device answers ACK_ERROR for ZKFaceVersion (no face unit)
    face_version: int | None = 7
    pin_width: int = 9
    #: 72 (TFT, "ZK8") or 28 (black and white, "ZK6") byte user records
    user_format: int = 72
    #: 40 (TFT) or 16 (black and white) byte attendance records
    record_format: int = 40
    users_cap: int = 5000
    fingers_cap: int = 3000
    records_cap: int = 100_000
    faces_cap: int = 0
    #: "reject": a full log refuses new punches; "overwrite": oldest dropped
    when_full: str = "reject"
    #: seconds a restart keeps the device off the network
    reboot_s: float = 25.0
    #: whether RESTART is acknowledged before the device goes away
    ack_restart: bool = True
    #: whether a device left disabled re-enables itself when the session closes
    reenable_on_close: bool = True
    #: concurrent sessions served; CONNECT beyond that answers ACK_ERROR
    max_sessions: int = 4


@dataclass(slots=True)
class User:
    """A user record as the device stores it."""

    uid: int
    user_id: str
    name: str = ""
    privilege: int = 0
    password: str = ""
    card: int = 0
    group_id: str = ""
    #: bytes 39..47 of a 72-byte record, kept verbatim so clients round-trip them
    raw_extra: bytes | None = None

    def pack72(self) -> bytes:
        """This user as a 72-byte TFT record."""
        extra = self.raw_extra
        if extra is None:
            extra = b"\x00" + self.group_id.encode()[:7].ljust(7, b"\x00") + b"\x00"
        return USER72.pack(
            self.uid,
            self.privilege,
            self.password.encode()[:8],
            self.name.encode()[:24],
            self.card & 0xFFFFFFFF,
            extra,
            self.user_id.encode()[:24],
        )

    def pack28(self) -> bytes:
        """This user as a 28-byte black-and-white record (numeric user ids only)."""
        group = int(self.group_id) if self.group_id.isdigit() else 0
        uid_num = int(self.user_id) if self.user_id.isdigit() else 0
        return USER28.pack(
            self.uid,
            self.privilege,
            self.password.encode()[:5],
            self.name.encode()[:8],
            self.card & 0xFFFFFFFF,
            group & 0xFF,
            0,
            uid_num & 0xFFFFFFFF,
        )

    @classmethod
    def unpack(cls, data: bytes) -> User:
        """Parse a USER_WRQ payload of 72 or 28 bytes (the length says which)."""
        if len(data) >= 72:
            uid, priv, pw, name, card, extra, user_id = USER72.unpack_from(data)
            return cls(
                uid=uid,
                privilege=priv,
                password=_cstr(pw),
                name=_cstr(name),
                card=card,
                group_id=_cstr(extra[1:8]),
                raw_extra=bytes(extra),
                user_id=_cstr(user_id),
            )
        if len(data) >= 28:
            uid, priv, pw, name, card, group, _tz, user_id = USER28.unpack_from(data)
            return cls(
                uid=uid,
                privilege=priv,
                password=_cstr(pw),
                name=_cstr(name),
                card=card,
                group_id=str(group),
                user_id=str(user_id),
            )
        raise ValueError(f"user record of {len(data)} bytes (expected 72 or 28)")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready view for the control API."""
        return {
            "uid": self.uid,
            "user_id": self.user_id,
            "name": self.name,
            "privilege": self.privilege,
            "card": self.card,
            "group_id": self.group_id,
            "has_password": bool(self.password),
        }


def _cstr(b: bytes) -> str:
    return b.split(b"\x00", 1)[0].decode("utf-8", errors="replace")


@dataclass(slots=True)
class Punch:
    """One attendance record, decoded."""

    user_id: str
    at: datetime
    #: 0 check-in, 1 check-out, 2 break-out, 3 break-in, 4 OT-in, 5 OT-out
    state: int = 0
    #: 0 password, 1 fingerprint, 2 card, 15 face
    verify: int = 1
    uid: int = 0
    workcode: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready view for the control API."""
        return {
            "user_id": self.user_id,
            "at": self.at.isoformat(),
            "state": self.state,
            "verify": self.verify,
            "uid": self.uid,
        }


class AttendanceLog:
    """The device's record buffer, kept encoded as the wire expects it."""

    def __init__(self, record_format: int = 40) -> None:
        if record_format not in (40, 16):
            raise ValueError("record_format must be 40 or 16")
        self.record_format = record_format
        self._buf = bytearray()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._buf) // self.record_format

    def append(self, p: Punch) -> None:
        """Store one record at the end of the log."""
        self.append_encoded(p, encode_time(p.at))

    def append_encoded(self, p: Punch, encoded_time: int) -> None:
        """Store a record with a raw packed time, even one no calendar has (31 Feb).

        Real terminals hold such records after a bad clock set; clients must cope.
        """
        t = struct.pack("<I", encoded_time)
        if self.record_format == 40:
            tail = struct.pack("<I", p.workcode) + REC40_TAIL[4:]
            self._buf += REC40.pack(
                p.uid & 0xFFFF, p.user_id.encode()[:24], p.verify, t, p.state, tail
            )
        else:
            numeric = int(p.user_id) if p.user_id.isdigit() else 0
            self._buf += REC16.pack(numeric, t, p.state, p.verify, b"\0\0", p.workcode)

    def drop_oldest(self, n: int = 1) -> None:
        """Forget the ``n`` oldest records (overwrite-when-full devices)."""
        n = min(n, len(self))
        del self._buf[: n * self.record_format]
        #: records dropped from the front so far (a push upload cursor follows it)
        self.dropped += n

    def clear(self) -> None:
        """Delete every record."""
        self._buf.clear()

    def dataset(self) -> bytes:
        """The bulk-read dataset: u32 byte length, then the records."""
        return struct.pack("<I", len(self._buf)) + bytes(self._buf)

    def records(self) -> list[Punch]:
        """Every record, decoded (impossible stored dates are skipped)."""
        return self.records_slice(0, len(self))

    def records_slice(self, start: int, stop: int) -> list[Punch]:
        """Records ``start`` to ``stop`` (indexes in the log), decoded, as ``records``."""
        out: list[Punch] = []
        size = self.record_format
        end = min(stop, len(self)) * size
        for off in range(max(start, 0) * size, end, size):
            chunk = self._buf[off : off + size]
            try:
                if size == 40:
                    uid, user_id, verify, t, state, tail = REC40.unpack(chunk)
                    workcode = struct.unpack_from("<I", tail)[0]
                    out.append(
                        Punch(_cstr(user_id), decode_time(struct.unpack("<I", t)[0]),
                              state, verify, uid, workcode)
                    )
                else:
                    user_num, t, state, verify, _r, workcode = REC16.unpack(chunk)
                    out.append(
                        Punch(str(user_num), decode_time(struct.unpack("<I", t)[0]),
                              state, verify, 0, workcode)
                    )
            except ValueError:
                continue
        return out


@dataclass
class DeviceConfig:
    """Everything needed to create one emulated device."""

    id: str
    serial: str
    host: str = "127.0.0.1"
    port: int = 4370
    timezone: str = "UTC"
    comm_key: int = 0
    mac: str = "00:17:61:00:00:01"
    profile: Profile = field(default_factory=Profile)


class Device:
    """One emulated terminal's state and behaviour (no networking here)."""

    def __init__(
        self,
        config: DeviceConfig,
        *,
        clock: Clock = time.monotonic,
        wall_clock: WallClock = utc_now,
    ) -> None:
        self.config = config
        self.profile = config.profile
        self.clock = clock
        self.wall_clock = wall_clock
        self.tz = ZoneInfo(config.timezone)
        self.users: dict[int, User] = {}
        self.templates: dict[tuple[int, int], tuple[int, bytes]] = {}
        self.log = AttendanceLog(self.profile.record_format)
        self.oplog_count = 0
        self.faults = Faults()
        self.enabled = True
        self.options: dict[str, str] = self._initial_options()
        # clock: device local time = real local time + offset + drift since reference
        self._clock_offset = 0.0
        self._drift_per_day = 0.0
        self._drift_ref = self.clock()
        # power: "on", "rebooting" (until self._back_at) or "off"
        self._power = "on"
        self._back_at = 0.0
        self.rejected_punches = 0
        self.door_unlocks = 0
        self._door_open_until = 0.0
        self.voices: list[int] = []
        self.stats: dict[str, int] = {
            "commands": 0, "sessions": 0, "bad_checksums": 0, "bytes_in": 0, "bytes_out": 0,
        }
        #: called with each new Punch (the server pushes real-time events)
        self.punch_listeners: list[Callable[[Punch], None]] = []
        #: called when the device drops every session (restart, power off)
        self.drop_listeners: list[Callable[[], None]] = []
        #: set on a push terminal: its push state, shown in the summary
        self.push_status: Callable[[], dict[str, Any]] | None = None

    # --- identity -------------------------------------------------------

    @property
    def id(self) -> str:
        """The device id of the fleet config."""
        return self.config.id

    def _initial_options(self) -> dict[str, str]:
        p = self.profile
        opts = {
            "~SerialNumber": self.config.serial,
            "~Platform": p.platform,
            "~DeviceName": p.device_name,
            "MAC": self.config.mac,
            "~ZKFPVersion": str(p.fp_version),
            "~UserExtFmt": "1",
            "FaceFunOn": "0" if p.face_version is None else "1" if p.faces_cap else "0",
            "CompatOldFirmware": "0",
            "IPAddress": self.config.host,
            "NetMask": "255.255.255.0",
            "GATEIPAddress": "0.0.0.0",
            "~PIN2Width": str(p.pin_width),
            "WorkCode": "0",
            "LockOn": "30",
        }
        if p.face_version is not None:
            opts["ZKFaceVersion"] = str(p.face_version)
        return opts

    # --- clock ----------------------------------------------------------

    def local_time(self) -> datetime:
        """The device's own clock: naive local time, with any offset and drift."""
        real = self.wall_clock().astimezone(self.tz).replace(tzinfo=None)
        return (real + timedelta(seconds=self.clock_offset_s())).replace(microsecond=0)

    def clock_offset_s(self) -> float:
        """How far the device clock is from the true local time, in seconds."""
        drift = self._drift_per_day * (self.clock() - self._drift_ref) / 86400.0
        return self._clock_offset + drift

    def set_time(self, t: datetime) -> None:
        """SET_TIME: the client sets the clock (drift keeps going from here)."""
        real = self.wall_clock().astimezone(self.tz).replace(tzinfo=None)
        self._clock_offset = (t - real).total_seconds()
        self._drift_ref = self.clock()

    def set_clock_fault(
        self, offset_s: float | None = None, drift_per_day: float | None = None
    ) -> None:
        """Shift the clock by ``offset_s`` from true time and/or make it drift."""
        if offset_s is not None:
            self._clock_offset = offset_s
            self._drift_ref = self.clock()
        if drift_per_day is not None:
            self._clock_offset = self.clock_offset_s()
            self._drift_ref = self.clock()
            self._drift_per_day = drift_per_day

    # --- power and reachability ------------------------------------------

    @property
    def power(self) -> str:
        """"on", "rebooting" or "off"."""
        if self._power == "rebooting" and self.clock() >= self._back_at:
            self._power = "on"
            self.enabled = True
        return self._power

    def restart(self) -> None:
        """Drop every session and stay off the network for the reboot time."""
        self._power = "rebooting"
        self._back_at = self.clock() + self.profile.reboot_s
        self._drop_all()

    def power_off(self) -> None:
        """Drop every session and stay off until powered on again."""
        self._power = "off"
        self._drop_all()

    def power_on(self) -> None:
        """Come back from a power off (or end a reboot early)."""
        self._power = "on"
        self.enabled = True

    def _drop_all(self) -> None:
        for cb in list(self.drop_listeners):
            cb()

    def reachable(self) -> bool:
        """Whether packets reach the device right now (power on, link up)."""
        if self.power != "on" or self.faults.offline:
            return False
        flap = self.faults.flap
        return flap is None or flap.is_up(self.clock())

    def apply_faults(self, update: dict[str, Any]) -> None:
        """Apply a validated fault update (see faults.parse_fault_update)."""
        for key, value in update.items():
            if key == "flap":
                self.faults.flap = (
                    None if value is None else Flap(value["up_s"], value["down_s"], self.clock())
                )
            elif key == "clock_offset_s":
                self.set_clock_fault(offset_s=value)
            elif key == "clock_drift_s_per_day":
                self.set_clock_fault(drift_per_day=value)
            else:
                setattr(self.faults, key, value)

    def clear_faults(self) -> None:
        """Remove every fault, clock offset and drift included."""
        self.faults = Faults()
        self._clock_offset = 0.0
        self._drift_per_day = 0.0
        self._drift_ref = self.clock()

    # --- door ---------------------------------------------------------

    def unlock_door(self, seconds: float) -> None:
        """Energise the door relay for ``seconds``."""
        self.door_unlocks += 1
        self._door_open_until = self.clock() + max(seconds, 0.0)

    def door_open(self) -> bool:
        """Whether the door relay is energised now."""
        return self.clock() < self._door_open_until

    # --- users ----------------------------------------------------------

    def next_uid(self) -> int:
        """The lowest free internal user index."""
        uid = 1
        while uid in self.users:
            uid += 1
        return uid

    def put_user(self, user: User) -> bool:
        """Create or update a user by uid; False when the user table is full.

        A black-and-white terminal (28-byte users) holds 8 bytes of a name and 5
        of a password, however the record arrived.
        """
        if user.uid not in self.users and len(self.users) >= self.profile.users_cap:
            return False
        if self.profile.user_format == 28:
            user.name = user.name.encode()[:8].decode("utf-8", errors="ignore")
            user.password = user.password.encode()[:5].decode("utf-8", errors="ignore")
        # a user id is unique on a terminal: a new uid for an existing id replaces it
        for other in list(self.users.values()):
            if other.user_id == user.user_id and other.uid != user.uid:
                self.delete_user(other.uid)
        self.users[user.uid] = user
        return True

    def delete_user(self, uid: int) -> bool:
        """Delete a user and their fingerprint templates; False if there is none."""
        if self.users.pop(uid, None) is None:
            return False
        for key in [k for k in self.templates if k[0] == uid]:
            del self.templates[key]
        return True

    def user_by_id(self, user_id: str) -> User | None:
        """Look a user up by their user id (PIN)."""
        for u in self.users.values():
            if u.user_id == user_id:
                return u
        return None

    def users_dataset(self) -> bytes:
        """The bulk-read dataset of users in the device's record format."""
        pack = User.pack72 if self.profile.user_format == 72 else User.pack28
        body = b"".join(pack(u) for u in sorted(self.users.values(), key=lambda u: u.uid))
        return struct.pack("<I", len(body)) + body

    def templates_dataset(self) -> bytes:
        """The bulk-read dataset of fingerprint templates."""
        parts = []
        for (uid, fid), (valid, tpl) in sorted(self.templates.items()):
            parts.append(struct.pack("<HHbb", len(tpl) + 6, uid, fid, valid) + tpl)
        body = b"".join(parts)
        return struct.pack("<I", len(body)) + body

    # --- attendance -----------------------------------------------------

    @property
    def records_capacity(self) -> int:
        """How many records the log holds; a ``buffer_full`` fault caps it at the count."""
        if self.faults.buffer_full:
            return min(len(self.log), self.profile.records_cap)
        return self.profile.records_cap

    def punch(
        self,
        user_id: str,
        at: datetime | None = None,
        *,
        state: int = 0,
        verify: int = 1,
        notify: bool = True,
    ) -> Punch | None:
        """Someone presents a finger or card: store a record and push the event.

        ``at`` is the device's naive local time (default: its own clock). Returns
        None when the device does not take the punch: it is disabled, powered
        off or rebooting, or its log is full and it does not overwrite.
        """
        if self.power != "on" or not self.enabled:
            self.rejected_punches += 1
            return None
        if len(self.log) >= self.records_capacity:
            if self.profile.when_full != "overwrite" or self.faults.buffer_full:
                self.rejected_punches += 1
                return None
            self.log.drop_oldest()
        user = self.user_by_id(user_id)
        p = Punch(
            user_id=user_id,
            at=(at or self.local_time()).replace(microsecond=0),
            state=state,
            verify=verify,
            uid=user.uid if user else 0,
        )
        self.log.append(p)
        if notify:
            for cb in list(self.punch_listeners):
                cb(p)
        return p

    def free_sizes(self) -> bytes:
        """GET_FREE_SIZES reply: 23 little-endian int32 (92 bytes)."""
        p = self.profile
        users = len(self.users)
        fingers = len(self.templates)
        records = len(self.log)
        admins = sum(1 for u in self.users.values() if u.privilege & 0x0E)
        passwords = sum(1 for u in self.users.values() if u.password)
        rec_cap = self.records_capacity
        fields = [0] * 23
        fields[4] = users
        fields[6] = fingers
        fields[8] = records
        fields[10] = self.oplog_count
        fields[12] = admins
        fields[13] = passwords
        fields[14] = p.fingers_cap
        fields[15] = p.users_cap
        fields[16] = rec_cap
        fields[17] = max(p.fingers_cap - fingers, 0)
        fields[18] = max(p.users_cap - users, 0)
        fields[19] = max(rec_cap - records, 0)
        fields[20] = 0
        fields[22] = p.faces_cap
        return struct.pack("<23i", *fields)

    def realtime_payload(self, p: Punch) -> bytes:
        """The EF_ATTLOG event payload for a punch, in the device's format."""
        if self.profile.record_format == 40:
            # TFT (52 bytes): user id string, verify type, state, timehex, 20 reserved
            return (
                p.user_id.encode()[:24].ljust(24, b"\x00")
                + bytes((p.verify, p.state))
                + encode_timehex(p.at)
                + b"\x00" * 20
            )
        # black and white (12 bytes): numeric user id, state, verify type, timehex
        numeric = int(p.user_id) if p.user_id.isdigit() else 0
        return struct.pack("<IBB", numeric, p.state, p.verify) + encode_timehex(p.at)

    # --- views ----------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """JSON-ready state for the control API."""
        c = self.config
        return {
            "id": c.id,
            "serial": c.serial,
            "host": c.host,
            "port": c.port,
            "timezone": c.timezone,
            "model": self.profile.device_name,
            "firmware": self.profile.firmware,
            "power": self.power,
            "reachable": self.reachable(),
            "enabled": self.enabled,
            "faults": self.faults.describe(),
            "users": len(self.users),
            "records": len(self.log),
            "records_capacity": self.records_capacity,
            "rejected_punches": self.rejected_punches,
            "door_unlocks": self.door_unlocks,
            "door_open": self.door_open(),
            "clock": self.local_time().isoformat(),
            "clock_offset_s": round(self.clock_offset_s(), 3),
            "comm_key_set": c.comm_key != 0,
            "stats": dict(self.stats),
            **({} if self.push_status is None else {"push": self.push_status()}),
        }
