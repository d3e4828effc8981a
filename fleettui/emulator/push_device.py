"""A push-mode terminal (ADMS / iclock): the device dials out to a server over HTTP.

A ``PushTerminal`` drives one emulated ``Device`` (its users, attendance log,
clock and power stay there) the way push firmware does: handshake
(``GET /iclock/cdata?options=all``), uploads of ATTLOG and OPERLOG lines in
batches that count as delivered only on ``OK:<n>``, a ``getrequest`` heartbeat
every ``Delay`` seconds that brings ``C:<id>:<command>`` lines, and results
posted to ``devicecmd``. A failed request keeps everything buffered and is
retried after ``ErrorDelay``. The clock follows the ``Date:`` header of the
server's answers. Many terminals share one event loop and one HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Any

import httpx

from fleettui.emulator import push_wire as w
from fleettui.emulator.device import Device, User
from fleettui.emulator.push_commands import execute

log = logging.getLogger(__name__)

#: how often a terminal that cannot call (offline, rebooting) looks again, in seconds
IDLE_POLL_S = 0.2


@dataclass(slots=True)
class PushSetup:
    """How one push terminal is configured: where it dials and which firmware it runs."""

    server: str
    profile: w.PushProfile
    #: Delay and ErrorDelay in force before the first handshake (firmware default 30)
    first_delay_s: float = 30.0
    comm_key: int = 0
    #: seconds before a request counts as failed
    timeout_s: float = 10.0
    #: the first call happens at a random moment within this many seconds
    jitter_s: float = 0.0


class _Failed(Exception):
    """A request the server did not take (error status, bad answer, no answer)."""


class _Unreachable(Exception):
    """The device cannot call right now (offline, flapping down, rebooting)."""


class PushTerminal:
    """One push terminal's protocol behaviour over a Device's state."""

    def __init__(self, device: Device, setup: PushSetup, *, rng: random.Random | None = None
                 ) -> None:
        self.device = device
        self.setup = setup
        self.profile = setup.profile
        self.rng = rng or random.Random(0)
        self.base = setup.server.rstrip("/")
        self.opts = w.ServerOptions(delay_s=setup.first_delay_s,
                                    error_delay_s=setup.first_delay_s)
        #: records of the attendance log the server has taken (the upload cursor)
        self.cursor = 0
        #: OPERLOG lines waiting to be taken
        self.oplog: list[str] = []
        #: ATTLOG batches asked for by DATA QUERY, waiting to be taken
        self.query_uploads: list[list[str]] = []
        #: command result blocks waiting to be posted to devicecmd
        self.results: list[str] = []
        self.need_handshake = True
        self.push_now = False
        self.check_stamps = False
        self.reboot_after_results = False
        self.stats: dict[str, int] = {
            "handshakes": 0, "getrequests": 0, "uploads": 0, "records_sent": 0,
            "failures": 0, "answers_lost": 0, "commands": 0, "clock_sets": 0,
        }
        self.last_error = ""
        self._polls = 0
        self._next_poll = 0.0
        self._last_trans = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._booted = True
        self._dropped_seen = device.log.dropped
        device.punch_listeners.append(self._on_punch)
        device.drop_listeners.append(self._on_drop)
        device.push_status = self.summary

    # --- lifecycle --------------------------------------------------------

    def start(self, client: httpx.AsyncClient) -> None:
        """Start calling the server through the shared ``client``."""
        self._client = client
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.device.id)

    async def stop(self) -> None:
        """Stop calling (the device state stays)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """Look at the state again now (a fault changed, a punch came)."""
        self._wake.set()

    def _on_punch(self, _p: object) -> None:
        if self.opts.realtime:
            self._wake.set()

    def _on_drop(self) -> None:
        """Reboot or power off: the session is gone; the next start handshakes again."""
        self.need_handshake = True
        self._booted = True
        self.results.clear()
        if self.profile.resend_all_after_reboot or self.device.faults.resend_all_after_reboot:
            self.cursor = 0
        self._wake.set()

    # --- the loop ---------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        if self.setup.jitter_s > 0:
            await asyncio.sleep(self.rng.uniform(0, self.setup.jitter_s))
        while True:
            self._wake.clear()
            if not self.device.reachable():
                await self._sleep(IDLE_POLL_S)
                continue
            try:
                await self._cycle(loop)
            except _Unreachable:
                continue
            except _Failed as e:
                self.stats["failures"] += 1
                self.last_error = str(e)
                await asyncio.sleep(self.opts.error_delay_s)
                continue
            except Exception:  # a bug in one terminal must not stop the others
                log.exception("push terminal %s failed", self.device.id)
                await asyncio.sleep(self.opts.error_delay_s)
                continue
            if self.reboot_after_results:
                self.reboot_after_results = False
                self.device.restart()
                continue
            await self._sleep(self._next_wait(loop.time()))

    def _next_wait(self, now: float) -> float:
        wait = self._next_poll - now
        if self.cursor < len(self.device.log) and not self.opts.realtime:
            wait = min(wait, self._last_trans + self.opts.trans_interval_min * 60 - now)
        return max(wait, 0.0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _cycle(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.need_handshake:
            await self._handshake()
            self._next_poll = loop.time()
        now = loop.time()
        trans_due = now >= self._last_trans + self.opts.trans_interval_min * 60
        if self.opts.realtime or self.push_now or trans_due:
            await self._upload_attlog()
            self.push_now = False
            self._last_trans = now
        await self._upload_queries()
        await self._upload_oplog()
        if self.results:
            await self._post_results()
        if loop.time() >= self._next_poll and not self.reboot_after_results:
            await self._getrequest()
            self._next_poll = loop.time() + self.opts.delay_s
            if self.results:
                await self._upload_queries()
                await self._upload_oplog()
                await self._post_results()

    # --- requests ---------------------------------------------------------

    async def _call(self, method: str, path: str, params: dict[str, str],
                    body: str | None = None, *, set_clock: bool = False
                    ) -> tuple[int, str, str | None]:
        if not self.device.reachable():
            raise _Unreachable
        latency = self.device.faults.latency_ms
        if latency:
            await asyncio.sleep(latency / 1000)
        assert self._client is not None, "start() the terminal first"
        try:
            r = await self._client.request(
                method, self.base + path, params=params,
                content=None if body is None else body.encode(),
                headers={"User-Agent": w.USER_AGENT, "Content-Type": "text/plain"},
                timeout=self.setup.timeout_s)
        except httpx.HTTPError as e:
            raise _Failed(f"{path}: {type(e).__name__}") from None
        if not self.device.reachable():  # the link went while the answer travelled
            raise _Unreachable
        date = r.headers.get("Date")
        if set_clock:
            self._set_clock(date)
        return r.status_code, r.text, date

    def _set_clock(self, header: str | None) -> None:
        at = w.local_from_date(header, self.device.tz, self.opts.timezone_minutes)
        if at is None or not 2000 <= at.year <= 2099:
            return
        moved = abs((at - self.device.local_time()).total_seconds())
        if moved >= 2:
            self.device.set_time(at)
            self.stats["clock_sets"] += 1
            if moved >= 60:
                self.oplog.append(w.oplog_line(w.OP_SET_TIME, "0", at))

    async def _handshake(self) -> None:
        params = w.handshake_params(self.device.config.serial, self.profile, self.setup.comm_key)
        status, text, date = await self._call("GET", "/iclock/cdata", params)
        if status != 200:
            raise _Failed(f"handshake answered {status}")
        try:
            opts = w.parse_options(text, self.device.config.serial, self.profile)
        except w.WireError as e:
            raise _Failed(str(e)) from None
        self.opts = opts
        if self._booted:  # the startup operation, stamped before the clock is synced
            self._booted = False
            self.oplog.append(w.oplog_line(w.OP_STARTUP, "0", self.device.local_time()))
        self._set_clock(date)  # in the zone the option block just gave
        if self.profile.post_options:
            await self._post_options()
        if self.check_stamps and opts.attlog_stamp in ("0", "None", ""):
            self.cursor = 0  # stamps reset to 0 after CHECK: everything again
        self.check_stamps = False
        self.stats["handshakes"] += 1
        self.need_handshake = False
        self._polls = 0

    async def _post_options(self) -> None:
        """Push 2.4+: tell the server what the device is (``table=options``, answered OK).

        Any answer will do: a server that does not know the table must not keep
        the device from its uploads; only a failed connection is tried again.
        """
        d, p = self.device, self.device.profile
        body = ",".join([
            f"~DeviceName={p.device_name}", f"FWVersion={p.firmware}", f"~Platform={p.platform}",
            f"UserCount={len(d.users)}", f"TransactionCount={len(d.log)}",
            f"~MaxAttLogCount={max(p.records_cap // 10_000, 1)}", f"IPAddress={d.config.host}",
            f"PushVersion={self.profile.pushver}"])
        params = {"SN": d.config.serial, "table": "options"}
        await self._call("POST", "/iclock/cdata", params, body)

    async def _post_table(self, table: str, lines: list[str], stamp: str) -> None:
        params = {"SN": self.device.config.serial, "table": table, "Stamp": stamp}
        status, text, _ = await self._call("POST", "/iclock/cdata", params,
                                        w.join_lines(lines, self.profile))
        self.stats["uploads"] += 1
        faults = self.device.faults
        if faults.lost_answers >= 1:  # the server took it, but its answer never arrives
            faults.lost_answers -= 1
            self.stats["answers_lost"] += 1
            raise _Failed(f"{table} upload: answer lost")
        if not w.accepted(text, status, self.profile):
            raise _Failed(f"{table} upload answered {status} {text.strip()[:40]!r}")

    async def _upload_attlog(self) -> None:
        log_ = self.device.log
        while True:
            if log_.dropped != self._dropped_seen:  # overwritten when full: indexes moved
                self.cursor = max(self.cursor - (log_.dropped - self._dropped_seen), 0)
                self._dropped_seen = log_.dropped
            self.cursor = min(self.cursor, len(log_))
            if self.cursor >= len(log_):
                return
            stop = min(self.cursor + self.profile.batch_size, len(log_))
            punches = log_.records_slice(self.cursor, stop)
            if punches:
                lines = [w.attlog_line(p, self.profile.attlog_fields) for p in punches]
                await self._post_table("ATTLOG", lines, str(stop))
                self.stats["records_sent"] += len(lines)
            self.cursor = stop

    async def _upload_queries(self) -> None:
        while self.query_uploads:
            lines = self.query_uploads[0]
            await self._post_table("ATTLOG", lines, str(self.cursor))
            self.stats["records_sent"] += len(lines)
            self.query_uploads.pop(0)

    async def _upload_oplog(self) -> None:
        while self.oplog:
            batch = self.oplog[: self.profile.batch_size]
            await self._post_table("OPERLOG", batch, str(self.stats["uploads"]))
            del self.oplog[: len(batch)]

    def info_csv(self) -> str:
        """The ``INFO=`` telemetry of a getrequest."""
        d, p = self.device, self.device.profile
        return ",".join(str(v) for v in (
            p.firmware, len(d.users), len(d.templates), len(d.log), d.config.host,
            p.fp_version, p.face_version or 0, 0, 0, "1100000000"))

    async def _getrequest(self) -> None:
        params = {"SN": self.device.config.serial}
        every = max(self.profile.info_every, 1)
        if self._polls % every == 0:
            params["INFO"] = self.info_csv()
        status, text, _ = await self._call("GET", "/iclock/getrequest", params, set_clock=True)
        if status != 200:
            raise _Failed(f"getrequest answered {status}")
        self._polls += 1
        self.stats["getrequests"] += 1
        for cid, command in w.parse_commands(text):
            self.stats["commands"] += 1
            self.results.append(execute(self, cid, command))
            if self.reboot_after_results:
                break  # the device reboots before running the rest

    async def _post_results(self) -> None:
        status, _, _ = await self._call("POST", "/iclock/devicecmd",
                                        {"SN": self.device.config.serial},
                                        "\n".join(self.results) + "\n", set_clock=True)
        if status != 200:
            raise _Failed(f"devicecmd answered {status}")
        self.results.clear()

    # --- device changes that make OPERLOG lines ---------------------------

    def user_changed(self, user: User) -> None:
        """A user was created or changed: report it as a USER line."""
        self.oplog.append(w.user_line(user))

    # --- views ------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """JSON-ready push state for the control API."""
        return {
            "server": self.base,
            "profile": self.profile.name,
            "session": not self.need_handshake,
            "delay_s": self.opts.delay_s,
            "error_delay_s": self.opts.error_delay_s,
            "realtime": self.opts.realtime,
            "upload_cursor": self.cursor,
            "pending_records": max(len(self.device.log) - self.cursor, 0),
            "pending_oplog": len(self.oplog),
            "pending_results": len(self.results),
            "last_error": self.last_error,
            "stats": dict(self.stats),
        }
