"""The control room under a real pseudo-terminal: an SSH session that drops.

``fleettui`` runs as a subprocess on a pty (80x24, set with TIOCSWINSZ, the pty
its controlling terminal) over two emulated devices, one offline. When the
session drops, either by SIGHUP alone or by the terminal really going away
(the master side closed, as sshd does), or by a terminal that just stops
working without any signal, the app must exit 0 without a
traceback, stop its embedded engine gracefully, release the poller lock, and
lose no punch: a headless poller started afterwards takes the lock and ends
with exactly the device's records. With --osc-notify, the offline device's
alert reaches the terminal as an OSC 777 sequence; with ``[server] enabled`` the
HTTP API answers while the control room runs.
Every wait is a bounded poll of a condition (the database, the pty output).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from fleettui.config import load_config
from fleettui.headless import run_headless
from fleettui.store import open_store
from fleettui.store.lock import PollerLock
from tests.conftest import Emulated, device_config, free_port, next_host, sample_users
from tests.test_engine import fleet_toml

ROOT = Path(__file__).resolve().parents[1]
#: the child makes the pty its controlling terminal (as a login shell's would be), then runs
#: the real command line
CHILD = (
    "import fcntl, sys, termios\n"
    "if sys.argv[1] == 'ctty': fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "from fleettui.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


class PtyReader(threading.Thread):
    """Drains the pty's master side (a terminal must be read, or the app blocks writing)."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.data = bytearray()
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: every slave side is closed (the child exited)
                return
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    def text(self) -> str:
        with self.lock:
            return self.data.decode("utf-8", errors="replace")


def wait_until(cond: Callable[[], bool], what: str, proc: subprocess.Popen[bytes],
               timeout: float = 60.0) -> None:
    """Poll ``cond`` until it holds; fail (naming ``what``) if the child dies or time runs out."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"fleettui exited ({proc.returncode}) before: {what}"
        assert time.monotonic() < deadline, f"not in time: {what}"
        time.sleep(0.05)


def db_rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the child's database read-only (nothing if it is not there yet)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute(sql).fetchall()
    except sqlite3.OperationalError:  # schema not created yet
        return []


def spawn_on_pty(args: list[str], cfg: Path | None, cwd: Path, *, ctty: bool = True,
                 env_extra: dict[str, str] | None = None,
                 ) -> tuple[subprocess.Popen[bytes], int, PtyReader]:
    """``fleettui <args>`` on a new 80x24 pty (its controlling terminal if ``ctty``), with
    ``cfg`` as its config; returns the process, the pty's master side and its reader."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in os.environ.items()
           if k not in ("DBUS_SESSION_BUS_ADDRESS", "FLEETTUI_OSC_NOTIFY", "TEXTUAL_DRIVER",
                        "TMUX", "FLEETTUI_CONFIG", "FLEETTUI_DB")}
    env.update(TERM="xterm-256color", PYTHONPATH=str(ROOT), **(env_extra or {}))
    if cfg is not None:
        env["FLEETTUI_CONFIG"] = str(cfg)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, "ctty" if ctty else "no", *args],
                            stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True, cwd=cwd)
    os.close(slave)
    reader = PtyReader(master)
    reader.start()
    return proc, master, reader


def end_child(proc: subprocess.Popen[bytes], reader: PtyReader, master: int | None) -> None:
    """Kill the child if it is still there, stop reading, close the pty (if still open)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    reader.stop.set()
    reader.join()
    if master is not None:
        os.close(master)


def wait_exit(proc: subprocess.Popen[bytes], what: str) -> int:
    """The child's exit code, once it exits (fail after 60 s)."""
    deadline = time.monotonic() + 60
    while proc.poll() is None:
        assert time.monotonic() < deadline, f"fleettui did not exit after {what}"
        time.sleep(0.05)
    return proc.returncode


