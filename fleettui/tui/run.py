"""``fleettui`` (or ``fleettui run``) with no --headless: the control room on the configured fleet.

The first process to take a database's poller lock embeds the engine; if a
headless poller (or another TUI) already owns it, this one opens as a viewer:
it reads the store and queues commands for the owner to run. The lock is
released however the app ends, a dropped SSH session included.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fleettui.config import Config, default_db_path
from fleettui.printable import PrintableFormatter
from fleettui.store.where import StoreTarget

#: environment variable that turns on terminal (OSC) notifications: 777, 9 or off
OSC_ENV = "FLEETTUI_OSC_NOTIFY"


def run_tui(
    config: Config,
    db: StoreTarget,
    *,
    mouse: bool = True,
    http: tuple[str, int] | None = None,
    osc_notify: str | None = None,
) -> int:
    """Open the app on ``db``, embedding the poller unless another process owns it.

    ``http`` serves the HTTP API from the app (``[server] enabled`` in the config does
    too, but only for the owning poller: a viewer would collide with the owner's port).
    """
    from fleettui.runtime import Runtime
    from fleettui.tui.app import FleetApp
    from fleettui.tui.terminal import StopSignals

    with StopSignals() as signals:  # before the lock: a hang-up while starting is clean too
        runtime = Runtime(config, db, lock_mode="tui")
        embed = runtime.claim_or_view()
        if http is None and embed and config.server.enabled:
            http = (config.server.host, config.server.port)
        try:
            log_to(db.with_name(db.name + ".tui.log") if isinstance(db, Path)
                   else default_db_path().with_name("fleettui.tui.log"))
            if signals.received is None:
                FleetApp(runtime=runtime, http=http, osc_notify=osc_notify,
                         stop_signals=signals).run(mouse=mouse)
            else:  # hung up (or killed) before the app started: nothing to stop
                signals.before_start("the control room")
        finally:
            runtime.release()
    logging.getLogger("fleettui.tui").info("stopped")
    return 0


def osc_setting(flag: str | None) -> str | None:
    """The OSC kind from --osc-notify, else $FLEETTUI_OSC_NOTIFY (ValueError if bad)."""
    from fleettui.tui.notify import osc_kind

    return osc_kind(flag if flag is not None else os.environ.get(OSC_ENV))


def log_to(path: Path) -> None:
    """Log to a file: the terminal belongs to the app."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
