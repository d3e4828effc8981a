"""The ZK wire format, as far as fleettui speaks it without pyzk: packets, their
checksum, the TCP wrapper and the GET_FREE_SIZES reply.

pyzk is the client for everything (sessions, downloads, users, commands).
This module holds the few pieces of the protocol fleettui itself needs: the
CMD_EXIT said to UDP sessions a killed poller left, the liveness check on
the event loop (``zk_check.py``), the checks of a sizes reply that pyzk
skips (shared by both paths), and the benches' raw-socket floor. Written from the
protocol notes (``zk-protocol-notes.md`` §1 and §2.5); the emulator has its
own (it must import nothing of fleettui), and the tests hold them to each
other.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from fleettui.devices.base import DeviceFailure, Sizes
from fleettui.domain import FailureKind

CMD_CONNECT = 1000
CMD_EXIT = 1001
CMD_GET_FREE_SIZES = 50
CMD_ACK_OK = 2000
#: every reply code a terminal sends (notes §2.1 table "Replies", and the data replies):
#: a code outside these is not a ZK reply at all
REPLY_CODES = frozenset({1500, 1501, 2000, 2001, 2002, 2003, 2004, 2005,
                         0xFFFF, 0xFFFD, 0xFFFC, 0xFFFB})

#: the first four bytes of every TCP frame, before the inner packet's length
TCP_MAGIC = b"\x50\x50\x82\x7d"
#: a full GET_FREE_SIZES reply's data (23 int32); the first 80 carry the counts
SIZES_REPLY_BYTES = 92
SIZES_MIN_BYTES = 80
#: reply ids count 0 .. 65534 (pyzk wraps at 65535)
REPLY_ID_WRAP = 0xFFFF

_HEADER = struct.Struct("<4H")
_TCP_TOP = struct.Struct("<4sI")
_COUNTS = struct.Struct("<20i")


class Header(NamedTuple):
    """The eight bytes in front of every packet's data."""

    command: int
    checksum: int
    session_id: int
    reply_id: int


def checksum(inner: bytes) -> int:
    """The packet checksum: RFC 1071 over little-endian 16-bit words of the packet with
    its checksum field zero, an odd last byte padded with zero (notes §1.3)."""
    padded = inner + b"\0" if len(inner) % 2 else inner
    total: int = sum(struct.unpack(f"<{len(padded) // 2}H", padded))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def packet(command: int, session_id: int, reply_id: int, data: bytes = b"") -> bytes:
    """One inner packet (as UDP sends it), checksum filled in."""
    chk = checksum(_HEADER.pack(command, 0, session_id, reply_id) + data)
    return _HEADER.pack(command, chk, session_id, reply_id) + data


def tcp_frame(inner: bytes) -> bytes:
    """The inner packet in its TCP wrapper (magic, then the inner length)."""
    return _TCP_TOP.pack(TCP_MAGIC, len(inner)) + inner


def tcp_length(top: bytes) -> int | None:
    """The inner length a TCP wrapper's first eight bytes announce (None: no magic)."""
    magic, length = _TCP_TOP.unpack_from(top)
    return length if magic == TCP_MAGIC else None


def header(inner: bytes) -> Header:
    """The header of an inner packet (at least eight bytes)."""
    return Header(*_HEADER.unpack_from(inner))


def parse_sizes(data: bytes) -> Sizes:
    """The counts of a GET_FREE_SIZES reply's data (at least SIZES_MIN_BYTES; notes §2.5)."""
    f = _COUNTS.unpack_from(data)
    return Sizes(users=f[4], users_cap=f[15], records=f[8], records_cap=f[16],
                 fingers=f[6], fingers_cap=f[14])


def sizes_inconsistency(sizes: Sizes) -> str | None:
    """Why a device's counters cannot be true (negative, or above capacity), if so."""
    for name, count, cap in (("records", sizes.records, sizes.records_cap),
                             ("users", sizes.users, sizes.users_cap),
                             ("fingerprints", sizes.fingers, sizes.fingers_cap)):
        if count < 0 or cap < 0:
            return f"{name} {count} of {cap}"
        if cap > 0 and count > cap:
            return f"{name} {count} above capacity {cap}"
    return None


def bad_reply(what: str) -> DeviceFailure:
    """The failure of a device whose reply could not be trusted (status ``error``)."""
    return DeviceFailure(FailureKind.PROTOCOL, f"bad reply: {what}")


def sizes_reply(inner: bytes, sent_reply_id: int, session_id: int) -> Sizes:
    """The counts in a GET_FREE_SIZES reply packet, if it can be trusted.

    The reply must be a ZK reply at all (a known reply code), answer this
    request (the reply id sent, this session's id), be an ACK_OK, be whole
    (at least 80 data bytes: pyzk keeps the previous counts when it is not)
    and make sense (no negative count, none above its capacity). Anything
    else raises the DeviceFailure that says which.
    """
    if len(inner) < _HEADER.size:
        raise bad_reply("truncated")
    top = header(inner)
    if top.command not in REPLY_CODES:
        raise bad_reply(f"not a ZK reply (code {top.command})")
    if top.reply_id != sent_reply_id or top.session_id != session_id:
        raise bad_reply("stale (the answer to another request)")
    if top.command != CMD_ACK_OK:
        raise DeviceFailure(FailureKind.PROTOCOL,
                            f"device refused a command (can't read sizes, code {top.command})")
    if len(inner) - _HEADER.size < SIZES_MIN_BYTES:
        raise bad_reply("truncated")
    sizes = parse_sizes(inner[_HEADER.size:])
    problem = sizes_inconsistency(sizes)
    if problem is not None:
        raise bad_reply(f"inconsistent sizes ({problem})")
    return sizes
