"""What the engine needs from a device, whatever the transport: a narrow async interface.

The ZK binary protocol through pyzk (``zk.py``) is the first implementation;
a push-mode (ADMS) device can be a second one later without the engine
changing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from fleettui.domain import FailureKind, RawPunch


class DeviceFailure(Exception):
    """A device operation failed; ``kind`` says why, ``str()`` says it for a person."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How to reach one device. ``comm_key`` is a secret: never logged or shown."""

    device_id: str
    host: str
    port: int
    transport: str  # "tcp" or "udp"
    serial: str
    comm_key: int = field(default=0, repr=False)


@dataclass(frozen=True, slots=True)
class Identity:
    """What a device says it is, read on connect."""

    serial: str
    firmware: str
    platform: str
    model: str
    mac: str


@dataclass(frozen=True, slots=True)
class Sizes:
    """A device's counters and capacities (read_sizes)."""

    users: int
    users_cap: int
    records: int
    records_cap: int
    fingers: int = 0
    fingers_cap: int = 0


@dataclass(slots=True)
class AttendanceDump:
    """Every record a device holds, in the device's order, with a fingerprint per record.

    ``fingerprints[i]`` identifies record ``i`` as stored on the device, so the
    engine can tell whether the first N records are the ones it stored last
    time (and skip them) or the log changed under it (and read all again).
    """

    records: list[RawPunch]
    fingerprints: list[str]
    #: records that could not be decoded (impossible dates): reported, not stored
    bad_records: int = 0
    record_size: int = 40


@dataclass(frozen=True, slots=True)
class DeviceUser:
    """A user enrolled on a device. ``password`` is a secret: never logged or shown."""

    uid: int
    user_id: str
    name: str = ""
    card: int = 0
    privilege: int = 0
    password: str = field(default="", repr=False)


LiveCallback = Callable[[RawPunch], None]


class SessionLedger(Protocol):
    """Where a driver writes down the UDP sessions it opens on one device, and which it
    closed. A UDP session ends only with CMD_EXIT: a poller killed without saying it holds
    one of the terminal's few session slots until the terminal times it out, so the next
    poller says those goodbyes first. Called from the driver's threads (blocking)."""

    def opened(self, session_id: int) -> None:
        """A session was opened (written down before it is used)."""
        ...

    def closed(self, session_ids: Sequence[int]) -> None:
        """Sessions that were said goodbye to."""
        ...

    def leftover(self) -> list[int]:
        """Sessions an earlier run opened and never closed."""
        ...


class Driver(Protocol):
    """One device's connection, as the engine uses it. One operation at a time."""

    endpoint: Endpoint
    identity: Identity | None
    #: bytes per user record: 72, or 28 on black-and-white terminals (short names)
    user_record_size: int

    async def check(self) -> Sizes:
        """Connect if needed (reading the identity), then read the counters."""
        ...

    async def read_time(self) -> datetime:
        """The device clock: naive local time."""
        ...

    async def read_attendance(self) -> AttendanceDump:
        """Every attendance record the device holds."""
        ...

    async def close(self) -> None:
        """Drop the connection (polite goodbye if possible)."""
        ...

    async def restart(self) -> None:
        """Reboot the device (the session ends with it)."""
        ...

    async def set_time(self, local: datetime) -> None:
        """Set the device clock (naive local time)."""
        ...

    async def set_enabled(self, enabled: bool) -> None:
        """Let the device take punches, or stop it."""
        ...

    async def unlock(self, seconds: int) -> None:
        """Open the door relay."""
        ...

    async def users(self) -> list[DeviceUser]:
        """Every enrolled user."""
        ...

    async def put_user(self, user: DeviceUser) -> None:
        """Create or update a user (by uid)."""
        ...

    async def delete_user(self, uid: int) -> None:
        """Delete a user (and their templates)."""
        ...

    async def clear_attendance(self) -> None:
        """Delete every attendance record on the device."""
        ...

    async def set_option(self, key: str, value: str) -> None:
        """Write one device option and make the device reload its options."""
        ...

    def start_live(self, on_punch: LiveCallback, on_error: Callable[[str], None],
                   on_registered: Callable[[], None] | None = None) -> None:
        """Start delivering real-time punches (until ``stop_live``); ``on_registered`` is
        called whenever a live session (re)registers, before the punches it delivers."""
        ...

    def stop_live(self) -> None:
        """Stop real-time punches."""
        ...
