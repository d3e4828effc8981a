"""The issue's "done when", on the demo's own sick fleet: a newcomer finds the offline
device, sees why, restarts it from the palette, and watches it come back.

The fleet is the demo's (``build_fleet`` + ``make_sick``, served by the emulator in
its own thread, on the test's own loopback addresses); the offline device's link returns once the
restart is queued, as the demo's does after three minutes. The control room embeds the real
engine (fast polling) and is driven with keys only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

from fleettui.config import parse_config
from fleettui.domain import CommandState, DeviceStatus
from fleettui.emulator.fleetgen import config_text
from fleettui.emulator.launch import build_fleet, make_sick
from fleettui.emulator.runner import EmulatorThread
from fleettui.tui.app import FleetApp
from fleettui.tui.panel import DevicePanel
from tests.conftest import loopback
from tests.test_engine import FAST_POLL
from tests.test_tui import _palette_top, wait_for


def _shown(app: FleetApp, device_id: str) -> tuple[str, str, list[str]]:
    """What the panel shows of a device: status, its reason, and its commands' states."""
    detail = app.query_one("#panel", DevicePanel).detail
    if detail is None or detail.device.id != device_id:
        return ("", "", [])
    return (detail.device.status.value, detail.device.status_reason,
            [c.state.value for c in detail.commands])


async def test_find_the_offline_device_restart_it_and_watch_it_come_back(tmp_path: Path) -> None:
    spec, fleet = build_fleet(sites=3, devices=9, base_address=loopback(231, 1), port=0)
    for device in fleet.devices.values():  # a quick reboot: the story, not the wait
        device.profile = dataclasses.replace(device.profile, reboot_s=0.5)
    emu = EmulatorThread(fleet)
    emu.start()
    try:
        sick = emu.run(make_sick(fleet))  # its link returns when the test says (below)
        offline = next(d for d, what in sick.items() if what.startswith("offline"))
        poll = "[poll]\n" + "".join(f"{k} = {v}\n" for k, v in FAST_POLL.items())
        config = parse_config(poll + config_text(spec), tmp_path / "fleet.toml")
        app = FleetApp(config=config, db_path=tmp_path / "fleet.db", refresh_s=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            # 1. the header says one is offline; "problems only" leaves it (and the flapper)
            await wait_for(pilot, lambda: offline in app.rows
                           and app.rows[offline].device.status == DeviceStatus.OFFLINE)
            await wait_for(pilot, lambda: "1 offline" in str(app.query_one("#totals").render()))
            await pilot.press("p")
            tree = app.query_one("#tree")
            await wait_for(pilot, lambda: offline in tree.device_nodes)  # type: ignore[attr-defined]
            # 2. the worst problem is selected from the start (nothing touched yet): it is
            #    the offline one, and the panel says why
            await wait_for(pilot, lambda: app.selected == ("device", offline))
            await wait_for(pilot, lambda: _shown(app, offline)[:2] == ("offline", "no answer"))
            # 3. restart it from the palette: queued until it answers
            await pilot.press("ctrl+p")
            await pilot.press(*f"restart {offline}")
            await wait_for(pilot, lambda: _palette_top(app) == f"Restart {offline}")
            await pilot.press("enter")

            async def state() -> CommandState | None:
                cmds = await app.store.commands(device_id=offline)
                return cmds[0].state if cmds else None

            await wait_for(pilot, lambda: _shown(app, offline)[2] == ["queued"])
            assert await state() == CommandState.QUEUED  # the device does not answer yet
            # 4. the link returns (as the demo's does after 3 minutes), the restart runs,
            #    the device reboots and is back
            emu.run(fleet.set_faults(offline, {"offline": False}))
            deadline = asyncio.get_running_loop().time() + 30
            while await state() != CommandState.DONE:
                assert asyncio.get_running_loop().time() < deadline, await state()
                await pilot.pause(0.1)
            await wait_for(pilot, lambda: app.rows[offline].device.status == DeviceStatus.ONLINE,
                           timeout=30)
            await wait_for(pilot, lambda: _shown(app, offline)[::2] == ("online", ["done"]))
            # back online, it stays under the cursor in "problems only" (it was watched)
            await pilot.pause(0.5)
            assert app.selected == ("device", offline) and offline in tree.device_nodes  # type: ignore[attr-defined]
            assert _shown(app, offline)[0] == "online"
            kinds = [e.kind for e in await app.store.events_after(0, limit=5000)
                     if e.device_id == offline]
            assert "command.done" in kinds
            statuses = [k for k in kinds if k in ("device.online", "device.offline")]
            assert statuses[-1] == "device.online"
    finally:
        emu.stop()


def test_the_demos_offline_device_comes_back_after_its_outage() -> None:
    """``make_sick(outage_s=...)``: the offline device's link returns by itself."""
    _spec, fleet = build_fleet(sites=2, devices=6, base_address=loopback(232, 1), port=0)
    emu = EmulatorThread(fleet)
    emu.start()
    try:
        sick = emu.run(make_sick(fleet, outage_s=0.2))
        offline = next(d for d, what in sick.items() if what.startswith("offline"))
        assert sick[offline].endswith("then back")
        device = fleet.devices[offline]
        deadline = time.monotonic() + 30
        while not emu.call(device.reachable):
            assert time.monotonic() < deadline, "the link never came back"
            time.sleep(0.05)
    finally:
        emu.stop()
