"""sync_employees of 500 employees to each of 50 emulated devices, through the queue.

``fleettui emulate`` runs 50 devices in its own process; this process queues
one sync_employees request per site and lets the engine run them (each
device's commands in order, devices in parallel, bounded by the worker
pool). Prints the total time and the per-device time (median, p99).

    python bench/sync_employees.py [--devices 50] [--employees 500] [--workers 32]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from _emulator import emulator, machine, percentile
from engine_fleet import _config_text

from fleettui.config import load_config
from fleettui.domain import CommandState
from fleettui.engine.engine import Engine
from fleettui.engine.enqueue import enqueue
from fleettui.store import open_store


async def run(devices: int, employees: int, workers: int) -> None:
    """Queue, run and time the syncs; print a table."""
    with emulator(
        "--sites", str(max(1, devices // 10)), "--devices", str(devices), "--punch-rate", "0",
        "--history-days", "0", "--base-address", "127.80.0.1", "--port", "0",
    ) as fleet, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.toml"
        path.write_text(f"[poll]\nworkers = {workers}\n\n" + _config_text(fleet.config))
        store = await open_store(Path(tmp) / "fleet.db")
        engine = Engine(load_config(path), store)
        await engine.prepare()
        await engine.sweep()  # connect and sync once, so only the command is timed
        started: dict[int, float] = {}
        took: list[float] = []
        real_start = store.start_command

        async def start_command(command_id: int, now):  # type: ignore[no-untyped-def]
            started[command_id] = time.perf_counter()
            await real_start(command_id, now)

        store.start_command = start_command  # type: ignore[method-assign]
        staff = [{"user_id": str(900_000 + i), "name": f"E{i}", "card": 7_000_000 + i}
                 for i in range(employees)]
        requests = []
        t0 = time.perf_counter()
        for site in fleet.config["sites"]:
            request, _ = await enqueue(store, site["id"], "sync_employees",
                                       {"employees": staff}, now=engine.clock(), source="bench")
            requests.append(request.id)
        real_finish = store.finish_command

        async def finish_command(command, state, now, **kw):  # type: ignore[no-untyped-def]
            took.append(time.perf_counter() - started[command.id])
            return await real_finish(command, state, now, **kw)

        store.finish_command = finish_command  # type: ignore[method-assign]
        await engine.sweep()
        total = time.perf_counter() - t0
        states = []
        added = []
        for rid in requests:
            req = await store.command_request(rid)
            assert req is not None
            states += [c.state for c in req.commands]
            added += [c.result["added"] for c in req.commands if c.result]
        await engine.stop()
        await store.close()
    done = sum(1 for s in states if s is CommandState.DONE)
    print(f"sync_employees: {employees} employees to each of {devices} devices "
          f"({machine()}; worker pool {workers}; emulator in its own process)")
    print(f"done {done}/{len(states)}, users added per device {set(added)}")
    print(f"total            {total:.2f} s")
    print(f"per device p50   {statistics.median(took):.2f} s")
    print(f"per device p99   {percentile(took, 99):.2f} s")


def main() -> None:
    """Parse arguments and run."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--employees", type=int, default=500)
    ap.add_argument("--workers", type=int, default=32)
    args = ap.parse_args()
    asyncio.run(run(args.devices, args.employees, args.workers))


if __name__ == "__main__":
    main()
