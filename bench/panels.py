"""The control room's panel reads, every second, on a store holding a month of punches.

A store in a temp directory gets 62 devices on 14 sites, 40 status changes
per device over 30 days and 300,000 punches spread over those 30 days (about
7,000 in the current day). Then it times what the TUI does once a second for
the selected device or site (``PanelReader.device`` / ``.site``): cold (a new
reader, so the day's punches are counted in SQL) and warm (the reader's
cache, as in the every-second refresh). Prints median and p99.

    python bench/panels.py [--punches 300000] [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _emulator import machine, median, percentile, table

from fleettui.domain import DeviceState, DeviceStatus, Punch, Site, StatusChange, TzFlag
from fleettui.store import Store, open_store
from fleettui.tui.model import DeviceRow
from fleettui.tui.panel_data import PanelReader

NOW = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)


async def fill(store: Store, punches: int) -> tuple[Site, list[DeviceRow]]:
    """The fleet, its month of status changes and punches; returns one site and its rows."""
    sites = [Site(f"s{i:02}", f"Site {i}", "Europe/Paris") for i in range(14)]
    devices = [DeviceState(f"d{i:02}", f"X{i:05}", f"s{i % 14:02}", "127.0.0.1", 4370 + i, "tcp")
               for i in range(62)]
    await store.sync_fleet(sites, devices)
    for d in devices:
        for k in range(40):
            status = DeviceStatus.ONLINE if k % 2 == 0 else DeviceStatus.OFFLINE
            await store.record_status(
                StatusChange(d.id, status, "", NOW - timedelta(hours=720 - k * 18)))
    start = NOW - timedelta(days=30)
    step = (NOW - start) / punches
    per_device: dict[str, list[Punch]] = {d.id: [] for d in devices}
    for i in range(punches):
        at = start + step * i
        device = devices[i % len(devices)].id
        per_device[device].append(Punch(device, str(i % 5000), at.replace(tzinfo=None), "UTC",
                                        at, TzFlag.OK, 0, 1, "sync", at))
    for device, rows in per_device.items():
        await store.insert_punches(device, rows)
    site = sites[0]
    return site, [DeviceRow(d) for d in await store.devices(site.id)]


async def timed(rounds: int, call: Callable[[datetime], Awaitable[object]]) -> list[float]:
    """Seconds per call, one call per simulated second."""
    out = []
    for i in range(rounds):
        t0 = time.perf_counter()
        await call(NOW + timedelta(seconds=i % 20))
        out.append(time.perf_counter() - t0)
    return out


async def run(punches: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(Path(tmp) / "bench.db")
        try:
            site, rows = await fill(store, punches)
            device = rows[0].device
            warm = PanelReader(store)
            cases: list[tuple[str, Callable[[datetime], Awaitable[object]]]] = [
                ("device panel, cold (counts the day)", lambda t: PanelReader(store).device(
                    device, site, rows[0], t, slots=96)),
                ("device panel, warm (each second)", lambda t: warm.device(
                    device, site, rows[0], t, slots=96)),
                ("site panel, cold", lambda t: PanelReader(store).site(site, rows, t, slots=96)),
                ("site panel, warm (each second)", lambda t: warm.site(site, rows, t, slots=96)),
            ]
            lines = []
            for name, call in cases:
                xs = await timed(rounds, call)
                lines.append((name, f"median {median(xs) * 1000:6.2f} ms   "
                                    f"p99 {percentile(xs, 99) * 1000:6.2f} ms"))
            today = (await warm.device(device, site, rows[0], NOW, slots=96)).punches_today
            print(f"{punches:,} punches over 30 days, 62 devices; {rounds} rounds; "
                  f"the device's punches today: {today}; {machine()}")
            print(table(lines))
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--punches", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(run(args.punches, args.rounds))


if __name__ == "__main__":
    main()
