"""``fleettui demo``: an emulated fleet in the background, the control room on top of it.

The emulator runs in its own thread and event loop (it is a device, nothing
more); the engine is embedded in the app's loop and polls it over real
sockets, exactly as it would poll real terminals. A fifth of the fleet are
push terminals, dialing the embedded push listener on a free loopback port.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

from fleettui.config import load_config
from fleettui.emulator.fleetgen import config_text
from fleettui.emulator.launch import build_fleet, make_sick
from fleettui.emulator.runner import EmulatorThread
from fleettui.tui.run import log_to
from fleettui.tui.terminal import StopSignals

#: the demo's offline device: its link returns after this long, so that a restart queued
#: from the palette meanwhile runs when it answers again (commands wait for a device)
DEMO_OUTAGE_S = 180.0
#: one device in this many is a push terminal (it dials in)
PUSH_SHARE = 5
#: the demo confirms an outage sooner than the default 5 minutes, so that the offline
#: device's alert is there to see (and acknowledge) before its link returns
DEMO_ALERTS = "\n[alerts]\nconfirm_after_s = 60\n"


def _free_loopback_port() -> int:
    """A port free on 127.0.0.1 now, for the demo's push listener."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_demo(
    *,
    devices: int = 62,
    sites: int = 14,
    seed: int = 1,
    base_address: str = "127.0.1.1",
    port: int = 4370,
    punch_rate: float = 2.0,
    mouse: bool = True,
    http: tuple[str, int] | None = None,
    osc_notify: str | None = None,
) -> int:
    """Start the fleet, make four devices sick, open the TUI; tidy everything on quit."""
    from fleettui.tui.app import FleetApp

    listen = f"127.0.0.1:{_free_loopback_port()}"
    try:
        spec, fleet = build_fleet(sites=sites, devices=devices, seed=seed,
                                  base_address=base_address, port=port, punch_rate=punch_rate,
                                  push=devices // PUSH_SHARE, push_server=f"http://{listen}",
                                  push_delay=2.0)
    except ValueError as e:
        print(f"fleettui demo: {e}", file=sys.stderr)
        return 2
    emu = EmulatorThread(fleet, live_punches=True)
    try:
        emu.start()
    except OSError as e:
        print(f"fleettui demo: cannot open the device sockets: {e}\n"
              "  Is an emulator already running on these addresses? "
              "Try --base-address or --port.", file=sys.stderr)
        return 1
    # a hang-up while the fleet starts must not leave the comm keys' temporary folder behind
    with StopSignals() as signals:
        try:
            sick = emu.run(make_sick(fleet, outage_s=DEMO_OUTAGE_S))
            with tempfile.TemporaryDirectory(prefix="fleettui-demo-") as tmp:
                work = Path(tmp)
                cfg = work / "fleet.toml"
                # written after the fleet started, so real ports are in it; it holds comm keys
                fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(config_text(spec, listen if devices >= PUSH_SHARE else None))
                    f.write(DEMO_ALERTS)
                config = load_config(cfg)
                log_to(work / "fleettui.log")
                banner = (f"demo: {len(sick)} sick devices, "
                          f"{devices // PUSH_SHARE} push terminals")
                if signals.received is None:
                    FleetApp(config=config, db_path=work / "fleettui.db", banner=banner,
                             short_banner="demo", http=http, osc_notify=osc_notify,
                             stop_signals=signals).run(mouse=mouse)
                else:
                    signals.before_start("the demo")
        finally:
            emu.stop()
    for device_id, what in sick.items():
        print(f"demo: {device_id} was {what}")
    return 0

