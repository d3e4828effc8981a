"""Webhooks: punch-to-receiver latency with live capture, and outbox throughput.

1. Latency: ``fleettui emulate`` runs N devices in its own process; the engine
   (live capture on) and a local receiver run in this one. Punches are made
   through the emulator's control API, one at a time on random devices; the
   latency is from the control API's answer (the punch is on the device) to
   the signed webhook arriving at the receiver.
2. Throughput and catch-up: 100,000 punch events queued while the receiver
   is away, then the time to deliver them all to a fast local receiver.

    python bench/webhooks.py [--devices 50] [--punches 200] [--backlog 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import multiprocessing.connection
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from _emulator import emulator, machine, percentile
from aiohttp import web
from engine_fleet import _config_text

from fleettui.config import load_config
from fleettui.domain import DeviceState, Punch, Site, TzFlag
from fleettui.engine.engine import Engine
from fleettui.engine.webhooks import WebhookDispatcher
from fleettui.store import open_store

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


class Receiver:
    """A local webhook receiver that notes when each punch arrives."""

    def __init__(self) -> None:
        self.arrived: dict[tuple[str, str], float] = {}
        self.count = 0
        self.waiters: dict[tuple[str, str], asyncio.Future[float]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        """Take one delivery."""
        body = await request.json()
        now = time.perf_counter()
        self.count += 1
        punch = body.get("punch")
        if punch:
            key = (punch["device_id"], punch["user_id"])
            self.arrived.setdefault(key, now)
            fut = self.waiters.pop(key, None)
            if fut is not None and not fut.done():
                fut.set_result(now)
        return web.Response(status=204)


async def start_receiver(rec: Receiver) -> tuple[web.AppRunner, str]:
    """Serve the receiver on a free loopback port."""
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"


async def latency(devices: int, punches: int) -> tuple[float, float, int]:
    """Median and p99 latency (ms) from punch to webhook, and how many arrived."""
    rec = Receiver()
    runner, url = await start_receiver(rec)
    with emulator(
        "--sites", str(max(1, devices // 10)), "--devices", str(devices), "--punch-rate", "0",
        "--history-days", "0", "--base-address", "127.85.0.1", "--port", "0",
    ) as fleet, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.toml"
        path.write_text(
            "[poll]\nlive_capture = true\n\n[security]\nallow_private_webhook_targets = true\n\n"
            + _config_text(fleet.config)
            + f'\n[[webhooks]]\nurl = "{url}"\nsecret = "{SECRET}"\nevents = ["punch.*"]\n'
        )
        store = await open_store(Path(tmp) / "fleet.db")
        engine = Engine(load_config(path), store)
        await engine.start()
        try:
            # wait (bounded) until every device is online and its live session registered
            deadline = time.perf_counter() + 120
            while time.perf_counter() < deadline:
                states = await store.devices()
                if all(s.status.value == "online" for s in states):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # live sessions register after the first sync
            users = httpx.get(f"{fleet.control_url}/devices", timeout=60).json()["devices"]
            rng = random.Random(1)
            samples: list[float] = []
            async with httpx.AsyncClient(base_url=fleet.control_url, timeout=30) as client:
                for n in range(punches):
                    dev = rng.choice(users)["id"]
                    user = f"{990000 + n}"
                    fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                    rec.waiters[(dev, user)] = fut
                    r = await client.post(f"/devices/{dev}/punches", json={"user_id": user})
                    r.raise_for_status()
                    sent = time.perf_counter()
                    try:
                        got = await asyncio.wait_for(fut, 30)
                    except TimeoutError:
                        continue
                    samples.append((got - sent) * 1000)
        finally:
            await engine.stop()
            await store.close()
            await runner.cleanup()
    return statistics.median(samples), percentile(samples, 99), len(samples)


def _counting_receiver(port_out: multiprocessing.connection.Connection) -> None:
    """A fast receiver in its own process: counts deliveries, answers 204."""

    async def serve() -> None:
        count = 0

        async def hook(request: web.Request) -> web.Response:
            nonlocal count
            await request.read()
            count += 1
            return web.Response(status=204)

        async def counted(request: web.Request) -> web.Response:
            return web.json_response({"count": count})

        app = web.Application()
        app.router.add_post("/hook", hook)
        app.router.add_get("/count", counted)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port_out.send(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(serve())


async def backlog(n: int) -> tuple[float, float]:
    """Deliver ``n`` queued punch events to a receiver in another process.

    Returns (seconds, events/s).
    """
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=_counting_receiver, args=(child,), daemon=True)
    proc.start()
    port = parent.recv()
    url = f"http://127.0.0.1:{port}/hook"
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(Path(tmp) / "fleet.db")
        devices = [f"d{i:03d}" for i in range(50)]
        await store.sync_fleet([Site("s", "S", "UTC")], [
            DeviceState(d, f"S{d}", "s", f"127.86.0.{i + 1}", 4370, "tcp")
            for i, d in enumerate(devices)
        ])
        start = datetime(2026, 1, 5, 6, 0)
        per = n // len(devices)
        for d in devices:
            await store.insert_punches(d, [
                Punch(d, str(100000 + k), start + timedelta(seconds=30 * k), "UTC",
                      (start + timedelta(seconds=30 * k)).replace(tzinfo=UTC), TzFlag.OK,
                      k % 2, 1, "sync", datetime.now(UTC))
                for k in range(per)
            ])
        from fleettui.config import WebhookConfig

        dispatcher = WebhookDispatcher(store, [WebhookConfig(url=url, secret=SECRET)],
                                       allow_private_targets=True)
        t0 = time.perf_counter()
        while await dispatcher.run_once():
            pass
        took = time.perf_counter() - t0
        got = httpx.get(f"http://127.0.0.1:{port}/count").json()["count"]
        await dispatcher.close()
        await store.close()
    proc.terminate()
    if got != per * len(devices):
        raise SystemExit(f"receiver got {got} of {per * len(devices)} events")
    return took, per * len(devices) / took


def main() -> None:
    """Run both parts and print the results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--punches", type=int, default=200)
    ap.add_argument("--backlog", type=int, default=100_000)
    args = ap.parse_args()
    p50, p99, got = asyncio.run(latency(args.devices, args.punches))
    took, rate = asyncio.run(backlog(args.backlog))
    try:
        import sniffio  # noqa: F401  (httpcore is slow without it; see pyproject.toml)

        sniff = "sniffio installed"
    except ImportError:
        sniff = "sniffio MISSING: httpcore pays a failed import per request"
    print(f"webhooks ({machine()}; emulator in its own process; {sniff})")
    print(f"punch -> webhook, live capture, {args.devices} devices: p50 {p50:.0f} ms, "
          f"p99 {p99:.0f} ms ({got}/{args.punches} arrived)")
    print(f"backlog of {args.backlog} events to a fast receiver: {took:.1f} s "
          f"({rate:,.0f} events/s; receiver in its own process; 50 devices in parallel, "
          "each in order, at most 16 requests in flight)")


if __name__ == "__main__":
    main()
