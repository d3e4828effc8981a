"""``fleettui run --headless``: the engine as a service, one log line per event.

Owns the database's polling (a second poller is refused, naming the owner),
logs every event as a line (text, or JSON for journald/ELK), and stops
gracefully on SIGTERM/SIGINT: scheduling stops, in-flight checks and syncs
finish their writes, then devices are said goodbye to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from datetime import UTC, datetime
from typing import Any

from fleettui.config import Config
from fleettui.domain import Event, EventKind
from fleettui.printable import PrintableFormatter
from fleettui.runtime import ApiUnavailable, PushUnavailable, Runtime
from fleettui.store.where import StoreTarget

log = logging.getLogger("fleettui")
event_log = logging.getLogger("fleettui.events")

_LEVELS = {EventKind.DEVICE_OFFLINE: logging.WARNING, EventKind.DEVICE_ERROR: logging.WARNING}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the event's fields when the record carries one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event: Event | None = getattr(record, "event", None)
        if event is not None:
            out.update(
                {"event_id": event.id, "kind": event.kind.value, "device": event.device_id,
                 "site": event.site_id, "data": event.data}
            )
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(fmt: str, level: int = logging.INFO) -> None:
    """Log to stderr as text or JSON lines."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # APScheduler logs every job run at INFO: far too chatty for 500 devices
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def log_event(event: Event) -> None:
    """Write one event as one log line."""
    event_log.log(_LEVELS.get(event.kind, logging.INFO), "%s", event.message,
                  extra={"event": event})


async def run_headless(
    config: Config,
    db_path: StoreTarget,
    *,
    stop: asyncio.Event | None = None,
    http: tuple[str, int] | None = None,
) -> int:
    """Poll until SIGTERM/SIGINT (or ``stop`` is set). Raises PollerRunning if not the owner.

    With ``http`` (or ``[server] enabled = true``) the HTTP API is served from the
    same event loop; an address it cannot bind is an error line and exit code 1.
    Start-up and shutdown are the runtime's (:mod:`fleettui.runtime`).
    """
    if http is None and config.server.enabled:
        http = (config.server.host, config.server.port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before anything else: a stop while
        with contextlib.suppress(NotImplementedError, RuntimeError):  # starting is clean too
            loop.add_signal_handler(sig, stop.set)
    runtime = Runtime(config, db_path).claim()
    try:
        engine = await runtime.start_engine(listeners=[log_event])
        try:
            await runtime.serve_push()
        except PushUnavailable as e:
            log.error("%s", e)
            return 1
        assert engine is not None  # a poller's runtime always embeds one
        alone = engine.share.everything  # sharing a database, a poller may hold no site yet
        if alone and not engine.pollers and not engine.push.devices() and not config.push.enabled:
            # not an error: devices may be registered over the HTTP API, this process's
            # or a viewer's (POST /v1/devices), and are polled at once when they are
            log.warning("no devices to poll: %s declares no [[devices]] and none are "
                        "registered over the HTTP API; add [[devices]] (fleettui emulate "
                        "--config-out FILE writes an example) or register them with "
                        "POST /v1/devices", config.source or "the config")
        if alone:
            log.info("polling %d device(s) across %d site(s) into %s",
                     len(engine.pollers), len(config.sites), db_path)
        else:
            log.info("polling %d device(s) of the %d site(s) this poller holds, of %d, into %s "
                     "(shared with the other pollers on it: fleettui pollers)",
                     len(engine.pollers), len(engine.share.held_sites()), len(config.sites),
                     db_path)
        if runtime.push_address is not None:
            log.info("push listener on %s/iclock/ for %d push device(s)",
                     runtime.push_address, len(engine.push.devices()))
        if http is not None:
            try:
                address = await runtime.serve_api(*http)
            except ApiUnavailable as e:
                log.error("%s", e)
                return 1
            log.info("HTTP API on %s/v1 (bearer API keys: fleettui api-key)", address)
        await stop.wait()
        log.info("stopping: letting current work finish")
    finally:
        await runtime.stop()  # the API, the engine (its work in hand finishes), the store
        runtime.release()
    log.info("stopped")
    return 0
