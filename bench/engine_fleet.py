"""The engine against emulated fleets of 500 to 5,000 devices, beside the wire's floor.

For each size, ``fleettui emulate`` runs the fleet in its own process and the
engine polls it from this one, into a fresh SQLite file. Measured:

- first sweep (connect, identity, clock, sync of each device's history) and
  idle sweeps (one liveness check per device on its open session): median, p99;
- offline-detection latency with the default schedule: from the control API
  cutting a device to its status change in the store, over several devices;
- the engine process's CPU use and RSS while polling on schedule;
- bytes exchanged per device on an idle poll (from the emulator's counters);
- the raw-socket floor over the same fleet in the same run (``_floor.py``: one
  thread, blocking sockets, the same GET_FREE_SIZES on an open session), and
  the engine's cost per check as a multiple of it: wall time of a sweep per
  device, and CPU time per check (the engine's over the scheduled window);
- how punctual the schedule was: checks started a whole interval late
  (skipped) and APScheduler's own "skipped" warnings, and the p99 of how late
  a check started.

And once: the first sync of 100,000 records from one device.

    python bench/engine_fleet.py [--sizes 500,1000,2000,5000] [--cuts 20] [--window 20]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import statistics
import tempfile
import time
from pathlib import Path

import _floor
import httpx
from _emulator import emulator, machine, percentile

from fleettui.config import load_config
from fleettui.domain import DeviceStatus
from fleettui.engine.engine import Engine
from fleettui.store import Store, open_store


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _Skips(logging.Handler):
    """Counts APScheduler's warnings that a job run was skipped or missed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "skipped" in text or "missed" in text:
            self.count += 1


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def bench_size(n: int, cuts: int, base: str, window: float) -> dict[str, str]:
    """Measure one fleet size; returns the table row."""
    with emulator(
        "--sites", str(max(1, n // 20)), "--devices", str(n), "--punch-rate", "0",
        "--history-days", "1", "--base-address", base, "--port", "0",
    ) as fleet, tempfile.TemporaryDirectory() as tmp:
        # the emulator wrote its config; add nothing: default [poll] settings
        config_path = Path(tmp) / "fleet.toml"
        config_path.write_text(_config_text(fleet.config))
        config = load_config(config_path)
        floor = _floor.measure(fleet.config["devices"])
        store = await open_store(Path(tmp) / "fleet.db")
        engine = Engine(config, store)
        await engine.prepare()
        t0 = time.perf_counter()
        await engine.sweep()
        first = time.perf_counter() - t0
        online = sum(1 for d in await store.devices() if d.status is DeviceStatus.ONLINE)
        idle: list[float] = []
        for _ in range(10):
            t0 = time.perf_counter()
            await engine.sweep()
            idle.append(time.perf_counter() - t0)
        stats0 = httpx.get(f"{fleet.control_url}/devices", timeout=60).json()["devices"]
        await engine.sweep()
        stats1 = httpx.get(f"{fleet.control_url}/devices", timeout=60).json()["devices"]
        per_poll = statistics.median(
            b["stats"]["bytes_in"] + b["stats"]["bytes_out"]
            - a["stats"]["bytes_in"] - a["stats"]["bytes_out"]
            for a, b in zip(stats0, stats1, strict=True)
        )
        # on schedule: CPU and RSS over the window, then outage detection
        skips = _Skips()
        logging.getLogger("apscheduler").addHandler(skips)
        await engine.start()
        await asyncio.sleep(5)  # past the first scheduled round
        stats = getattr(engine, "check_stats", None)  # (None: code before the timetable)
        started0 = stats.started if stats is not None else 0
        cpu0, wall0, rss0 = _cpu_s(), time.perf_counter(), _rss_mb()
        await asyncio.sleep(window)
        wall = time.perf_counter() - wall0
        cpu_s = _cpu_s() - cpu0
        cpu = cpu_s / wall
        rss1 = _rss_mb()
        if stats is not None:
            checks = stats.started - started0
        else:  # one check per device every interval plus half the jitter, on average
            checks = round(n * wall / (config.poll.check_interval_s + config.poll.jitter_s / 2))
        lag = sorted(stats.lag_s) if stats is not None else []
        ids = [d["id"] for d in fleet.config["devices"]][:: max(1, n // cuts)][:cuts]
        latencies = await _detect(fleet.control_url, store, ids)
        skipped = (f"{stats.skipped}/" if stats is not None else "-/") + f"{skips.count}"
        await engine.stop()
        await store.close()
        logging.getLogger("apscheduler").removeHandler(skips)
    floor_sweep = statistics.median(floor.rounds_s)
    engine_cpu_check = cpu_s / max(1, checks)
    return {
        "devices": str(n),
        "online": f"{online}/{n}",
        "first sweep": f"{first:.2f} s",
        "idle sweep p50/p99": f"{statistics.median(idle) * 1000:.0f}/"
                              f"{percentile(idle, 99) * 1000:.0f} ms",
        "offline detected p50/p99": f"{statistics.median(latencies):.1f}/"
                                    f"{percentile(latencies, 99):.1f} s",
        "floor sweep p50": f"{floor_sweep * 1000:.0f} ms",
        "per check vs floor (wall)": f"{statistics.median(idle) / floor_sweep:.1f}×",
        "CPU per check engine/floor": f"{engine_cpu_check * 1e6:.0f}/"
                                      f"{floor.cpu_per_check_s * 1e6:.0f} µs "
                                      f"({engine_cpu_check / floor.cpu_per_check_s:.1f}×)",
        "engine CPU": f"{cpu:.0%}",
        f"RSS over {window:.0f} s": f"{rss0:.0f}→{rss1:.0f} MB",
        "bytes/idle poll": f"{per_poll:.0f}",
        "skipped (late/APS)": skipped,
        "check lag p99": f"{percentile(lag, 99) * 1000:.0f} ms" if lag else "-",
    }


async def _detect(url: str, store: Store, ids: list[str]) -> list[float]:
    """Cut each device through the control API; time until the store says offline."""
    cut_at: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for device_id in ids:
            await client.put(f"/devices/{device_id}/faults", json={"offline": True})
            cut_at[device_id] = time.perf_counter()
        found: dict[str, float] = {}
        deadline = time.perf_counter() + 120
        while len(found) < len(ids) and time.perf_counter() < deadline:
            for d in await store.devices():
                if d.id in cut_at and d.id not in found and d.status is DeviceStatus.OFFLINE:
                    found[d.id] = time.perf_counter() - cut_at[d.id]
            await asyncio.sleep(0.05)
        for device_id in ids:
            await client.delete(f"/devices/{device_id}/faults")
    if len(found) < len(ids):
        raise SystemExit(f"only {len(found)} of {len(ids)} outages detected within 120 s")
    return list(found.values())


def _config_text(config: dict) -> str:  # type: ignore[type-arg]
    out = []
    for s in config["sites"]:
        out += ["[[sites]]", *(f"{k} = {_toml(v)}" for k, v in s.items()), ""]
    for d in config["devices"]:
        out += ["[[devices]]", *(f"{k} = {_toml(v)}" for k, v in d.items()), ""]
    return "\n".join(out)


def _toml(v: object) -> str:
    import json

    return json.dumps(v)


async def first_sync_100k() -> tuple[float, float]:
    """Time the engine's first sync of 100,000 records (median and p99 of 3 runs)."""
    times: list[float] = []
    with emulator(
        "--sites", "1", "--devices", "1", "--punch-rate", "0", "--history-days", "0",
        "--base-address", "127.60.0.1", "--port", "0",
    ) as fleet:
        dev = fleet.config["devices"][0]
        httpx.post(f"{fleet.control_url}/devices/{dev['id']}/punches",
                   json={"count": 100_000}, timeout=120).raise_for_status()
        for _ in range(3):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "fleet.toml"
                path.write_text(_config_text(fleet.config))
                store = await open_store(Path(tmp) / "fleet.db")
                engine = Engine(load_config(path), store)
                await engine.prepare()
                t0 = time.perf_counter()
                await engine.sweep()
                times.append(time.perf_counter() - t0)
                assert await store.punch_count() == 100_000
                await engine.stop()
                await store.close()
    return statistics.median(times), percentile(times, 99)


def main() -> None:
    """Run every size and print one table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="500,1000,2000,5000")
    ap.add_argument("--cuts", type=int, default=20, help="outages timed per size")
    ap.add_argument("--window", type=float, default=20.0,
                    help="seconds of scheduled polling over which CPU and RSS are measured")
    args = ap.parse_args()
    rows = []
    for i, n in enumerate(int(x) for x in args.sizes.split(",")):
        rows.append(asyncio.run(bench_size(n, args.cuts, f"127.{70 + i}.0.1", args.window)))
    sync_med, sync_p99 = asyncio.run(first_sync_100k())
    print(f"engine against emulated fleets ({machine()}; emulator in its own process, "
          f"default [poll] settings: check every 4 s, timeout 2 s, offline after 2 failures)")
    cols = list(rows[0])
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(r[c].ljust(w) for c, w in zip(cols, widths, strict=True)))
    print(f"first sync of 100,000 records: median {sync_med:.2f} s, p99 {sync_p99:.2f} s "
          f"(3 runs, connect + clock + download + parse + store)")


if __name__ == "__main__":
    main()
