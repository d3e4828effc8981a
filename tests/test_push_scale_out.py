"""Push devices spread over several listeners behind a load balancer, end to end.

Three ``fleettui run --headless`` pollers share one PostgreSQL database, each with its
own push listener (their configs differ only in ``[push] listen``). In front of them, in
the test process, a load balancer: a small but real reverse proxy (an aiohttp server on
its own loopback address, on its own thread and event loop) that forwards each request's
method, path, query and body to a listener, relays the listener's status, body and
``Date`` header, and, when a listener refuses the connection or drops it, tries the next
one, as a balancer with health checks does (all down: 503). It is a part of the system
under test, not a mock: it routes by the ``SN`` of the query and knows nothing else of
the protocol. Half the terminals are sent round-robin (each call to the listener after
the one of their last call: every listener answers them); the other half are pinned to
one listener (client affinity), and go to another only while theirs is down: the poller
that holds such a terminal's site, and judges its status, mostly never hears it and goes
by the contacts the other listeners write in the store.

Eight emulated push terminals (``fleettui.emulator``, every firmware profile) on four
sites dial the balancer's address. A punch flow runs on the emulator's loop all along
(a punch every ``FLOW_EVERY_S`` on the next terminal, each at a local time of its own).
Meanwhile each poller in turn is killed with SIGKILL with an upload in flight: armed by
the test, the balancer sends the signal 0, 10 or 30 ms after it handed an ATTLOG upload
to that poller's listener (it then sends the upload to the next listener, as it would).
The others take its sites over (``site_leases``); a command is queued from a view
(``fleettui command``: ``unlock``, then ``restart``, then ``unlock``, each for a terminal
of a site the dead poller held); the poller is restarted on its address, the sites split
again and the command finishes before the next kill.

At the end:

- every record each terminal holds is in the store exactly once (``fleettui export``);
- every command queued ended done and ran once on its terminal (the door unlocked once;
  the restarted terminal handshook twice, every other terminal once), and nothing else
  was sent to a terminal;
- no push terminal was ever recorded offline (they kept calling through the balancer:
  a handover is no outage), and no device's status history holds a transition twice in
  a row;
- every answer the balancer relayed was a 200; every listener answered every
  round-robin terminal, and a pinned terminal's calls went to its own listener unless it
  was down, when another one answered; no site was ever taken from a poller while its
  lease ran (a trigger logs every change of holder).

Every wait is bounded and waits on a condition; nothing asserts how fast anything was
(the takeover times and counts are printed, ``pytest -s``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from fleettui.emulator import push_wire
from fleettui.emulator.device import DeviceConfig, Profile
from fleettui.emulator.fleet import Fleet
from fleettui.emulator.push_device import PushSetup
from tests.conftest import free_port, next_host, sample_users
from tests.fleet_config import SiteEntry
from tests.load_balancer import Balancer
from tests.test_headless import (
    Emulate,
    Headless,
    Key,
    Runner,
    device_keys,
    fleettui,
    runner,
    wait_for,
)
from tests.test_headless_postgres import _exported
from tests.test_scale_out_e2e import _holders, _prepare, _sites_of, _sql, _wait

__all__ = ["runner"]  # the fixture, imported to be used here

SITES = [SiteEntry("lb-paris", "Paris", "Europe/Paris"),
         SiteEntry("lb-pune", "Pune", "Asia/Kolkata"),
         SiteEntry("lb-recife", "Recife", "America/Recife"),
         SiteEntry("lb-lagos", "Lagos", "Africa/Lagos")]
PER_SITE = 2
PROFILES = ("legacy", "push2", "push2-resend", "biodata")
POLLERS = 3
LEASE_S = 3
#: [push]: devices call every 2 s; silent for 8 s is offline; a failed call waits 10 s
DELAY_S = 2
OFFLINE_AFTER_S = 8
ERROR_DELAY_S = 10
#: the terminals (by their place in _devices) the balancer pins to one listener (the
#: n-th to listener n % POLLERS): the holder of such a terminal's site seldom hears it
PINNED_AT = (1, 2, 5, 6)
#: one punch on the next terminal this often, for the whole test
FLOW_EVERY_S = 0.15
FLOW_BASE = datetime(2025, 1, 6, 6, 0)
#: how long after an upload is handed to a listener its poller is killed, each cycle
KILL_AFTER_S = (0.0, 0.01, 0.03)
#: the bound of the longer waits (a takeover, a re-split, the end's catch-up)
WAIT_S = 90.0


@pytest.fixture
def listens() -> list[str]:
    """Each poller's ``[push] listen`` address (a loopback host of its own)."""
    hosts = [next_host() for _ in range(POLLERS)]
    return [f"{h}:{free_port(h)}" for h in hosts]


