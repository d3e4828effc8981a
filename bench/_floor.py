"""The raw-socket floor: the least a liveness check can cost over the same fleet.

A minimal client, one thread, plain blocking sockets: it opens a session on
every device over its transport, TCP or UDP (CMD_CONNECT, and CMD_AUTH where
the device has a comm key, with pyzk's key scrambling), then times rounds
of what the engine's idle check sends on an open session: one GET_FREE_SIZES
each, every reply read and parsed, device after device. The packets come
from fleettui's own wire module (``fleettui.devices.zk_wire``). No store, no
scheduler, no thread hop: what is left is the wire, the kernel and the
emulator.
"""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, NamedTuple

from zk.base import make_commkey

from fleettui.devices import zk_wire

_CMD_AUTH = 1102
_ACK_UNAUTH = 2005


class Floor(NamedTuple):
    """Timed rounds of one check per device."""

    rounds_s: list[float]
    #: this process's CPU seconds per check, over every round
    cpu_per_check_s: float


class _Session:
    def __init__(self, host: str, port: int, comm_key: int, transport: str) -> None:
        self.tcp = transport == "tcp"
        if self.tcp:
            self.sock = socket.create_connection((host, port), timeout=10)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.settimeout(10)
            self.sock.connect((host, port))
        self.session_id = 0
        self.reply_id = 0
        top = self.ask(zk_wire.CMD_CONNECT)
        self.session_id = top.session_id
        if top.command == _ACK_UNAUTH:
            key = make_commkey(comm_key, self.session_id)
            top = self.ask(_CMD_AUTH, key)
        if top.command != zk_wire.CMD_ACK_OK:
            raise RuntimeError(f"{host}:{port} refused the session ({top.command})")

    def ask(self, command: int, data: bytes = b"") -> zk_wire.Header:
        """One request, its whole reply read; the reply's header."""
        header, _ = self.round_trip(command, data)
        return header

    def round_trip(self, command: int, data: bytes = b"") -> tuple[zk_wire.Header, bytes]:
        self.reply_id = (self.reply_id + 1) % zk_wire.REPLY_ID_WRAP
        inner = zk_wire.packet(command, self.session_id, self.reply_id, data)
        if not self.tcp:
            self.sock.send(inner)
            reply = self.sock.recv(65536)
            return zk_wire.header(reply), reply[8:]
        self.sock.sendall(zk_wire.tcp_frame(inner))
        length = zk_wire.tcp_length(self._read(8))
        if length is None:
            raise RuntimeError("reply without the TCP magic")
        reply = self._read(length)
        return zk_wire.header(reply), reply[8:]

    def _read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise RuntimeError("connection closed")
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        with suppress(OSError, RuntimeError):
            self.ask(zk_wire.CMD_EXIT)
        self.sock.close()


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@contextmanager
def sessions(devices: list[dict[str, Any]]) -> Iterator[list[_Session]]:
    """A TCP session on every device of the emulator's config, closed after."""
    opened: list[_Session] = []
    try:
        for d in devices:
            opened.append(_Session(d["host"], int(d["port"]), int(d.get("comm_key", 0)),
                                   str(d.get("transport", "tcp"))))
        yield opened
    finally:
        for s in opened:
            s.close()


def measure(devices: list[dict[str, Any]], rounds: int = 10) -> Floor:
    """Open a session on every device, then time ``rounds`` rounds of one check each."""
    with sessions(devices) as opened:
        times: list[float] = []
        cpu0 = _cpu_s()
        for _ in range(rounds):
            t0 = time.perf_counter()
            for s in opened:
                header, data = s.round_trip(zk_wire.CMD_GET_FREE_SIZES)
                if header.command != zk_wire.CMD_ACK_OK or len(data) < zk_wire.SIZES_MIN_BYTES:
                    raise RuntimeError(f"bad sizes reply ({header.command}, {len(data)} bytes)")
                zk_wire.parse_sizes(data)
            times.append(time.perf_counter() - t0)
        cpu = (_cpu_s() - cpu0) / (rounds * len(opened))
    return Floor(times, cpu)
