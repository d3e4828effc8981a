"""Push devices against ``fleettui run --headless``: the real service, killed mid-upload.

The poller runs as a subprocess with ``[push] enabled``; the test calls its
listener as a push device does (the wire format of the push protocol notes)
and reads the database with sqlite3, as the other headless tests do.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import httpx

from tests.conftest import free_port, next_host
from tests.test_headless import Runner, punch_count, query, runner, wait_for

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
