"""The ZK binary protocol as a device speaks it: codes, packets, checksums, time.

Written from the ZKSoftware communication protocol manual (2006) and the
reverse-engineered notes of the zk-protocol project, checked against what pyzk
sends and expects. This module is the emulator's own: it imports nothing from
the rest of fleettui, and nothing outside the emulator should import it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

#: TCP wrapper magic words ("PP" then 0x7D82, little-endian u16 each).
TCP_MAGIC_1 = 0x5050
TCP_MAGIC_2 = 0x7D82
TCP_TOP = struct.Struct("<HHI")
HEADER = struct.Struct("<4H")

#: Largest CMD_DATA payload in one TCP frame (what pyzk and the SDK ask for).
TCP_MAX_DATA = 0xFFC0
#: Largest CMD_DATA payload in one UDP datagram ("each packet cannot over 1Kbytes").
UDP_MAX_DATA = 1024
#: Largest dataset sent inline as CMD_DATA in reply to a buffered read request.
INLINE_MAX = 1016
#: Largest inner packet the emulator accepts from a client (a sanity bound).
MAX_INNER = 1 << 20


class Cmd(IntEnum):
    """Command codes a client sends to a terminal."""

    DB_RRQ = 7
    USER_WRQ = 8
    USERTEMP_RRQ = 9
    OPTIONS_RRQ = 11
    OPTIONS_WRQ = 12
    ATTLOG_RRQ = 13
    CLEAR_DATA = 14
    CLEAR_ATTLOG = 15
    DELETE_USER = 18
    DELETE_USERTEMP = 19
    CLEAR_ADMIN = 20
    UNLOCK = 31
    GET_FREE_SIZES = 50
    STARTVERIFY = 60
    STARTENROLL = 61
    CANCELCAPTURE = 62
    WRITE_LCD = 66
    CLEAR_LCD = 67
    GET_PINWIDTH = 69
    DOORSTATE_RRQ = 75
    GET_USERTEMP = 88
    SAVE_USERTEMPS = 110
    DELETE_USERTEMP_BY_ID = 134
    GET_TIME = 201
    SET_TIME = 202
    REG_EVENT = 500
    CONNECT = 1000
    EXIT = 1001
    ENABLEDEVICE = 1002
    DISABLEDEVICE = 1003
    RESTART = 1004
    POWEROFF = 1005
    SLEEP = 1006
    RESUME = 1007
    REFRESHDATA = 1013
    REFRESHOPTION = 1014
    TESTVOICE = 1017
    GET_VERSION = 1100
    AUTH = 1102
    PREPARE_DATA = 1500
    DATA = 1501
    FREE_DATA = 1502
    PREPARE_BUFFER = 1503
    READ_BUFFER = 1504


class Reply(IntEnum):
    """Reply codes a terminal answers with."""

    ACK_OK = 2000
    ACK_ERROR = 2001
    ACK_DATA = 2002
    ACK_RETRY = 2003
    ACK_REPEAT = 2004
    ACK_UNAUTH = 2005
    ACK_ERROR_DATA = 0xFFFB
    ACK_ERROR_INIT = 0xFFFC
    ACK_ERROR_CMD = 0xFFFD
    ACK_UNKNOWN = 0xFFFF


class EventFlag(IntEnum):
    """Real-time event flags registered with REG_EVENT (also the event code sent)."""

    ATTLOG = 1
    FINGER = 2
    ENROLLUSER = 4
    ENROLLFINGER = 8
    BUTTON = 16
    UNLOCK = 32
    VERIFY = 128
    FPFTR = 256
    ALARM = 512


class Fct(IntEnum):
    """Data table selectors ("function codes") used in buffered reads."""

    ATTLOG = 1
    FINGERTMP = 2
    OPLOG = 4
    USER = 5
    SMS = 6
    UDATA = 7
    WORKCODE = 8


def checksum(inner: bytes) -> int:
    """RFC 1071 ones'-complement sum over little-endian u16 words (zkemsdk's in_chksum).

    ``inner`` is the inner packet with its checksum field set to zero.
    """
    if len(inner) % 2:
        inner += b"\0"
    total = sum(struct.unpack(f"<{len(inner) // 2}H", inner))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def build_packet(code: int, session_id: int, reply_id: int, data: bytes = b"") -> bytes:
    """Build an inner packet (header + data) with a correct checksum."""
    raw = HEADER.pack(code, 0, session_id, reply_id) + data
    return HEADER.pack(code, checksum(raw), session_id, reply_id) + data


def wrap_tcp(inner: bytes) -> bytes:
    """Put the TCP "top" (magic words and inner length) in front of an inner packet."""
    return TCP_TOP.pack(TCP_MAGIC_1, TCP_MAGIC_2, len(inner)) + inner


@dataclass(frozen=True, slots=True)
class Packet:
    """A parsed inner packet from a client."""

    code: int
    checksum: int
    session_id: int
    reply_id: int
    data: bytes

    @property
    def checksum_ok(self) -> bool:
        """Whether the checksum field matches the packet's contents."""
        raw = HEADER.pack(self.code, 0, self.session_id, self.reply_id) + self.data
        return checksum(raw) == self.checksum


