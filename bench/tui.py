"""The control room under load: a burst of status changes, key latency during it, RSS over an hour.

The real ``FleetApp`` runs headless under Textual's Pilot (``run_test``, 200×50)
over a real SQLite store holding N devices on N/20 sites. To isolate the UI,
no engine polls devices: a writer task in the app's event loop does what the
embedded engine does on a change, ``store.record_status`` (device row, history,
event log and webhook outbox in one transaction), then tells the app with a
``FleetChanged`` message, as the engine's listener does; a burst's writes run
concurrently, as the checks of one sweep do. (The engine's own
detection speed is measured by ``bench/engine_fleet.py``.)

1. Burst on screen. All N devices go offline, one write each, all at once;
   then all come back. Timed from the first write committed
   (and, separately, from the last) to the first repaint at which the header
   says "N offline" (or "N online") and every device node of the tree holds
   the new status (tree labels are drawn from node data when painted).
2. Key press to repaint during a burst. While a burst runs, ``down``/``up`` are
   sent to the focused tree every 20 ms (``App.simulate_key``, the same path as
   a terminal key). The latency is from posting the key to the first repaint
   after the tree's cursor action ran.
   ``--view table`` or ``--view map`` runs parts 1 and 2 on the fleet table
   (``t``) or the fleet map (``m``) instead of the tree: "on screen" is then
   every line of the table (or cell of the map) holding the new status, and
   the keys move the table's or the map's cursor.
2b. Sorting (``--view table``): each column's sort key (1-9, 0), pressed in
   turn on the full table, from the key to the repaint that shows the new
   order; and ``sort_rows`` alone (the sort itself, no drawing).
3. RSS over an hour. An injected clock lives through an hour of a 500-device
   fleet in one-minute steps: punches (40 per device per hour, stored per
   device as a sync does, with its "sync" event-log line), last-seen writes
   (one per device per minute), 200 status changes, 100 commands (queued, sent,
   done). Each step ends with a FleetChanged and the app's refresh; VmRSS is
   read from /proc/self/status every 5 simulated minutes.

"Repainted": Textual calls ``App._display(screen, update)`` with each
compositor update (``Screen._compositor_refresh``); headless, it returns
before turning the update into terminal output. This script wraps
``_display`` on the app instance: it notes the time of every call and does
the skipped work itself (``CompositorUpdate.render_segments``), so each
repaint costs what it costs on a terminal, minus the write to the tty.

    python bench/tui.py [--devices 500] [--bursts 5] [--hours 1] [--view tree|table|map]
                        [--profile out.html]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _emulator import machine, median, percentile, rss_mb, table
from textual._compositor import CompositorUpdate

from fleettui.domain import (
    CommandState,
    DeviceState,
    DeviceStatus,
    Liveness,
    Punch,
    Site,
    StatusChange,
    TzFlag,
)
from fleettui.engine.enqueue import enqueue
from fleettui.store import Store, open_store
from fleettui.tui.app import FleetApp, FleetChanged
from fleettui.tui.fleet_map import FleetMap
from fleettui.tui.fleet_table import FleetTable
from fleettui.tui.model import DeviceRow
from fleettui.tui.table_model import COLUMNS, SortOrder, sort_rows
from fleettui.tui.tree import SiteTree

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
ZONES = ("Africa/Casablanca", "Europe/Paris", "Europe/London", "America/New_York")


class SimClock:
    """The injected UTC clock: moved by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Paints:
    """Watches the app's repaints (see the module docstring)."""

    app: FleetApp
    count: int = 0
    last: float = 0.0
    #: called at each repaint; returns True to stop being called
    watchers: list[Callable[[float], bool]] = field(default_factory=list)

    def install(self) -> None:
        """Wrap ``App._display`` on this app instance."""
        original = self.app._display
        console = self.app.console

        def display(screen: Any, renderable: Any) -> None:
            original(screen, renderable)
            if renderable is None:
                return
            if isinstance(renderable, CompositorUpdate):
                renderable.render_segments(console)
            now = time.perf_counter()
            self.count += 1
            self.last = now
            self.watchers[:] = [w for w in self.watchers if not w(now)]

        self.app._display = display  # type: ignore[method-assign]

    async def until(self, cond: Callable[[], bool], timeout: float = 60.0) -> float:
        """Time of the first repaint at which ``cond()`` holds."""
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        def watch(now: float) -> bool:
            if fut.done():
                return True
            if cond():
                fut.set_result(now)
                return True
            return False

        self.watchers.append(watch)
        return await asyncio.wait_for(fut, timeout)


