"""The ``fleettui`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fleettui import __version__
from fleettui.commands import COMMANDS
from fleettui.config import (
    Config,
    ConfigError,
    Problem,
    load_config,
    resolve_config_path,
    resolve_db_path,
)
from fleettui.printable import printable
from fleettui.store.where import StoreTarget

if TYPE_CHECKING:
    from fleettui.store import Store


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, e.g. 127.0.0.1:8470, got {text!r}")
    return host, int(port)


def _at_least(kind: type[int] | type[float], low: float, what: str) -> Callable[[str], Any]:
    """An argparse type: a ``kind`` number no smaller than ``low``, with a clear error."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a number of at least {low:g}, "
                                             f"got {value}")
        return value

    return parse


_positive_int = _at_least(int, 1, "a whole number")
_non_negative = _at_least(float, 0, "a number")
_non_negative_int = _at_least(int, 0, "a whole number")
_positive_float = _at_least(float, 0.01, "a number")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from fleettui.emulator import control

    parser = argparse.ArgumentParser(
        prog="fleettui",
        description="A terminal control room for fleets of ZKTeco attendance devices.",
    )
    parser.add_argument("--version", action="version", version=f"fleettui {__version__}")
    parser.add_argument("--config", dest="tui_config", metavar="FILE",
                        help="with no command: open the control room on this fleet config")
    parser.add_argument("--db", dest="tui_db", metavar="FILE",
                        help="with no command: the database (as for run)")
    _tui_args(parser, prefix="tui_")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    emu = sub.add_parser(
        "emulate",
        help="run a fleet of emulated ZKTeco terminals on loopback",
        description=(
            "Start emulated ZKTeco terminals, each on its own loopback address, speaking the\n"
            "ZK binary protocol on TCP and UDP (port 4370 by default), spread over sites with\n"
            "real time zones, with punches following shift patterns. Writes the matching\n"
            "fleettui config and runs until SIGINT/SIGTERM."
        ),
        epilog="control API\n-----------\n" + (control.__doc__ or "").split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    emu.add_argument("--sites", type=_positive_int, default=14, help="number of sites (14)")
    emu.add_argument("--devices", type=_positive_int, default=62, help="number of devices (62)")
    emu.add_argument("--seed", type=int, default=1, help="same seed, same fleet (1)")
    emu.add_argument(
        "--config-out", type=Path, metavar="FILE", help="write the fleet's fleettui config here"
    )
    emu.add_argument(
        "--control",
        type=_host_port,
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help="control API address, loopback only (default 127.0.0.1 and a free port)",
    )
    emu.add_argument(
        "--base-address",
        default="127.0.1.1",
        metavar="IP",
        help="loopback address of the first device; the rest follow (127.0.1.1)",
    )
    emu.add_argument("--port", type=int, default=4370, help="device port, TCP and UDP (4370)")
    emu.add_argument(
        "--punch-rate",
        type=_non_negative,
        metavar="PER_MIN",
        help="punches per minute per device at a steady rate instead of shift patterns "
        "(0: no live punches)",
    )
    emu.add_argument(
        "--history-days",
        type=_non_negative,
        default=1.0,
        metavar="DAYS",
        help="days of past shift punches each device already holds (1)",
    )
    emu.add_argument(
        "--sick",
        action="store_true",
        help="make a few devices sick: one offline, one flapping, one with a drifting "
        "clock, one with a nearly full record buffer",
    )
    emu.add_argument(
        "--push", type=_non_negative_int, default=0, metavar="N",
        help="make N of the devices (picked from the seed, spread over sites) push terminals "
        "(ADMS / iclock) that dial --push-server instead of listening (0)",
    )
    emu.add_argument(
        "--push-server", metavar="URL",
        help="the push listener push terminals dial, e.g. http://127.0.0.1:8081",
    )
    emu.add_argument(
        "--push-delay", type=_positive_float, metavar="S",
        help="push terminals' Delay and ErrorDelay before the server's option block sets "
        "them (firmware default 30)",
    )
    emu.add_argument("-v", "--verbose", action="store_true", help="log protocol errors")

    demo = sub.add_parser(
        "demo", help="open the control room on an emulated fleet (62 devices, 14 sites)",
        description="Start an emulated fleet in the background (one device offline, one "
        "flapping, one with a drifting clock, one with a nearly full record buffer, punches "
        "flowing) and open the control room on it, with the poller embedded.",
    )
    demo.add_argument("--sites", type=_positive_int, default=14, help="number of sites (14)")
    demo.add_argument("--devices", type=_positive_int, default=62,
                      help="number of devices (62)")
    demo.add_argument("--seed", type=int, default=1, help="same seed, same fleet (1)")
    demo.add_argument("--base-address", default="127.0.1.1", metavar="IP",
                      help="loopback address of the first device (127.0.1.1)")
    demo.add_argument("--port", type=int, default=4370, help="device port (4370)")
    demo.add_argument("--punch-rate", type=_non_negative, default=2.0, metavar="PER_MIN",
                      help="punches per minute per device (2)")
    _tui_args(demo)

    def store_args(p: argparse.ArgumentParser, *, config: bool = True) -> None:
        if config:
            p.add_argument(
                "--config", metavar="FILE",
                help="fleet config (default: $FLEETTUI_CONFIG, then the user config dir)",
            )
        p.add_argument(
            "--db", metavar="FILE",
            help="database (default: $FLEETTUI_DB, then [paths] db, then the user data dir)",
        )

    run = sub.add_parser(
        "run", help="run the poller (in the control room, or --headless as a service)",
        description="Run the engine: poll every device, store every punch. Without "
        "--headless, in the control room (as `fleettui` alone).",
    )
    run.add_argument("--headless", action="store_true",
                     help="run as a service without a screen (logs one line per event)")
    _tui_args(run, http=False)
    run.add_argument("--http", type=_host_port, metavar="HOST:PORT",
                     help="also serve the HTTP API there (e.g. 127.0.0.1:8470)")
    run.add_argument("--log-format", choices=("text", "json"), default="text",
                     help="log lines as text or JSON (for journald/ELK)")
    store_args(run)

    chk = sub.add_parser("check-config", help="validate a fleet config file")
    chk.add_argument("file", nargs="?", help="config file (default: as for run)")

    status = sub.add_parser("status", help="every device's status, from the store")
    status.add_argument("--json", action="store_true", help="JSON for scripts")
    store_args(status)

    export = sub.add_parser("export", help="export stored data")
    export_sub = export.add_subparsers(dest="what", metavar="WHAT", required=True)
    punches = export_sub.add_parser("punches", help="stored punches, for payroll")
    punches.add_argument("--since", metavar="ISO", type=_iso_time,
                         help="only punches at or after this time (UTC if no offset given)")
    punches.add_argument("--until", metavar="ISO", type=_iso_time,
                         help="only punches before this time (UTC if no offset given)")
    punches.add_argument("--site", metavar="ID", help="only this site's devices")
    punches.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    punches.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    store_args(punches)

    cmd = sub.add_parser(
        "command", help="queue a command for a device or every device of a site",
        description="Queue a remote command. The poller that owns the database runs it when "
        "the device is online; offline devices get their commands, in order, when they return.",
        epilog="commands: " + ", ".join(sorted(COMMANDS)) + "\nexit: 0 done (or queued without "
        "--wait), 1 failed or expired, 2 bad input, 3 still pending when --wait ran out",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("target", metavar="DEVICE_OR_SITE")
    cmd.add_argument("name", metavar="COMMAND", help="e.g. restart, sync_time, unlock")
    _command_args(cmd)
    store_args(cmd)

    emp = sub.add_parser(
        "sync-employees", help="push employees from a CSV or JSON file to a site or device",
        description="CSV header: id,name,card[,privilege,password] (privilege 0 user, 14 admin);"
        " or JSON: a list of {user_id, name, card, ...}.",
    )
    where = emp.add_mutually_exclusive_group(required=True)
    where.add_argument("--site", metavar="ID")
    where.add_argument("--device", metavar="ID")
    emp.add_argument("file", type=Path, help="employees.csv or employees.json")
    emp.add_argument("--remove-missing", action="store_true",
                     help="also delete users who are not in the file")
    _command_args(emp, params=False)
    store_args(emp)

    key = sub.add_parser("api-key", help="API keys for the HTTP API")
    key_sub = key.add_subparsers(dest="action", metavar="ACTION", required=True)
    kc = key_sub.add_parser("create", help="make a key (printed once, stored as a hash)")
    kc.add_argument("--role", choices=("viewer", "operator", "admin"), required=True)
    kc.add_argument("--name", default="", help="what the key is for")
    store_args(kc)
    kl = key_sub.add_parser("list", help="keys (never the keys themselves)")
    store_args(kl)
    kr = key_sub.add_parser("revoke", help="revoke a key by id")
    kr.add_argument("key_id", type=int, metavar="ID")
    store_args(kr)

    push = sub.add_parser("push", help="push devices (they dial in) waiting for approval")
    push_sub = push.add_subparsers(dest="action", metavar="ACTION", required=True)
    pp = push_sub.add_parser("pending", help="serials that called without being known")
    pp.add_argument("--json", action="store_true")
    store_args(pp)
    pa = push_sub.add_parser("approve", help="put a pending serial on a site (kept like a "
                             "device registered over the API)")
    pa.add_argument("serial", metavar="SERIAL")
    pa.add_argument("--site", required=True, metavar="SITE")
    pa.add_argument("--id", dest="device_id", metavar="ID",
                    help="the device's id (default: the serial, lowercased)")
    pa.add_argument("--name", default="", help="display name")
    store_args(pa)

    wh = sub.add_parser("webhooks", help="webhook endpoints, dead deliveries and replays")
    wh_sub = wh.add_subparsers(dest="action", metavar="ACTION", required=True)
    wl = wh_sub.add_parser("list", help="endpoints (config and API) with delivery counts")
    wl.add_argument("--json", action="store_true")
    store_args(wl)
    wd = wh_sub.add_parser("dead", help="deliveries that gave up after their retries")
    wd.add_argument("--limit", type=_positive_int, default=50)
    wd.add_argument("--json", action="store_true")
    store_args(wd)
    wr = wh_sub.add_parser("replay", help="queue dead deliveries again (all, or one endpoint's)")
    wr.add_argument("endpoint_id", nargs="?", metavar="ENDPOINT_ID",
                    help="only this endpoint's (ids from `fleettui webhooks list`)")
    wr.add_argument("--outbox-id", type=_positive_int, action="append", dest="outbox_ids",
                    metavar="N", help="only this event (repeatable)")
    store_args(wr)

    sch = sub.add_parser("schedules", help="the config's scheduled commands and their next runs")
    sch.add_argument("--config", metavar="FILE")
    sch.add_argument("--json", action="store_true")

    al = sub.add_parser("alerts", help="open alerts (or all recent ones with --all)")
    al.add_argument("--all", action="store_true", help="include resolved alerts")
    al.add_argument("--json", action="store_true")
    store_args(al)

    si = sub.add_parser("silence", help="no notifications for a device or site for a while")
    si.add_argument("target", metavar="DEVICE_OR_SITE")
    si.add_argument("--for", dest="duration", type=_duration, required=True,
                    metavar="DURATION", help="e.g. 30m, 2h, 1d")
    si.add_argument("--reason", required=True, help="why (shown with the silence)")
    si.add_argument("--by", default="", help="who silences")
    store_args(si)

    ack = sub.add_parser("ack", help="acknowledge an alert (stops its reminders)")
    ack.add_argument("alert_id", type=int, metavar="ALERT_ID")
    ack.add_argument("--by", default="", help="who acknowledges")
    store_args(ack)

    pol = sub.add_parser("pollers", help="the pollers sharing the database, and their sites")
    pol.add_argument("--json", action="store_true")
    store_args(pol)

    mig = sub.add_parser(
        "migrate-store", help="copy a SQLite store into a new PostgreSQL database",
        description="Copy every table of a SQLite store (punches, history, commands, the "
        "webhook outbox and its state, keys) into an empty PostgreSQL database, ids "
        "included, in one transaction, then check each table's count. Stop the poller "
        "of the SQLite store first.")
    mig.add_argument("--from", dest="source", required=True, metavar="FILE",
                     help="the SQLite store (fleettui.db)")
    mig.add_argument("--to", dest="target", required=True, metavar="URL",
                     help="the PostgreSQL database (postgresql://user@host:port/name)")

    lst = sub.add_parser("commands", help="recent commands and their results")
    lst.add_argument("--device", metavar="ID")
    lst.add_argument("--limit", type=_positive_int, default=30)
    lst.add_argument("--json", action="store_true")
    store_args(lst)
    return parser


def _tui_args(p: argparse.ArgumentParser, *, prefix: str = "", http: bool = True) -> None:
    """The control room's options (``prefix`` keeps the top level's apart from a subcommand's)."""
    p.add_argument("--no-mouse", dest=f"{prefix}no_mouse", action="store_true",
                   help="control room: no mouse reporting (less traffic on slow SSH links)")
    p.add_argument("--osc-notify", dest=f"{prefix}osc_notify", nargs="?", const="777",
                   choices=("777", "9", "off"), metavar="777|9|off",
                   help="control room: alerts also as terminal notifications (OSC 777, or "
                   "OSC 9); default $FLEETTUI_OSC_NOTIFY, else off")
    if http:
        p.add_argument("--http", dest=f"{prefix}http", type=_host_port, metavar="HOST:PORT",
                       help="control room: also serve the HTTP API there (e.g. 127.0.0.1:8470)")


def _command_args(p: argparse.ArgumentParser, *, params: bool = True) -> None:
    if params:
        p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                       help="a parameter (repeatable), e.g. -p seconds=5")
    p.add_argument("--key", metavar="KEY",
                   help="idempotency key: the same key again returns the first request")
    p.add_argument("--ttl", type=_duration, default=timedelta(hours=24), metavar="DURATION",
                   help="expire if the device has not taken it by then (24h; e.g. 30m, 2h, 7d)")
    p.add_argument("--wait", type=_duration, metavar="DURATION",
                   help="wait this long for every command to finish, and report")
    p.add_argument("--json", action="store_true", help="print the request as JSON")


def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.replace(".", "", 1).isdigit():
        raise argparse.ArgumentTypeError(
            f"expected a duration like 30s, 10m, 2h or 7d, got {text!r}"
        )
    return timedelta(seconds=float(number) * units[unit])


def _iso_time(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO time like 2026-03-28 or 2026-03-28T08:00:00+01:00, got {text!r}"
        ) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fleettui`` console script.

    A reader that goes away (``fleettui status | head -2``) ends the command quietly,
    as a pipe tool should: no BrokenPipeError traceback, exit 0.
    """
    try:
        code = _main(argv)
        sys.stdout.flush()  # a reader gone after the last write shows up here
    except BrokenPipeError:
        # stdout is broken: point it at /dev/null so that the interpreter's own flush at
        # exit does not complain once more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return code


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "emulate":
        from fleettui.emulator.control import check_loopback

        try:
            check_loopback(args.control[0])
        except ValueError as e:
            parser.error(str(e))
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        return asyncio.run(_emulate(args))
    if args.command is None:
        return _tui(args, config_arg=args.tui_config, db_arg=args.tui_db,
                    no_mouse=args.tui_no_mouse, http=args.tui_http, osc_flag=args.tui_osc_notify)
    if args.command == "demo":
        from fleettui.tui.demo import run_demo
        from fleettui.tui.run import osc_setting

        try:
            osc = osc_setting(args.osc_notify)
        except ValueError as e:
            return _fail(f"FLEETTUI_OSC_NOTIFY: {e}", 2)
        return run_demo(devices=args.devices, sites=args.sites, seed=args.seed,
                        base_address=args.base_address, port=args.port,
                        punch_rate=args.punch_rate, mouse=not args.no_mouse,
                        http=args.http, osc_notify=osc)
    if args.command == "check-config":
        return _check_config(args)
    if args.command == "run":
        return _run(args, parser)
    store_commands = {"status": _status, "export": _export, "command": _command,
                      "sync-employees": _command, "commands": _commands,
                      "alerts": _alerts, "silence": _silence, "ack": _ack,
                      "api-key": _api_key, "webhooks": _webhooks, "push": _push,
                      "pollers": _pollers}
    if args.command in store_commands:
        try:
            return asyncio.run(store_commands[args.command](args))
        except StoreUnavailable as e:
            return _fail(str(e))
    if args.command == "schedules":
        return _schedules(args)
    if args.command == "migrate-store":
        return asyncio.run(_migrate_store(args))
    parser.print_help()
    return 2


def _fail(message: str, code: int = 1) -> int:
    print(f"fleettui: {printable(message, keep=chr(10))}", file=sys.stderr)
    return code


def _show(text: str) -> None:
    """Print a table or a line made of stored text (names, reasons, notes from API clients
    and devices) with its terminal controls made visible; our own line breaks and tabs
    stay."""
    print(printable(text, keep="\n\t"))


def _load(path_arg: str | None) -> Config:
    """The config named on the command line, by the environment, or the default."""
    path = resolve_config_path(path_arg)
    if path_arg is None and not path.exists():
        raise ConfigError(
            [Problem("", "no config file; write one there, or give --config FILE "
                         "(fleettui emulate --config-out FILE writes one)", None)],
            path,
        )
    return load_config(path)


def _tui(args: argparse.Namespace, *, config_arg: str | None, db_arg: str | None,
         no_mouse: bool, http: tuple[str, int] | None, osc_flag: str | None) -> int:
    from fleettui.tui.run import osc_setting, run_tui

    try:
        osc = osc_setting(osc_flag)
    except ValueError as e:
        return _fail(f"FLEETTUI_OSC_NOTIFY: {e}", 2)
    from fleettui.tui.keys import check_keys

    try:
        config = _load(config_arg)
        check_keys(config)
    except ConfigError as e:
        return _fail(f"invalid config:\n{e}\n(try `fleettui demo` for an emulated fleet)")
    return run_tui(config, resolve_db_path(db_arg, config), mouse=not no_mouse, http=http,
                   osc_notify=osc)


def _check_config(args: argparse.Namespace) -> int:
    from fleettui.tui.keys import check_keys

    try:
        config = _load(args.file)
        check_keys(config)
    except ConfigError as e:
        return _fail(f"invalid config:\n{e}")
    print(f"{config.source or args.file}: OK ({len(config.sites)} sites, "
          f"{len(config.devices)} devices)")
    if not config.devices:
        print("warning: no [[devices]]: `fleettui run --headless` polls nothing unless devices "
              "are registered over the HTTP API", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from fleettui.headless import run_headless, setup_logging
    from fleettui.store.lock import PollerRunning

    if not args.headless:
        return _tui(args, config_arg=args.config, db_arg=args.db, no_mouse=args.no_mouse,
                    http=args.http, osc_flag=args.osc_notify)
    try:
        config = _load(args.config)
    except ConfigError as e:
        return _fail(f"invalid config:\n{e}")
    db = resolve_db_path(args.db, config)
    setup_logging(args.log_format)
    try:
        return asyncio.run(run_headless(config, db, http=args.http))
    except PollerRunning as e:
        return _fail(f"{e}; not starting a second poller on it")
    except OSError as e:
        return _fail(f"cannot use the database {db}: {e.strerror or e}")


def _optional_config(path_arg: str | None) -> Config | None:
    try:
        return _load(path_arg)
    except ConfigError:
        if path_arg is not None:
            raise
        return None


@contextlib.asynccontextmanager
async def _store(args: argparse.Namespace, *, create: bool = False) -> AsyncIterator[Store]:
    """The store named by --db/--config, closed afterwards; StoreUnavailable if none
    (``create``: a missing database is made, migrated, readable by its owner only)."""
    try:
        store = await _open_store(args, create=create)
    except (ConfigError, FileNotFoundError, ConnectionError) as e:
        raise StoreUnavailable(str(e)) from None
    try:
        yield store
    finally:
        await store.close()


class StoreUnavailable(Exception):
    """The command needs a database it cannot open."""


def _db_path(args: argparse.Namespace) -> StoreTarget:
    """The database --db/--config name (a file, or a PostgreSQL address), resolved once per
    command (the config is read once, its warnings said once)."""
    resolved: StoreTarget | None = getattr(args, "resolved_db", None)
    if resolved is None:
        resolved = args.resolved_db = resolve_db_path(args.db, _optional_config(args.config))
    return resolved


async def _open_store(args: argparse.Namespace, *, create: bool = False) -> Store:
    from fleettui.store import open_store

    db = _db_path(args)
    if not create and isinstance(db, Path) and not db.exists():
        raise FileNotFoundError(f"no database at {db}: run fleettui run --headless first")
    return await open_store(db)


async def _status(args: argparse.Namespace) -> int:
    from fleettui.report import (
        poller_label,
        poller_rows,
        poller_state,
        status_rows,
        status_table,
    )

    async with _store(args) as store:
        now = datetime.now(UTC)
        rows = await status_rows(store, now)
        poller = poller_state(_db_path(args))
        if args.json:
            print(json.dumps({"generated_at": now.isoformat(timespec="seconds"),
                              "poller": poller, "devices": rows,
                              "pollers": poller_rows(await store.pollers(), now)}, indent=2))
        else:
            _show(status_table(rows, await store.devices(), now))
            shared = [p for p in await store.pollers() if p.live(now)]
            for p in shared:
                sites = [s for s in p.sites if s != "*"]
                print(f"{poller_label(p)} ({p.mode}) polls {len(sites)} site(s): "
                      f"{', '.join(sites) or '-'}")
            if not poller["running"]:
                print("no poller is running on this database: statuses are as last seen")
    return 0


async def _pollers(args: argparse.Namespace) -> int:
    from fleettui.report import poller_rows, pollers_table

    async with _store(args) as store:
        now = datetime.now(UTC)
        pollers = await store.pollers()
        if args.json:
            print(json.dumps({"generated_at": now.isoformat(timespec="seconds"),
                              "pollers": poller_rows(pollers, now)}, indent=2))
        else:
            _show(pollers_table(pollers, now))
    return 0


async def _export(args: argparse.Namespace) -> int:
    from fleettui.report import write_punches

    async with _store(args) as store:
        punches = await store.punches(since=args.since, until=args.until, site_id=args.site)
        if args.output:
            with open(args.output, "w", newline="", encoding="utf-8") as out:
                n = write_punches(punches, out, args.format)
            print(f"{n} punches written to {args.output}", file=sys.stderr)
        else:
            write_punches(punches, sys.stdout, args.format)  # (| head: see main)
    return 0


async def _emulate(args: argparse.Namespace) -> int:
    from fleettui.emulator.control import bound_port, start_control
    from fleettui.emulator.launch import build_fleet, make_sick

    try:
        spec, fleet = build_fleet(
            sites=args.sites,
            devices=args.devices,
            seed=args.seed,
            base_address=args.base_address,
            port=args.port,
            punch_rate=args.punch_rate,
            push=args.push,
            push_server=args.push_server,
            push_delay=args.push_delay,
        )
    except ValueError as e:
        print(f"fleettui emulate: {e}", file=sys.stderr)
        return 2
    try:
        await fleet.start()
    except OSError as e:
        print(
            f"fleettui emulate: cannot open the device sockets: {e}\n"
            "  Is another emulator running on these addresses? Try --base-address or --port.",
            file=sys.stderr,
        )
        return 1
    history = 0
    if args.history_days:
        from fleettui.emulator.punchgen import ShiftPlanner

        since = fleet.wall_clock() - timedelta(days=args.history_days)
        history = fleet.prefill(ShiftPlanner(spec, seed=args.seed), since)
    sick = await make_sick(fleet) if args.sick else {}
    try:
        runner = await start_control(fleet, *args.control)
    except OSError as e:
        await fleet.stop()
        print(f"fleettui emulate: cannot open the control API: {e}", file=sys.stderr)
        return 1
    if args.config_out:
        from fleettui.emulator.fleetgen import write_config

        listen = None
        if args.push and args.push_server:
            # the listener the terminals dial (behind a TLS proxy, set [push] listen by hand)
            url = urlsplit(args.push_server)
            host = f"[{url.hostname}]" if url.hostname and ":" in url.hostname else url.hostname
            listen = f"{host}:{url.port or 80}" if url.scheme == "http" else "127.0.0.1:8081"
        write_config(spec, args.config_out, listen)
    first = spec.devices[0].config
    last = spec.devices[-1].config
    print(f"fleettui emulator: {len(spec.devices)} devices across {len(spec.sites)} sites")
    print(f"  devices      {first.host} .. {last.host}, port {first.port if args.port else 'auto'}"
          " (TCP and UDP)")
    if args.push:
        print(f"  push         {args.push} push terminal(s) dialing {args.push_server}")
    print(f"  history      {history} punches over the last {args.history_days:g} day(s)")
    if args.punch_rate is None:
        rate = "following shift patterns in each site's time zone"
    elif args.punch_rate:
        rate = f"{args.punch_rate:g} per minute per device"
    else:
        rate = "none (--punch-rate 0)"
    print(f"  punches      {rate}")
    for device_id, what in sick.items():
        print(f"  sick         {device_id}: {what}")
    print(f"  control API  http://{args.control[0]}:{bound_port(runner)}/devices")
    if args.config_out:
        print(f"  config       {args.config_out}")
    print("Ctrl+C to stop.", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await fleet.stop()
    print("fleettui emulator stopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def _param_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


async def _command(args: argparse.Namespace) -> int:
    from fleettui.commands import CommandError
    from fleettui.engine.enqueue import enqueue, read_employees
    from fleettui.report import request_record, request_text
    from fleettui.store import IdempotencyConflict

    if args.command == "sync-employees":
        target = args.site or args.device
        name = "sync_employees"
        try:
            params: dict[str, Any] = {"employees": read_employees(args.file),
                                      "remove_missing": args.remove_missing}
        except CommandError as e:
            return _fail(str(e), 2)
    else:
        target, name, params = args.target, args.name, {}
        for item in args.param:
            key, sep, value = item.partition("=")
            if not sep or not key:
                return _fail(f"--param: expected KEY=VALUE, got {item!r}", 2)
            params[key] = _param_value(value)
    async with _store(args) as store:
        try:
            request, created = await enqueue(
                store, target, name, params, now=datetime.now(UTC), source="cli",
                idempotency_key=args.key, ttl=args.ttl,
            )
        except (CommandError, IdempotencyConflict) as e:
            return _fail(str(e), 2)
        if not created:
            print(f"request {request.id} already made with this key; not queued again",
                  file=sys.stderr)
        if args.wait is not None:
            deadline = datetime.now(UTC) + args.wait
            while True:
                fresh = await store.command_request(request.id)
                assert fresh is not None
                request = fresh
                if all(c.state.final for c in request.commands):
                    break
                if datetime.now(UTC) >= deadline:
                    break
                await asyncio.sleep(0.5)
        if args.json:
            print(json.dumps(request_record(request), indent=2))
        else:
            _show(request_text(request))
        if not poller_running(_db_path(args)):
            print("no poller is running on this database: the command waits for one",
                  file=sys.stderr)
        summary = request.summary()
        if summary["failed"] or summary["expired"]:
            return 1
        if args.wait is not None and summary["queued"] + summary["sent"]:
            return 3
        return 0


async def _commands(args: argparse.Namespace) -> int:
    from fleettui.report import command_record, commands_table

    async with _store(args) as store:
        rows = await store.commands(device_id=args.device, limit=args.limit)
        if args.json:
            print(json.dumps({"commands": [command_record(c) for c in rows]}, indent=2))
        else:
            _show(commands_table(rows))
    return 0


async def _migrate_store(args: argparse.Namespace) -> int:
    from fleettui.store.migrate import MigrationRefused, migrate_store
    from fleettui.store.where import DatabaseUrl, store_target

    source, target = store_target(args.source), store_target(args.target)
    if not isinstance(source, Path):
        return _fail(f"--from takes a SQLite file, not {source}", 2)
    if not isinstance(target, DatabaseUrl):
        return _fail(f"--to takes a postgresql:// address, not {target}", 2)
    if poller_running(source):
        return _fail(f"{source} is being polled: stop its poller (or control room) first")
    try:
        copies = await migrate_store(source, target)
    except (MigrationRefused, ConnectionError) as e:
        return _fail(str(e))
    width = max(len(c.table) for c in copies)
    for c in copies:
        print(f"{c.table:<{width}}  {c.copied:>10,}")
    total = sum(c.copied for c in copies)
    print(f"copied {total:,} rows into {target}; every table's count checked")
    return 0


def poller_running(db: StoreTarget) -> bool:
    """Whether a poller owns this database now."""
    from fleettui.store.lock import poller_lock

    return poller_lock(db).held_elsewhere()


def _schedules(args: argparse.Namespace) -> int:
    from fleettui.engine.schedules import next_runs, schedule_zone

    try:
        config = _load(args.config)
    except ConfigError as e:
        return _fail(f"invalid config:\n{e}")
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for sc in config.schedules:
        zone = schedule_zone(config, sc)
        runs = next_runs(config, sc, now, 3) if sc.enabled else []
        rows.append({
            "name": sc.name, "command": sc.command, "target": sc.target, "cron": sc.cron,
            "timezone": zone.key, "enabled": sc.enabled,
            "next_runs": [r.isoformat() for r in runs],
        })
    if args.json:
        print(json.dumps({"schedules": rows}, indent=2))
        return 0
    if not rows:
        print("no schedules in the config")
        return 0
    for r in rows:
        when = ", ".join(r["next_runs"][:2]) if r["enabled"] else "disabled"
        _show(f"{r['name']:<24} {r['command']:<16} {r['target']:<20} {r['cron']:<15} "
              f"{r['timezone']:<20} next: {when}")
    return 0


async def _alerts(args: argparse.Namespace) -> int:
    from fleettui.report import alert_record, alerts_table

    async with _store(args) as store:
        now = datetime.now(UTC)
        alerts = await store.alerts(open_only=not args.all)
        silences = await store.active_silences(now)
        if args.json:
            print(json.dumps({"alerts": [alert_record(a, silences) for a in alerts]}, indent=2))
        else:
            _show(alerts_table(alerts, silences, now))
    return 0


async def _silence(args: argparse.Namespace) -> int:
    async with _store(args) as store:
        known = {d.id for d in await store.devices()} | {s.id for s in await store.sites()}
        if args.target not in known:
            return _fail(f"no device or site called {args.target!r}", 2)
        now = datetime.now(UTC)
        silence = await store.add_silence(args.target, now + args.duration, args.reason,
                                          args.by, now)
        _show(f"silence {silence.id}: {silence.target} until "
              f"{silence.until.isoformat(timespec='seconds')} ({silence.reason})")
    return 0


async def _ack(args: argparse.Namespace) -> int:
    async with _store(args) as store:
        alert = await store.acknowledge_alert(args.alert_id, args.by, datetime.now(UTC))
        if alert is None:
            return _fail(f"no open alert {args.alert_id}", 1)
        _show(f"alert {alert.id} acknowledged: {alert.kind.value} {alert.target}")
    return 0


async def _webhooks(args: argparse.Namespace) -> int:
    """List endpoints, list dead deliveries, or replay them (secrets never shown)."""
    async with _store(args) as store:
        now = datetime.now(UTC)
        if args.action == "list":
            endpoints: list[dict[str, Any]] = [
                {"id": e.id, "origin": e.origin, "url": e.url, "events": list(e.events),
                 "enabled": e.enabled, "hex_signature_header": e.hex_signature_header,
                 "timeout_s": e.timeout_s, "created_at": e.created_at,
                 "previous_secret_until": e.previous_secret_until,
                 "deliveries": asdict(await store.webhook_stats(e.delivery_key))}
                for e in await store.webhook_endpoints()
            ]
            if args.json:
                print(json.dumps({"webhooks": endpoints}, indent=2, default=str))
            elif not endpoints:
                print("no webhook endpoints ([[webhooks]] in the config, or POST /v1/webhooks)")
            for e in [] if args.json else endpoints:
                d = e["deliveries"]
                state = "enabled" if e["enabled"] else "paused"
                _show(f"{e['id']:<16} {e['origin']:<6} {state:<7} {e['url']}  "
                      f"events {','.join(e['events'])}  delivered {d['delivered']:,}, "
                      f"pending {d['pending']:,}, dead {d['dead']:,}")
        elif args.action == "dead":
            rows = await store.webhook_dead(args.limit)
            if args.json:
                print(json.dumps({"dead": [asdict(r) for r in rows]}, indent=2, default=str))
            elif not rows:
                print("no dead webhook deliveries")
            for r in [] if args.json else rows:
                _show(f"{r.outbox_id:>8}  {r.event_type:<16} {r.device_id or '-':<16} "
                      f"{r.endpoint_id or r.endpoint}  tries {r.attempts}  "
                      f"{r.last_error}")
        else:
            key = None
            if args.endpoint_id is not None:
                endpoint = await store.webhook_endpoint(args.endpoint_id)
                if endpoint is None:
                    return _fail(f"no webhook endpoint {args.endpoint_id!r} "
                                 "(see fleettui webhooks list)", 2)
                key = endpoint.delivery_key
            count = await store.webhook_replay(key, now, args.outbox_ids)
            print(f"{count:,} dead deliveries queued again"
                  + ("" if count else " (none matched)"))
    return 0


def _utc_text(dt: datetime) -> str:
    """A time as a person reads it in UTC: 2026-03-28 16:00:59 UTC."""
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def _push(args: argparse.Namespace) -> int:
    from fleettui.engine.approve import ApprovalError, approve_push_device
    from fleettui.store.errors import FleetConflict

    async with _store(args) as store:
        if args.action == "pending":
            pending = await store.pending_push_devices()
            if args.json:
                print(json.dumps([{"serial": p.serial, "address": p.address,
                                   "firmware": p.firmware, "push_version": p.push_version,
                                   "first_seen": p.first_seen.isoformat(),
                                   "last_seen": p.last_seen.isoformat(),
                                   "requests": p.requests} for p in pending], indent=2))
            elif not pending:
                print("no push device is waiting for approval")
            for p in [] if args.json else pending:
                _show(f"{p.serial:<20} from {p.address or '?':<16} {p.firmware or '':<16} "
                      f"last call {_utc_text(p.last_seen)} ({p.requests} calls)")
            return 0
        try:
            state = await approve_push_device(store, args.serial, args.site,
                                              datetime.now(UTC), device_id=args.device_id,
                                              name=args.name)
        except (ApprovalError, FleetConflict) as e:
            return _fail(str(e))
        print(f"{state.id} (serial {state.serial}) approved at {state.site_id}: the poller "
              "answers it within seconds, and its buffered records follow")
    return 0


async def _api_key(args: argparse.Namespace) -> int:
    # a service is set up with its key before it first starts: create makes the database
    async with _store(args, create=args.action == "create") as store:
        now = datetime.now(UTC)
        if args.action == "create":
            key_id, key = await store.create_api_key(args.role, args.name, now)
            print(key)
            print(f"key {key_id} ({args.role}): shown once, keep it safe; only its hash is kept",
                  file=sys.stderr)
        elif args.action == "list":
            for k in await store.api_keys():
                state = "live" if k.live else "revoked"
                used = _utc_text(k.last_used_at) if k.last_used_at else "never"
                _show(f"{k.id:>4}  {k.role:<9} {k.prefix}…  {state:<8} "
                      f"last used {used}  {k.name}")
        elif not await store.revoke_api_key(args.key_id, now):
            return _fail(f"no live key {args.key_id}")
    return 0
