"""Turn a generated fleet description into a running Fleet (used by ``fleettui emulate``)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from fleettui.emulator.device import User
from fleettui.emulator.fleet import Fleet
from fleettui.emulator.fleetgen import FleetSpec, generate_fleet, make_push
from fleettui.emulator.punchgen import RatePlanner, ShiftPlanner
from fleettui.emulator.push_device import PushSetup
from fleettui.emulator.push_wire import PROFILES

#: share of the record buffer filled on the "nearly full" sick device
NEARLY_FULL = 0.96


def users_for(spec: FleetSpec, device_id: str) -> list[User]:
    """The users enrolled on a device: every employee of its site."""
    return [
        User(
            uid=i,
            user_id=e.user_id,
            name=e.name,
            privilege=e.privilege,
            card=e.card,
            group_id="1",
        )
        for i, e in enumerate(spec.employees_for_device(device_id), start=1)
    ]


#: Delay and ErrorDelay of a push terminal before its first handshake (firmware's own)
PUSH_FIRST_DELAY_S = 30.0
#: the first calls of push terminals are spread over at most this many seconds
PUSH_JITTER_S = 10.0


def push_setups(spec: FleetSpec, server: str, first_delay_s: float | None = None
                ) -> dict[str, PushSetup]:
    """The PushSetup of every push terminal of ``spec`` (see fleetgen.make_push)."""
    delay = PUSH_FIRST_DELAY_S if first_delay_s is None else first_delay_s
    return {
        d.id: PushSetup(server=server, profile=PROFILES[d.push_profile or "push2"],
                        first_delay_s=delay, jitter_s=min(delay, PUSH_JITTER_S),
                        comm_key=d.config.comm_key)
        for d in spec.devices if d.transport == "push"
    }


def fleet_from_spec(
    spec: FleetSpec, *, seed: int = 1, punch_rate: float | None = None,
    push: dict[str, PushSetup] | None = None,
) -> Fleet:
    """A Fleet serving every device of ``spec`` with its employees enrolled.

    Live punches follow shift patterns (``punch_rate`` None), a steady rate per
    device per minute (``punch_rate`` > 0), or do not happen (``punch_rate`` 0).
    """
    planner: ShiftPlanner | RatePlanner | None
    if punch_rate is None:
        planner = ShiftPlanner(spec, seed=seed)
    elif punch_rate > 0:
        planner = RatePlanner(spec, punch_rate, seed=seed)
    else:
        planner = None
    return Fleet(
        [d.config for d in spec.devices],
        users={d.config.id: users_for(spec, d.config.id) for d in spec.devices},
        planner=planner,
        seed=seed,
        push=push,
    )


def build_fleet(
    *,
    sites: int,
    devices: int,
    seed: int = 1,
    base_address: str = "127.0.1.1",
    port: int = 4370,
    punch_rate: float | None = None,
    push: int = 0,
    push_server: str | None = None,
    push_delay: float | None = None,
) -> tuple[FleetSpec, Fleet]:
    """Generate a fleet description and the Fleet that serves it.

    ``push`` devices (picked from the seed, spread over sites) are push
    terminals dialing ``push_server`` instead of listening on their address.
    """
    spec = generate_fleet(sites, devices, seed=seed, base_address=base_address, port=port)
    setups: dict[str, PushSetup] = {}
    if push:
        if not push_server:
            raise ValueError("--push needs --push-server URL (the push listener to dial)")
        url = urlsplit(push_server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"--push-server: expected http://host:port, got {push_server!r}")
        make_push(spec, push, seed=seed)
        setups = push_setups(spec, push_server, push_delay)
    return spec, fleet_from_spec(spec, seed=seed, punch_rate=punch_rate, push=setups)


async def make_sick(fleet: Fleet, *, outage_s: float | None = None) -> dict[str, str]:
    """Make four devices sick the way real ones get; returns device id → what is wrong.

    Picked from the end of the fleet so the first devices stay healthy:
    one offline, one flapping on a bad link, one with a drifting clock, one
    with a nearly full record buffer. With ``outage_s`` the offline device's
    link comes back after that many seconds (a 3G link that drops and returns:
    what the demo shows, so that a restart queued meanwhile runs); without,
    it stays offline. Runs on the fleet's event loop.
    """
    # polled devices where there are enough: a push terminal takes its clock from the
    # server's every answer, so a drifting one would not show
    ids = list(fleet.servers) if len(fleet.servers) >= 5 else list(fleet.devices)
    if len(ids) < 5:
        return {}
    offline, flapping, drifting, full = ids[-2], ids[-5], ids[len(ids) // 2], ids[len(ids) // 3]
    await fleet.set_faults(offline, {"offline": True})
    if outage_s is not None:
        loop = asyncio.get_running_loop()
        ending: set[asyncio.Task[object]] = set()

        def link_returns() -> None:
            task = loop.create_task(fleet.set_faults(offline, {"offline": False}))
            ending.add(task)  # held until done (the loop keeps only weak references)
            task.add_done_callback(ending.discard)

        loop.call_later(outage_s, link_returns)
    await fleet.set_faults(flapping, {"flap": {"up_s": 40, "down_s": 20}, "latency_ms": 250})
    await fleet.set_faults(drifting, {"clock_offset_s": 437, "clock_drift_s_per_day": 90})
    added = fleet.fill_buffer(full, NEARLY_FULL)
    down = ("offline (no answer at all)" if outage_s is None
            else f"offline: its link is down for {outage_s:.0f} s, then back")
    return {
        offline: down,
        flapping: "flapping: up 40 s, down 20 s, 250 ms latency",
        drifting: "clock 437 s fast and drifting 90 s/day",
        full: f"record buffer {NEARLY_FULL:.0%} full ({added} old records added)",
    }
