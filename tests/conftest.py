"""Shared fixtures: emulated devices on real loopback sockets, driven by real pyzk.

Each test gets its own loopback addresses (127.20.x.y) and ephemeral ports, so
tests never collide with each other or with a fleet running on 4370.
"""

from __future__ import annotations

import itertools
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from zk import ZK

from fleettui.emulator.device import DeviceConfig, Profile, User
from fleettui.emulator.fleet import Fleet
from fleettui.emulator.runner import EmulatorThread

_hosts = itertools.count(1)
_hosts_lock = threading.Lock()


def next_host() -> str:
    """A loopback address no other test in this run uses."""
    with _hosts_lock:
        n = next(_hosts)
    return f"127.20.{n // 250}.{n % 250 + 1}"


class FakeClock:
    """A monotonic clock the test moves by hand (thread-safe enough for floats)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


def sample_users(n: int = 20) -> list[User]:
    """``n`` enrolled users with numeric ids 1001..."""
    return [
        User(uid=i, user_id=str(1000 + i), name=f"Worker {i}", card=5000000 + i, group_id="1")
        for i in range(1, n + 1)
    ]


def device_config(
    device_id: str = "dev_test_01",
    *,
    comm_key: int = 0,
    profile: Profile | None = None,
    timezone: str = "Africa/Casablanca",
) -> DeviceConfig:
    """A device config on a fresh loopback address and a free port."""
    return DeviceConfig(
        id=device_id,
        serial=f"TST{zlib.crc32(device_id.encode()) % 10**9:09d}",
        host=next_host(),
        port=0,
        timezone=timezone,
        comm_key=comm_key,
        profile=profile or Profile(reboot_s=0.5),
    )


@dataclass
class Emulated:
    """A running emulator and how to reach its devices."""

    emu: EmulatorThread

    @property
    def fleet(self) -> Fleet:
        """The fleet being served."""
        return self.emu.fleet

    def zk(
        self, device_id: str, *, udp: bool = False, password: int | None = None,
        timeout: float = 5,
    ) -> ZK:
        """An unmodified pyzk client for a device (ping skipped: no ICMP here)."""
        dev = self.fleet.devices[device_id]
        return ZK(
            dev.config.host,
            port=dev.config.port,
            timeout=timeout,
            password=dev.config.comm_key if password is None else password,
            force_udp=udp,
            ommit_ping=True,
        )


@pytest.fixture
def emulate() -> Iterator[Callable[..., Emulated]]:
    """Start emulators for a test; every one started is stopped afterwards."""
    started: list[EmulatorThread] = []

    def start(
        configs: list[DeviceConfig], *, users: dict[str, list[User]] | None = None,
        control: bool = False, **fleet_kwargs: object,
    ) -> Emulated:
        fleet = Fleet(configs, users=users, **fleet_kwargs)  # type: ignore[arg-type]
        emu = EmulatorThread(fleet, control=("127.0.0.1", 0) if control else None)
        emu.start()
        started.append(emu)
        return Emulated(emu)

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def one_device(emulate: Callable[..., Emulated]) -> Emulated:
    """One F18-like device with 20 users and 30 punches."""
    cfg = device_config()
    em = emulate([cfg], users={cfg.id: sample_users()})
    em.emu.call(em.fleet.generate_punches, cfg.id, 30)
    return em
