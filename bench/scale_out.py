"""Scale-out: one, two and four pollers on one PostgreSQL database, beside SQLite's one.

One emulated fleet (``fleettui emulate``, its own process; a fresh one per
configuration) is polled by real ``fleettui run --headless`` processes: one
on a SQLite file, then one, two and four sharing one PostgreSQL database (a
server of Debian's binaries started by ``tests/pg_server.py``, its own
processes). Webhooks (``punch.*``) go to a receiver in its own process
(``_receiver.py``), so the outbox drains. Everything is measured from
outside the pollers: through the store (asyncpg, or sqlite3 read-only), the
emulator's control API, ``/proc`` and ``fleettui pollers --json``:

- start: from launching the pollers until every device is online (and, when
  shared, every site leased and the shares even);
- idle sweep: from one instant until every device's ``last_seen`` has
  advanced once (p50/p99 over ``--sweeps`` sweeps back to back, the store
  sampled every 0.2 s): the schedule's own period (a check every 4 s plus
  up to 1 s of jitter, written in a batch once a second) plus any lateness;
  and the check period as the store sees it (successive ``last_seen``);
- CPU over those sweeps, from ``/proc/<pid>/stat``: the pollers, the
  PostgreSQL server (the postmaster and its children), the emulator, the
  receiver, this process, and the whole machine (others' load included);
- offline detection: ``--cuts`` devices cut at once (control API fault
  ``offline``) until their status is offline in the store;
- takeover: a poller killed with SIGKILL, until every site it held is leased
  by another live poller and every device of them has a ``last_seen`` after
  the kill (p50/p99 over ``--kills`` kills, round robin over the pollers; the
  killed one restarted after, the shares even again before the next kill).
  With one poller there is nobody to take over: it is restarted at once (as
  a supervisor would) and the figure is its recovery (``--restarts`` times);
- last, punches/s: ``--punches`` generated punches on every device at once
  (control API), rows/s into ``punches`` from the first row to the last; and
  the outbox drain: deliveries/s to the receiver from the first to the last
  (a webhook-id received twice is a duplicate), and when the store had them
  all recorded delivered; meanwhile (PostgreSQL) the most backends waiting on
  the append lock at once and the sites that changed hands (nobody killed);
  the drain is given up after 60 s without progress (the pending deliveries
  are then listed on stderr, by the poller holding their site); bytes per
  row of punches, outbox and deliveries (PostgreSQL: ``pg_total_relation_size``
  of the table and its indexes, the punches' partitions summed; SQLite:
  ``dbstat``), right after.

The pollers' logs are scanned for late lease renewals and ERROR lines.

    python bench/scale_out.py [--devices 2000] [--sites 100] [--kills 10] [--restarts 5]
                              [--quick] [--keep DIR]
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import base64
import hashlib
import json
import math
import os
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import _receiver
import asyncpg
import httpx
from _emulator import RunningFleet, emulator, machine, percentile

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
#: the PostgreSQL server's loopback address (the tests use 127.20.x and 127.100-131.x)
PG_HOST = "127.150.254.1"
#: the punch load's longest wait, and how long nothing may move before it gives up
PUNCH_PHASE_S = 240
STALL_S = 60
#: what a probe of the store may raise while the database is still being made
DB_ERRORS = (asyncpg.PostgresError, OSError, sqlite3.Error)
TICK = os.sysconf("SC_CLK_TCK")
#: the [poll] settings of a --quick run (a smoke run of the mechanics, not figures)
QUICK_POLL = ("[poll]\ncheck_interval_s = 1\njitter_s = 0.5\ntimeout_s = 0.5\n"
              "backoff_max_s = 2\nlease_s = 3\n\n")


@dataclass(frozen=True)
class Setup:
    """One configuration: a backend and how many pollers share it."""

    key: str
    backend: str  # "sqlite" or "postgres"
    pollers: int

    @property
    def shared(self) -> bool:
        """Whether the pollers keep site leases (PostgreSQL)."""
        return self.backend == "postgres"

    @property
    def title(self) -> str:
        """The table's column heading."""
        return f"{'SQLite' if self.backend == 'sqlite' else 'PostgreSQL'} ×{self.pollers}"


SETUPS = {s.key: s for s in (Setup("sqlite1", "sqlite", 1), Setup("pg1", "postgres", 1),
                             Setup("pg2", "postgres", 2), Setup("pg4", "postgres", 4))}


@dataclass(frozen=True)
class Sizes:
    """How big a run is."""

    devices: int
    sites: int
    kills: int
    restarts: int
    cuts: int
    sweeps: int
    punches: int
    quick: bool


