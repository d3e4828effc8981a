"""Alerting at fleet scale, on an injected clock: cost and noise.

A 500-device fleet (25 sites) lives through simulated hours in a real
SQLite store: 5% of the devices sit on a flapping 3G link (up 40 s, down
20 s, as the poller would see it), the rest are stable, and every status
change is written as the poller writes it. The alert engine samples every
15 s and evaluates every 10 s, as it does in production.

Printed: the alert engine's time per 10,000 status events (median and p99 of
its calls), and notifications per flapping device per hour.

    python bench/alerts.py [--devices 500] [--flapping 0.05] [--hours 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _emulator import machine, percentile

from fleettui.config import AlertSettings
from fleettui.domain import DeviceState, DeviceStatus, Site, StatusChange
from fleettui.engine.alerts import AlertEngine, Notification
from fleettui.store import open_store

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


async def run(devices: int, share: float, hours: float) -> None:
    """Simulate and print the table."""
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(Path(tmp) / "fleet.db")
        sites = [Site(f"site-{i:02d}", f"Site {i}", "UTC") for i in range(25)]
        ids = [f"dev_{i:04d}" for i in range(devices)]
        await store.sync_fleet(sites, [
            DeviceState(d, f"SER{i:06d}", sites[i % 25].id, f"127.90.{i // 250}.{i % 250 + 1}",
                        4370, "tcp")
            for i, d in enumerate(ids)
        ])
        for d in ids:
            await store.record_status(StatusChange(d, DeviceStatus.ONLINE, "", T0))
        flappers = ids[:: max(1, round(1 / share))][: round(devices * share)]
        heard: list[Notification] = []
        alerts = AlertEngine(store, AlertSettings(), sinks=[heard.append])
        await alerts.load(T0)
        calls: list[float] = []
        events = 0
        up = dict.fromkeys(flappers, True)
        step = 5
        for tick in range(int(hours * 3600 / step)):
            now = T0 + timedelta(seconds=(tick + 1) * step)
            second = (tick + 1) * step % 60
            # the poller sees the 20 s outage of each minute after its two failed checks
            want_up = not 45 <= second < 60
            for i, d in enumerate(flappers):
                phase_up = want_up if i % 2 else not want_up  # half of them out of phase
                if phase_up != up[d]:
                    up[d] = phase_up
                    status = DeviceStatus.ONLINE if phase_up else DeviceStatus.OFFLINE
                    await store.record_status(StatusChange(d, status, "" if phase_up
                                                           else "no answer", now))
                    events += 1
            t0 = time.perf_counter()
            if (tick + 1) * step % 15 == 0:
                await alerts.sample(now)
            if (tick + 1) * step % 10 == 0:
                await alerts.evaluate(now)
            calls.append(time.perf_counter() - t0)
        opened = [a for a in await store.alerts(open_only=False) if a.target in set(flappers)]
        await store.close()
    per_10k = sum(calls) * 10_000 / max(events, 1)
    flap_notes = [n for n in heard if n.alert and n.alert.target in set(flappers)]
    summaries = [n for n in heard if n.change == "summary"]
    print(f"alerting, {devices} devices, {len(flappers)} flapping on a 3G link, "
          f"{hours:g} simulated hour(s) ({machine()})")
    print(f"status events                    {events}")
    print(f"alert engine time per 10k events {per_10k:.2f} s "
          f"(calls: median {statistics.median(calls) * 1000:.1f} ms, "
          f"p99 {percentile(calls, 99) * 1000:.1f} ms)")
    produced = sum(a.notifications for a in opened)
    print(f"alert engine CPU                 {sum(calls):.1f} s for {hours:g} h "
          f"({sum(calls) / (hours * 36):.2f}% of a core)")
    print(f"notifications for flappers       {produced} produced "
          f"({produced / len(flappers) / hours:.2f} per flapping device per hour; goal < 1)")
    print(f"delivered by the log sink        {len(heard)} ({len(flap_notes)} about flappers, "
          f"{len(summaries)} storm summaries; 10 per minute per sink)")


def main() -> None:
    """Parse arguments and run."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--flapping", type=float, default=0.05)
    ap.add_argument("--hours", type=float, default=2.0)
    args = ap.parse_args()
    asyncio.run(run(args.devices, args.flapping, args.hours))


if __name__ == "__main__":
    main()
