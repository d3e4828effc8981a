"""``fleettui run --headless --db postgresql://...`` as an operator runs it: real poller
processes sharing a real PostgreSQL server, over emulated devices, read back with
``fleettui status``, ``fleettui pollers`` and ``fleettui export`` from other processes.

The address carries a password the server never asks for (trust authentication
on the test server), so that a leak of it anywhere would show.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.fleet_config import SiteEntry
from tests.test_headless import (
    SECRET_KEY,
    Emulate,
    Headless,
    Key,
    Runner,
    config_for,
    dev,
    device_keys,
    emulated_fleet,
    fleettui,
    leaks,
    punch_at,
    runner,
    wait_for,
    wait_status,
)

__all__ = ["runner"]  # the fixture, imported to be used here

PASSWORD = "pg-pass-5521"
SITES = [SiteEntry(f"site-{n}", f"Site {n}", "Europe/Paris") for n in range(1, 5)]
#: short leases, so that a takeover happens within the test's waits
LEASE_S = 3


def _with_password(url: str) -> str:
    return url.replace("postgresql://fleettui@", f"postgresql://fleettui:{PASSWORD}@")


def _exported(db: str) -> dict[str, Counter[Key]]:
    """Every stored punch, by device, as the device keys it (through ``fleettui export``)."""
    r = fleettui("export", "punches", "--db", db, "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    keys: dict[str, Counter[Key]] = {}
    for line in r.stdout.splitlines():
        rec = json.loads(line)
        keys.setdefault(rec["device_id"], Counter())[
            (rec["user_id"], rec["local_time"], int(rec["state"]), int(rec["verify"]))] += 1
    return keys


def _pollers(db: str) -> list[dict[str, Any]]:
    r = fleettui("pollers", "--json", "--db", db)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return [p for p in json.loads(r.stdout)["pollers"] if p["live"]]


def _shares(db: str) -> dict[int, list[str]]:
    """The sites each live poller holds, by its pid."""
    return {p["pid"]: p["sites"] for p in _pollers(db)}


def _count(keys: dict[str, Counter[Key]]) -> int:
    return sum(sum(c.values()) for c in keys.values())


def test_two_pollers_share_the_sites_and_one_takes_over_when_the_other_is_killed(
    emulate: Emulate, runner: Runner, tmp_path: Path, pg_url: str,
) -> None:
    fleet = [dev(f"pg-{s.id}-{i}", s, comm_key=SECRET_KEY if i == 1 else 0)
             for s in SITES for i in (1, 2)]
    em = emulated_fleet(emulate, fleet, punches=10)
    ids = [d.id for d, _ in fleet]
    db = _with_password(pg_url)
    config = config_for(tmp_path / "fleet.toml", fleet, lease_s=LEASE_S)
    first = runner.start_polling(config, db)  # type: ignore[arg-type]
    wait_status(db, dict.fromkeys(ids, "online"), [first])  # type: ignore[arg-type]
    wait_for(lambda: _count(_exported(db)) == 80, "the 80 punches in the store", watch=[first])
    assert _shares(db) == {first.pid: [s.id for s in SITES]}  # alone: every site

    second = runner.start_polling(config, db)  # type: ignore[arg-type]
    both: list[Headless] = [first, second]
    wait_for(lambda: sorted(len(s) for s in _shares(db).values()) == [2, 2],
             "the sites split two and two", watch=both, describe=lambda: repr(_shares(db)))
    shares = _shares(db)
    status = json.loads(fleettui("status", "--json", "--db", db).stdout)
    holder = {site: pid for pid, sites in shares.items() for site in sites}
    assert {row["id"]: row["poller"] for row in status["devices"]} == {
        d.id: f"pid {holder[s.id]} on {_pollers(db)[0]['host']}" for d, s in fleet}
    wait_status(db, dict.fromkeys(ids, "online"), both)  # type: ignore[arg-type]
    # a command queued from a view (another process) runs on the poller holding its device
    for pid in (first.pid, second.pid):
        site = shares[pid][0]
        r = fleettui("command", site, "sync_time", "--wait", "30s", "--json", "--db", db,
                     timeout=90)
        assert r.returncode == 0, r.stdout + r.stderr
        request = json.loads(r.stdout)
        assert request["summary"]["done"] == 2, request

    # kill -9 the first: its sites are taken over once their leases run out
    lost = shares[first.pid]
    before = {lease["site_id"]: lease for lease in _leases(pg_url)}
    first.kill()
    wait_for(lambda: sorted(_shares(db).get(second.pid, [])) == [s.id for s in SITES],
             "the survivor to hold every site", watch=[second],
             describe=lambda: repr(_shares(db)))
    after = {lease["site_id"]: lease for lease in _leases(pg_url)}
    for site in lost:  # never two pollers on one site: taken only once the old lease ran out
        assert after[site]["since"] >= before[site]["expires_at"], (site, before, after)
    during = [punch_at(em, f"pg-{lost[0]}-2", "1002",
                       datetime(2025, 2, 3, 7, 0) + timedelta(minutes=i)) for i in range(3)]
    wait_for(lambda: _count(_exported(db)) == 83, "the punches made after the kill",
             watch=[second])

    third = runner.start_polling(config, db)  # type: ignore[arg-type]
    wait_for(lambda: sorted(len(s) for s in _shares(db).values()) == [2, 2],
             "the sites split again with the new poller", watch=[second, third],
             describe=lambda: repr(_shares(db)))
    assert _exported(db) == {d: device_keys(em, d) for d in ids}  # nothing lost, nothing twice
    assert all(_exported(db)[f"pg-{lost[0]}-2"][k] == 1 for k in during)

    table = fleettui("pollers", "--db", db)
    assert table.returncode == 0 and f"pid {third.pid} on" in table.stdout, table.stdout
    for h in (second, third):
        assert h.terminate() == 0, h.log()
    assert _pollers(db) == []  # a poller stopped cleanly leaves nothing behind
    for output in (first.log(), second.log(), third.log(), table.stdout, json.dumps(status)):
        assert PASSWORD not in output, "the database password was printed:\n" + output
        assert not leaks(output, SECRET_KEY), "the comm key was printed:\n" + output
        assert "Traceback" not in output, output


def _leases(url: str) -> list[dict[str, Any]]:
    """The site_leases rows, read straight from the database."""
    import asyncio

    import asyncpg

    async def read() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url)
        try:
            return [dict(r) for r in await conn.fetch("SELECT * FROM site_leases")]
        finally:
            await conn.close()

    return asyncio.run(read())


def test_the_control_room_views_a_database_a_poller_polls(
    emulate: Emulate, runner: Runner, tmp_path: Path, pg_url: str,
) -> None:
    """The control room joins only a database nobody polls: beside a headless poller it is
    refused the lock, and becomes a viewer (what ``fleettui status`` says of the owner)."""
    fleet = [dev("pg-view-1", SITES[0])]
    emulated_fleet(emulate, fleet, punches=2)
    config = config_for(tmp_path / "fleet.toml", fleet, lease_s=LEASE_S)
    h = runner.start_polling(config, pg_url)  # type: ignore[arg-type]
    poller = json.loads(fleettui("status", "--json", "--db", pg_url).stdout)["poller"]
    assert poller["running"] is True and poller["owner"]["pid"] == h.pid
    from fleettui.store import DatabaseUrl
    from fleettui.store.lock import PollerRunning, poller_lock

    lock = poller_lock(DatabaseUrl(pg_url), mode="tui")
    try:
        lock.acquire()
    except PollerRunning as refused:
        assert refused.owner["pid"] == h.pid
    else:
        raise AssertionError("the control room joined a database a poller polls")
    assert h.terminate() == 0
    assert not poller_lock(DatabaseUrl(pg_url), mode="tui").held_elsewhere()