# --- CPU from /proc ---------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (None: gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu(fields: list[str] | None, *, reaped: bool = False) -> float:
    """CPU seconds (user + system; ``reaped``: also its children that have exited)."""
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def server_cpu(postmaster: int) -> float:
    """A PostgreSQL server's CPU seconds: the postmaster, its backends alive now and those
    that have exited (counted in the postmaster's children's times)."""
    total = _cpu(_stat(postmaster), reaped=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == postmaster:
                total += _cpu(fields, reaped=True)
    return total


def _machine_s() -> tuple[float, float]:
    """The machine's busy and total CPU seconds so far, over every core (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = f
    busy = user + nice + system + irq + softirq + steal
    return busy / TICK, (busy + idle + iowait) / TICK


class Snapshot(NamedTuple):
    """The CPU seconds of a configuration's processes at one instant."""

    t: float
    pollers: dict[int, float]
    server: float
    emulator: float
    receiver: float
    bench: float
    busy: float
    total: float


@dataclass
class Usage:
    """CPU use over a window, as fractions of one core (``machine``: of all cores)."""

    pollers: float
    per_poller: list[float]
    server: float
    emulator: float
    receiver: float
    bench: float
    machine: float
    others: float
    wall: float


def usage(a: Snapshot, b: Snapshot) -> Usage:
    """What each process used between two snapshots (pollers alive at both)."""
    wall = b.t - a.t
    per = [(b.pollers[p] - a.pollers[p]) / wall for p in a.pollers if p in b.pollers]
    ours = (sum(per) * wall + b.server - a.server + b.emulator - a.emulator
            + b.receiver - a.receiver + b.bench - a.bench)
    busy = b.busy - a.busy
    return Usage(sum(per), per, (b.server - a.server) / wall, (b.emulator - a.emulator) / wall,
                 (b.receiver - a.receiver) / wall, (b.bench - a.bench) / wall,
                 busy / max(1e-9, b.total - a.total), max(0.0, busy - ours) / wall, wall)


# --- reading the store from outside ---------------------------------------------

class Row(NamedTuple):
    """One device as the store has it."""

    site: str
    status: str
    seen: float  # last_seen as a Unix time (0: never)


class Counts(NamedTuple):
    """Row counts of the tables the punch load fills."""

    punches: int
    delivered: int
    outbox: int
    deliveries: int


class Probe(abc.ABC):
    """Reads one database the pollers write (never writes); one subclass per backend."""

    @abc.abstractmethod
    async def devices(self) -> dict[str, Row]:
        """Every device: site, status, last_seen."""

    @abc.abstractmethod
    async def counts(self) -> Counts:
        """Punches, deliveries delivered, outbox rows, deliveries."""

    async def live_pollers(self) -> dict[str, int]:
        """The live pollers' ids and pids (none on SQLite)."""
        return {}

    async def leases(self) -> dict[str, str]:
        """Each site's live lease holder, if it is a live poller (none on SQLite)."""
        return {}

    @abc.abstractmethod
    async def table_bytes(self) -> dict[str, int]:
        """Bytes on disk of punches, webhook_outbox, webhook_deliveries, events (each with
        its indexes)."""

    async def pending(self) -> list[dict[str, Any]]:
        """The pending deliveries, by the poller holding their device's site."""
        return []

    async def lock_waiters(self) -> int:
        """Backends waiting on an advisory lock (the append lock) now."""
        return 0

    @abc.abstractmethod
    async def close(self) -> None:
        """Let the database go."""


class PostgresProbe(Probe):
    """A probe over asyncpg: one connection of its own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: asyncpg.Connection | None = None

    async def _db(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.url)
        return self._conn

    async def devices(self) -> dict[str, Row]:
        """See ``Probe.devices``."""
        rows = await (await self._db()).fetch(
            "SELECT id, site_id, status, COALESCE(extract(epoch FROM last_seen), 0)::float8 AS s"
            " FROM devices WHERE NOT removed")
        return {r["id"]: Row(r["site_id"], r["status"], r["s"]) for r in rows}

    async def counts(self) -> Counts:
        """See ``Probe.counts``."""
        r = await (await self._db()).fetchrow(
            "SELECT (SELECT count(*) FROM punches) AS p,"
            " (SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered') AS d,"
            " (SELECT count(*) FROM webhook_outbox) AS o,"
            " (SELECT count(*) FROM webhook_deliveries) AS w")
        return Counts(r["p"], r["d"], r["o"], r["w"])

    async def live_pollers(self) -> dict[str, int]:
        """See ``Probe.live_pollers``."""
        rows = await (await self._db()).fetch(
            "SELECT id, pid FROM pollers WHERE expires_at > now()")
        return {r["id"]: r["pid"] for r in rows}

    async def leases(self) -> dict[str, str]:
        """See ``Probe.leases``."""
        rows = await (await self._db()).fetch(
            "SELECT l.site_id, l.poller_id FROM site_leases l JOIN pollers p"
            " ON p.id = l.poller_id WHERE l.expires_at > now() AND p.expires_at > now()"
            " AND l.site_id <> '*'")
        return {r["site_id"]: r["poller_id"] for r in rows}

    async def lock_waiters(self) -> int:
        """See ``Probe.lock_waiters``."""
        return int(await (await self._db()).fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))

    async def pending(self) -> list[dict[str, Any]]:
        """See ``Probe.pending``."""
        rows = await (await self._db()).fetch(
            "SELECT l.poller_id AS holder, count(*) AS n, max(d.attempts) AS attempts,"
            " round(extract(epoch FROM now() - min(d.next_attempt_at))) AS due_for_s,"
            " count(DISTINCT d.device_id) AS devices"
            " FROM webhook_deliveries d LEFT JOIN devices v ON v.id = d.device_id"
            " LEFT JOIN site_leases l ON l.site_id = v.site_id"
            " WHERE d.state = 'pending' GROUP BY 1")
        out = [dict(r) for r in rows]
        slow = await (await self._db()).fetch(
            "SELECT pid, round(extract(epoch FROM now() - query_start)) AS for_s, state,"
            " wait_event_type AS waits, wait_event, left(query, 60) AS query"
            " FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND state <> 'idle'"
            " AND now() - query_start > interval '5 seconds' ORDER BY query_start LIMIT 8")
        return out + [{"slow statement": dict(r)} for r in slow]

    async def table_bytes(self) -> dict[str, int]:
        """See ``Probe.table_bytes``."""
        db = await self._db()
        out = {"punches": int(await db.fetchval(
            "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('punches')"))}
        for table in ("webhook_outbox", "webhook_deliveries", "events"):
            out[table] = int(await db.fetchval("SELECT pg_total_relation_size($1::regclass)",
                                               table))
        return out

    async def close(self) -> None:
        """See ``Probe.close``."""
        if self._conn is not None:
            await self._conn.close()


class SqliteProbe(Probe):
    """A probe over a read-only sqlite3 connection (WAL: it never blocks the poller)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            if not self.path.exists():
                raise sqlite3.OperationalError("no database yet")
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10,
                                         isolation_level=None)
        return self._conn

    async def devices(self) -> dict[str, Row]:
        """See ``Probe.devices``."""
        rows = self._db().execute(
            "SELECT id, site_id, status, last_seen FROM devices WHERE removed = 0").fetchall()
        return {i: Row(site, status, datetime.fromisoformat(seen).timestamp() if seen else 0.0)
                for i, site, status, seen in rows}

    async def counts(self) -> Counts:
        """See ``Probe.counts``."""
        p, d, o, w = self._db().execute(
            "SELECT (SELECT count(*) FROM punches),"
            " (SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'),"
            " (SELECT count(*) FROM webhook_outbox),"
            " (SELECT count(*) FROM webhook_deliveries)").fetchone()
        return Counts(p, d, o, w)

    async def table_bytes(self) -> dict[str, int]:
        """See ``Probe.table_bytes`` (the pages of each table and of its indexes)."""
        rows = self._db().execute(
            "SELECT m.tbl_name, SUM(s.pgsize) FROM dbstat s JOIN sqlite_master m"
            " ON m.name = s.name GROUP BY m.tbl_name").fetchall()
        sizes = dict(rows)
        return {t: int(sizes.get(t, 0)) for t in
                ("punches", "webhook_outbox", "webhook_deliveries", "events")}

    async def close(self) -> None:
        """See ``Probe.close``."""
        if self._conn is not None:
            self._conn.close()


