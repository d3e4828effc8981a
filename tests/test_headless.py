"""``fleettui run --headless`` as an operator runs it: a real process, a real database.

The devices are emulated in the test process (real sockets on 127.20.x.y);
fleettui runs as a subprocess (``python -m fleettui``) with a config the test
writes and a database in ``tmp_path``. Results are read the way scripts read
them (``fleettui status --json``, ``fleettui export``) or straight from the
SQLite file, opened read-only.

Every wait polls a condition with a generous bound and says what it waited
for; nothing asserts how fast anything was.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fleettui.domain import DeviceState, Punch, Site, TzFlag
from fleettui.emulator.device import DeviceConfig
from fleettui.store import open_store
from fleettui.store.schema import MIGRATIONS
from tests.conftest import Emulated, device_config, sample_users
from tests.fleet_config import SiteEntry, write_fleet_config

T = TypeVar("T")

#: the bound of every wait: generous, so a loaded CI machine is not a failure
WAIT_S = 30.0
#: a comm key that must never appear in logs or status output
SECRET_KEY = 739_251

PARIS = SiteEntry("paris", "Paris HQ", "Europe/Paris")
SAO_PAULO = SiteEntry("sao-paulo", "São Paulo plant", "America/Sao_Paulo")
KOLKATA = SiteEntry("kolkata", "Kolkata depot", "Asia/Kolkata")

Key = tuple[str, str, int, int]  # user_id, local time (ISO), state, verify
Emulate = Callable[..., Emulated]


# --------------------------------------------------------------------------- helpers


def _env() -> dict[str, str]:
    """The environment for fleettui subprocesses: no config or database from the user's."""
    env = {k: v for k, v in os.environ.items() if k not in ("FLEETTUI_CONFIG", "FLEETTUI_DB")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def fleettui(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one ``fleettui`` command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "fleettui", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=_env(),
    )


@dataclass
class Headless:
    """One ``fleettui run --headless`` process, its stderr going to a file."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The poller's process id."""
        return self.proc.pid

    def log(self) -> str:
        """Everything it logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        """Whether it is still running."""
        return self.proc.poll() is None

    def terminate(self) -> int:
        """SIGTERM, then its exit code (it must exit within the wait bound)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"headless pid {self.pid} did not stop within {WAIT_S:g} s of SIGTERM:\n"
                + self.log()
            ) from None

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        self.proc.kill()
        self.proc.wait(timeout=WAIT_S)


@dataclass
class Runner:
    """Starts headless pollers for one test; kills whatever is left at the end."""

    tmp_path: Path
    started: list[Headless] = field(default_factory=list)

    def start(self, config: Path, db: Path, *extra: str) -> Headless:
        """Start ``fleettui run --headless --config CONFIG --db DB EXTRA...``."""
        log_path = self.tmp_path / f"headless-{len(self.started) + 1}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "fleettui", "run", "--headless",
                 "--config", str(config), "--db", str(db), *extra],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=_env(),
            )
        h = Headless(proc, log_path)
        self.started.append(h)
        return h

    def start_polling(self, config: Path, db: Path, *extra: str) -> Headless:
        """Start a poller and wait until its engine is running (database created and migrated)."""
        h = self.start(config, db, *extra)
        wait_for(lambda: "polling" in h.log() and "device(s)" in h.log(),
                 f"headless pid {h.pid} to say it is polling", watch=[h])
        return h


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    """Headless pollers of this test (SIGKILLed at teardown if still running)."""
    r = Runner(tmp_path)
    yield r
    for h in r.started:
        if h.alive():
            h.kill()


