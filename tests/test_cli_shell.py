"""The command line at the shell's edges: pipes that close early, a service's first steps.

Every command runs as a real ``fleettui`` process against a real SQLite file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleettui.domain import AlertKind, DeviceState, DeviceStatus, Site, StatusChange
from fleettui.printable import PrintableFormatter, printable
from fleettui.store import open_store


def _fleettui(*args: str | Path, stdout: int | None = subprocess.PIPE,
              ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLEETTUI_CONFIG", "FLEETTUI_DB")}
    return subprocess.run([sys.executable, "-m", "fleettui", *map(str, args)], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=60, env=env)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A migrated database with a key and a device or two to list."""
    path = tmp_path / "fleet.db"

    async def make() -> None:
        store = await open_store(path)
        await store.close()

    asyncio.run(make())
    assert _fleettui("api-key", "create", "--db", path, "--role", "viewer",
                     "--name", "ci").returncode == 0
    return path


@pytest.mark.parametrize("command", [
    ["status"], ["status", "--json"], ["export", "punches", "--format", "csv"],
    ["api-key", "list"], ["alerts"], ["commands"],
])
def test_a_reader_that_went_away_ends_the_command_quietly(db: Path, command: list[str]) -> None:
    """``fleettui status | head -2``: the reader leaves; the command stops without a
    BrokenPipeError traceback and exits 0. Here the pipe's reading end is closed before
    the command writes anything, so its first write meets the broken pipe every time."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = _fleettui(*command, "--db", db, stdout=write_end)
    finally:
        os.close(write_end)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_api_key_create_makes_the_database_a_service_will_use(tmp_path: Path) -> None:
    """A service is set up with its key before it first starts: ``api-key create`` on a
    database that does not exist yet creates it (migrated, readable by its owner only)."""
    db = tmp_path / "state" / "fleet.db"
    r = _fleettui("api-key", "create", "--db", db, "--role", "admin", "--name", "svc")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert key and key not in r.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    listed = _fleettui("api-key", "list", "--db", db)
    assert listed.returncode == 0 and "admin" in listed.stdout and "svc" in listed.stdout
    assert key not in listed.stdout  # only its prefix is shown


def test_other_commands_still_refuse_a_missing_database(tmp_path: Path) -> None:
    """Reading commands do not create an empty database by mistake (a typo in --db)."""
    db = tmp_path / "typo.db"
    r = _fleettui("status", "--db", db)
    assert r.returncode == 1 and "no database at" in r.stderr
    assert not db.exists()


#: what an API client or a device could put in a name, a reason or a note: clear the
#: screen, retitle the window, and read the rest backwards
HOSTILE = "\x1b[2J\x1b]0;owned\x07\u202eevil"


def test_stored_text_reaches_the_terminal_with_its_controls_made_visible(
    tmp_path: Path,
) -> None:
    """A device's status reason, a silence's reason and an acknowledgement's ``by`` are
    stored as given; ``fleettui status`` and ``fleettui alerts`` print them escaped, and
    so do log lines (the headless poller's formatter)."""
    db = tmp_path / "fleet.db"
    now = datetime.now(UTC)

    async def seed() -> None:
        store = await open_store(db)
        try:
            await store.sync_fleet([Site("s1", "Site 1", "UTC")],
                                   [DeviceState("d1", "S1", "s1", "127.0.0.1", 4370, "tcp")])
            await store.record_status(StatusChange("d1", DeviceStatus.ERROR, HOSTILE, now))
            alert = await store.open_alert(
                target_kind="device", target="d1", site_id="s1", kind=AlertKind.OFFLINE,
                severity="warning", reason=HOSTILE, since=now, now=now, notify=False)
            assert alert.id is not None
            await store.acknowledge_alert(alert.id, HOSTILE, now)
            await store.add_silence("d1", now + timedelta(hours=1), HOSTILE, "cli", now)
        finally:
            await store.close()

    asyncio.run(seed())
    for command in (["status"], ["alerts"]):
        r = _fleettui(*command, "--db", db)
        assert r.returncode == 0, r.stderr
        assert "\\x1b[2J\\x1b]0;owned\\x07\\u202eevil" in r.stdout, r.stdout
        assert "\x1b" not in r.stdout and "\u202e" not in r.stdout and "\x07" not in r.stdout

    record = logging.LogRecord("fleettui.events", logging.INFO, __file__, 1, "d1 error: %s",
                               (HOSTILE,), None)
    line = PrintableFormatter("%(levelname)s %(message)s").format(record)
    assert line == "INFO d1 error: \\x1b[2J\\x1b]0;owned\\x07\\u202eevil"


def test_printable_keeps_what_it_is_told_to_and_plain_text_as_it_is() -> None:
    assert printable("Entrepôt Casablanca — porte 2") == "Entrepôt Casablanca — porte 2"
    assert printable("a\tb\nc\x00d\x9be", keep="\n") == "a\\x09b\nc\\x00d\\x9be"