# --- one configuration ------------------------------------------------------------

@dataclass
class Result:
    """What one configuration measured (None: not measured)."""

    start_s: float | None = None
    sweeps: list[float] = field(default_factory=list)
    periods: list[float] = field(default_factory=list)
    idle: Usage | None = None
    outages: list[float] = field(default_factory=list)
    punches: int = 0
    ingest_s: float | None = None
    punch_rate: float | None = None
    drain_rate: float | None = None
    drain_after_s: float | None = None
    recorded_after_s: float | None = None
    stalls: list[float] = field(default_factory=list)
    #: the most backends seen waiting on the append lock at once, during the punch load
    lock_waiters: int = 0
    #: sites that changed hands during the punch load (nobody was killed)
    handovers: int = 0
    #: the pollers' log lines saying a lease renewal came too late
    late_renewals: int = 0
    received: tuple[int, int] = (0, 0)
    delivered: int = 0
    load: Usage | None = None
    row_bytes: dict[str, float] = field(default_factory=dict)
    takeovers: list[float] = field(default_factory=list)
    lease_moves: list[float] = field(default_factory=list)
    shares: str = "-"
    errors: int = 0
    error_lines: list[str] = field(default_factory=list)
    failed: str = ""


def _warn(text: str) -> None:
    print(f"scale_out: {text}", file=sys.stderr, flush=True)


