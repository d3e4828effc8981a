"""The scale-out issue's whole scenario, end to end: three pollers on one PostgreSQL database
over an emulated fleet of 60 devices on 12 sites, one of them killed with SIGKILL and
restarted each cycle, punches and outages flowing, a webhook receiver taking everything.

"At the end every device's records are in the store exactly once, every webhook was
delivered once per event id and in order per device, no site was unpolled for longer
than lease_s + 5 s." Here, as the test checks it:

- time is scaled to a short lease (``lease_s`` = 3: rounds every 0.6 s): a kill every
  cycle of some 8-10 s (three cycles) rather than every 30 s;
- every record of every device is in the store exactly once (``fleettui export punches``
  against what each emulated device holds);
- webhooks are delivered *at least once*: every outbox row reaches the receiver, and the
  first receipts of each device's events come in outbox id order. A delivery the killed
  poller sent but had not recorded when it died is sent again by the site's next holder:
  such a duplicate is allowed only for a device of a site the killed poller held, first
  received before that kill and again after it (and at most the per-device batch of a
  round, per such kill). The same holds for a *lapse*: a poller alive but starved past
  its lease (a loaded box) stops acting for its sites before its leases run out, and a
  delivery it had out when it stopped may be sent again by the next holder. Any other
  duplicate is a bug. Duplicates and lapses are counted and printed;
- "never unpolled longer than lease_s + 5 s" is not asserted on the clock (a loaded
  machine would make it flaky). What is asserted, from the store, is safety: a trigger
  the test installs logs every change of holder of ``site_leases``; every site taken from
  another poller was taken only once that poller's lease had run out (never two pollers
  on one site), and liveness: at the end every site is held by a live poller. The
  takeover gaps (kill to the new lease, old lease's end to the new lease) are printed
  (``pytest -s``) and attached with ``record_property``.

The receiver is a real HTTP server in the test process; the pollers are real
``fleettui run --headless`` processes. Every wait is bounded and waits on a condition
(a failed one also shows what the database's sessions were waiting on).

The tests at the end pin down, with time injected, what this scenario found in the lease
keeper: a poller above its share without the fleet lease never let go; a hand-over that
waited longer than a lease for its work in hand stopped the renewals; nothing stopped a
poller whose round was stuck from acting for sites whose leases may have run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from fleettui.domain import PollerInfo
from fleettui.engine.leases import LeaseKeeper
from fleettui.engine.share import SiteShare
from fleettui.store import Store
from fleettui.store.postgres import PostgresStore
from tests.fleet_config import SiteEntry, write_fleet_config
from tests.test_headless import (
    Emulate,
    Headless,
    Runner,
    dev,
    device_keys,
    emulated_fleet,
    punch_at,
    runner,
    wait_for,
)
from tests.test_headless_postgres import _exported, _pollers
from tests.test_leases import SITES as TEN_SITES
from tests.test_leases import Clock, _keeper, stores

__all__ = ["runner", "stores"]  # the fixtures, imported to be used here

T = TypeVar("T")

SITES = [SiteEntry(f"so-{n:02d}", f"Site {n}", "Europe/Paris") for n in range(1, 13)]
PER_SITE = 5
LEASE_S = 3
CYCLES = 3
#: records made at once on a device of each of the victim's sites just before each kill
BURST = 30
#: the most deliveries of one device a round sends before recording them (Store.webhook_due)
PER_DEVICE_BATCH: int = inspect.signature(PostgresStore.webhook_due).parameters[
    "per_device"].default
#: bound of the end's waits: the whole fleet's backlog drains through three loaded pollers
END_WAIT_S = 60.0


# --------------------------------------------------------------------------- the receiver


@dataclass(frozen=True)
class Receipt:
    """One request the receiver took."""

    webhook_id: int
    device: str | None
    event: str
    body: bytes
    at: float  # time.monotonic() on arrival
    wall: datetime  # the same, as the database's clock reads it (one host)


@dataclass
class Receiver:
    """Records every webhook it is sent, in arrival order, and answers 204."""

    got: list[Receipt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, webhook_id: str, body: bytes) -> None:
        """Note one request."""
        payload = json.loads(body)
        device = (payload.get("punch", {}).get("device_id") or payload.get("device", {}).get("id")
                  or payload.get("alert", {}).get("device_id"))
        with self.lock:
            self.got.append(Receipt(int(webhook_id.removeprefix("msg_")), device,
                                    str(payload.get("event")), body, time.monotonic(),
                                    datetime.now(UTC)))

    def receipts(self) -> list[Receipt]:
        """What arrived so far, in arrival order."""
        with self.lock:
            return list(self.got)

    def ids(self) -> set[int]:
        """The outbox ids received at least once."""
        return {r.webhook_id for r in self.receipts()}


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    """The receiver, listening on a free loopback port, and its URL."""
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            rec.take(self.headers["webhook-id"], body)
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="receiver", daemon=True)
    thread.start()
    yield rec, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------- the database

#: every change of a site's holder (renewals left out), as the test's own instrument
LEASE_LOG = """
CREATE TABLE test_lease_log (
    id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(),
    op text NOT NULL, site_id text NOT NULL,
    old_poller text, old_since timestamptz, old_expires timestamptz,
    new_poller text, new_since timestamptz, new_expires timestamptz);