async def settled(pilot: Any, cond: Callable[[], bool], timeout: float = 120.0) -> None:
    """Let the app run until ``cond()`` holds (set-up, not timed)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not settle")
        await pilot.pause(0.05)


def make_app(store: Store, clock: SimClock, throttle_ms: float) -> FleetApp:
    """The app as shipped (refreshes at most every 200 ms), or with another gap
    (``--throttle-ms 0``: a refresh per change, as before the fix this bench found)."""
    return FleetApp(store, refresh_s=1.0, clock=clock, min_refresh_gap_s=throttle_ms / 1000)


def count_refreshes(app: FleetApp, out: list[float]) -> None:
    """Note how long each of the app's refreshes from the store takes."""
    original = app._refresh_once

    async def timed() -> None:
        t0 = time.perf_counter()
        await original()
        out.append(time.perf_counter() - t0)

    app._refresh_once = timed  # type: ignore[method-assign]


async def make_store(path: Path, n: int, clock: SimClock) -> tuple[Store, list[str]]:
    """A store with ``n`` devices on n/20 sites, all online."""
    store = await open_store(path)
    n_sites = max(1, n // 20)
    sites = [Site(f"site-{i:02d}", f"Site {i:02d}", ZONES[i % len(ZONES)]) for i in range(n_sites)]
    devices = [
        DeviceState(id=f"dev_{i % n_sites:02d}_{i:03d}", serial=f"BENCH{i:06d}",
                    site_id=sites[i % n_sites].id, host=f"127.90.{i // 250}.{i % 250 + 1}",
                    port=4370, transport="tcp", name=f"Door {i}")
        for i in range(n)
    ]
    await store.sync_fleet(sites, devices)
    for d in devices:
        await store.record_status(StatusChange(d.id, DeviceStatus.ONLINE, "", clock()))
    return store, [d.id for d in devices]


#: the key that opens each view, and the widget whose cursor the keys then move
VIEWS = {"tree": ("", "#tree"), "table": ("t", "#table"), "map": ("m", "#map")}


def shown(app: FleetApp, n: int, status: DeviceStatus) -> bool:
    """Header and every device of the view on screen show ``status`` for all ``n``."""
    header = str(app.query_one("#totals").render())
    if f"{n} {status.value}" not in header:
        return False
    if app.view == "table":
        rows: list[DeviceRow] = app.query_one("#table", FleetTable).rows
    elif app.view == "map":
        rows = app.query_one("#map", FleetMap)._rows
    else:
        nodes = app.query_one("#tree", SiteTree).device_nodes
        rows = [node.data for node in nodes.values() if isinstance(node.data, DeviceRow)]
    return len(rows) == n and all(r.device.status is status for r in rows)


async def burst(app: FleetApp, store: Store, ids: list[str], status: DeviceStatus,
                clock: SimClock, paints: Paints) -> tuple[float, float, float]:
    """One status change per device, all at once (as a sweep's checks run: concurrently),
    each followed by a FleetChanged as the engine's listener posts it.

    Returns (first write→shown, last write→shown, time to write them all), in seconds.
    """
    reason = "no answer" if status is DeviceStatus.OFFLINE else ""
    seen = asyncio.ensure_future(paints.until(lambda: shown(app, len(ids), status), 300.0))
    committed: list[float] = []

    async def change(device_id: str) -> None:
        await store.record_status(StatusChange(device_id, status, reason, clock()))
        committed.append(time.perf_counter())
        app.post_message(FleetChanged())

    clock.now += timedelta(seconds=1)
    t0 = time.perf_counter()
    await asyncio.gather(*(change(d) for d in ids))
    at = await seen
    return at - committed[0], at - committed[-1], committed[-1] - t0


#: what down and up run in each view (the methods the bench wraps to see a key handled)
KEY_ACTIONS = {"tree": ("action_cursor_down", "action_cursor_up"),
               "table": ("action_cursor",), "map": ("action_vertical",)}


#: per wrapped widget, when its key actions ran
_HANDLED: dict[int, list[float]] = {}


def wrap_actions(widget: Any, names: tuple[str, ...], handled: list[float]) -> None:
    """Note the time each of ``names`` ran (the key's action), on this widget instance."""
    for name in names:
        action = getattr(widget, name)

        def run(*args: Any, _action: Any = action) -> None:
            _action(*args)
            handled.append(time.perf_counter())

        setattr(widget, name, run)


async def keys_during(app: FleetApp, paints: Paints, stop: asyncio.Event,
                      out: list[float]) -> None:
    """Press down/up on the view every 20 ms until ``stop``; latency to repaint each time."""
    widget = app.query_one(VIEWS[app.view][1])
    handled = _HANDLED.get(id(widget))
    if handled is None:
        handled = _HANDLED[id(widget)] = []
        wrap_actions(widget, KEY_ACTIONS[app.view], handled)
    keys = ("down", "up")
    k = 0
    while not stop.is_set():
        handled.clear()
        t0 = time.perf_counter()
        app.simulate_key(keys[k % 2])
        k += 1
        painted = await paints.until(lambda: bool(handled), timeout=30.0)
        out.append(painted - t0)
        await asyncio.sleep(0.02)


async def run_bursts(n: int, bursts: int, throttle_ms: float,
                     view: str = "tree") -> dict[str, list[float]]:
    """Part 1 and 2 (and 2b in the table): ``bursts`` offline+online rounds, keys pressed
    during each, on the tree, the table or the map."""
    clock = SimClock(START)
    results: dict[str, list[float]] = {"first": [], "last": [], "write": [], "keys": [],
                                       "idle_keys": [], "refresh": [], "refreshes": [],
                                       "sort_key": [], "sort_rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        store, ids = await make_store(Path(tmp) / "fleet.db", n, clock)
        app = make_app(store, clock, throttle_ms)
        refreshes: list[float] = []
        count_refreshes(app, refreshes)
        async with app.run_test(size=(200, 50)) as pilot:
            paints = Paints(app)
            paints.install()
            await pilot.pause()
            # (a fleet with nothing wrong opens on the map: the view is chosen here)
            await settled(pilot, lambda: f"{n} online" in str(app.query_one("#totals").render()))
            app.set_view(view)
            await settled(pilot, lambda: shown(app, n, DeviceStatus.ONLINE))
            await pilot.press("down", "down")  # a device selected: its panel refreshes too
            # keys on an idle screen, for reference
            stop = asyncio.Event()
            idle_task = asyncio.ensure_future(keys_during(app, paints, stop, results["idle_keys"]))
            await asyncio.sleep(2.0)
            stop.set()
            await idle_task
            for _ in range(bursts):
                for status in (DeviceStatus.OFFLINE, DeviceStatus.ONLINE):
                    stop = asyncio.Event()
                    presser = asyncio.ensure_future(keys_during(app, paints, stop,
                                                                results["keys"]))
                    refreshes.clear()
                    first, last, write = await burst(app, store, ids, status, clock, paints)
                    stop.set()
                    await presser
                    await pilot.pause(0.3)  # the refresh that painted it has finished now
                    results["refresh"] += refreshes
                    results["refreshes"].append(len(refreshes))
                    results["first"].append(first)
                    results["last"].append(last)
                    results["write"].append(write)
                    print(f"  burst {status.value}: first->shown {first:.2f} s, "
                          f"last->shown {last * 1000:.0f} ms, writes {write:.2f} s, "
                          f"{len(refreshes)} refreshes",
                          file=sys.stderr, flush=True)
            if view == "table":
                await sorting(app, paints, results)
        await store.close()
    return results


async def sorting(app: FleetApp, paints: Paints, results: dict[str, list[float]]) -> None:
    """Part 2b: each column's sort key in turn, three rounds, key to repaint; then the
    sort alone, 20 times per column and direction."""
    table = app.query_one("#table", FleetTable)
    handled: list[float] = []
    wrap_actions(table, ("action_sort",), handled)
    for _round in range(3):
        for key in "1234567890":
            handled.clear()
            t0 = time.perf_counter()
            app.simulate_key(key)
            painted = await paints.until(lambda: bool(handled), timeout=30.0)
            results["sort_key"].append(painted - t0)
            await asyncio.sleep(0.05)
    facts = app._table_facts()
    rows = list(table.rows)
    for column in range(len(COLUMNS)):
        for descending in (False, True):
            for _ in range(20):
                t0 = time.perf_counter()
                sort_rows(rows, SortOrder(column, descending), facts)
                results["sort_rows"].append(time.perf_counter() - t0)
    print(f"  sorts: key->repaint p50 {median(results['sort_key']) * 1000:.0f} ms",
          file=sys.stderr, flush=True)


async def run_hour(n: int, hours: float, throttle_ms: float,
                   view: str = "tree") -> list[tuple[int, float]]:
    """Part 3: an hour of a fleet's events, compressed; (simulated minute, RSS MB) samples."""
    clock = SimClock(START)
    rng = random.Random(1)
    samples: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        store, ids = await make_store(Path(tmp) / "fleet.db", n, clock)
        app = make_app(store, clock, throttle_ms)
        async with app.run_test(size=(200, 50)) as pilot:
            paints = Paints(app)
            paints.install()
            await pilot.pause()
            await settled(pilot, lambda: f"{n} online" in str(app.query_one("#totals").render()))
            app.set_view(view)
            await pilot.press("down", "down")
            down: set[str] = set()
            user_seq = 0
            minutes = round(60 * hours)
            for minute in range(minutes + 1):
                if minute % 5 == 0:
                    gc.collect()
                    samples.append((minute, rss_mb()))
                    print(f"  minute {minute}: RSS {samples[-1][1]:.0f} MB",
                          file=sys.stderr, flush=True)
                if minute == minutes:
                    break
                # punches: 40 per device per hour, stored per device as a sync stores them
                per_device: dict[str, list[Punch]] = {}
                for _ in range(round(n * 40 / 60)):
                    device_id = rng.choice(ids)
                    user_seq += 1
                    at = clock.now + timedelta(seconds=rng.uniform(0, 59))
                    per_device.setdefault(device_id, []).append(Punch(
                        device_id, str(1000 + user_seq % 5000), at.replace(tzinfo=None), "UTC",
                        at, TzFlag.OK, user_seq % 2, 1, "sync", clock.now))
                for device_id, punches in per_device.items():
                    punches.sort(key=lambda p: p.utc_time)
                    new = await store.insert_punches(device_id, punches)
                    await store.add_event("sync", f"{device_id}: {new} new punch(es) stored",
                                          at=clock.now, device_id=device_id, data={"new": new})
                    app.post_message(FleetChanged())
                # every device checked this minute (in one batch, as the engine writes them)
                await store.record_seen_many([
                    Liveness(device_id, clock.now, users=50, users_cap=3000,
                             records=1000 + minute, records_cap=100_000)
                    for device_id in ids if device_id not in down])
                # 200 status changes an hour: flaky links going down and coming back
                for _ in range(3 + (minute % 3 == 0)):
                    device_id = rng.choice(ids)
                    status = DeviceStatus.ONLINE if device_id in down else DeviceStatus.OFFLINE
                    (down.discard if status is DeviceStatus.ONLINE else down.add)(device_id)
                    await store.record_status(StatusChange(
                        device_id, status, "" if status is DeviceStatus.ONLINE else "no answer",
                        clock.now))
                    app.post_message(FleetChanged())
                # 100 commands an hour: queued, sent, done
                for _ in range(1 + (minute % 3 != 0)):
                    device_id = rng.choice(ids)
                    request, _new = await enqueue(store, device_id, "sync_time", None,
                                                  now=clock.now, source="bench")
                    for command in request.commands:
                        await store.start_command(command.id, clock.now)
                        await store.finish_command(command, CommandState.DONE, clock.now,
                                                   result={"set_to": clock.now.isoformat()})
                    app.post_message(FleetChanged())
                clock.now += timedelta(minutes=1)
                await pilot.pause()
                await asyncio.sleep(0.05)
        await store.close()
    return samples


def main() -> None:
    """Run the three parts and print one table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--bursts", type=int, default=5, help="offline+online rounds")
    ap.add_argument("--hours", type=float, default=1.0, help="simulated hours for RSS")
    ap.add_argument("--throttle-ms", type=float, default=200.0,
                    help="least gap between the app's refreshes (200 as shipped; 0: one "
                         "refresh per change, as before)")
    ap.add_argument("--view", choices=tuple(VIEWS), default="tree",
                    help="what is on screen: the tree (and panel), the table or the map")
    ap.add_argument("--profile", metavar="HTML",
                    help="profile the bursts with pyinstrument (pip install it) into this file")
    args = ap.parse_args()
    n = args.devices
    r: dict[str, list[float]] = {}
    if args.bursts and args.profile:
        from pyinstrument import Profiler  # a tool for this script, not a dependency

        profiler = Profiler(async_mode="disabled")
        profiler.start()
        try:
            r = asyncio.run(run_bursts(n, args.bursts, args.throttle_ms, args.view))
        finally:
            profiler.stop()
            Path(args.profile).write_text(profiler.output_html())
            show_all = bool(os.environ.get("PROFILE_ALL"))
            print(profiler.output_text(unicode=False, show_all=show_all), file=sys.stderr)
    elif args.bursts:
        r = asyncio.run(run_bursts(n, args.bursts, args.throttle_ms, args.view))
    rss = asyncio.run(run_hour(n, args.hours, args.throttle_ms, args.view)) if args.hours else []

    def ms(values: list[float]) -> str:
        return (f"p50 {median(values) * 1000:.0f} ms, p99 {percentile(values, 99) * 1000:.0f} ms"
                f" (max {max(values) * 1000:.0f}, n={len(values)})")

    values = [v for _m, v in rss]
    print(f"control room, {n} devices on {max(1, n // 20)} sites, {args.view} view, "
          "200x50 headless "
          f"({machine()}; Textual Pilot; store writer in the app's loop, no engine; "
          + ("app as shipped: refreshes >= 200 ms apart)" if args.throttle_ms == 200
             else f"refreshes >= {args.throttle_ms:g} ms apart)"))
    rows: list[tuple[str, str]] = []
    if r:
        rows += [
            (f"burst of {n} changes: first write -> on screen", ms(r["first"]) + "  goal <= 1 s"),
            (f"burst of {n} changes: last write -> on screen", ms(r["last"])),
            (f"burst of {n} changes: writing them", ms(r["write"])),
            ("app refreshes per burst", f"median {median(r['refreshes']):.0f}, "
                                        f"each {ms(r['refresh'])}"),
            ("key -> repaint during bursts", ms(r["keys"]) + "  goal p99 <= 100 ms"),
            ("key -> repaint, idle", ms(r["idle_keys"])),
        ]
        if r["sort_key"]:
            rows += [(f"sort key -> repaint, {n} rows", ms(r["sort_key"]) + "  goal <= 100 ms"),
                     (f"sort of {n} rows alone", ms(r["sort_rows"]))]
    if values:
        rows += [
            (f"RSS over {args.hours:g} simulated hour(s)",
             f"start {values[0]:.0f} MB, end {values[-1]:.0f} MB, max {max(values):.0f} MB"),
            ("RSS samples (MB, every 5 sim-min)", " ".join(f"{v:.0f}" for v in values)),
        ]
    print(table(rows))


if __name__ == "__main__":
    main()