class Run:
    """One configuration's emulator, pollers, database and measurements."""

    def __init__(self, setup: Setup, sizes: Sizes, fleet: RunningFleet, config: Path, db: str,
                 probe: Probe, receiver: _receiver.Receiver, postmaster: int | None,
                 logs: Path) -> None:
        self.setup = setup
        self.sizes = sizes
        self.fleet = fleet
        self.config = config
        self.db = db
        self.probe = probe
        self.receiver = receiver
        self.postmaster = postmaster
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self._started = 0
        self.result = Result()

    # processes

    def start_poller(self) -> subprocess.Popen[bytes]:
        """A ``fleettui run --headless`` process on this configuration's database."""
        self._started += 1
        log = (self.logs / f"{self.setup.key}-{self._started:02d}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleettui", "run", "--headless", "--config",
             str(self.config), "--db", self.db],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=ROOT)
        log.close()
        return proc

    def stop_pollers(self) -> None:
        """SIGTERM every poller this run started (by its pid), SIGKILL a stuck one."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _warn(f"poller {proc.pid} did not stop in 30 s: killed")
                proc.kill()
                proc.wait()

    def snapshot(self) -> Snapshot:
        """The CPU seconds of every process of this configuration now."""
        r = resource.getrusage(resource.RUSAGE_SELF)
        busy, total = _machine_s()
        return Snapshot(
            time.perf_counter(),
            {p.pid: _cpu(_stat(p.pid)) for p in self.procs if p.poll() is None},
            server_cpu(self.postmaster) if self.postmaster else 0.0,
            _cpu(_stat(self.fleet.proc.pid)), _cpu(_stat(self.receiver.proc.pid)),
            r.ru_utime + r.ru_stime, busy, total)

    def cli_shares(self) -> str:
        """The sites each live poller holds, as ``fleettui pollers --json`` says."""
        done = subprocess.run(
            [sys.executable, "-m", "fleettui", "pollers", "--json", "--db", self.db],
            capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
        if done.returncode != 0:
            return f"CLI failed: {done.stderr.strip()[:80]}"
        live = [p for p in json.loads(done.stdout)["pollers"] if p["live"]]
        counts = sorted((len(p["sites"]) for p in live), reverse=True)
        fleet = sum(1 for p in live if p["fleet_work"])
        return "+".join(map(str, counts)) + f" (fleet work: {fleet})"

    # waiting

    async def _unsteady(self, since: float | None) -> str:
        """What keeps the fleet from being steady ('' when it is)."""
        rows = await self.probe.devices()
        if len(rows) < self.sizes.devices:
            return f"{len(rows)} devices in the store"
        if since is not None:
            behind = Counter(r.status for r in rows.values()
                             if r.status != "online" or r.seen <= since)
            if behind:
                return f"devices not online or not seen since: {dict(behind)}"
        if not self.setup.shared:
            return ""
        live = await self.probe.live_pollers()
        ours = {p.pid for p in self.procs if p.poll() is None}
        if set(live.values()) != ours:
            return f"live pollers {sorted(live.values())}, ours {sorted(ours)}"
        leases = await self.probe.leases()
        held = Counter(leases.values())
        if not (len(leases) == self.sizes.sites and len(held) == len(ours)
                and max(held.values()) - min(held.values()) <= 1):
            return f"{len(leases)} sites leased, shares {sorted(held.values())}"
        return ""

    async def wait_steady(self, since: float | None, timeout: float) -> float | None:
        """Until every device is online with a last_seen after ``since`` (Unix time; None:
        not looked at) and, shared, every site leased by one of the live pollers, the
        shares even; the seconds waited (None: not within ``timeout``)."""
        t0 = time.perf_counter()
        why = "not read"
        while time.perf_counter() - t0 < timeout:
            try:
                why = await self._unsteady(since)
                if not why:
                    return time.perf_counter() - t0
            except DB_ERRORS as e:
                why = f"{type(e).__name__}: {e}"
            await asyncio.sleep(0.25)
        _warn(f"{self.setup.key}: not steady within {timeout:.0f} s: {why}")
        return None

    # the measurements

    async def start(self) -> None:
        """Start the pollers at once; the time until steady."""
        since = time.time()
        self.procs = [self.start_poller() for _ in range(self.setup.pollers)]
        self.result.start_s = await self.wait_steady(since, 600)

    async def sweeps(self) -> None:
        """Idle sweeps back to back, with the CPU of everything over them."""
        before = self.snapshot()
        rows = await self.probe.devices()
        base = {d: r.seen for d, r in rows.items()}
        last = dict(base)
        t_base = time.perf_counter()
        while len(self.result.sweeps) < self.sizes.sweeps:
            await asyncio.sleep(0.2)
            rows = await self.probe.devices()
            now = time.perf_counter()
            for d, r in rows.items():
                if r.seen != last.get(d, r.seen):
                    if last[d]:
                        self.result.periods.append(r.seen - last[d])
                    last[d] = r.seen
            behind = [d for d in base if rows[d].seen <= base[d]]
            if not behind or now - t_base > 60:
                if behind:
                    _warn(f"{self.setup.key}: a sweep left {len(behind)} device(s) unseen "
                          f"for 60 s (e.g. {behind[:3]})")
                self.result.sweeps.append(now - t_base if not behind else math.inf)
                base = {d: r.seen for d, r in rows.items()}
                t_base = now
        self.result.idle = usage(before, self.snapshot())

    async def outages(self) -> None:
        """Cut devices at once; each one's time until offline in the store."""
        ids = sorted(await self.probe.devices())
        ids = ids[:: max(1, len(ids) // self.sizes.cuts)][: self.sizes.cuts]
        cut_at: dict[str, float] = {}
        found: dict[str, float] = {}
        async with httpx.AsyncClient(base_url=self.fleet.control_url, timeout=30) as client:
            for d in ids:
                (await client.put(f"/devices/{d}/faults", json={"offline": True})
                 ).raise_for_status()
                cut_at[d] = time.perf_counter()
            deadline = time.perf_counter() + 120
            while len(found) < len(ids) and time.perf_counter() < deadline:
                rows = await self.probe.devices()
                now = time.perf_counter()
                for d in ids:
                    if d not in found and rows[d].status == "offline":
                        found[d] = now - cut_at[d]
                await asyncio.sleep(0.1)
            for d in ids:
                await client.delete(f"/devices/{d}/faults")
        if len(found) < len(ids):
            _warn(f"{self.setup.key}: {len(ids) - len(found)} outage(s) not seen in 120 s")
        self.result.outages = list(found.values())
        await self.wait_steady(time.time(), 180)

    async def punch_load(self) -> None:
        """Punches on every device at once; rows/s into the store, then the drain."""
        c0 = await self.probe.counts()
        r0 = self.receiver.counts()[0]
        ids = sorted(await self.probe.devices())
        before = self.snapshot()
        sem = asyncio.Semaphore(32)
        async with httpx.AsyncClient(base_url=self.fleet.control_url, timeout=60) as client:

            async def punch(device_id: str) -> int:
                async with sem:
                    r = await client.post(f"/devices/{device_id}/punches",
                                          json={"count": self.sizes.punches})
                    r.raise_for_status()
                    return int(r.json()["stored"])

            stored = sum(await asyncio.gather(*(punch(d) for d in ids)))
        res = self.result
        res.punches = stored
        first: dict[str, float] = {}
        full: dict[str, float] = {}
        progress, moved, told = (0, 0, 0), time.perf_counter(), 0.0
        holders = await self.probe.leases()
        tick = 0
        while time.perf_counter() - before.t < PUNCH_PHASE_S:
            tick += 1
            if self.setup.shared:
                res.lock_waiters = max(res.lock_waiters, await self.probe.lock_waiters())
                if tick % 4 == 0:
                    now_held = await self.probe.leases()
                    res.handovers += sum(1 for site, h in now_held.items()
                                         if holders.get(site, h) != h)
                    holders.update(now_held)
            c = await self.probe.counts()
            got = self.receiver.counts()[0] - r0
            now = time.perf_counter()
            for what, n in (("p", c.punches - c0.punches), ("r", got),
                            ("d", c.delivered - c0.delivered)):
                if n and what not in first:
                    first[what] = now
                if n >= stored and what not in full:
                    full[what] = now
                    if what == "p":
                        res.load = usage(before, self.snapshot())
                        res.ingest_s = now - before.t
            if "d" in full and "r" in full:
                break
            state = (c.punches, got, c.delivered)
            if state != progress:
                if now - moved > 30:
                    res.stalls.append(now - moved)
                    _warn(f"{self.setup.key}: going again after {now - moved:.0f} s")
                progress, moved = state, now
            elif now - moved > 30 and now - told > 25:
                told = now
                _warn(f"{self.setup.key}: nothing moved for {now - moved:.0f} s: "
                      f"{c.punches - c0.punches} punches, {got} received, "
                      f"{c.delivered - c0.delivered} delivered of {stored}")
                await self.diagnose()
                if now - moved > STALL_S:
                    _warn(f"{self.setup.key}: giving up on the drain")
                    res.stalls.append(math.inf)
                    break
            await asyncio.sleep(0.25)
        else:
            _warn(f"{self.setup.key}: the punch load did not end within {PUNCH_PHASE_S} s")
            res.stalls.append(math.inf)
        if "p" in first and "p" in full and full["p"] > first["p"]:
            res.punch_rate = stored / (full["p"] - first["p"])
        if "r" in first and "r" in full and full["r"] > first["r"]:
            res.drain_rate = stored / (full["r"] - first["r"])
            if "p" in full:
                res.drain_after_s = full["r"] - full["p"]
            if "d" in full:
                res.recorded_after_s = full["d"] - full["r"]
        if res.load is None:
            res.load = usage(before, self.snapshot())
        r1 = self.receiver.counts()
        res.received = (r1[0] - r0, r1[1])
        c = await self.probe.counts()
        res.delivered = c.delivered - c0.delivered
        sizes = await self.probe.table_bytes()
        rows = {"punches": c.punches, "webhook_outbox": c.outbox,
                "webhook_deliveries": c.deliveries}
        res.row_bytes = {t: sizes[t] / n for t, n in rows.items() if n}

    async def diagnose(self) -> None:
        """Say where the pending deliveries are (by the poller holding their site)."""
        pids = {p.pid: i for i, p in enumerate(self.procs) if p.poll() is None}
        try:
            for line in await self.probe.pending():
                holder = line.get("holder")
                slot = pids.get(int(str(holder).split(":")[1])) if holder else None
                _warn(f"  pending: {line}" + (f" (poller slot {slot})" if holder else ""))
        except DB_ERRORS as e:
            _warn(f"  pending: not readable ({e})")

    async def kills(self) -> None:
        """SIGKILL pollers in turn; each time until its sites are held and polled again."""
        shared, n = self.setup.shared, self.setup.pollers
        kills = self.sizes.kills if n > 1 else self.sizes.restarts
        for i in range(kills):
            slot = i % n
            proc = self.procs[slot]
            rows = await self.probe.devices()
            victim = None
            sites = {r.site for r in rows.values()}
            if shared:
                victim = next(p for p, pid in (await self.probe.live_pollers()).items()
                              if pid == proc.pid)
                sites = {s for s, h in (await self.probe.leases()).items() if h == victim}
            devices = [d for d, r in rows.items() if r.site in sites]
            t_wall, t0 = time.time(), time.perf_counter()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            if n == 1:  # nobody to take over: restarted at once, as a supervisor would
                self.procs[slot] = self.start_poller()
            leased = done = None
            while time.perf_counter() - t0 < 300:
                await asyncio.sleep(0.2)
                try:
                    if shared and leased is None:
                        live = await self.probe.live_pollers()
                        leases = await self.probe.leases()
                        if all(leases.get(s) not in (None, victim) and leases[s] in live
                               for s in sites):
                            leased = time.perf_counter() - t0
                    if shared and leased is None:
                        continue
                    rows = await self.probe.devices()
                    if all(rows[d].seen > t_wall for d in devices):
                        done = time.perf_counter() - t0
                        break
                except DB_ERRORS:
                    continue
            if done is None:
                _warn(f"{self.setup.key}: kill {i + 1}: not taken over in 300 s")
                done = math.inf
            self.result.takeovers.append(done)
            if leased is not None:
                self.result.lease_moves.append(leased)
            print(f"  {self.setup.key} kill {i + 1}/{kills}: {len(sites)} site(s), "
                  f"{len(devices)} device(s), taken over in {done:.1f} s", file=sys.stderr,
                  flush=True)
            if n > 1:  # back, and the shares even again (the next victim is another one)
                self.procs[slot] = self.start_poller()
                await self.wait_steady(None, 180)
        await self.wait_steady(time.time(), 180)  # every device polled again before the load

    def log_errors(self) -> None:
        """Count the pollers' ERROR lines and tracebacks (their logs, every process)."""
        seen: list[str] = []
        for path in sorted(self.logs.glob(f"{self.setup.key}-*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if "site leases" in line and ("could not renew" in line or "too late" in line):
                    self.result.late_renewals += 1
                if " ERROR " in line or line.startswith("Traceback"):
                    self.result.errors += 1
                    text = line.split(" ERROR ", 1)[-1][:160]
                    if text not in seen:
                        seen.append(text)
        self.result.error_lines = seen[:5]


# --- the whole bench --------------------------------------------------------------

def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _pg_server() -> Any:
    """A started throwaway PostgreSQL server (tests/pg_server.py)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.pg_server import PostgresServer

    return PostgresServer(PG_HOST, _free_port(PG_HOST)).start()


def _config_text(fleet: RunningFleet, url: str, quick: bool) -> str:
    return ((QUICK_POLL if quick else "")
            + "[security]\nallow_private_webhook_targets = true\n\n" + fleet.config_text
            + f'\n[[webhooks]]\nurl = "{url}"\nsecret = "{SECRET}"\nevents = ["punch.*"]\n')


async def bench_setup(setup: Setup, sizes: Sizes, index: int, pg: Any,
                      receiver: _receiver.Receiver, tmp: Path) -> Result:
    """Measure one configuration with a fresh emulator and a fresh database."""
    t_setup = time.perf_counter()
    print(f"{setup.title}: starting", file=sys.stderr, flush=True)
    with emulator("--sites", str(sizes.sites), "--devices", str(sizes.devices),
                  "--punch-rate", "0", "--history-days", "0",
                  "--base-address", f"127.{140 + index}.0.1", "--port", "0") as fleet:
        for old in [*tmp.glob(f"{setup.key}-*.log"), *tmp.glob(f"{setup.key}.db*")]:
            old.unlink()  # a kept folder's previous run
        config = tmp / f"{setup.key}.toml"
        config.write_text(_config_text(fleet, receiver.url, sizes.quick))
        config.chmod(0o600)
        postmaster = None
        probe: Probe
        if setup.shared:
            name = f"scale_{setup.key}"
            admin = await asyncpg.connect(pg.url("postgres"))
            await admin.execute(f'CREATE DATABASE "{name}"')
            await admin.close()
            db = pg.url(name)
            probe = PostgresProbe(db)
            postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        else:
            path = tmp / f"{setup.key}.db"
            db = str(path)
            probe = SqliteProbe(path)
        receiver.reset()
        run = Run(setup, sizes, fleet, config, db, probe, receiver, postmaster, tmp)
        try:
            for phase in ("start", "sweeps", "outages", "kills", "punch_load"):
                t_phase = time.perf_counter()
                await getattr(run, phase)()
                if phase == "start" and setup.shared:
                    run.result.shares = run.cli_shares()
                _warn(f"{setup.key}: {phase} took {time.perf_counter() - t_phase:.0f} s")
            if setup.shared:
                run.result.shares += " → " + run.cli_shares()
        except Exception as e:  # one configuration failing leaves the others' figures
            run.result.failed = f"{type(e).__name__}: {e}"
            _warn(f"{setup.key} failed: {run.result.failed}")
        finally:
            run.stop_pollers()
            await probe.close()
        run.log_errors()
    print(f"{setup.title}: done in {time.perf_counter() - t_setup:.0f} s", file=sys.stderr,
          flush=True)
    return run.result


def _p(values: Sequence[float], unit: str = "s", digits: int = 1) -> str:
    if not values:
        return "-"
    return (f"{statistics.median(values):.{digits}f}/"
            f"{percentile(values, 99):.{digits}f} {unit}")


def _rows(setups: list[Setup], results: list[Result], sizes: Sizes) -> list[list[str]]:
    def row(name: str, f: Any) -> list[str]:
        out = [name]
        for s, r in zip(setups, results, strict=True):
            try:
                out.append(f(s, r))
            except (TypeError, ValueError, ZeroDivisionError, KeyError):
                out.append("-")
        return out

    per_k = sizes.devices / 1000

    def cpu(u: Usage | None, what: str) -> str:
        assert u is not None
        return f"{getattr(u, what):.0%}"

    return [
        row("start: all online (+ sites leased, shares even)",
            lambda s, r: f"{r.start_s:.1f} s"),
        row(f"idle sweep p50/p99 ({sizes.sweeps} sweeps)",
            lambda s, r: _p([x * 1000 for x in r.sweeps], "ms", 0)),
        row("check period p50/p99 (successive last_seen)", lambda s, r: _p(r.periods, "s", 2)),
        row("pollers' CPU, idle (sum; per poller)",
            lambda s, r: f"{r.idle.pollers:.0%} ("
                         + "/".join(f"{x:.0%}" for x in r.idle.per_poller) + ")"),
        row("pollers' CPU per 1,000 devices, idle",
            lambda s, r: f"{r.idle.pollers / per_k:.1%}"),
        row("PostgreSQL server CPU, idle",
            lambda s, r: cpu(r.idle, "server") if s.shared else "-"),
        row("emulator / receiver / bench CPU, idle",
            lambda s, r: f"{r.idle.emulator:.0%} / {r.idle.receiver:.0%} / {r.idle.bench:.0%}"),
        row("machine busy, idle (of all cores; others' share)",
            lambda s, r: f"{r.idle.machine:.0%} ({r.idle.others:.0%} of a core)"),
        row(f"offline detected p50/p99 ({sizes.cuts} cuts)", lambda s, r: _p(r.outages)),
        row(f"takeover after kill -9 p50/p99 ({sizes.kills} kills; ×1: {sizes.restarts} "
            "restarts)",
            lambda s, r: _p(r.takeovers) + (" (restart)" if s.pollers == 1 else "")),
        row("  of which: sites leased again p50/p99",
            lambda s, r: _p(r.lease_moves) if s.shared else "-"),
        row("sites per poller, fleettui pollers (start → end)", lambda s, r: r.shares),
        row(f"punches/s into the store ({sizes.punches}/device at once)",
            lambda s, r: f"{r.punch_rate:,.0f}/s ({r.punches:,} in {r.ingest_s:.1f} s)"),
        row("outbox drain: deliveries/s to the receiver",
            lambda s, r: f"{r.drain_rate:,.0f}/s (all {r.drain_after_s:+.1f} s after ingest)"),
        row("  all recorded delivered in the store, after",
            lambda s, r: f"{r.recorded_after_s:+.1f} s"),
        row("  drain stalls (nothing moved > 30 s)",
            lambda s, r: ", ".join(f"{x:.0f} s" for x in r.stalls) or "none"),
        row("received / distinct / delivered in store",
            lambda s, r: f"{r.received[0]:,} / {r.received[1]:,} / {r.delivered:,}"),
        row("  most backends waiting on the append lock at once",
            lambda s, r: str(r.lock_waiters) if s.shared else "-"),
        row("  sites changing hands during the load (no kill)",
            lambda s, r: str(r.handovers) if s.shared else "-"),
        row("CPU during punch load: pollers / PostgreSQL",
            lambda s, r: f"{r.load.pollers:.0%} / " + (cpu(r.load, "server") if s.shared
                                                         else "-")),
        row("machine busy during punch load",
            lambda s, r: f"{r.load.machine:.0%}"),
        row("bytes per punch row (with indexes)",
            lambda s, r: f"{r.row_bytes['punches']:.0f}"),
        row("bytes per outbox row / delivery row",
            lambda s, r: f"{r.row_bytes['webhook_outbox']:.0f} / "
                         f"{r.row_bytes['webhook_deliveries']:.0f}"),
        row("poller log: late lease renewals / ERROR lines",
            lambda s, r: f"{r.late_renewals} / {r.errors}"),
    ]


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT,
                              check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    diff = subprocess.run(["git", "diff", "HEAD", "--", "fleettui"], capture_output=True,
                          cwd=ROOT, check=False).stdout
    if not diff:
        return head
    files = len(git("diff", "HEAD", "--name-only", "--", "fleettui").splitlines())
    return (f"{head} + uncommitted changes to {files} file(s) of fleettui/, diff sha1 "
            f"{hashlib.sha1(diff).hexdigest()[:8]}")


async def amain(args: argparse.Namespace) -> None:
    """Run every configuration asked for and print one table."""
    sizes = (Sizes(args.devices or 200, args.sites or 10, args.kills or 2, args.restarts or 1,
                   args.cuts or 4, args.sweeps or 3, args.punches or 20, True) if args.quick else
             Sizes(args.devices or 2000, args.sites or 100, args.kills or 10,
                   args.restarts or 5, args.cuts or 20, args.sweeps or 8, args.punches or 20,
                   False))
    setups = [SETUPS[k] for k in args.configs.split(",")]
    t0 = time.perf_counter()
    receiver = _receiver.start()
    pg = _pg_server() if any(s.shared for s in setups) else None
    results: list[Result] = []
    try:
        if args.keep:
            work = Path(args.keep)
            work.mkdir(parents=True, exist_ok=True)
            for i, setup in enumerate(setups):
                results.append(await bench_setup(setup, sizes, i, pg, receiver, work))
        else:
            with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
                for i, setup in enumerate(setups):
                    results.append(await bench_setup(setup, sizes, i, pg, receiver, Path(tmp)))
    finally:
        receiver.stop()
        if pg is not None:
            pg.stop()
    took = time.perf_counter() - t0
    poll = ("QUICK [poll]: check every 1 s ± 0.5 s, timeout 0.5 s, lease 3 s: a smoke run"
            if sizes.quick else "default [poll]: a check every 4 s + 0-1 s jitter, "
            "timeout 2 s, offline after 2 failures, leases of 15 s renewed every 3 s")
    print(f"scale-out ({machine()}, commit {_commit()}; {sizes.devices:,} devices over "
          f"{sizes.sites} sites, emulator in its own process; {poll}; PostgreSQL "
          f"{'server by tests/pg_server.py (fsync off)' if pg else 'not used'}; "
          f"SQLite WAL, synchronous=NORMAL; run took {took / 60:.1f} min)")
    print()
    print("| metric | " + " | ".join(s.title for s in setups) + " |")
    print("|---|" + "---|" * len(setups))
    for r in _rows(setups, results, sizes):
        print("| " + " | ".join(r) + " |")
    for s, r in zip(setups, results, strict=True):
        if r.failed:
            print(f"{s.title} failed: {r.failed}")
        for line in r.error_lines:
            print(f"{s.title} log: {line}")


def main() -> None:
    """Parse the options and run."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, help="emulated devices (2000; --quick 200)")
    ap.add_argument("--sites", type=int, help="sites they are spread over (100; --quick 10)")
    ap.add_argument("--kills", type=int,
                    help="kill -9s timed per configuration of several pollers (10; quick 2)")
    ap.add_argument("--restarts", type=int,
                    help="kill -9s (and restarts) timed with one poller (5; quick 1)")
    ap.add_argument("--cuts", type=int, help="outages timed per configuration (20; quick 4)")
    ap.add_argument("--sweeps", type=int, help="idle sweeps timed (8; quick 3)")
    ap.add_argument("--punches", type=int,
                    help="punches generated on every device for the load (20; quick 20)")
    ap.add_argument("--configs", default="sqlite1,pg1,pg2,pg4",
                    help="which configurations, in order (sqlite1,pg1,pg2,pg4)")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep the configs, SQLite files and poller logs in DIR")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes and a fast [poll] schedule: a smoke run of ~2 minutes")
    asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    main()