def wait_for(
    condition: Callable[[], T | None], what: str, *, timeout: float = WAIT_S,
    watch: list[Headless] | tuple[Headless, ...] = (), interval: float = 0.05,
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` until it is truthy and return it; fail after ``timeout``.

    Fails at once, with its log, if a ``watch``ed poller exits in the meantime.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for h in watch:
            if not h.alive():
                raise AssertionError(
                    f"headless pid {h.pid} exited (code {h.proc.returncode}) while waiting for "
                    f"{what}; its log:\n{h.log()}"
                )
        if time.monotonic() > deadline:
            extra = f"\nlast seen: {describe()}" if describe else ""
            logs = "".join(f"\n--- log of pid {h.pid}:\n{h.log()[-3000:]}" for h in watch)
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}{extra}{logs}")
        time.sleep(interval)


def query(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a query on the database, opened read-only (a poller may be writing)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def punch_count(db: Path, device_id: str | None = None) -> int:
    """How many punches are stored (for one device, if given)."""
    if device_id is None:
        return int(query(db, "SELECT COUNT(*) FROM punches")[0][0])
    return int(query(db, "SELECT COUNT(*) FROM punches WHERE device_id = ?", (device_id,))[0][0])


def stored_keys(db: Path, device_id: str) -> Counter[Key]:
    """A device's stored punches, as the device identifies them, with multiplicity."""
    rows = query(db, "SELECT user_id, local_time, state, verify FROM punches WHERE device_id = ?",
                 (device_id,))
    return Counter((u, t, int(s), int(v)) for u, t, s, v in rows)


def device_keys(em: Emulated, device_id: str) -> Counter[Key]:
    """Every record a device holds, with multiplicity (read on the emulator's loop)."""
    records = em.emu.call(em.fleet.devices[device_id].log.records)
    return Counter((p.user_id, p.at.isoformat(), p.state, p.verify) for p in records)


def status(db: Path) -> dict[str, dict[str, Any]]:
    """``fleettui status --json``, by device id."""
    r = fleettui("status", "--json", "--db", db)
    assert r.returncode == 0, f"fleettui status --json failed ({r.returncode}):\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    return {row["id"]: row for row in json.loads(r.stdout)["devices"]}


def wait_status(db: Path, wanted: dict[str, str], watch: list[Headless]) -> dict[str, Any]:
    """Wait until ``status --json`` shows each device of ``wanted`` in its status."""
    last: dict[str, dict[str, Any]] = {}

    def ok() -> bool:
        last.clear()
        last.update(status(db))
        return all(last.get(d, {}).get("status") == s for d, s in wanted.items())

    wait_for(ok, f"status --json to show {wanted}", watch=watch, interval=0.2,
             describe=lambda: repr({d: (r["status"], r["reason"]) for d, r in last.items()}))
    return last


def leaks(text: str, secret: int) -> bool:
    """Whether ``secret`` appears in ``text`` as a number of its own."""
    return re.search(rf"(?<!\d){secret}(?!\d)", text) is not None


def punch_at(em: Emulated, device_id: str, user_id: str, at: datetime, state: int = 0) -> Key:
    """One punch on a device at a given local time; returns how the store will key it."""
    p = em.emu.call(em.fleet.devices[device_id].punch, user_id, at, state=state, verify=1)
    assert p is not None, f"{device_id} refused the punch"
    return (user_id, at.isoformat(), state, 1)


def emulated_fleet(
    emulate: Emulate, devices: list[tuple[DeviceConfig, SiteEntry]], punches: int = 40
) -> Emulated:
    """Start the devices with 20 users each and ``punches`` records already in each log."""
    em = emulate([d for d, _ in devices], users={d.id: sample_users() for d, _ in devices})
    for d, _ in devices:
        if punches:
            stored, rejected = em.emu.call(em.fleet.generate_punches, d.id, punches)
            assert (stored, rejected) == (punches, 0)
    return em


def config_for(
    path: Path, devices: list[tuple[DeviceConfig, SiteEntry]], **poll: float | int | bool
) -> Path:
    """Write the fleet config of these (started) devices."""
    sites = list({s.id: s for _, s in devices}.values())
    return write_fleet_config(path, sites, [(d, s.id) for d, s in devices], poll=poll)


def dev(device_id: str, site: SiteEntry, *, comm_key: int = 0) -> tuple[DeviceConfig, SiteEntry]:
    """An emulated device whose clock runs in its site's zone."""
    return device_config(device_id, comm_key=comm_key, timezone=site.timezone), site


# --------------------------------------------------------------------------- tests


def test_headless_keeps_every_status_and_every_punch(
    emulate: Emulate, runner: Runner, tmp_path: Path
) -> None:
    """The issue's "done when": every device online in ``status --json``, every punch
    stored exactly once; a device cut off shows offline, and online again once back.
    The comm key of the keyed device never shows in the logs or in ``status``."""
    fleet = [dev("par-01", PARIS), dev("par-02", PARIS, comm_key=SECRET_KEY),
             dev("sao-01", SAO_PAULO), dev("kol-01", KOLKATA)]
    em = emulated_fleet(emulate, fleet, punches=40)
    ids = [d.id for d, _ in fleet]
    db = tmp_path / "fleet.db"
    h = runner.start_polling(config_for(tmp_path / "fleet.toml", fleet), db)

    wait_status(db, dict.fromkeys(ids, "online"), [h])
    wait_for(lambda: punch_count(db) == 40 * len(ids), "all 160 punches in the store",
             watch=[h], describe=lambda: f"{punch_count(db)} stored")
    for device_id in ids:
        held = device_keys(em, device_id)
        assert len(held) == 40 and set(held.values()) == {1}
        assert stored_keys(db, device_id) == held, f"{device_id}: store differs from the device"
    rows = query(db, "SELECT device_id, timezone FROM punches GROUP BY device_id, timezone")
    assert dict(rows) == {d.id: s.timezone for d, s in fleet}

    em.emu.run(em.fleet.set_faults("sao-01", {"offline": True}))
    rows_now = wait_status(db, {"sao-01": "offline"}, [h])
    assert rows_now["sao-01"]["reason"], "an offline device says why"
    assert {d: r["status"] for d, r in rows_now.items() if d != "sao-01"} == dict.fromkeys(
        ["par-01", "par-02", "kol-01"], "online")
    # people keep punching while the link is down: the device holds the records
    during = [punch_at(em, "sao-01", "1004", datetime(2025, 2, 3, 7, 0) + timedelta(minutes=i))
              for i in range(5)]
    em.emu.run(em.fleet.clear_faults("sao-01"))
    final = wait_status(db, dict.fromkeys(ids, "online"), [h])
    wait_for(lambda: all(stored_keys(db, "sao-01")[k] == 1 for k in during),
             "the 5 punches made during the outage to be stored", watch=[h])

    # nothing lost or doubled by the outage
    assert punch_count(db) == 40 * len(ids) + len(during)
    for device_id in ids:
        assert stored_keys(db, device_id) == device_keys(em, device_id), device_id
    text = fleettui("status", "--db", db)
    assert text.returncode == 0, text.stderr
    assert h.terminate() == 0
    log = h.log()
    assert "Traceback" not in log, log
    for output in (log, json.dumps(final), text.stdout):
        assert not leaks(output, SECRET_KEY), "the comm key was printed:\n" + output


def test_kill_9_during_a_100k_first_sync_loses_and_doubles_nothing(
    emulate: Emulate, runner: Runner, tmp_path: Path
) -> None:
    """A SIGKILL in the middle of a 100,000-record first sync (1,000 transactions of 100):
    after a restart on the same database every record is stored exactly once, each with
    exactly one webhook outbox row."""
    fleet = [dev("big-01", PARIS)]
    em = emulated_fleet(emulate, fleet, punches=0)
    total = 100_000
    start = datetime(2025, 1, 6, 6, 0, 0)  # a Monday in January: no DST change within

    def load() -> int:
        device = em.fleet.devices["big-01"]
        users = [u.user_id for u in device.users.values()]
        for i in range(total):
            device.punch(users[i % len(users)], start + timedelta(seconds=i),
                         state=i % 2, verify=1, notify=False)
        return len(device.log)

    assert em.emu.call(load) == total
    held = device_keys(em, "big-01")
    assert len(held) == total
    db = tmp_path / "fleet.db"
    config = config_for(tmp_path / "fleet.toml", fleet, sync_batch=100)

    first = runner.start(config, db)
    # kill once some 20 batches are in: far from the end, with plenty already stored
    wait_for(lambda: db.exists() and _has_punches_table(db) and punch_count(db) >= 2_000,
             "the first batches of the sync to be committed", watch=[first], interval=0.005)
    first.kill()
    partial = punch_count(db)
    assert 0 < partial < total, (
        f"the kill was meant to land mid-sync but {partial} of {total} were stored: "
        "the sync finished before the test could see it in progress"
    )
    assert partial % 100 == 0, f"{partial} stored: a batch of 100 was committed in part"
    punch_rows = "SELECT COUNT(*) FROM webhook_outbox WHERE event_type = 'punch.created'"
    assert int(query(db, punch_rows)[0][0]) == partial
    cursor = query(db, "SELECT synced_records, last_sync_at FROM devices WHERE id = 'big-01'")
    assert cursor == [(0, None)], "the sync cursor must not advance before the last batch"

    second = runner.start(config, db)
    wait_for(
        lambda: query(db, "SELECT synced_records FROM devices WHERE id = 'big-01'")[0][0] == total,
        "the restarted poller to finish the sync (cursor at 100,000)", watch=[second],
        timeout=120, interval=0.2, describe=lambda: f"{punch_count(db)} stored",
    )
    assert second.terminate() == 0, second.log()

    assert punch_count(db) == total
    dupes = query(db, "SELECT device_id, user_id, local_time, state, verify, COUNT(*) FROM punches"
                      " GROUP BY 1, 2, 3, 4, 5 HAVING COUNT(*) > 1 LIMIT 5")
    assert dupes == []
    assert stored_keys(db, "big-01") == held
    outbox = query(db, "SELECT payload FROM webhook_outbox WHERE event_type = 'punch.created'")
    assert len(outbox) == total
    outbox_ids = Counter(json.loads(p)["punch"]["id"] for (p,) in outbox)
    assert set(outbox_ids.values()) == {1}, "a punch has more than one outbox row"
    assert set(outbox_ids) == {i for (i,) in query(db, "SELECT id FROM punches")}
    assert "Traceback" not in second.log()


def test_two_kill_9_in_a_row_do_not_lock_the_next_poller_out_of_a_udp_terminal(
    emulate: Emulate, runner: Runner, tmp_path: Path
) -> None:
    """A UDP session ends only with CMD_EXIT, and the terminal serves 4 at once. A poller
    with live capture holds 2 (its session and the live one); killed with SIGKILL it says
    no goodbye, and the terminal keeps them until it times them out (120 s). After two such
    deaths, a third poller must still get in at once: it ends the dead ones' sessions,
    written down in the store, before it connects."""
    fleet = [dev("udp-01", PARIS)]
    em = emulated_fleet(emulate, fleet, punches=10)
    server = em.fleet.servers["udp-01"]
    assert em.fleet.devices["udp-01"].profile.max_sessions == 4
    db = tmp_path / "fleet.db"
    sites = [PARIS]
    config = write_fleet_config(tmp_path / "fleet.toml", sites, [(fleet[0][0], PARIS.id)],
                                poll={"live_capture": True}, transport="udp")

    def sessions() -> dict[int, bool]:
        """The terminal's sessions: id → registered for live events."""
        return em.emu.call(lambda: {sid: bool(s.event_flags)
                                    for sid, s in server.sessions.items()})

    def poller_in(before: set[int]) -> set[int]:
        """Wait (bounded) until a new poller holds its two sessions, the live one
        registered; returns their ids."""
        def new() -> set[int] | None:
            now = sessions()
            mine = set(now) - before
            return mine if len(mine) >= 2 and any(now[sid] for sid in mine) else None

        return wait_for(new, "the poller's session and its registered live session",
                        describe=lambda: repr(sessions()), watch=[runner.started[-1]])

    first = runner.start(config, db)
    held = poller_in(set())
    first.kill()
    second = runner.start(config, db)
    held |= poller_in(held)
    second.kill()
    assert len(sessions()) <= 4
    third = runner.start(config, db)
    mine = poller_in(held)  # within the wait bound (30 s), far below the terminal's 120 s
    assert set(sessions()) == mine, "the dead pollers' sessions are still open"
    written = {sid for (sid,) in query(
        db, "SELECT session_id FROM device_sessions WHERE device_id = 'udp-01'")}
    assert written == mine
    assert third.terminate() == 0, third.log()
    assert "Traceback" not in third.log()
    # stopped gracefully, it said both goodbyes (the live session's too) and wrote them down
    assert sessions() == {}
    assert query(db, "SELECT session_id FROM device_sessions") == []


def _has_punches_table(db: Path) -> bool:
    try:
        return bool(query(db, "SELECT 1 FROM sqlite_master WHERE name = 'punches'"))
    except sqlite3.Error:
        return False


def test_a_second_poller_on_the_same_database_is_refused(
    emulate: Emulate, runner: Runner, tmp_path: Path
) -> None:
    """One poller per database: a second is refused (exit 1, naming the owner's pid) while
    the first carries on; once the first stops cleanly, a new one can start."""
    fleet = [dev("lock-01", PARIS)]
    emulated_fleet(emulate, fleet, punches=5)
    db = tmp_path / "fleet.db"
    config = config_for(tmp_path / "fleet.toml", fleet)
    first = runner.start_polling(config, db)
    wait_status(db, {"lock-01": "online"}, [first])

    poller = json.loads(fleettui("status", "--json", "--db", db).stdout)["poller"]
    assert poller["running"] is True and poller["owner"]["pid"] == first.pid

    second = fleettui("run", "--headless", "--config", config, "--db", db)
    assert second.returncode == 1, second.stderr
    assert f"pid {first.pid}" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr, second.stderr

    seen = query(db, "SELECT last_seen FROM devices WHERE id = 'lock-01'")[0][0]
    wait_for(lambda: query(db, "SELECT last_seen FROM devices WHERE id = 'lock-01'")[0][0] > seen,
             "the first poller to keep checking after the refusal", watch=[first])
    assert first.terminate() == 0, first.log()
    assert first.log().rstrip().endswith("stopped"), first.log()

    third = runner.start_polling(config, db)
    seen = query(db, "SELECT last_seen FROM devices WHERE id = 'lock-01'")[0][0]
    wait_for(lambda: query(db, "SELECT last_seen FROM devices WHERE id = 'lock-01'")[0][0] > seen,
             "the new poller to check the device", watch=[third])
    assert third.terminate() == 0, third.log()


@pytest.mark.parametrize("spelling", ["symlink", "hard link", "relative path"])
def test_a_second_poller_is_refused_however_the_database_is_named(
    emulate: Emulate, runner: Runner, tmp_path: Path, spelling: str
) -> None:
    """The lock is on the database file's identity, not on its name: a second poller given
    the database through a symlink, a hard link in another folder, or a relative path with
    "..", is refused (exit 1, naming the owner's pid and host) while the first runs on."""
    fleet = [dev("alias-01", PARIS)]
    emulated_fleet(emulate, fleet, punches=2)
    db = tmp_path / "data" / "fleet.db"
    db.parent.mkdir()
    config = config_for(tmp_path / "fleet.toml", fleet)
    first = runner.start_polling(config, db)
    wait_status(db, {"alias-01": "online"}, [first])

    other = tmp_path / "elsewhere"
    other.mkdir()
    if spelling == "symlink":
        alias = other / "fleet.db"
        alias.symlink_to(db)
    elif spelling == "hard link":
        alias = other / "copy.db"
        os.link(db, alias)
    else:
        alias = Path(os.path.relpath(db.parent / ".." / "data" / "fleet.db", Path.cwd()))
    second = fleettui("run", "--headless", "--config", config, "--db", alias)
    assert second.returncode == 1, second.stderr
    assert f"pid {first.pid} on {socket.gethostname()}" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr, second.stderr
    if spelling != "hard link":  # (SQLite names its WAL after the path: no reads by a 2nd name)
        poller = json.loads(fleettui("status", "--json", "--db", alias).stdout)["poller"]
        assert poller["running"] is True and poller["owner"]["pid"] == first.pid
    assert first.terminate() == 0, first.log()
    if spelling == "hard link":  # the next poller to start on it is warned
        again = runner.start_polling(config, db)
        assert again.terminate() == 0 and "has 2 names (hard links)" in again.log(), again.log()


def test_sigterm_stops_gracefully_with_json_logs(
    emulate: Emulate, runner: Runner, tmp_path: Path
) -> None:
    """SIGTERM exits 0; ``--log-format json`` writes one JSON object per stderr line, device
    events carrying their "kind", with no traceback and no comm key."""
    fleet = [dev("json-01", KOLKATA), dev("json-02", KOLKATA, comm_key=SECRET_KEY),
             dev("json-03", KOLKATA, comm_key=SECRET_KEY)]
    emulated_fleet(emulate, fleet, punches=3)
    # json-03 is configured with the wrong key: rejected, and neither key may be printed
    wrong_key = SECRET_KEY + 1
    configured = [*fleet[:2], (replace(fleet[2][0], comm_key=wrong_key), KOLKATA)]
    db = tmp_path / "fleet.db"
    h = runner.start_polling(config_for(tmp_path / "fleet.toml", configured), db,
                             "--log-format", "json")
    rows = wait_status(db, {"json-01": "online", "json-02": "online", "json-03": "error"}, [h])
    assert rows["json-03"]["reason"] == "comm key rejected"
    wait_for(lambda: punch_count(db) == 6, "the 6 punches of the two good devices", watch=[h])
    assert h.terminate() == 0, h.log()

    log = h.log()
    assert "Traceback" not in log, log
    assert not leaks(log, SECRET_KEY) and not leaks(log, wrong_key), log
    assert not leaks(json.dumps(rows), SECRET_KEY) and not leaks(json.dumps(rows), wrong_key)
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all(isinstance(rec, dict) for rec in lines)
    assert all({"ts", "level", "logger", "message"} <= set(rec) for rec in lines)
    online = {rec["device"] for rec in lines if rec.get("kind") == "device.online"}
    assert online == {"json-01", "json-02"}
    errors = [rec for rec in lines if rec.get("kind") == "device.error"]
    assert [(e["device"], e["level"]) for e in errors] == [("json-03", "warning")]
    assert all("error" not in rec for rec in lines), log
    assert lines[-1]["message"] == "stopped"


def test_a_device_answering_garbage_is_in_error_while_the_rest_carry_on(
    emulate: Emulate, runner: Runner, tmp_path: Path
) -> None:
    """A device answering random bytes is marked "error" with a protocol reason, and the
    other devices keep being polled: a punch made after the fault reaches the store."""
    fleet = [dev("sick-01", SAO_PAULO), dev("well-01", SAO_PAULO), dev("well-02", PARIS)]
    em = emulated_fleet(emulate, fleet, punches=10)
    db = tmp_path / "fleet.db"
    h = runner.start_polling(config_for(tmp_path / "fleet.toml", fleet), db)
    wait_status(db, dict.fromkeys(["sick-01", "well-01", "well-02"], "online"), [h])
    wait_for(lambda: punch_count(db) == 30, "the 30 punches", watch=[h])

    em.emu.run(em.fleet.set_faults("sick-01", {"garbage": True}))
    rows = wait_status(db, {"sick-01": "error"}, [h])
    assert rows["sick-01"]["reason"].startswith("bad reply"), rows["sick-01"]
    key = punch_at(em, "well-02", "1003", datetime(2025, 2, 3, 9, 0, 7))  # unlike any other
    wait_for(lambda: stored_keys(db, "well-02")[key] == 1,
             "a punch on a healthy device, made after the fault, to be stored", watch=[h])
    rows = status(db)
    assert rows["sick-01"]["status"] == "error"
    assert rows["well-01"]["status"] == rows["well-02"]["status"] == "online"
    assert stored_keys(db, "well-02") == device_keys(em, "well-02")
    assert h.terminate() == 0
    assert "Traceback" not in h.log(), h.log()


def test_export_and_status_read_what_headless_stored(
    emulate: Emulate, runner: Runner, tmp_path: Path
) -> None:
    """``export punches`` writes every stored punch as CSV and JSON lines, ``--site`` and
    ``--since`` filter; ``status`` prints a table with a summary line, no comm key."""
    fleet = [dev("exp-par", PARIS, comm_key=SECRET_KEY), dev("exp-sao", SAO_PAULO)]
    emulated_fleet(emulate, fleet, punches=25)
    db = tmp_path / "fleet.db"
    h = runner.start_polling(config_for(tmp_path / "fleet.toml", fleet), db)
    wait_for(lambda: punch_count(db) == 50, "the 50 punches", watch=[h])
    wait_status(db, {"exp-par": "online", "exp-sao": "online"}, [h])
    assert h.terminate() == 0

    all_rows = query(db, "SELECT id, device_id, utc_time FROM punches")
    by_id = {i: (d, t) for i, d, t in all_rows}

    r = fleettui("export", "punches", "--db", db, "--format", "csv")
    assert r.returncode == 0, r.stderr
    exported = list(csv.DictReader(io.StringIO(r.stdout)))
    assert sorted(int(row["id"]) for row in exported) == sorted(by_id)
    assert {row["device_id"] for row in exported} == {"exp-par", "exp-sao"}
    assert {row["timezone"] for row in exported} == {"Europe/Paris", "America/Sao_Paulo"}

    r = fleettui("export", "punches", "--db", db, "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted(rec["id"] for rec in records) == sorted(by_id)
    assert [rec["utc_time"] for rec in records] == sorted(rec["utc_time"] for rec in records)

    r = fleettui("export", "punches", "--db", db, "--format", "jsonl", "--site", "sao-paulo")
    assert r.returncode == 0, r.stderr
    site_ids = {json.loads(line)["id"] for line in r.stdout.splitlines()}
    assert site_ids == {i for i, (d, _) in by_id.items() if d == "exp-sao"}

    times = sorted(t for _, t in by_id.values())
    cut = times[len(times) // 2]  # stored as ...T12:34:56.000000Z
    since = cut.replace(".000000Z", "Z")
    r = fleettui("export", "punches", "--db", db, "--format", "csv", "--since", since)
    assert r.returncode == 0, r.stderr
    since_ids = {int(row["id"]) for row in csv.DictReader(io.StringIO(r.stdout))}
    assert since_ids == {i for i, (_, t) in by_id.items() if t >= cut}
    assert 0 < len(since_ids) < len(by_id)

    r = fleettui("status", "--db", db)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["DEVICE", "SITE", "STATUS"]
    assert any(line.startswith("exp-par") and "online" in line for line in lines)
    assert any(line.startswith("exp-sao") and "online" in line for line in lines)
    assert "2 devices · 2 online" in lines[-2]
    # the poller has stopped: status says its statuses are as last seen
    assert lines[-1].startswith("no poller is running")
    assert not leaks(r.stdout, SECRET_KEY)
    r = fleettui("status", "--json", "--db", db)
    assert json.loads(r.stdout)["poller"] == {"running": False, "owner": None}
    assert not leaks(r.stdout, SECRET_KEY)


def test_status_of_a_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    """``status --db missing.db`` says there is no database there, without a traceback,
    and does not create one."""
    missing = tmp_path / "missing.db"
    r = fleettui("status", "--db", missing)
    assert r.returncode == 1
    assert f"no database at {missing}" in r.stderr
    assert "Traceback" not in r.stderr
    assert not missing.exists()


def test_an_empty_config_says_there_is_nothing_to_poll(runner: Runner, tmp_path: Path) -> None:
    """An empty config file is valid (devices may come over the HTTP API), but neither
    ``check-config`` nor ``run --headless`` is silent about a poller of nothing."""
    config = tmp_path / "empty.toml"
    config.write_text("")
    checked = fleettui("check-config", config)
    assert checked.returncode == 0 and "no [[devices]]" in checked.stderr, checked.stderr
    poller = runner.start_polling(config, tmp_path / "fleet.db")
    assert poller.terminate() == 0
    assert f"no devices to poll: {config} declares no [[devices]]" in poller.log(), poller.log()


def test_a_broken_config_names_file_and_line(tmp_path: Path) -> None:
    """``run --headless`` with a config error exits 1 with the file, line and key, no
    traceback, and creates no database."""
    config = tmp_path / "broken.toml"
    config.write_text(
        '[poll]\ncheck_interval_s = 0.5\ntimeout_s = "fast"\n\n'
        '[[sites]]\nid = "paris"\nname = "Paris"\ntimezone = "Europe/Paris"\n'
    )
    db = tmp_path / "fleet.db"
    r = fleettui("run", "--headless", "--config", config, "--db", db)
    assert r.returncode == 1, r.stderr
    assert f"{config}:3" in r.stderr and "poll.timeout_s" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not db.exists()

    # a comm key out of range is reported by line, and its value is not echoed
    keyed = tmp_path / "keyed.toml"
    keyed.write_text(
        '[[sites]]\nid = "paris"\nname = "Paris"\ntimezone = "Europe/Paris"\n\n'
        '[[devices]]\nid = "d1"\nserial = "S1"\nsite = "paris"\nhost = "127.20.250.1"\n'
        f"comm_key = {SECRET_KEY}0\n"
    )
    r = fleettui("run", "--headless", "--config", keyed, "--db", db)
    assert r.returncode == 1, r.stderr
    assert f"{keyed}:11" in r.stderr and "devices[0].comm_key" in r.stderr, r.stderr
    assert str(SECRET_KEY) not in r.stderr, r.stderr


def test_run_without_headless_opens_the_control_room(tmp_path: Path) -> None:
    """``run`` without ``--headless`` is the control room (as ``fleettui`` alone): with no
    config it says so, as ``fleettui`` does (the TUI itself: tests/test_tui_hangup.py)."""
    r = fleettui("run", "--db", tmp_path / "fleet.db")
    assert r.returncode == 1
    assert "no config file" in r.stderr and "fleettui demo" in r.stderr
    assert "Traceback" not in r.stderr


async def test_processes_opening_a_new_database_at_once_migrate_it_once(
    tmp_path: Path,
) -> None:
    """``status``/``export`` open the store (which migrates it) while a headless poller may
    be creating the same file: whoever comes second must find the work done, not redo it.

    Two openers race on a new file, twenty times over (before the fix, one of them
    failed with "table sites already exists" in most rounds).
    """
    for round_ in range(20):
        db = tmp_path / f"fleet{round_}.db"
        stores = await asyncio.gather(open_store(db), open_store(db))
        try:
            assert [await s.schema_version() for s in stores] == [len(MIGRATIONS)] * 2
        finally:
            for s in stores:
                await s.close()


async def test_export_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``fleettui export punches --db DB | head -1``: the reader going away early is normal
    for a CLI that writes to a pipe; fleettui stops writing, without a traceback."""
    db = tmp_path / "fleet.db"
    store = await open_store(db)
    try:
        await store.sync_fleet([Site("paris", "Paris", "Europe/Paris")],
                               [DeviceState("d1", "S1", "paris", "127.20.250.2", 4370, "tcp")])
        start = datetime(2025, 1, 6, 8, 0)
        await store.insert_punches("d1", [
            Punch("d1", str(1000 + i % 7), start + timedelta(minutes=i), "Europe/Paris",
                  (start + timedelta(minutes=i - 60)).replace(tzinfo=UTC), TzFlag.OK,
                  i % 2, 1, "sync", datetime.now(UTC))
            for i in range(200)
        ])
    finally:
        await store.close()

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (head) has already gone: every write fails with EPIPE
    try:
        r = subprocess.run(
            [sys.executable, "-m", "fleettui", "export", "punches", "--db", str(db)],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, env=_env(),
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in r.stderr, r.stderr


def test_headless_serves_the_http_api_with_keys_made_by_the_cli(
    emulate: Emulate, runner: Runner, tmp_path: Path
) -> None:
    """``run --headless --http 127.0.0.1:0`` answers the API; keys come from ``api-key``."""
    import re as _re

    import httpx

    fleet = [dev("api-01", PARIS)]
    emulated_fleet(emulate, fleet, punches=3)
    db = tmp_path / "fleet.db"
    config = config_for(tmp_path / "fleet.toml", fleet)
    poller = runner.start_polling(config, db, "--http", "127.0.0.1:0")
    wait_for(lambda: "HTTP API on" in poller.log(), "the HTTP API to start", watch=[poller])
    port = int(_re.search(r"HTTP API on http://127\.0\.0\.1:(\d+)", poller.log()).group(1))  # type: ignore[union-attr]
    made = fleettui("api-key", "create", "--role", "viewer", "--name", "script", "--db", db)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/v1/devices").status_code == 401
    wait_status(db, {"api-01": "online"}, [poller])
    r = httpx.get(f"{base}/v1/devices", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    assert [d["id"] for d in r.json()["devices"]] == ["api-01"]
    listed = fleettui("api-key", "list", "--db", db).stdout
    assert "viewer" in listed and key not in listed and key not in poller.log()
    assert poller.terminate() == 0