class FramingError(ValueError):
    """The client sent bytes that are not a ZK packet."""


def parse_packet(inner: bytes) -> Packet:
    """Parse an inner packet; raise FramingError when it is shorter than a header."""
    if len(inner) < HEADER.size:
        raise FramingError(f"packet of {len(inner)} bytes is shorter than the 8-byte header")
    code, chk, session, reply = HEADER.unpack_from(inner)
    return Packet(code, chk, session, reply, bytes(inner[HEADER.size :]))


class TcpDeframer:
    """Split a TCP byte stream into inner packets (clients may pipeline or split frames)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add received bytes; return every complete inner packet now available.

        Raises FramingError on bytes that do not start with the magic words or
        announce an absurd length: a real terminal drops such a connection.
        """
        self._buf += chunk
        out: list[bytes] = []
        while len(self._buf) >= TCP_TOP.size:
            m1, m2, length = TCP_TOP.unpack_from(self._buf)
            if m1 != TCP_MAGIC_1 or m2 != TCP_MAGIC_2:
                raise FramingError("stream does not start with the ZK TCP magic")
            if length < HEADER.size or length > MAX_INNER:
                raise FramingError(f"frame announces an invalid length {length}")
            end = TCP_TOP.size + length
            if len(self._buf) < end:
                break
            out.append(bytes(self._buf[TCP_TOP.size : end]))
            del self._buf[:end]
        return out


# --- time -----------------------------------------------------------------


def encode_time(t: datetime) -> int:
    """Encode a naive local time as the device's u32 (every month counted as 31 days)."""
    return (
        ((t.year % 100) * 12 * 31 + (t.month - 1) * 31 + t.day - 1) * 86400
        + (t.hour * 60 + t.minute) * 60
        + t.second
    )


def decode_time(v: int) -> datetime:
    """Decode the device's u32 time (raises ValueError for impossible dates like 31 Feb)."""
    second = v % 60
    v //= 60
    minute = v % 60
    v //= 60
    hour = v % 24
    v //= 24
    day = v % 31 + 1
    v //= 31
    month = v % 12 + 1
    v //= 12
    return datetime(v + 2000, month, day, hour, minute, second)


def encode_timehex(t: datetime) -> bytes:
    """The 6-byte time used in real-time events: year-2000, month, day, h, m, s."""
    return bytes((t.year - 2000, t.month, t.day, t.hour, t.minute, t.second))


# --- comm key ---------------------------------------------------------------


def comm_key_token(key: int, session_id: int, ticks: int) -> bytes:
    """The 4-byte AUTH token a client derives from the comm key and the session id.

    commpro.c's MakeKey: bit-reverse the 32-bit key, add the session id, XOR with
    "ZKSO", swap the 16-bit halves, then XOR with the tick byte (which is also sent
    in clear as byte 2). The device recomputes it to check the client's key.
    """
    reversed_key = 0
    for i in range(32):
        reversed_key = (reversed_key << 1) | ((key >> i) & 1)
    k = (reversed_key + session_id) & 0xFFFFFFFF
    b = bytearray(struct.pack("<I", k))
    b = bytearray((b[0] ^ ord("Z"), b[1] ^ ord("K"), b[2] ^ ord("S"), b[3] ^ ord("O")))
    b = bytearray((b[2], b[3], b[0], b[1]))
    t = ticks & 0xFF
    return bytes((b[0] ^ t, b[1] ^ t, t, b[3] ^ t))


def comm_key_matches(key: int, session_id: int, token: bytes) -> bool:
    """Whether an AUTH token proves knowledge of ``key`` for this session."""
    if len(token) < 4:
        return False
    return token[:4] == comm_key_token(key, session_id, token[2])
