"""Push devices against ``fleettui run --headless``: the real service, killed mid-upload.

The poller runs as a subprocess with ``[push] enabled``; the test calls its
listener as a push device does (the wire format of the push protocol notes)
and reads the database with sqlite3, as the other headless tests do.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import httpx

from tests.conftest import free_port, loopback, next_host
from tests.test_headless import (
    Runner,
    _env,
    fleettui,
    punch_count,
    query,
    runner,
    wait_for,
)

__all__ = ["runner"]  # the fixture, re-exported for this module's tests

BATCH = "".join(f"{1000 + i}\t2026-12-03 08:{i:02d}:00\t0\t1\t0\t0\t0\n" for i in range(50))


def _config(path: Path, listen: str) -> Path:
    path.write_text(f"""
[push]
enabled = true
listen = "{listen}"

[[sites]]
id = "pune"
name = "Pune plant"
timezone = "Asia/Kolkata"

[[devices]]
id = "gate-1"
serial = "CKPUSH0001"
site = "pune"
transport = "push"
""")
    return path


def _waiting_for_the_database(pid: int) -> bool:
    """Whether a thread of ``pid`` sleeps in SQLite's busy handler (it waits for a lock):
    clock_nanosleep or nanosleep, which nothing else of an idle poller calls (Linux)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            number = (task / "syscall").read_text().split()[0]
        except (OSError, IndexError):
            continue
        if number in ("35", "230"):  # x86_64 nanosleep, clock_nanosleep
            return True
    return False


def test_kill_9_during_an_upload_loses_and_doubles_nothing(
    runner: Runner, tmp_path: Path,
) -> None:
    """The poller is killed while a batch waits to be committed: the device got no OK, so
    it sends the batch again to the restarted poller, which stores it once."""
    host = next_host()
    listen = f"{host}:{free_port(host)}"
    config = _config(tmp_path / "fleet.toml", listen)
    db = tmp_path / "fleet.db"
    base = f"http://{listen}/iclock"
    first = runner.start_polling(config, db)
    wait_for(lambda: "push listener on" in first.log(), "the push listener", watch=[first])
    hello = httpx.get(f"{base}/cdata", params={"SN": "CKPUSH0001", "options": "all"})
    assert hello.status_code == 200

    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another writer: the poller's commit has to wait
    answers: list[int | str] = []

    def upload() -> None:
        try:
            r = httpx.post(f"{base}/cdata", params={"SN": "CKPUSH0001", "table": "ATTLOG"},
                           content=BATCH.encode(), timeout=60)
            answers.append(r.status_code)
        except httpx.HTTPError as e:
            answers.append(type(e).__name__)

    device = threading.Thread(target=upload)
    device.start()
    wait_for(lambda: _waiting_for_the_database(first.pid),
             "the poller to wait for the database inside the upload", watch=[first])
    first.kill()
    device.join(timeout=30)
    lock.execute("ROLLBACK")
    lock.close()
    assert answers and answers[0] != 200, f"the device was told {answers}: nothing to resend"
    assert punch_count(db) == 0

    second = runner.start_polling(config, db)
    wait_for(lambda: "push listener on" in second.log(), "the push listener", watch=[second])
    for _ in range(2):  # it sends the batch again; that answer is lost too; and again
        r = httpx.post(f"{base}/cdata", params={"SN": "CKPUSH0001", "table": "ATTLOG"},
                       content=BATCH.encode(), timeout=30)
        assert (r.status_code, r.text) == (200, "OK:50")
    assert second.terminate() == 0, second.log()
    assert punch_count(db) == 50
    outbox = query(db, "SELECT COUNT(*) FROM webhook_outbox WHERE event_type = 'punch.created'")
    assert outbox == [(50,)]
    assert "Traceback" not in second.log()


def test_an_emulated_push_fleet_against_the_headless_poller(
    runner: Runner, tmp_path: Path,
) -> None:
    """What a user does: ``fleettui emulate --push`` writes the config (with its [push]
    table), ``fleettui run --headless`` on it; every push terminal comes online and its
    punches are stored once, as the emulator holds them."""
    host = next_host()
    server = f"http://{host}:{free_port(host)}"
    config = tmp_path / "fleet.toml"
    log = (tmp_path / "emulate.log").open("wb")
    emu = subprocess.Popen(
        [sys.executable, "-m", "fleettui", "emulate", "--sites", "2", "--devices", "6",
         "--seed", "4", "--push", "3", "--push-server", server, "--push-delay", "0.5",
         "--base-address", loopback(242, 1), "--port", "0", "--history-days", "0",
         "--punch-rate", "0", "--control", f"{host}:0", "--config-out", str(config)],
        stdout=log, stderr=subprocess.STDOUT, env=_env())
    try:
        wait_for(lambda: config.exists() and "Ctrl+C" in (tmp_path / "emulate.log").read_text(),
                 "the emulator to start")
        control = re.search(r"control API\s+(http://\S+?)/devices",
                            (tmp_path / "emulate.log").read_text())
        assert control is not None
        assert "[push]" in config.read_text()
        check = fleettui("check-config", config)
        assert check.returncode == 0, check.stderr
        db = tmp_path / "fleet.db"
        poller = runner.start_polling(config, db)
        push_ids = [d["id"] for d in tomllib.loads(config.read_text())["devices"]
                    if d.get("transport") == "push"]
        assert len(push_ids) == 3

        def held() -> dict[str, int]:
            devices = httpx.get(f"{control.group(1)}/devices").json()["devices"]
            return {d["id"]: d["records"] for d in devices if d["id"] in push_ids}

        def stored_all() -> bool:
            online = query(db, "SELECT COUNT(*) FROM devices WHERE transport = 'push'"
                               " AND status = 'online'")[0][0]
            return online == 3 and all(punch_count(db, d) == n for d, n in held().items())

        for d in push_ids:  # punches made on the terminals: each pushes its own
            r = httpx.post(f"{control.group(1)}/devices/{d}/punches", json={"count": 25})
            assert r.status_code < 300, r.text
        wait_for(stored_all, "every push terminal online with its punches stored",
                 watch=[poller], timeout=90, interval=0.2,
                 describe=lambda: f"{held()} held; stored "
                                  f"{[punch_count(db, d) for d in push_ids]}")
        assert set(held().values()) == {25}
        assert poller.terminate() == 0, poller.log()
        assert "Traceback" not in poller.log()
    finally:
        emu.terminate()
        emu.wait(timeout=30)
        log.close()