@pytest.mark.parametrize("drop", ["sighup", "pty_closed", "pty_closed_no_sighup", "sigterm"])
def test_an_ssh_drop_exits_cleanly_and_loses_nothing(
    emulate: Callable[..., Emulated], tmp_path: Path, drop: str
) -> None:
    online, offline = device_config("dev_pty_01"), device_config("dev_pty_02")
    em = emulate([online, offline], users={online.id: sample_users(5)})
    em.emu.run(em.fleet.set_faults(offline.id, {"offline": True}))
    em.emu.call(em.fleet.generate_punches, online.id, 30)
    cfg = tmp_path / "fleet.toml"
    api_host = next_host()
    api_port = free_port(api_host)
    cfg.write_text(fleet_toml([online, offline])
                   + "\n[alerts]\nconfirm_after_s = 0\n"
                   + f'\n[server]\nenabled = true\nhost = "{api_host}"\nport = {api_port}\n')
    db = tmp_path / "fleet.db"
    log = tmp_path / "fleet.db.tui.log"

    args = ["--db", str(db), "--no-mouse"] + (["--osc-notify"] if drop == "sighup" else [])
    # not the controlling terminal: closing it sends no SIGHUP, reads just hit end-of-file
    proc, master, reader = spawn_on_pty(args, cfg, tmp_path,
                                        ctty=drop != "pty_closed_no_sighup")
    master_open = True
    try:
        wait_until(lambda: db_rows(db, "SELECT id, status FROM devices ORDER BY id") == [
            (online.id, "online"), (offline.id, "offline")], "devices polled", proc)
        wait_until(lambda: db_rows(db, "SELECT count(*) FROM punches") == [(30,)],
                   "first sync stored", proc)
        # [server] enabled: the control room serves the HTTP API from its own loop
        wait_until(lambda: log.exists() and "HTTP API on" in log.read_text(), "API up", proc)
        with urllib.request.urlopen(f"http://{api_host}:{api_port}/healthz", timeout=5) as r:
            assert r.status == 200
        if drop == "sighup":
            # the offline device's alert, as a terminal notification
            wait_until(lambda: "\x1b]777;notify;fleettui opened;" in reader.text(),
                       "OSC 777 notification on the terminal", proc)
        # more punches land: a sync may well be under way when the session drops
        em.emu.call(em.fleet.generate_punches, online.id, 2000)
        if drop in ("sighup", "sigterm"):
            os.kill(proc.pid, signal.SIGHUP if drop == "sighup" else signal.SIGTERM)
        else:
            reader.stop.set()
            reader.join()
            os.close(master)  # the terminal goes away: the kernel hangs it up
            master_open = False
        assert wait_exit(proc, "the hang-up") == 0
    finally:
        end_child(proc, reader, master if master_open else None)

    text = log.read_text()
    assert ("SIGTERM: stopping" if drop == "sigterm" else "terminal hung up") in text
    assert "Traceback" not in text and " ERROR " not in text
    assert "Traceback" not in reader.text()
    # the lock is free: a headless poller takes the database over and catches up exactly:
    # the store then holds each of the device's records once (by the store's own key:
    # user, local second, state, verify), and nothing else
    PollerLock(db).acquire().release()
    held = sorted((p.user_id, p.at, p.state, p.verify)
                  for p in em.emu.call(em.fleet.devices[online.id].log.records))
    assert len(set(held)) == len(held)  # the device's records are distinct by that key
    stored_keys = asyncio.run(_catch_up(cfg, db, online.id, len(held)))
    assert sorted(stored_keys) == held


#: what Textual writes first when its driver takes the terminal, before the app mounts
ALT_SCREEN = "\x1b[?1049h"


