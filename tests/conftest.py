"""Shared fixtures: emulated devices on real loopback sockets, driven by real pyzk.

Each test gets its own loopback addresses and ephemeral ports, so tests never
collide with each other or with a fleet running on 4370. Each test process has a
/16 of its own: 127.20.0.0/16 for a plain run, 127.(100+N).0.0/16 for
pytest-xdist's worker gwN; within it, next_host() hands out x < 200 and
loopback() names fixed addresses at x >= 200.
"""

from __future__ import annotations

import itertools
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from zk import ZK

from fleettui.emulator.device import DeviceConfig, Profile, User
from fleettui.emulator.fleet import Fleet
from fleettui.emulator.runner import EmulatorThread
from tests.pg_server import NoPostgres, PostgresServer


def _own_octet() -> int:
    """The second octet of this test process's loopback range."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return 100 + int(worker[2:]) if worker.startswith("gw") else 20


#: this process's loopback range is 127.NET.0.0/16
NET = _own_octet()
_hosts = itertools.count(1)
_hosts_lock = threading.Lock()


def loopback(third: int, fourth: int) -> str:
    """A fixed address in this process's own range, for a test that names one (third
    octet 200-255: next_host() never gets there)."""
    if not (200 <= third <= 255 and 1 <= fourth <= 254):
        raise ValueError(f"127.{NET}.{third}.{fourth}: fixed addresses are 127.{NET}.200-255.x")
    return f"127.{NET}.{third}.{fourth}"


def next_host() -> str:
    """A loopback address no other test in this run uses (in any worker)."""
    with _hosts_lock:
        n = next(_hosts)
    if n >= 200 * 250:
        raise RuntimeError("next_host: this process's 50,000 addresses are used up")
    return f"127.{NET}.{n // 250}.{n % 250 + 1}"


def free_port(host: str) -> int:
    """A TCP port nobody listens on right now at ``host`` (one of this process's own
    addresses, so no other worker's ephemeral port can take it before it is used)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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


# --- PostgreSQL: one real server per test process, a new database per test ----------------

_databases = itertools.count(1)


def _admin(server: PostgresServer, *statements: str) -> None:
    """Run statements on the server's maintenance database (in a thread of its own, so a
    sync fixture can use it whatever event loop the test runs)."""
    import asyncio
    import concurrent.futures

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(server.url())
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result(timeout=60)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """This test process's PostgreSQL server, on an address of its own (skipped where
    Debian's server binaries are missing, unless FLEETTUI_TEST_POSTGRES=require)."""
    try:
        server = PostgresServer(loopback(254, 1), 0)
    except NoPostgres as e:
        if os.environ.get("FLEETTUI_TEST_POSTGRES") == "require":
            pytest.fail(str(e))
        pytest.skip(str(e))
    server.port = free_port(server.host)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """A new, empty database on this process's server, dropped after the test."""
    name = f"t{os.getpid()}_{next(_databases)}"
    _admin(pg_server, f"CREATE DATABASE {name}")
    yield pg_server.url(name)
    _admin(pg_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's store lives, once per backend: a new SQLite file, then a new
    PostgreSQL database (what ``open_store`` and ``--db`` take)."""
    if request.param == "sqlite":
        return str(tmp_path / "sub" / "fleet.db")
    url: str = request.getfixturevalue("pg_url")
    return url
