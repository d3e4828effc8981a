"""``fleettui`` with no command: the control room on the configured fleet.

The first process to take a database's poller lock embeds the engine; if a
headless poller (or another TUI) already owns it, this one opens as a viewer:
it reads the store and queues commands for the owner to run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fleettui.config import Config
from fleettui.store.lock import PollerLock, PollerRunning


def run_tui(config: Config, db: Path) -> int:
    """Open the app on ``db``, embedding the poller unless another process owns it."""
    from fleettui.tui.app import FleetApp

    lock = PollerLock(db, mode="tui")
    try:
        lock.acquire()
        embed = True
    except PollerRunning:
        embed = False
    try:
        log_to(db.with_name(db.name + ".tui.log"))
        FleetApp(config=config, db_path=db, embed=embed).run()
    finally:
        lock.release()
    return 0


def log_to(path: Path) -> None:
    """Log to a file: the terminal belongs to the app."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
