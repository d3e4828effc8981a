"""How many liveness checks one emulator process serves across a 500-device fleet.

A check is what a poller does to see a device is alive: pyzk connect (its TCP
probe included), read_sizes, disconnect. ``fleettui emulate`` runs the fleet
in its own process; client threads run checks round-robin over every device
for a fixed time, then the script prints throughput and latency.

    python bench/fleet_checks.py [--devices 500] [--threads 16] [--seconds 10] [--udp]
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time

from _emulator import cpu_seconds, emulator, machine, median, percentile, table
from zk import ZK


def main() -> None:
    """Run the benchmark and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--udp", action="store_true")
    args = ap.parse_args()
    with emulator(
        "--sites", "20", "--devices", str(args.devices), "--punch-rate", "0",
        "--history-days", "0", "--base-address", "127.31.0.1", "--port", "0",
    ) as fleet:
        devices = fleet.config["devices"]
        # every device once, so the fleet is known to answer before timing
        targets = itertools.cycle(devices)
        lock = threading.Lock()
        latencies: list[float] = []
        errors: list[str] = []
        deadline = time.perf_counter() + args.seconds

        def worker() -> None:
            while time.perf_counter() < deadline:
                with lock:
                    dev = next(targets)
                t0 = time.perf_counter()
                try:
                    conn = ZK(dev["host"], port=dev["port"], timeout=5, ommit_ping=True,
                              force_udp=args.udp, password=dev["comm_key"]).connect()
                    conn.read_sizes()
                    conn.disconnect()
                except Exception as e:  # counted, reported, never hidden
                    with lock:
                        errors.append(f"{dev['id']}: {e}")
                    continue
                with lock:
                    latencies.append(time.perf_counter() - t0)

        threads = [threading.Thread(target=worker) for _ in range(args.threads)]
        cpu_before = cpu_seconds(fleet.proc.pid)
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        emulator_cpu = cpu_seconds(fleet.proc.pid) - cpu_before
    print(f"connect + read_sizes + disconnect over {'UDP' if args.udp else 'TCP'}, "
          f"{args.devices} devices, {args.threads} client threads, {elapsed:.1f} s "
          f"({machine()}; emulator and clients share the machine)")
    print(table([
        ("checks", f"{len(latencies)}"),
        ("checks/s", f"{len(latencies) / elapsed:,.0f}"),
        ("latency median", f"{median(latencies) * 1000:.1f} ms"),
        ("latency p99", f"{percentile(latencies, 99) * 1000:.1f} ms"),
        ("emulator CPU", f"{emulator_cpu / elapsed:.0%} of one core"),
        ("emulator CPU per check", f"{emulator_cpu / max(len(latencies), 1) * 1e6:.0f} µs"),
        ("errors", f"{len(errors)}" + (f" (first: {errors[0]})" if errors else "")),
    ]))


if __name__ == "__main__":
    main()
