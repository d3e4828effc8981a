"""How long unmodified pyzk takes to download 100,000 records from one emulated device.

Starts ``fleettui emulate`` with one device in its own process, loads the
records through the control API, then times pyzk's connect + get_attendance +
disconnect over TCP (or UDP with --udp), five runs by default.

Where the time goes: for 40-byte records (TFT terminals such as the F18/ID)
pyzk's parser takes each record off the front of the buffer with
``attendance_data = attendance_data[40:]``, copying the rest every time: 100,000
records copy about 200 GB in all, so the time grows with the square of the
records and with how busy the machine's memory is (3.5 s on one day, 13 s and
35 s on others, on the same 2-core kind of machine). For 8 and 16-byte records
it also scans the user list once per record (``filter`` over the users); so the
header says how many users the device held, and ``--no-users`` deletes them
first (pyzk's ``delete_user``) to show what they cost here: nothing, on a
40-byte device. fleettui reads the same buffer with pyzk and parses it itself
(``fleettui/devices/zk.py``, ``parse_attendance``), by offset.

    python bench/attendance_download.py [--records 100000] [--runs 5] [--udp] [--no-users]
"""

from __future__ import annotations

import argparse
import time

import httpx
from _emulator import cpu_seconds, emulator, machine, median, percentile, table
from zk import ZK


def main() -> None:
    """Run the benchmark and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--udp", action="store_true")
    ap.add_argument("--no-users", action="store_true",
                    help="delete the device's users first (pyzk's parse is records x users)")
    args = ap.parse_args()
    with emulator(
        "--sites", "1", "--devices", "1", "--punch-rate", "0", "--history-days", "0",
        "--base-address", "127.30.0.1", "--port", "0",
    ) as fleet:
        dev = fleet.config["devices"][0]
        r = httpx.post(
            f"{fleet.control_url}/devices/{dev['id']}/punches",
            json={"count": args.records},
            timeout=120,
        )
        r.raise_for_status()
        model = httpx.get(f"{fleet.control_url}/devices/{dev['id']}").json()["model"]
        if args.no_users:
            admin = ZK(dev["host"], port=dev["port"], timeout=60, ommit_ping=True,
                       password=dev["comm_key"], force_udp=args.udp).connect()
            for user in admin.get_users():
                admin.delete_user(uid=user.uid)
            admin.disconnect()
        users = len(httpx.get(f"{fleet.control_url}/devices/{dev['id']}/users").json()["users"])
        times: list[float] = []
        served: list[float] = []
        for _ in range(args.runs):
            cpu0 = cpu_seconds(fleet.proc.pid)
            zk = ZK(dev["host"], port=dev["port"], timeout=60, ommit_ping=True,
                    password=dev["comm_key"],
                    force_udp=args.udp)
            t0 = time.perf_counter()
            conn = zk.connect()
            records = conn.get_attendance()
            conn.disconnect()
            times.append(time.perf_counter() - t0)
            served.append(cpu_seconds(fleet.proc.pid) - cpu0)
            if len(records) != args.records:
                raise SystemExit(f"got {len(records)} records, expected {args.records}")
    print(f"pyzk get_attendance, {args.records} records from an emulated {model} holding "
          f"{users} users, "
          f"{'UDP' if args.udp else 'TCP'}, {args.runs} runs ({machine()})")
    print(table([
        ("median", f"{median(times):.2f} s"),
        ("p99", f"{percentile(times, 99):.2f} s"),
        ("min", f"{min(times):.2f} s"),
        ("records/s (median)", f"{args.records / median(times):,.0f}"),
        ("emulator CPU per download", f"{median(served):.2f} s (the rest is pyzk's parsing)"),
    ]))


if __name__ == "__main__":
    main()