CREATE FUNCTION test_log_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO test_lease_log (op, site_id, new_poller, new_since, new_expires)
      VALUES ('INSERT', NEW.site_id, NEW.poller_id, NEW.since, NEW.expires_at);
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO test_lease_log (op, site_id, old_poller, old_since, old_expires)
      VALUES ('DELETE', OLD.site_id, OLD.poller_id, OLD.since, OLD.expires_at);
  ELSIF OLD.poller_id <> NEW.poller_id OR OLD.since <> NEW.since THEN
    INSERT INTO test_lease_log VALUES (DEFAULT, DEFAULT, 'UPDATE', NEW.site_id,
      OLD.poller_id, OLD.since, OLD.expires_at, NEW.poller_id, NEW.since, NEW.expires_at);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER test_log_lease AFTER INSERT OR UPDATE OR DELETE ON site_leases
  FOR EACH ROW EXECUTE FUNCTION test_log_lease();
"""


def _sql(url: str, query: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of one query, straight from the database."""

    async def run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url)
        try:
            return [dict(r) for r in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


def _prepare(url: str) -> None:
    """Migrate the new database (as any fleettui process would) and install the lease log."""
    from fleettui.store import open_store

    async def run() -> None:
        store = await open_store(url)
        await store.close()
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(LEASE_LOG)
        finally:
            await conn.close()

    asyncio.run(run())


def _holders(url: str) -> dict[str, str]:
    """Each lease still running (site or ``*``), by site: its live holder's id."""
    return {r["site_id"]: r["poller_id"] for r in _sql(
        url, "SELECT l.site_id, l.poller_id FROM site_leases l JOIN pollers p"
             " ON p.id = l.poller_id WHERE l.expires_at > now() AND p.expires_at > now()")}


def _polling(h: Headless) -> bool:
    """Whether a poller says its engine runs."""
    return "polling" in h.log()


def _received_from(rec: Receiver, devices: list[str]) -> int:
    """How many webhooks of these devices the receiver has taken."""
    return sum(r.device in devices for r in rec.receipts())


def _db_waits(url: str) -> str:
    """The database's sessions that wait on a lock, and who blocks them (for a failure's
    message: a stuck fleet shows why)."""
    rows = _sql(url, "SELECT pid, pg_blocking_pids(pid) AS by, wait_event_type, wait_event,"
                     " state, now() - xact_start AS xact_age, left(query, 120) AS query"
                     " FROM pg_stat_activity WHERE datname = current_database()"
                     " AND pid <> pg_backend_pid() AND (cardinality(pg_blocking_pids(pid)) > 0"
                     " OR state = 'idle in transaction' OR now() - xact_start > interval '2 s')")
    return "\n".join(repr(r) for r in rows) or "(no session waits on the database)"


def _wait(url: str, condition: Callable[[], T | None], what: str, *,
          describe: Callable[[], object] | None = None, **bounds: Any) -> T:
    """``wait_for``, a failure also telling what the database's sessions wait on."""
    def more() -> str:
        return (f"{describe()}\n" if describe else "") + "database waits:\n" + _db_waits(url)

    return wait_for(condition, what, describe=more, **bounds)


def _sites_of(url: str, poller_id: str) -> list[str]:
    """The sites a poller holds now (without the fleet lease)."""
    return sorted(s for s, p in _holders(url).items() if p == poller_id and s != "*")


def _more_from(rec: Receiver, devices: list[str], seen: int) -> bool:
    """Whether the receiver has taken more webhooks of these devices than ``seen``."""
    return _received_from(rec, devices) > seen


def _held_by(url: str, pollers: set[str]) -> bool:
    """Whether every site and the fleet work are held, each by one of these pollers."""
    held = _holders(url)
    return set(held) == {s.id for s in SITES} | {"*"} and set(held.values()) <= pollers



def _offline_count(url: str, device_id: str) -> int:
    """How many times the store has told that the device went offline (outbox rows)."""
    return int(_sql(url, "SELECT COUNT(*) AS n FROM webhook_outbox WHERE device_id = $1"
                         " AND event_type = 'device.offline'", device_id)[0]["n"])


def _offline_counts(url: str, before: dict[str, int]) -> str:
    """The devices' offline counts now, and before their outage (for a failure's message)."""
    return repr({d: (n, _offline_count(url, d)) for d, n in before.items()})


def _noticed(url: str, before: dict[str, int]) -> bool:
    """Whether each device has been told offline once more since ``before`` was counted."""
    return all(_offline_count(url, d) > n for d, n in before.items())


@dataclass
class Kill:
    """One SIGKILL: whom, when, and what it held then."""

    poller_id: str
    pid: int
    before: float  # time.monotonic() just before the signal
    after: float  # ... once the process is gone
    at: datetime
    held: set[str]  # its leases (sites, "*") left in the store when it died


# --------------------------------------------------------------------------- the test


def test_three_pollers_one_killed_each_cycle_lose_and_double_nothing(
    emulate: Emulate, runner: Runner, tmp_path: Path, pg_url: str,
    receiver: tuple[Receiver, str], record_property: Any,
) -> None:
    rec, hook_url = receiver
    fleet = [dev(f"so-{s.id[3:]}-{i}", s) for s in SITES for i in range(1, PER_SITE + 1)]
    site_of = {d.id: s.id for d, s in fleet}
    by_site = {s.id: [d.id for d, t in fleet if t.id == s.id] for s in SITES}
    em = emulated_fleet(emulate, fleet, punches=4)
    ids = list(site_of)
    config = write_fleet_config(
        tmp_path / "fleet.toml", SITES, [(d, s.id) for d, s in fleet],
        poll={"lease_s": LEASE_S, "check_interval_s": 1.0, "timeout_s": 1.0},
        security={"allow_private_webhook_targets": True}, webhooks=[{"url": hook_url}])
    _prepare(pg_url)

    started = [runner.start(config, pg_url) for _ in range(3)]  # type: ignore[arg-type]
    for h in started:
        wait_for(partial(_polling, h), f"pid {h.pid} to start polling", watch=started)
    live: list[Headless] = list(started)
    ident: dict[int, str] = {}

    def split() -> bool:
        rows = {p["pid"]: p for p in _pollers(pg_url)}
        ident.update({pid: p["id"] for pid, p in rows.items()})
        mine = [rows[h.pid] for h in live if h.pid in rows]
        return (len(mine) == 3 and sorted(len(p["sites"]) for p in mine) == [4, 4, 4]
                and sum(p["fleet_work"] for p in mine) == 1
                and sorted(s for p in mine for s in p["sites"]) == [s.id for s in SITES])

    _wait(pg_url, split, "fleettui pollers to show the 12 sites split 4/4/4", watch=live,
          interval=0.3, timeout=END_WAIT_S, describe=lambda: repr(_pollers(pg_url)))

    kills: list[Kill] = []
    made: dict[str, list[tuple[str, str, int, int]]] = {d: [] for d in ids}
    minute = iter(range(10_000))
    base = datetime(2025, 3, 3, 6, 0)

    def punch_everywhere(offset: int) -> None:
        """A punch on one device of every site (a different device each time)."""
        for s in SITES:
            device = by_site[s.id][offset % PER_SITE]
            made[device].append(punch_at(em, device, "1003",
                                         base + timedelta(minutes=next(minute))))

    for cycle in range(CYCLES):
        victim = live[cycle % len(live)]  # round-robin over the places of the three
        victim_id = ident[victim.pid]
        punch_everywhere(cycle)
        # a burst on the victim's sites, killed once its webhooks begin to arrive: the kill
        # lands while deliveries are out (sent, not yet recorded as delivered)
        victim_sites = _wait(pg_url, partial(_sites_of, pg_url, victim_id),
                             f"pid {victim.pid} to hold sites", watch=live)
        burst = [by_site[s][cycle % PER_SITE] for s in victim_sites]
        seen = _received_from(rec, burst)
        for device in burst:
            assert em.emu.call(em.fleet.generate_punches, device, BURST) == (BURST, 0)
        _wait(pg_url, partial(_more_from, rec, burst, seen),
              "the burst's first webhooks to arrive", watch=live)
        before = time.monotonic()
        victim.kill()
        after, at = time.monotonic(), datetime.now(UTC)
        held = {r["site_id"] for r in _sql(
            pg_url, "SELECT site_id FROM site_leases WHERE poller_id = $1", victim_id)}
        kills.append(Kill(victim_id, victim.pid, before, after, at, held))
        survivors = [h for h in live if h is not victim]

        # while its sites wait for their leases to run out: more punches, two outages
        punch_everywhere(cycle + 1)
        theirs = sorted(held - {"*"}) or victim_sites
        down = [by_site[theirs[0]][cycle % PER_SITE],
                by_site[next(s for s in by_site if s not in held)][(cycle + 2) % PER_SITE]]
        outages = {d: _offline_count(pg_url, d) for d in down}
        for device in down:
            em.emu.run(em.fleet.set_faults(device, {"offline": True}))
        for device in down:  # punches taken while cut off: the device keeps them
            made[device].append(punch_at(em, device, "1004",
                                         base + timedelta(minutes=next(minute))))
        _wait(pg_url, partial(_held_by, pg_url, {ident[h.pid] for h in survivors}),
              f"the survivors to take over the sites of pid {victim.pid}", watch=survivors,
              describe=partial(_holders, pg_url))
        _wait(pg_url, partial(_noticed, pg_url, outages), f"the outages of {down} to be noticed",
              watch=survivors, describe=partial(_offline_counts, pg_url, outages))
        for device in down:
            em.emu.run(em.fleet.clear_faults(device))

        fresh = runner.start_polling(config, pg_url)  # type: ignore[arg-type]
        live = [fresh if h is victim else h for h in live]
        _wait(pg_url, split, "the sites split again 4/4/4", watch=live, interval=0.3,
              timeout=END_WAIT_S, describe=partial(_holders, pg_url))

    # --- the end: everything stored once, every event received
    def stored_all() -> bool:
        got = _exported(pg_url)
        return all(got.get(d) == device_keys(em, d) for d in ids)

    def differing() -> dict[str, tuple[int, int]]:
        got = _exported(pg_url)
        return {d: (sum(got.get(d, Counter()).values()), sum(device_keys(em, d).values()))
                for d in ids if got.get(d) != device_keys(em, d)}

    _wait(pg_url, stored_all, "every record of every device in the store exactly once",
          watch=live, interval=0.5, timeout=END_WAIT_S, describe=differing)
    for device, keys in made.items():
        assert all(device_keys(em, device)[k] == 1 for k in keys), device

    def outbox() -> dict[int, str | None]:
        return {r["id"]: r["device_id"] for r in _sql(
            pg_url, "SELECT id, device_id FROM webhook_outbox ORDER BY id")}

    def all_received() -> dict[int, str | None] | None:
        rows = outbox()
        done = set(rows) <= rec.ids() and not _sql(
            pg_url, "SELECT 1 FROM webhook_deliveries WHERE state <> 'delivered' LIMIT 1")
        return rows if done else None

    waited = _wait(pg_url, all_received, "the receiver to get every outbox event, each "
                   "recorded delivered", watch=live, interval=0.3, timeout=END_WAIT_S,
                   describe=lambda: f"{len(set(outbox()) - rec.ids())} not received")
    receipts = rec.receipts()
    events = outbox()  # read after the receipts: every event received is in it
    assert set(waited) <= {r.webhook_id for r in receipts} <= set(events)

    # order: per device, the first receipts follow the outbox's order (and what was
    # received of a device's events is never more than those before the first missing)
    first: dict[int, int] = {}  # outbox id -> the index of its first receipt
    for n, r in enumerate(receipts):
        first.setdefault(r.webhook_id, n)
    for device in {*events.values()}:
        theirs = sorted(i for i, d in events.items() if d == device)
        got = sorted((i for i in theirs if i in first), key=lambda i: first[i])
        assert got == theirs[:len(got)], f"{device}: events first received out of order"
    assert all(receipts[n].device in (events[i], None) for i, n in first.items())

    # the leases, from the store: never two pollers on one site; each killed poller's
    # sites taken over once its leases ran out; every site held by a live poller now
    log = _sql(pg_url, "SELECT * FROM test_lease_log ORDER BY id")
    moves = [row for row in log if row["op"] == "UPDATE" and row["old_poller"] != row["new_poller"]]
    for row in moves:
        assert row["new_since"] >= row["old_expires"], (
            f"{row['site_id']} taken from {row['old_poller']} while its lease ran", row)
    gaps: list[dict[str, Any]] = []
    for k in kills:
        taken = {row["site_id"]: row for row in moves
                 if row["old_poller"] == k.poller_id and row["at"] > k.at}
        assert set(taken) == k.held, f"sites of the killed {k.pid} not taken over: {taken}"
        for site, row in sorted(taken.items()):
            gaps.append({"killed": k.pid, "site": site, "new_holder": row["new_poller"],
                         "after_kill_s": round((row["new_since"] - k.at).total_seconds(), 2),
                         "after_lease_end_s": round(
                             (row["new_since"] - row["old_expires"]).total_seconds(), 2)})
    # a lease that ran out on a poller still alive: starved past its lease (a loaded box);
    # it had stopped acting for the site before (it never holds it with another)
    lapses = [row for row in moves if not any(
        row["old_poller"] == k.poller_id and row["at"] > k.at for k in kills)]
    held_now = _holders(pg_url)
    assert set(held_now) == {s.id for s in SITES} | {"*"}
    assert set(held_now.values()) <= {ident[h.pid] for h in live}, "a site held by no live poller"

    # duplicates: only a delivery its sender had sent and not yet recorded when the site
    # changed hands (the sender killed, or starved past its lease)
    duplicates = [r for n, r in enumerate(receipts) if n != first[r.webhook_id]]
    explained: Counter[str] = Counter()
    for r in duplicates:
        device = events[r.webhook_id]
        lease = "*" if device is None else site_of.get(device, "*")
        sent = receipts[first[r.webhook_id]]
        by_kill = [k for k in kills if lease in k.held and sent.at < k.after and r.at > k.before]
        by_lapse = [row for row in lapses if row["site_id"] == lease
                    and sent.wall < row["old_expires"] and r.wall > row["new_since"]]
        assert by_kill or by_lapse, (
            f"msg_{r.webhook_id} ({device}, {r.event}) received again, with no kill nor lapse "
            "of its sender's lease in between: sent twice by live pollers")
        explained["kill" if by_kill else "lapse"] += 1
    for device, n in Counter(events[r.webhook_id] for r in duplicates).items():
        lease = "*" if device is None else site_of.get(device, "*")
        handovers = sum(lease in k.held for k in kills) + sum(
            row["site_id"] == lease for row in lapses)
        assert n <= PER_DEVICE_BATCH * handovers, (device, n, handovers)

    summary = {"kills": len(kills), "deliveries": len(receipts), "events": len(events),
               "duplicates": len(duplicates), "duplicates_after": dict(explained),
               "lapses": len(lapses), "lease_s": LEASE_S,
               "worst_takeover_after_kill_s": max(g["after_kill_s"] for g in gaps)}
    print("\nscale-out:", json.dumps(summary))
    for g in gaps:
        print("takeover:", json.dumps(g))
    for row in lapses:
        print("lapse:", row["site_id"], row["old_poller"], "->", row["new_poller"])
    record_property("scale_out", json.dumps(summary))
    record_property("takeover_gaps", json.dumps(gaps))

    for h in live:
        assert h.terminate() == 0, h.log()
    for h in runner.started:
        assert "Traceback" not in h.log(), h.log()


# ------------------------------------------------- what the scenario found, time injected
# (the lease keeper alone, on both backends: tests/test_leases.py's three store objects on
# one database, ten sites)


async def test_a_poller_above_its_share_lets_go_though_it_has_no_fleet_lease(
    stores: list[Store],
) -> None:
    """Three pollers: b took half the sites from a, then c joins. b, above its new share
    and without the fleet lease (a has it), lets go too, and the shares come to 4, 3, 3
    (b used to keep its five: c never got its share)."""
    clock = Clock()
    a, b, c = (_keeper(s, n, clock) for s, n in zip(stores, "abc", strict=True))
    for keepers in ((a, b), (a, b, c)):
        for _ in range(20):
            for k in keepers:
                await k.round()
                assert not _overlap(a, b, c)
            clock.advance(a.round_s)
        if keepers == (a, b):
            assert [len(k.share.held_sites()) for k in keepers] == [5, 5]
    assert [len(k.share.held_sites()) for k in (a, b, c)] == [4, 3, 3]
    assert a.share.holds(None) and not b.share.holds(None) and not c.share.holds(None)


async def test_a_hand_over_longer_than_a_lease_keeps_the_leases_renewed(
    stores: list[Store],
) -> None:
    """The work in hand of a site being let go lasts longer than a lease: meanwhile the
    rounds go on renewing every lease of the poller (it used to wait in its round: its
    leases ran out and another took its sites while it still acted for them); the site
    waits, acted for by nobody, and goes to the newcomer once its work is done."""
    clock = Clock()
    done = asyncio.Event()
    letting: list[frozenset[str]] = []

    async def slow(sites: frozenset[str]) -> None:
        letting.append(sites)
        await done.wait()

    a = LeaseKeeper(stores[0], SiteShare(), lease_s=3, clock=clock, identity=PollerInfo(
        "a", 1, "box", "headless poller", clock(), clock(), clock()), let_go=slow)
    b = _keeper(stores[1], "b", clock)
    await a.round()
    clock.advance(a.round_s)
    for _ in range(3 * 5):  # three leases' worth of rounds
        await asyncio.wait_for(b.round(), 10)
        await asyncio.wait_for(a.round(), 10)  # never stuck on the hand-over
        going = letting[0]
        assert not (a.share.held_sites() | b.share.held_sites()) & going
        assert len(a.share.held_sites()) == len(TEN_SITES) - len(going) and a.share.holds(None)
        clock.advance(a.round_s)
    assert len(letting) == 1  # one hand-over at a time
    done.set()
    for _ in range(20):
        await b.round()
        await a.round()
        assert not _overlap(a, b)
        clock.advance(a.round_s)
    assert b.share.held_sites() >= letting[0]
    assert [len(k.share.held_sites()) for k in (a, b)] == [5, 5]


async def test_a_round_that_renews_too_late_acts_for_nothing(stores: list[Store]) -> None:
    """A round so slow (a loaded box, a slow database) that what it renewed is about to run
    out by its end stops acting for every site, until a round renews them in time."""
    clock = Clock()
    keeper = _keeper(stores[0], "a", clock)
    await keeper.round()
    assert keeper.share.held_sites() == frozenset(TEN_SITES)
    renew = stores[0].renew_leases

    async def slow_renew(poller_id: str, now: datetime, lease: timedelta) -> list[str]:
        held = await renew(poller_id, now, lease)
        clock.advance(14.5)  # the answer comes 14.5 s into a 15 s lease
        return held

    keeper.store = _Patched(stores[0], renew_leases=slow_renew)  # type: ignore[assignment]
    await keeper.round()
    assert keeper.share.held_sites() == frozenset() and not keeper.share.holds(None)
    keeper.store = stores[0]
    await keeper.round()
    assert keeper.share.held_sites() == frozenset(TEN_SITES)


async def test_a_round_stuck_on_the_database_stops_the_work_before_the_leases_run_out(
    stores: list[Store],
) -> None:
    """The watchdog beside the rounds: a round waiting on the database for longer than the
    leases hold (it used to go on acting until the round failed) stops every site's work
    ``SAFETY`` before they run out."""
    clock = Clock()
    stuck = asyncio.Event()
    keeper = LeaseKeeper(stores[0], SiteShare(), lease_s=3, clock=clock, identity=PollerInfo(
        "a", 1, "box", "headless poller", clock(), clock(), clock()))

    async def hang(*_: object) -> None:
        await stuck.wait()

    task = asyncio.get_running_loop().create_task(keeper.run_forever())
    try:
        while keeper.rounds < 1:
            await asyncio.sleep(0.01)
        assert keeper.share.held_sites() == frozenset(TEN_SITES)
        keeper.store = _Patched(stores[0], poller_alive=hang)  # type: ignore[assignment]
        clock.advance(1.5)  # the next round hangs; the leases (3 s) still hold
        await asyncio.sleep(0.1)
        assert keeper.share.held_sites() == frozenset(TEN_SITES)
        clock.advance(0.6)  # less than SAFETY (1 s) left
        for _ in range(200):
            if not keeper.share.held_sites():
                break
            await asyncio.sleep(0.01)
        assert keeper.share.held_sites() == frozenset() and not keeper.share.holds(None)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _Patched:
    """A store with some methods replaced (the rest: the store's own)."""

    def __init__(self, store: Store, **methods: Any) -> None:
        self._store = store
        self._methods = methods

    def __getattr__(self, name: str) -> Any:
        return self._methods.get(name) or getattr(self._store, name)


def _overlap(*keepers: LeaseKeeper) -> set[str]:
    """Sites (or the fleet lease) two keepers act for at once."""
    seen: set[str] = set()
    twice: set[str] = set()
    for k in keepers:
        mine = set(k.share.held_sites()) | ({"*"} if k.share.holds(None) else set())
        twice |= seen & mine
        seen |= mine
    return twice
