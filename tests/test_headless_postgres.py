"""``fleettui run --headless --db postgresql://...`` as an operator runs it: a real poller
process on a real PostgreSQL server, over emulated devices, read back with
``fleettui status`` and ``fleettui export`` from other processes.

The address carries a password the server never asks for (trust authentication
on the test server), so that a leak of it anywhere would show.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from tests.test_headless import (
    KOLKATA,
    PARIS,
    SECRET_KEY,
    Emulate,
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


def test_a_poller_on_postgresql_stores_everything_once_and_survives_kill_9(
    emulate: Emulate, runner: Runner, tmp_path: Path, pg_url: str,
) -> None:
    fleet = [dev("pg-par-01", PARIS), dev("pg-par-02", PARIS, comm_key=SECRET_KEY),
             dev("pg-kol-01", KOLKATA)]
    em = emulated_fleet(emulate, fleet, punches=20)
    ids = [d.id for d, _ in fleet]
    db = _with_password(pg_url)
    config = config_for(tmp_path / "fleet.toml", fleet)
    first = runner.start_polling(config, db)  # type: ignore[arg-type]

    wait_status(db, dict.fromkeys(ids, "online"), [first])  # type: ignore[arg-type]
    wait_for(lambda: sum(map(sum, (c.values() for c in _exported(db).values()))) == 60,
             "the 60 punches in the store", watch=[first])
    assert _exported(db) == {d: device_keys(em, d) for d in ids}

    status = json.loads(fleettui("status", "--json", "--db", db).stdout)
    assert status["poller"]["running"] is True
    assert status["poller"]["owner"]["pid"] == first.pid
    second = fleettui("run", "--headless", "--config", config, "--db", db)
    assert second.returncode == 1 and f"pid {first.pid}" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr

    first.kill()  # SIGKILL: the server frees its lock when it sees the connection gone
    during = [punch_at(em, "pg-kol-01", "1003", datetime(2025, 2, 3, 7, 0) + timedelta(minutes=i))
              for i in range(4)]
    third = runner.start_polling(config, db)  # type: ignore[arg-type]
    wait_for(lambda: all(_exported(db).get("pg-kol-01", Counter())[k] == 1 for k in during),
             "the punches made while no poller ran", watch=[third])
    assert _exported(db) == {d: device_keys(em, d) for d in ids}  # nothing lost, nothing twice

    table = fleettui("status", "--db", db)
    assert table.returncode == 0 and "3 devices · 3 online" in table.stdout, table.stdout
    assert third.terminate() == 0, third.log()
    for output in (first.log(), third.log(), table.stdout, json.dumps(status), second.stderr):
        assert PASSWORD not in output, "the database password was printed:\n" + output
        assert not leaks(output, SECRET_KEY), "the comm key was printed:\n" + output
        assert "Traceback" not in output, output
    assert "fleettui:***@" in third.log()  # where it polls into, said without the password