class FifoReader(threading.Thread):
    """Reads a named pipe to its end: the child's log, when the test makes it one."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.data = bytearray()

    def run(self) -> None:
        with open(self.path, "rb") as f:  # opens once the child opens its end for writing
            while chunk := f.read(65536):
                self.data += chunk

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def lock_owner_pid(db: Path) -> int | None:
    """The pid the poller lock beside ``db`` names (read, never locked: probing the lock
    itself could make the child find it taken)."""
    try:
        return int(json.loads((db.parent / (db.name + ".lock")).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@pytest.mark.parametrize(("stage", "sig"), [("lock", signal.SIGHUP), ("store", signal.SIGHUP),
                                          ("store", signal.SIGTERM)])
def test_a_hangup_while_starting_exits_cleanly(
    emulate: Callable[..., Emulated], tmp_path: Path, stage: str, sig: signal.Signals
) -> None:
    """SIGHUP (or SIGTERM) before the app has started: with the poller lock taken and the
    app not started yet ("lock"), or the app started, its loop owning the signals, and
    start-up waiting on the store ("store"). Start-up is held there for real, by what
    the test controls: at "lock", the log file (opened after the lock, before the app) is
    a named pipe the test opens for reading only after the signal; at "store", the test
    holds the database's SQLite write lock, so opening the store waits (busy_timeout)
    until the test lets go, after the signal. The signal's default would kill the process
    (exit -1, no graceful stop); it must exit 0, say why it stopped, free the lock."""
    device = device_config("dev_pty_hold")
    emulate([device])
    cfg = tmp_path / "fleet.toml"
    cfg.write_text(fleet_toml([device]))
    db, log = tmp_path / "fleet.db", tmp_path / "fleet.db.tui.log"
    writer: sqlite3.Connection | None = None
    fifo: FifoReader | None = None
    if stage == "lock":
        os.mkfifo(log)
        fifo = FifoReader(log)
    else:
        writer = sqlite3.connect(db, isolation_level=None)
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("BEGIN IMMEDIATE")  # another writer: the store cannot migrate yet
    proc, master, reader = spawn_on_pty(["--db", str(db), "--no-mouse"], cfg, tmp_path)
    try:
        wait_until(lambda: lock_owner_pid(db) == proc.pid, "the poller lock taken", proc)
        if stage == "store":  # the app runs (it took the terminal), the store cannot open
            wait_until(lambda: ALT_SCREEN in reader.text(), "the app started", proc)
        os.kill(proc.pid, sig)
        if fifo is not None:
            fifo.start()  # the child's log opens: start-up goes on, and finds the signal
        if writer is not None:
            writer.execute("ROLLBACK")  # the store opens: start-up goes on, and stops
        assert wait_exit(proc, sig.name) == 0
    finally:
        end_child(proc, reader, master)
        if writer is not None:
            writer.close()
    if fifo is not None:
        fifo.join(timeout=60)
        assert not fifo.is_alive(), "the log pipe was not closed"
        text = fifo.text()
    else:
        text = log.read_text()
    if stage == "lock":
        assert f"{sig.name} before the control room started: stopping" in text
    else:
        assert ("terminal hung up: stopping" if sig == signal.SIGHUP
                else "SIGTERM: stopping") in text
    assert text.rstrip().endswith("stopped")  # run_tui's last word, after the app ended
    assert "Traceback" not in text and " ERROR " not in text
    assert "Traceback" not in reader.text()
    PollerLock(db).acquire().release()  # the lock is free


async def _catch_up(cfg: Path, db: Path, device_id: str, total: int,
                    ) -> list[tuple[str, datetime, int, int]]:
    """Run a headless poller until the store holds ``total`` punches of the device; returns
    them as (user, local time, state, verify)."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_headless(load_config(cfg), db, stop=stop))
    store = await open_store(db)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(punches := await store.punches(device_id=device_id)) < total:
            assert not task.done(), task
            assert loop.time() < deadline, "headless poller did not catch up"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        assert await task == 0
        await store.close()
    return [(p.user_id, p.local_time, p.state, p.verify) for p in punches]


def test_the_demo_serves_the_api_and_survives_a_hangup(tmp_path: Path) -> None:
    """`fleettui demo --http --no-mouse` on a pty: the API answers; SIGHUP ends it cleanly."""
    api_host = next_host()
    api_port = free_port(api_host)
    proc, master, reader = spawn_on_pty(
        ["demo", "--devices", "4", "--sites", "2", "--base-address", next_host(),
         "--port", "0", "--no-mouse", "--http", f"{api_host}:{api_port}"], None, tmp_path)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://{api_host}:{api_port}/healthz", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_until(healthy, "the demo's HTTP API answers", proc)
        os.kill(proc.pid, signal.SIGHUP)
        assert wait_exit(proc, "the hang-up (demo)") == 0
    finally:
        end_child(proc, reader, master)
    assert "Traceback" not in reader.text()
    assert not healthy()
