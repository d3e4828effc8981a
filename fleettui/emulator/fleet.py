"""Many emulated terminals in one asyncio loop, with punches flowing into them.

A ``Fleet`` owns a Device and a DeviceServer per configured terminal, starts
and stops them together, feeds them punches from a planner (realistic shift
patterns, or a fixed rate for demos and benchmarks), and is what the control
API acts on. One process holds 500+ devices: each costs two sockets and a few
kilobytes plus its attendance log.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx

from fleettui.emulator.device import Clock, Device, DeviceConfig, User, WallClock, utc_now
from fleettui.emulator.faults import parse_fault_update
from fleettui.emulator.push_device import PushSetup, PushTerminal
from fleettui.emulator.server import DeviceServer

log = logging.getLogger(__name__)


class Planned(Protocol):
    """A punch a planner wants to happen (see punchgen.PlannedPunch)."""

    device_id: str
    user_id: str
    at: datetime
    state: int
    verify: int


class Planner(Protocol):
    """Anything that says which punches happen in a window of real (UTC) time."""

    def punches_between(self, start_utc: datetime, end_utc: datetime) -> list[Any]:
        """Every planned punch with its time in [start_utc, end_utc), sorted."""
        ...


class UnknownDevice(KeyError):
    """No device with that id in this fleet."""


class Fleet:
    """A set of emulated terminals served from one event loop."""

    def __init__(
        self,
        devices: Iterable[DeviceConfig],
        *,
        users: dict[str, list[User]] | None = None,
        planner: Planner | None = None,
        seed: int = 1,
        clock: Clock = time.monotonic,
        wall_clock: WallClock = utc_now,
        tick_s: float = 1.0,
        push: dict[str, PushSetup] | None = None,
        push_connections: int = 100,
    ) -> None:
        self.rng = random.Random(seed)
        self.clock = clock
        self.wall_clock = wall_clock
        self.planner = planner
        self.tick_s = tick_s
        self.devices: dict[str, Device] = {}
        self.servers: dict[str, DeviceServer] = {}
        #: push terminals (they dial out; no DeviceServer), by device id
        self.terminals: dict[str, PushTerminal] = {}
        self.push_connections = push_connections
        self._push_client: httpx.AsyncClient | None = None
        for cfg in devices:
            if cfg.id in self.devices:
                raise ValueError(f"duplicate device id {cfg.id!r}")
            dev = Device(cfg, clock=clock, wall_clock=wall_clock)
            for u in (users or {}).get(cfg.id, []):
                dev.put_user(_copy_user(u))
            self.devices[cfg.id] = dev
            rng = random.Random(self.rng.random())
            setup = (push or {}).get(cfg.id)
            if setup is not None:
                self.terminals[cfg.id] = PushTerminal(dev, setup, rng=rng)
            else:
                self.servers[cfg.id] = DeviceServer(dev, rng=rng)
        unknown = set(push or {}) - set(self.devices)
        if unknown:
            raise ValueError(f"push setup for unknown device(s): {', '.join(sorted(unknown))}")
        self._task: asyncio.Task[None] | None = None
        self._planned_until: datetime | None = None
        self.punches_generated = 0

    # --- lifecycle ------------------------------------------------------

    async def start(self, *, live_punches: bool = True) -> None:
        """Open every device's sockets; start feeding planned punches."""
        servers = list(self.servers.values())
        try:
            for i in range(0, len(servers), 100):
                await asyncio.gather(*(s.start() for s in servers[i : i + 100]))
        except OSError:
            await self.stop()
            raise
        if self.terminals:
            # one client for every terminal: a keep-alive pool, not a socket per device
            limits = httpx.Limits(max_connections=self.push_connections,
                                  max_keepalive_connections=self.push_connections)
            self._push_client = httpx.AsyncClient(limits=limits, trust_env=False)
            for term in self.terminals.values():
                term.start(self._push_client)
        if live_punches and self.planner is not None:
            self._planned_until = self.wall_clock()
            self._task = asyncio.get_running_loop().create_task(self._punch_loop())

    async def stop(self) -> None:
        """Stop punches and close every device."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await asyncio.gather(*(t.stop() for t in self.terminals.values()))
        if self._push_client is not None:
            await self._push_client.aclose()
            self._push_client = None
        await asyncio.gather(*(s.stop() for s in self.servers.values()))

    # --- lookups --------------------------------------------------------

    def device(self, device_id: str) -> Device:
        """The device with this id, or UnknownDevice."""
        try:
            return self.devices[device_id]
        except KeyError:
            raise UnknownDevice(device_id) from None

    def server(self, device_id: str) -> DeviceServer:
        """The server of the device with this id, or UnknownDevice (push terminals have none)."""
        self.device(device_id)
        try:
            return self.servers[device_id]
        except KeyError:
            raise UnknownDevice(device_id) from None

    def terminal(self, device_id: str) -> PushTerminal:
        """The push terminal with this id, or UnknownDevice (pull devices are not)."""
        self.device(device_id)
        try:
            return self.terminals[device_id]
        except KeyError:
            raise UnknownDevice(device_id) from None

    async def _faults_changed(self, device_id: str) -> None:
        if device_id in self.terminals:
            self.terminals[device_id].wake()
        else:
            await self.servers[device_id].sync_listeners()

    # --- acting on devices ------------------------------------------------

    async def set_faults(self, device_id: str, body: Any) -> dict[str, Any]:
        """Validate and apply a fault update; returns the device's summary."""
        update = parse_fault_update(body)
        dev = self.device(device_id)
        dev.apply_faults(update)
        await self._faults_changed(device_id)
        return dev.summary()

    async def clear_faults(self, device_id: str) -> dict[str, Any]:
        """Remove every fault of a device."""
        dev = self.device(device_id)
        dev.clear_faults()
        await self._faults_changed(device_id)
        return dev.summary()

    def generate_punches(self, device_id: str, count: int) -> tuple[int, int]:
        """Make ``count`` enrolled users punch now-ish; returns (stored, rejected).

        Times run back from the device's clock a few seconds apart so that the
        records are in chronological order and end at "now". A batch may reach
        back over records already in the log; it never repeats one (the same
        user, second, state and verify mode is the same punch to any client, and
        a real terminal does not stamp a person's punch twice in one second):
        where that slot is taken, another user punches, or the other state.
        """
        dev = self.device(device_id)
        users = [u.user_id for u in dev.users.values()] or ["1"]
        now = dev.local_time()
        earliest = now - timedelta(seconds=(count - 1) * 3)
        taken = {(p.user_id, p.at, p.state, p.verify)
                 for p in dev.log.records() if p.at >= earliest}
        stored = rejected = 0
        for i in range(count):
            at = now - timedelta(seconds=(count - 1 - i) * 3)
            user, state = self.rng.choice(users), i % 2
            if (user, at, state, 1) in taken:
                free = [(u, s) for s in (state, 1 - state) for u in users
                        if (u, at, s, 1) not in taken]
                if not free:
                    rejected += 1
                    continue
                user, state = free[0]
            p = dev.punch(user, at, state=state, verify=1)
            if p is None:
                rejected += 1
                continue
            stored += 1
            taken.add((p.user_id, p.at, p.state, p.verify))
        return stored, rejected

    def prefill(self, planner: Planner, since: datetime, until: datetime | None = None) -> int:
        """Load ``planner``'s punches between ``since`` and ``until`` (UTC) as history.

        The device stamps each with its own clock (offset included), as a real
        terminal would have. Events are not pushed: nobody was listening then.
        """
        count = 0
        for p in planner.punches_between(since, until or self.wall_clock()):
            dev = self.devices.get(p.device_id)
            if dev is None:
                continue
            at = p.at + timedelta(seconds=dev.clock_offset_s())
            if dev.punch(p.user_id, at, state=p.state, verify=p.verify, notify=False):
                count += 1
        return count

    def fill_buffer(self, device_id: str, ratio: float) -> int:
        """Fill a device's log with old records up to ``ratio`` of its capacity."""
        dev = self.device(device_id)
        target = int(dev.records_capacity * ratio)
        users = [u.user_id for u in dev.users.values()] or ["1"]
        start = dev.local_time() - timedelta(days=400)
        added = 0
        while len(dev.log) < target:
            at = start + timedelta(minutes=5 * added)
            dev.punch(users[added % len(users)], at, state=added % 2, notify=False)
            added += 1
        return added

    async def _punch_loop(self) -> None:
        assert self.planner is not None
        while True:
            await asyncio.sleep(self.tick_s)
            now = self.wall_clock()
            start = self._planned_until or now
            self._planned_until = now
            try:
                planned = self.planner.punches_between(start, now)
            except Exception:  # a planner bug must not stop the fleet
                log.exception("punch planner failed")
                continue
            for p in planned:
                dev = self.devices.get(p.device_id)
                if dev is not None and dev.punch(p.user_id, state=p.state, verify=p.verify):
                    self.punches_generated += 1

    # --- views ----------------------------------------------------------

    def summary(self) -> list[dict[str, Any]]:
        """Every device's summary, in configuration order."""
        return [d.summary() for d in self.devices.values()]


def _copy_user(u: User) -> User:
    return User(
        uid=u.uid,
        user_id=u.user_id,
        name=u.name,
        privilege=u.privilege,
        password=u.password,
        card=u.card,
        group_id=u.group_id,
        raw_extra=u.raw_extra,
    )