@pytest.fixture
def balancer(listens: list[str]) -> Iterator[Balancer]:
    """The load balancer in front of the listeners, serving."""
    host = next_host()
    lb = Balancer([f"http://{a}" for a in listens], host, free_port(host), pinned=_pins())
    lb.start()
    yield lb
    lb.stop()


# --------------------------------------------------------------------------- the fleet


def _devices() -> list[tuple[str, str, SiteEntry, str]]:
    """(id, serial, site, firmware profile) of each push terminal."""
    out = []
    for s_n, site in enumerate(SITES):
        for i in range(PER_SITE):
            n = s_n * PER_SITE + i
            out.append((f"{site.id}-{i + 1}", f"LBPUSH{n + 1:04d}", site,
                        PROFILES[n % len(PROFILES)]))
    return out


def _pins() -> dict[str, int]:
    """The pinned terminals' serials, and each one's listener."""
    return {serial: n % POLLERS for n, (_, serial, _, _) in enumerate(_devices())
            if n in PINNED_AT}


def _config(path: Path, listen: str) -> Path:
    """One poller's config: the same for all but ``[push] listen``."""
    sites = "".join(f'[[sites]]\nid = "{s.id}"\nname = "{s.name}"\ntimezone = "{s.timezone}"\n\n'
                    for s in SITES)
    devices = "".join(f'[[devices]]\nid = "{d}"\nserial = "{serial}"\nsite = "{s.id}"\n'
                      'transport = "push"\n\n' for d, serial, s, _ in _devices())
    path.write_text(f'[poll]\nlease_s = {LEASE_S}\n\n'
                    f'[push]\nenabled = true\nlisten = "{listen}"\ndelay_s = {DELAY_S}\n'
                    f'offline_after_s = {OFFLINE_AFTER_S}\nerror_delay_s = {ERROR_DELAY_S}\n\n'
                    f'{sites}{devices}')
    return path


async def _punch_flow(fleet: Fleet, ids: list[str], stop: threading.Event
                      ) -> dict[str, list[Key]]:
    """On the emulator's loop: a punch every FLOW_EVERY_S on the next terminal, each at a
    local time of its own, until ``stop``; returns the records made (a terminal rebooting
    takes none)."""
    made: dict[str, list[Key]] = {d: [] for d in ids}
    for n in itertools.count():
        if stop.is_set():
            break
        device = ids[n % len(ids)]
        at = FLOW_BASE + timedelta(minutes=n)
        user, state = str(1001 + n % 20), n % 2
        if fleet.devices[device].punch(user, at, state=state, verify=1) is not None:
            made[device].append((user, at.isoformat(), state, 1))
        await asyncio.sleep(FLOW_EVERY_S)
    return made


# --------------------------------------------------------------------------- the store


def _listening(h: Headless) -> bool:
    """Whether a poller serves its push listener."""
    return "push listener on" in h.log()


def _statuses(url: str) -> dict[str, str]:
    """Each push device's status as the store has it."""
    return {r["id"]: r["status"] for r in _sql(
        url, "SELECT id, status FROM devices WHERE transport = 'push'")}


def _live_ids(url: str) -> dict[int, str]:
    """The live pollers' ids, by pid."""
    return {r["pid"]: r["id"] for r in _sql(
        url, "SELECT id, pid FROM pollers WHERE expires_at > now()")}


def _split(url: str, live: list[Headless]) -> dict[int, str] | None:
    """The live pollers' ids by pid once the sites are split among exactly these (each
    holds one site at least, every site and the fleet work held by one of them)."""
    ids = _live_ids(url)
    if sorted(ids) != sorted(h.pid for h in live):
        return None
    held = _holders(url)
    mine = set(ids.values())
    if set(held) != {s.id for s in SITES} | {"*"} or not set(held.values()) <= mine:
        return None
    counts = Counter(p for s, p in held.items() if s != "*")
    return ids if all(counts[p] >= 1 for p in mine) else None


def _held_by(url: str, pollers: set[str]) -> bool:
    """Whether every site and the fleet work are held, each by one of these pollers."""
    held = _holders(url)
    return set(held) == {s.id for s in SITES} | {"*"} and set(held.values()) <= pollers


def _commands(url: str) -> list[dict[str, Any]]:
    """Every command in the store, oldest first."""
    return _sql(url, "SELECT id, request_id, device_id, command, state, error FROM commands"
                     " ORDER BY id")


def _final(url: str, request_id: int) -> bool:
    """Whether every command of a request has ended."""
    return all(c["state"] in ("done", "failed", "expired") for c in _commands(url)
               if c["request_id"] == request_id)


