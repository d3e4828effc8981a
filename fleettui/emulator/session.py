"""One client session on an emulated terminal: what the device answers to each command.

A session is created by a CONNECT (per TCP connection, or per session id on
UDP) and holds what a real terminal keeps per client: whether the comm key
was proven, the registered real-time event flags, and the buffers of a bulk
read or upload in progress. ``handle`` turns one request into the reply
packets to send, in order, and an action for the server to take afterwards.

Byte layouts follow the ZK protocol notes (shared/reference/zk-protocol-notes.md):
every reply echoes the request's reply id; exactly one reply per request,
except a buffered read chunk (PREPARE_DATA, DATA..., ACK_OK); nothing is sent
in answer to the client's own ACK_OK.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from fleettui.emulator.device import Device, User
from fleettui.emulator.protocol import (
    INLINE_MAX,
    Cmd,
    EventFlag,
    Fct,
    Packet,
    Reply,
    comm_key_matches,
    decode_time,
    encode_time,
)


class After(Enum):
    """What the server does once the reply is sent."""

    NOTHING = "nothing"
    CLOSE = "close"
    RESTART = "restart"
    POWEROFF = "poweroff"


@dataclass(slots=True)
class Outcome:
    """The reply packets (code, data) for one request and the action that follows."""

    packets: list[tuple[int, bytes]] = field(default_factory=list)
    after: After = After.NOTHING


#: commands answered before a session is authenticated
_PRE_AUTH = {Cmd.CONNECT, Cmd.AUTH, Cmd.EXIT}
#: option keys a client may not overwrite
_READ_ONLY_PREFIX = "~"


class Session:
    """Per-client state and the command dispatcher of an emulated terminal."""

    def __init__(self, device: Device, session_id: int, *, max_data: int, udp: bool) -> None:
        self.device = device
        self.session_id = session_id
        #: largest CMD_DATA payload per packet on this transport
        self.max_data = max_data
        self.udp = udp
        self.connected = False
        self.authenticated = device.config.comm_key == 0
        self.event_flags = 0
        self._read_buffer: bytes | None = None
        self._upload: bytearray | None = None
        self._upload_size = 0

    # --- helpers --------------------------------------------------------

    @staticmethod
    def _ok(data: bytes = b"") -> Outcome:
        return Outcome([(Reply.ACK_OK, data)])

    @staticmethod
    def _err(code: int = Reply.ACK_ERROR) -> Outcome:
        return Outcome([(code, b"")])

    def _bulk(self, data: bytes) -> list[tuple[int, bytes]]:
        """PREPARE_DATA(size, 0), the data split per transport, then ACK_OK."""
        packets: list[tuple[int, bytes]] = [(Cmd.PREPARE_DATA, struct.pack("<II", len(data), 0))]
        for off in range(0, len(data), self.max_data):
            packets.append((Cmd.DATA, data[off : off + self.max_data]))
        packets.append((Reply.ACK_OK, b""))
        return packets

    # --- dispatch -------------------------------------------------------

    def handle(self, pkt: Packet) -> Outcome | None:
        """Answer one request; None means the device sends nothing back."""
        code = pkt.code
        if code == Reply.ACK_OK:
            return None  # the client acknowledging an event: never answered
        dev = self.device
        dev.stats["commands"] += 1
        if code == Cmd.CONNECT:
            self.connected = True
            if not self.authenticated:
                return self._err(Reply.ACK_UNAUTH)
            return self._ok()
        if not self.connected and code not in _PRE_AUTH:
            return self._err(Reply.ACK_UNAUTH)
        if code == Cmd.AUTH:
            if dev.config.comm_key == 0 or comm_key_matches(
                dev.config.comm_key, self.session_id, pkt.data
            ):
                self.authenticated = True
                return self._ok()
            return self._err(Reply.ACK_UNAUTH)
        if code == Cmd.EXIT:
            return Outcome([(Reply.ACK_OK, b"")], After.CLOSE)
        if not self.authenticated:
            return self._err(Reply.ACK_UNAUTH)
        handler = _HANDLERS.get(code)
        if handler is None:
            return self._err(Reply.ACK_UNKNOWN)
        try:
            return handler(self, pkt.data)
        except (struct.error, ValueError, IndexError):
            # a malformed request: the device refuses it and carries on
            return self._err(Reply.ACK_ERROR)

    # --- device control -------------------------------------------------

    def _enable(self, data: bytes) -> Outcome:
        self.device.enabled = True
        return self._ok()

    def _disable(self, data: bytes) -> Outcome:
        self.device.enabled = False
        return self._ok()

    def _restart(self, data: bytes) -> Outcome:
        if not self.device.profile.ack_restart:
            return Outcome([], After.RESTART)
        return Outcome([(Reply.ACK_OK, b"")], After.RESTART)

    def _poweroff(self, data: bytes) -> Outcome:
        return Outcome([(Reply.ACK_OK, b"")], After.POWEROFF)

    def _plain_ok(self, data: bytes) -> Outcome:
        return self._ok()

    def _test_voice(self, data: bytes) -> Outcome:
        index = struct.unpack_from("<I", data)[0] if len(data) >= 4 else 0
        if index > 55:
            return self._err()
        self.device.voices.append(index)
        return self._ok()

    def _unlock(self, data: bytes) -> Outcome:
        tenths = struct.unpack_from("<I", data)[0] if len(data) >= 4 else 30
        self.device.unlock_door(tenths / 10.0)
        return self._ok()

    def _door_state(self, data: bytes) -> Outcome:
        # a real terminal answers one byte (1 open, 0 closed); pyzk's get_lock_state
        # does not expect it over TCP (a known pyzk bug the poller must avoid)
        return self._ok(b"\x01" if self.device.door_open() else b"\x00")

    def _clear_error_probe(self, data: bytes) -> Outcome:
        # pyzk sends ACK_ERROR / ACK_UNKNOWN as commands after a refused option read;
        # real terminals answer them, so the session stays in step
        return self._err(Reply.ACK_UNKNOWN)

    # --- identity and options ---------------------------------------------

    def _version(self, data: bytes) -> Outcome:
        return self._ok(self.device.profile.firmware.encode() + b"\x00")

    def _options_read(self, data: bytes) -> Outcome:
        key = data.split(b"\x00", 1)[0].decode("ascii", errors="replace")
        value = self.device.options.get(key)
        if value is None:
            return self._err()
        return self._ok(f"{key}={value}".encode() + b"\x00")

    def _options_write(self, data: bytes) -> Outcome:
        text = data.split(b"\x00", 1)[0].decode("ascii", errors="replace")
        key, sep, value = text.partition("=")
        if not sep or not key or key.startswith(_READ_ONLY_PREFIX):
            return self._err()
        self.device.options[key] = value
        return self._ok()

    def _pin_width(self, data: bytes) -> Outcome:
        return self._ok(bytes((self.device.profile.pin_width,)))

    def _free_sizes(self, data: bytes) -> Outcome:
        return self._ok(self.device.free_sizes())

    # --- clock ----------------------------------------------------------

    def _get_time(self, data: bytes) -> Outcome:
        return self._ok(struct.pack("<I", encode_time(self.device.local_time())))

    def _set_time(self, data: bytes) -> Outcome:
        value = struct.unpack_from("<I", data)[0]
        self.device.set_time(decode_time(value))  # ValueError → ACK_ERROR
        return self._ok()

    # --- users and templates ----------------------------------------------

    def _user_write(self, data: bytes) -> Outcome:
        user = User.unpack(data)
        if user.uid == 0 or not user.user_id:
            return self._err()
        if not self.device.put_user(user):
            return self._err()
        return self._ok()

    def _user_delete(self, data: bytes) -> Outcome:
        uid = struct.unpack_from("<H", data)[0]
        return self._ok() if self.device.delete_user(uid) else self._err()

    def _template_delete(self, data: bytes) -> Outcome:
        uid, fid = struct.unpack_from("<HB", data)
        return self._ok() if self.device.templates.pop((uid, fid), None) else self._err()

    def _template_delete_by_id(self, data: bytes) -> Outcome:
        raw_id, fid = struct.unpack_from("<24sB", data)
        user = self.device.user_by_id(raw_id.split(b"\x00", 1)[0].decode(errors="replace"))
        if user is None or self.device.templates.pop((user.uid, fid), None) is None:
            return self._err()
        return self._ok()

    def _template_get(self, data: bytes) -> Outcome:
        uid, fid = struct.unpack_from("<HB", data)
        found = self.device.templates.get((uid, fid))
        if found is None:
            return self._err()
        payload = found[1] + b"\x00"
        if len(payload) <= min(INLINE_MAX, self.max_data):
            return Outcome([(Cmd.DATA, payload)])
        return Outcome(self._bulk(payload))

    def _clear_data(self, data: bytes) -> Outcome:
        dev = self.device
        which = data[0] if data else 0
        if which in (0, Fct.ATTLOG):
            dev.log.clear()
        if which in (0, Fct.FINGERTMP):
            dev.templates.clear()
        if which in (0, Fct.OPLOG):
            dev.oplog_count = 0
        if which in (0, Fct.USER):
            dev.users.clear()
            dev.templates.clear()
        return self._ok()

    def _clear_attlog(self, data: bytes) -> Outcome:
        self.device.log.clear()
        return self._ok()

    def _clear_admin(self, data: bytes) -> Outcome:
        for u in self.device.users.values():
            u.privilege &= 0x01
        return self._ok()

    def _enroll(self, data: bytes) -> Outcome:
        # enrolment needs a finger on a sensor; the emulator has none
        return self._err()

    # --- events ---------------------------------------------------------

    def _reg_event(self, data: bytes) -> Outcome:
        self.event_flags = struct.unpack_from("<I", data)[0] if len(data) >= 4 else 0
        return self._ok()

    def wants(self, flag: EventFlag) -> bool:
        """Whether this session registered for an event kind."""
        return bool(self.event_flags & flag)

    # --- bulk transfers ---------------------------------------------------

    def _prepare_buffer(self, data: bytes) -> Outcome:
        _one, command, fct, _ext = struct.unpack_from("<bhii", data)
        dev = self.device
        if command == Cmd.ATTLOG_RRQ:
            dataset = dev.log.dataset()
        elif command == Cmd.USERTEMP_RRQ and fct in (Fct.USER, 0):
            dataset = dev.users_dataset()
        elif command == Cmd.DB_RRQ and fct == Fct.FINGERTMP:
            dataset = dev.templates_dataset()
        else:
            return self._err()
        if len(dataset) <= min(INLINE_MAX, self.max_data):
            return Outcome([(Cmd.DATA, dataset)])
        self._read_buffer = dataset
        crc = zlib.crc32(dataset) & 0xFFFFFFFF
        return self._ok(b"\x00" + struct.pack("<III", len(dataset), len(dataset), crc))

    def _read_buffer_chunk(self, data: bytes) -> Outcome:
        start, size = struct.unpack_from("<ii", data)
        buf = self._read_buffer
        if buf is None or start < 0 or size <= 0 or start >= len(buf):
            return self._err()
        return Outcome(self._bulk(buf[start : start + size]))

    def _free_data(self, data: bytes) -> Outcome:
        self._read_buffer = None
        self._upload = None
        return self._ok()

    def _upload_start(self, data: bytes) -> Outcome:
        size = struct.unpack_from("<I", data)[0]
        if size > 16 * 1024 * 1024:
            return self._err()
        self._upload = bytearray()
        self._upload_size = size
        return self._ok()

    def _upload_chunk(self, data: bytes) -> Outcome:
        if self._upload is None or len(self._upload) + len(data) > self._upload_size:
            return self._err()
        self._upload += data
        return self._ok()

    def _save_user_templates(self, data: bytes) -> Outcome:
        buf = self._upload
        if buf is None or len(buf) < 12:
            return self._err()
        ulen, tlen, flen = struct.unpack_from("<III", buf)
        if 12 + ulen + tlen + flen > len(buf):
            return self._err()
        upack = bytes(buf[12 : 12 + ulen])
        table = bytes(buf[12 + ulen : 12 + ulen + tlen])
        fpack = bytes(buf[12 + ulen + tlen : 12 + ulen + tlen + flen])
        stride = 73 if ulen % 73 == 0 else 29 if ulen % 29 == 0 else 0
        if not stride:
            return self._err()
        dev = self.device
        for off in range(0, ulen, stride):
            if not dev.put_user(User.unpack(upack[off + 1 : off + stride])):
                return self._err()
        for off in range(0, tlen - 7, 8):
            _kind, uid, fnum, start = struct.unpack_from("<bHbI", table, off)
            size = struct.unpack_from("<H", fpack, start)[0]
            template = fpack[start + 2 : start + 2 + size]
            dev.templates[(uid, fnum - 0x10)] = (1, template)
        self._upload = None
        return self._ok()


_HANDLERS: dict[int, Callable[[Session, bytes], Outcome]] = {
    Cmd.ENABLEDEVICE: Session._enable,
    Cmd.DISABLEDEVICE: Session._disable,
    Cmd.RESTART: Session._restart,
    Cmd.POWEROFF: Session._poweroff,
    Cmd.SLEEP: Session._plain_ok,
    Cmd.RESUME: Session._plain_ok,
    Cmd.REFRESHDATA: Session._plain_ok,
    Cmd.REFRESHOPTION: Session._plain_ok,
    Cmd.CANCELCAPTURE: Session._plain_ok,
    Cmd.STARTVERIFY: Session._plain_ok,
    Cmd.WRITE_LCD: Session._plain_ok,
    Cmd.CLEAR_LCD: Session._plain_ok,
    Cmd.STARTENROLL: Session._enroll,
    Cmd.TESTVOICE: Session._test_voice,
    Cmd.UNLOCK: Session._unlock,
    Cmd.DOORSTATE_RRQ: Session._door_state,
    Cmd.GET_VERSION: Session._version,
    Cmd.OPTIONS_RRQ: Session._options_read,
    Cmd.OPTIONS_WRQ: Session._options_write,
    Cmd.GET_PINWIDTH: Session._pin_width,
    Cmd.GET_FREE_SIZES: Session._free_sizes,
    Cmd.GET_TIME: Session._get_time,
    Cmd.SET_TIME: Session._set_time,
    Cmd.USER_WRQ: Session._user_write,
    Cmd.DELETE_USER: Session._user_delete,
    Cmd.DELETE_USERTEMP: Session._template_delete,
    Cmd.DELETE_USERTEMP_BY_ID: Session._template_delete_by_id,
    Cmd.GET_USERTEMP: Session._template_get,
    Cmd.CLEAR_DATA: Session._clear_data,
    Cmd.CLEAR_ATTLOG: Session._clear_attlog,
    Cmd.CLEAR_ADMIN: Session._clear_admin,
    Cmd.REG_EVENT: Session._reg_event,
    Cmd.PREPARE_BUFFER: Session._prepare_buffer,
    Cmd.READ_BUFFER: Session._read_buffer_chunk,
    Cmd.FREE_DATA: Session._free_data,
    Cmd.PREPARE_DATA: Session._upload_start,
    Cmd.DATA: Session._upload_chunk,
    Cmd.SAVE_USERTEMPS: Session._save_user_templates,
    Reply.ACK_ERROR: Session._clear_error_probe,
    Reply.ACK_UNKNOWN: Session._clear_error_probe,
}
