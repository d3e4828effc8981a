"""Push devices at scale: 2,000 terminals heartbeating against one listener, on 2 cores.

``fleettui emulate --push N`` runs the terminals in its own process; this one
runs the engine and the push listener over a fresh SQLite file, as
``fleettui run --headless`` with ``[push] enabled`` does. Measured:

- handling latency of ``getrequest`` (the heartbeat) and of ATTLOG uploads of
  100 lines: from the request reaching the listener to its answer being ready
  (a middleware around every route), p50 and p99;
- the engine process's CPU while the fleet heartbeats (share of one core);
- offline detection for push devices: from the control API taking a terminal
  offline to its status change in the store (goal: within offline_after_s + 5 s).

    python bench/push.py [--devices 2000] [--delay 10] [--window 60] [--cuts 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._emulator import cpu_seconds, emulator, machine, median, percentile, table
from fleettui.config import parse_config
from fleettui.domain import DeviceStatus
from fleettui.engine.engine import Engine
from fleettui.push import push_app
from fleettui.store import open_store

HOST = "127.0.0.1"


class Timings:
    """Handling time of each request, by what it was."""

    def __init__(self) -> None:
        self.by_kind: dict[str, list[float]] = {}

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                         ) -> web.StreamResponse:
        """Time the handler; an ATTLOG upload is filed by its line count."""
        start = time.perf_counter()
        body = await request.read() if request.method == "POST" else b""
        response = await handler(request)
        took = (time.perf_counter() - start) * 1000
        kind = request.path.rsplit("/", 1)[-1]
        if request.query.get("table") == "ATTLOG":
            lines = body.count(b"\n")
            kind = "attlog100" if lines >= 100 else "attlog"
        self.by_kind.setdefault(kind, []).append(took)
        return response


def _stats(values: list[float]) -> str:
    if not values:
        return "none"
    return f"p50 {median(values):.1f} ms, p99 {percentile(values, 99):.1f} ms (n={len(values)})"


async def _wait(what: str, condition: Callable[[], Awaitable[bool]], timeout: float) -> float:
    start = time.monotonic()
    while not await condition():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"gave up waiting for {what} after {timeout:g} s")
        await asyncio.sleep(0.5)
    return time.monotonic() - start


async def run(args: argparse.Namespace, config_text: str, control: str, port: int) -> None:
    push = (f'[push]\nenabled = true\nlisten = "{HOST}:{port}"\ndelay_s = {args.delay}\n'
            f"rate_per_serial = 50\n")
    config = parse_config(push + config_text)
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(Path(tmp) / "fleet.db")
        engine = Engine(config, store)
        await engine.start()
        timings = Timings()
        app = push_app(engine.push, config.push)
        app.middlewares.append(timings.middleware)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, HOST, port, backlog=4096).start()
        ids = [d.id for d in config.devices]
        try:
            async def all_online() -> bool:
                devices = await store.devices()
                return sum(d.status is DeviceStatus.ONLINE for d in devices) == len(ids)

            took = await _wait("every terminal online", all_online, 600)
            print(f"{len(ids)} push devices online {took:.0f} s after the listener opened "
                  "(their first handshakes were spread over the first Delay)")
            timings.by_kind.clear()
            cpu0, wall0 = cpu_seconds(os.getpid()), time.monotonic()
            async with httpx.AsyncClient(base_url=control, timeout=60) as ctl:
                # 100-line uploads: a terminal cut off buffers 100 punches, then catches up
                uploaders = ids[: args.uploads]
                for d in uploaders:
                    (await ctl.put(f"/devices/{d}/faults", json={"offline": True}))
                for d in uploaders:
                    (await ctl.post(f"/devices/{d}/punches", json={"count": 100}))
                for d in uploaders:
                    (await ctl.delete(f"/devices/{d}/faults"))
                await asyncio.sleep(args.window)  # the fleet heartbeats; uploads come in
                cpu = (cpu_seconds(os.getpid()) - cpu0) / (time.monotonic() - wall0)
                heartbeat = list(timings.by_kind.get("getrequest", []))
                uploads = list(timings.by_kind.get("attlog100", []))
                # offline detection: cut terminals at once, time each status change
                cut = ids[args.uploads: args.uploads + args.cuts]
                at: dict[str, float] = {}
                for d in cut:
                    await ctl.put(f"/devices/{d}/faults", json={"offline": True})
                    at[d] = time.monotonic()
                seen: dict[str, float] = {}

                async def all_offline() -> bool:
                    for d in cut:
                        if d in seen:
                            continue
                        state = await store.device(d)
                        if state is not None and state.status is DeviceStatus.OFFLINE:
                            seen[d] = time.monotonic() - at[d]
                    return len(seen) == len(cut)

                await _wait("the cut terminals to go offline", all_offline, 300)
        finally:
            await runner.cleanup()
            await engine.stop()
            await store.close()
    detect = list(seen.values())
    goal = config.push.offline_after + 5
    print(f"push devices against one listener ({machine()}; emulator in its own process; "
          f"Delay {args.delay} s, offline after {config.push.offline_after:g} s)")
    print(table([
        ("getrequest handling", f"{_stats(heartbeat)}  goal p99 <= 50 ms"),
        ("ATTLOG upload of 100 lines", _stats(uploads)),
        ("engine CPU while heartbeating", f"{cpu:.0%} of one core  goal <= 50%"),
        ("offline detected", f"p50 {median(detect):.1f} s, p99 {percentile(detect, 99):.1f} s "
                             f"(n={len(detect)})  goal <= {goal:g} s"),
    ]))


def _without_push_table(text: str) -> str:
    """The config without its [push] table (the bench writes its own)."""
    out, skipping = [], False
    for line in text.splitlines():
        if line.strip().startswith("["):
            skipping = line.strip() == "[push]"
        if not skipping:
            out.append(line)
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--delay", type=int, default=10, help="heartbeat period (Delay)")
    ap.add_argument("--window", type=float, default=60.0, help="seconds measured")
    ap.add_argument("--cuts", type=int, default=20, help="terminals taken offline")
    ap.add_argument("--uploads", type=int, default=20, help="terminals sending 100 lines")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory():
        probe = __import__("socket").socket()
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
        probe.close()
        server = f"http://{HOST}:{port}"
        with emulator("--devices", str(args.devices), "--sites", str(max(1, args.devices // 40)),
                      "--push", str(args.devices), "--push-server", server,
                      "--push-delay", str(args.delay), "--punch-rate", "0",
                      "--history-days", "0") as fleet:
            asyncio.run(run(args, _without_push_table(fleet.config_text), fleet.control_url,
                            port))


if __name__ == "__main__":
    main()