def _queue(url: str, device_id: str, command: str) -> int:
    """Queue a command from a view (another process, as an operator does); its request id."""
    r = fleettui("command", device_id, command, "--json", "--db", url,
                 "--key", f"lb-{command}-{device_id}", timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    return int(json.loads(r.stdout)["id"])


def _history(url: str) -> dict[str, list[str]]:
    """Each device's status transitions, in the order recorded."""
    out: dict[str, list[str]] = {}
    for r in _sql(url, "SELECT device_id, status FROM status_history ORDER BY id"):
        out.setdefault(r["device_id"], []).append(r["status"])
    return out


# --------------------------------------------------------------------------- the test


def test_push_devices_behind_a_balancer_over_three_pollers_killed_in_turn(
    emulate: Emulate, runner: Runner, tmp_path: Path, pg_url: str, listens: list[str],
    balancer: Balancer, record_property: Any,
) -> None:
    devices = _devices()
    ids = [d for d, _, _, _ in devices]
    site_of = {d: s.id for d, _, s, _ in devices}
    profile_of = {d: p for d, _, _, p in devices}
    configs = [_config(tmp_path / f"fleet-{n + 1}.toml", a) for n, a in enumerate(listens)]
    _prepare(pg_url)  # migrated once, and the lease log installed

    started = [runner.start(c, pg_url) for c in configs]  # type: ignore[arg-type]
    for h in started:
        wait_for(partial(_listening, h), f"pid {h.pid}'s push listener", watch=started,
                 timeout=WAIT_S)
    live: list[Headless] = list(started)  # live[n] listens on listens[n]

    terminals = [DeviceConfig(id=d, serial=serial, timezone=s.timezone,
                              profile=Profile(reboot_s=0.3)) for d, serial, s, _ in devices]
    push = {d: PushSetup(server=balancer.url, profile=push_wire.PROFILES[p], first_delay_s=0.5,
                         timeout_s=60) for d, _, _, p in devices}
    em = emulate(terminals, users={d: sample_users() for d in ids}, push=push)
    _wait(pg_url, lambda: set(_statuses(pg_url).values()) == {"online"},
          "every push terminal online", watch=live, timeout=WAIT_S,
          describe=partial(_statuses, pg_url))
    ident = _wait(pg_url, partial(_split, pg_url, live), "the sites split over the pollers",
                  watch=live, interval=0.2, timeout=WAIT_S, describe=partial(_holders, pg_url))

    stop = threading.Event()
    flow = asyncio.run_coroutine_threadsafe(_punch_flow(em.fleet, ids, stop), em.emu.loop)
    queued: dict[str, int] = {}  # request id by device
    takeovers: list[float] = []
    try:
        for cycle in range(POLLERS):
            victim = live[cycle]
            victim_id = ident[victim.pid]
            theirs = _wait(pg_url, partial(_sites_of, pg_url, victim_id),
                           f"pid {victim.pid} to hold sites", watch=live, timeout=WAIT_S)
            survivors = [h for h in live if h is not victim]
            # SIGKILL with an upload in flight to its listener: the balancer sends the signal
            # a moment (a different one each cycle) after it handed the upload over
            balancer.arm(cycle, victim.pid, KILL_AFTER_S[cycle])
            wait_for(partial(balancer.fired, victim.pid),
                     f"pid {victim.pid} killed with an upload in flight", watch=survivors,
                     timeout=WAIT_S)
            killed_at = time.monotonic()
            victim.kill()  # reaped (already dead)
            held = {r["site_id"] for r in _sql(
                pg_url, "SELECT site_id FROM site_leases WHERE poller_id = $1", victim_id)}

            # a command from a view for a terminal of a site nobody holds for the moment
            command = "restart" if cycle == 1 else "unlock"
            sites = held - {"*"} or set(theirs)
            target = min((d for d in ids if d not in queued), key=lambda d: (
                site_of[d] not in sites, command == "restart" and profile_of[d] != "push2-resend",
                d))
            queued[target] = _queue(pg_url, target, command)

            _wait(pg_url, partial(_held_by, pg_url, {ident[h.pid] for h in survivors}),
                  f"the survivors to take over the sites of pid {victim.pid}",
                  watch=survivors, timeout=WAIT_S, describe=partial(_holders, pg_url))
            takeovers.append(round(time.monotonic() - killed_at, 2))

            fresh = runner.start(configs[cycle], pg_url)  # type: ignore[arg-type]
            live = [fresh if h is victim else h for h in live]
            wait_for(partial(_listening, fresh), f"pid {fresh.pid}'s push listener",
                     watch=live, timeout=WAIT_S)
            ident = _wait(pg_url, partial(_split, pg_url, live),
                          "the sites split again with the restarted poller", watch=live,
                          interval=0.2, timeout=WAIT_S, describe=partial(_holders, pg_url))
            # the command ran before the next kill: a line a dying listener handed out in
            # its last answer never reaches the device (the protocol's at-most-once)
            _wait(pg_url, partial(_final, pg_url, queued[target]), f"the {command} to finish",
                  watch=live, timeout=WAIT_S, describe=partial(_commands, pg_url))
    finally:
        stop.set()
        made = flow.result(timeout=WAIT_S)

    # --- the end: every record stored once
    def differing() -> dict[str, tuple[int, int]]:
        got = _exported(pg_url)
        return {d: (sum(got.get(d, Counter()).values()), sum(device_keys(em, d).values()))
                for d in ids if got.get(d) != device_keys(em, d)}

    _wait(pg_url, lambda: not differing(), "every record of every terminal stored exactly once",
          watch=live, interval=0.5, timeout=WAIT_S, describe=differing)
    for device, keys in made.items():
        assert keys, f"{device} took no punch from the flow"
        held_keys = device_keys(em, device)
        assert all(held_keys[k] == 1 for k in keys), device

    # the commands: each done, and run once on its terminal; nothing else sent
    def finished() -> bool:
        return all(c["state"] in ("done", "failed", "expired") for c in _commands(pg_url))

    _wait(pg_url, finished, "every command queued to finish", watch=live, timeout=WAIT_S,
          describe=partial(_commands, pg_url))
    commands = _commands(pg_url)
    assert sorted((c["device_id"], c["request_id"]) for c in commands) == sorted(
        queued.items()), f"commands other than those queued: {commands}"
    assert all(c["state"] == "done" for c in commands), commands
    lines = _sql(pg_url, "SELECT device_id, text, state FROM push_lines ORDER BY id")
    assert sorted((r["device_id"], r["text"].split()[0], r["state"]) for r in lines) == sorted(
        (c["device_id"], "REBOOT" if c["command"] == "restart" else "AC_UNLOCK", "done")
        for c in commands), lines
    unlocked = {c["device_id"] for c in commands if c["command"] == "unlock"}
    restarted = {c["device_id"] for c in commands if c["command"] == "restart"}
    unlocks = {d: em.emu.call(lambda d=d: em.fleet.devices[d].door_unlocks) for d in ids}
    assert unlocks == {d: int(d in unlocked) for d in ids}
    handshakes = {d: em.emu.call(lambda d=d: em.fleet.terminals[d].stats["handshakes"])
                  for d in ids}
    assert handshakes == {d: 2 if d in restarted else 1 for d in ids}

    # statuses: never offline, no transition twice in a row, all online now
    history = _history(pg_url)
    assert set(history) == set(ids), history
    for device, statuses in history.items():
        assert "offline" not in statuses, f"{device} recorded offline: {statuses}"
        assert all(a != b for a, b in itertools.pairwise(statuses)), (device, statuses)
    assert _statuses(pg_url) == dict.fromkeys(ids, "online")

    # the balancer: every answer a 200; every listener answered every terminal in turn; a
    # pinned terminal, its own listener but while it was down (then another)
    answers = balancer.answers()
    assert Counter(r.status for r in answers if r.status != 200) == Counter(), [
        r for r in answers if r.status != 200][:20]
    pins = _pins()
    for device, serial, _, _ in devices:
        calls = [r for r in answers if r.serial == serial]
        if serial not in pins:
            assert {r.backend for r in calls} == set(range(POLLERS)), device
            continue
        assert {r.backend for r in calls if not r.failed_over} == {pins[serial]}, device
        assert {r.backend for r in calls if r.failed_over} - {pins[serial]}, (
            f"{device}: never called another listener while its own was down")

    # the leases: never taken from a poller while its lease ran
    for row in _sql(pg_url, "SELECT * FROM test_lease_log WHERE op = 'UPDATE'"
                            " AND old_poller <> new_poller"):
        assert row["new_since"] >= row["old_expires"], row

    summary = {"calls": len(answers), "failovers": sum(balancer.failovers.values()),
               "uploads_failed_over": sum(r.failed_over > 0 and r.table == "ATTLOG"
                                          for r in answers),
               "punches_made": sum(len(k) for k in made.values()),
               "takeover_after_kill_s": takeovers, "history": history}
    print("\npush scale-out:", json.dumps(summary))
    record_property("push_scale_out", json.dumps(summary))

    for h in live:
        assert h.terminate() == 0, h.log()
    for h in runner.started:
        assert "Traceback" not in h.log(), h.log()
