"""Push devices (ADMS / iclock): what the engine does with each call a device makes.

A push device dials in: it handshakes, uploads its records, calls every
``Delay`` seconds for commands (its heartbeat) and posts their results. The
listener (``fleettui/push/``) carries those calls here as text; this gateway
answers them, through the same store, status machine and command queue as
polled devices: a punch is committed (with its webhook outbox row) before the
device is told ``OK:<n>``, so a device that hears nothing sends again and
nothing is lost or stored twice. It knows no HTTP.

Several listeners may answer one fleet (pollers sharing a database, behind a
load balancer that sends a device's calls anywhere): what must be true
across calls lives in the store (stamps, users, command lines, when each
device was last heard), a command or a line is handed out by the one
listener whose ``UPDATE`` took it, and a device's status is judged only by
the poller that holds its site (``share``), from the contacts every listener
writes. What a gateway keeps in memory is a cache: a device with a comm key
handshakes once with each listener before it is heard there.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from fleettui.commands import COMMANDS, CommandError
from fleettui.devices import push_wire
from fleettui.domain import (
    Command,
    CommandState,
    DeviceSpec,
    DeviceState,
    DeviceStatus,
    Event,
    EventKind,
    FailureKind,
    PushContact,
)
from fleettui.engine.enqueue import enqueue
from fleettui.engine.health import Health
from fleettui.engine.push_commands import (
    PUSH_HANDLERS,
    READING_USERS,
    PushPlan,
    outcome,
    sync_employees_lines,
    users_changed,
)
from fleettui.engine.share import SiteShare
from fleettui.engine.sync import make_punch
from fleettui.store import Store

log = logging.getLogger(__name__)

#: how often contacts are written and silent devices looked for
WATCH_EVERY_S = 1.0
#: how long a device is given to come back after a restart we sent
REBOOT_WINDOW_S = 120.0
#: an unknown serial is written down at most this often
PENDING_NOTE_EVERY_S = 30.0
#: a command line sent and not answered for this long has failed ("not answered")
ANSWER_TIMEOUT_S = 15 * 60.0
#: how often lines past their answer timeout are looked for
EXPIRE_EVERY_S = 60.0
#: a command started with nothing left to send or answer for this long was left behind
STRANDED_AFTER_S = 120.0
#: a device asked to send its log again (a gap) is not asked again before this
GAP_RETRY_S = 6 * 3600.0


@dataclass(frozen=True, slots=True)
class PushAnswer:
    """What to answer a device: an HTTP status and a plain-text body."""

    status: int
    body: str


UNKNOWN = PushAnswer(403, "UNKNOWN DEVICE\n")
REFUSED = PushAnswer(403, "FORBIDDEN\n")
OK = PushAnswer(200, "OK")


@dataclass(slots=True)
class _Device:
    """One push device as the gateway follows it between calls."""

    spec: DeviceSpec
    zone: ZoneInfo
    health: Health
    heard_at: datetime | None = None
    lock: asyncio.Lock | None = None
    #: records the device last said it holds (its heartbeat's INFO)
    reported: int | None = None
    #: punches stored for it (read once when first needed, then counted)
    stored: int | None = None
    #: its last ATTLOG upload
    uploaded_at: datetime | None = None
    #: when it was last asked to send its log again, and the gap that asking left
    gap_asked_at: datetime | None = None
    gap_explained: int = 0
    #: a handshake gave the device's comm key since the gateway started (or it has none)
    verified: bool = False
    #: the share's change at which its status was last taken from the store (-1: never)
    adopted: int = -1


class PushGateway:
    """Answers push devices' calls and keeps their status from their heartbeats."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime],
        publish: Callable[[Event], None],
        delay_s: int = 10,
        offline_after_s: float = 30.0,
        error_delay_s: int = 30,
        share: SiteShare | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.publish = publish
        self.delay_s = delay_s
        self.offline_after_s = offline_after_s
        self.error_delay_s = error_delay_s
        #: the sites whose devices' status this gateway judges (all, alone on a database)
        self.share = share if share is not None else SiteShare.whole()
        self._by_serial: dict[str, _Device] = {}
        self._contacts: dict[str, PushContact] = {}
        self._pending_noted: dict[str, datetime] = {}
        self._queued: set[str] = set()
        self._started_at: datetime | None = None
        self._expired_at: datetime | None = None

    # --- the fleet ----------------------------------------------------------------

    def devices(self) -> list[DeviceSpec]:
        """The push devices the gateway answers."""
        return [d.spec for d in self._by_serial.values()]

    def add(self, spec: DeviceSpec, state: DeviceState | None) -> None:
        """Answer this device from now on (its status as the store last knew it)."""
        health = Health(spec.id, offline_after=1)
        if state is not None:
            health.status, health.reason = state.status, state.status_reason
            health.since = state.status_since
        self._by_serial[spec.serial] = _Device(spec, ZoneInfo(spec.timezone or "UTC"), health,
                                               lock=asyncio.Lock(),
                                               verified=not spec.comm_key,
                                               adopted=self.share.gained_at(spec.site_id))


    def remove(self, device_id: str) -> None:
        """Stop answering a device (it is told it is unknown)."""
        for serial, d in list(self._by_serial.items()):
            if d.spec.id == device_id:
                del self._by_serial[serial]

    def known(self, serial: str) -> bool:
        """Whether a serial is one of the fleet's push devices."""
        return serial in self._by_serial

    # --- calls --------------------------------------------------------------------

    async def handshake(self, serial: str, query: Mapping[str, str],
                        address: str) -> PushAnswer:
        """``GET /iclock/cdata?options=all``: the options block."""
        device = await self._device(serial, address, query)
        if device is None:
            return UNKNOWN
        if device.spec.comm_key:
            # the firmware sends its comm key (COMKey) with the handshake only; a device
            # with one in the config must give it before anything it sends is taken
            device.verified = hmac.compare_digest(query.get("pushcommkey", "").encode(),
                                                  str(device.spec.comm_key).encode())
            if not device.verified:
                log.warning("push %s: handshake from %s without the device's comm key: "
                            "refused", device.spec.id, address)
                return REFUSED
        now = self.clock()
        await self._heard(device, now, address, query.get("pushver", ""))
        await self._reboot_seen(device, now)
        stamps = await self.store.push_stamps(device.spec.id)
        unsaved = self._contacts.get(device.spec.id)
        if unsaved is not None:  # sent since the last flush
            stamps = stamps._replace(attlog=unsaved.attlog_stamp or stamps.attlog,
                                     operlog=unsaved.operlog_stamp or stamps.operlog)
        offset = device.zone.utcoffset(now.replace(tzinfo=None))
        minutes = int(offset.total_seconds() // 60) if offset is not None else 0
        options = push_wire.Options(
            serial=serial, delay_s=self.delay_s, error_delay_s=self.error_delay_s,
            timezone_minutes=minutes, attlog_stamp=stamps.attlog,
            operlog_stamp=stamps.operlog, legacy_stamps="pushver" not in query)
        return PushAnswer(200, push_wire.render_options(options))

    async def upload(self, serial: str, table: str, stamp: str, body: bytes,
                     address: str) -> PushAnswer:
        """``POST /iclock/cdata?table=…``: records, committed before they are acknowledged."""
        device = await self._device(serial, address, {})
        if device is None:
            return UNKNOWN
        if not device.verified:
            return REFUSED  # not acknowledged: the device keeps its records
        now = self.clock()
        text = push_wire.decode(body)
        if table == "ATTLOG":
            answer = await self._attlog(device, text, now)
        elif table == "OPERLOG":
            answer = await self._operlog(device, text, now)
        else:  # options, photos, biometric data: taken, not kept
            answer = OK
        await self._heard(device, now, address, "")
        if stamp and table in ("ATTLOG", "OPERLOG") and answer.status == 200:
            # written with the next flush: a stamp lost in a crash only makes the device
            # send again what is already stored (and stored once)
            contact = self._contacts[device.spec.id]
            self._contacts[device.spec.id] = (
                replace(contact, attlog_stamp=stamp) if table == "ATTLOG"
                else replace(contact, operlog_stamp=stamp))
        return answer

    async def heartbeat(self, serial: str, info: str | None, address: str) -> PushAnswer:
        """``GET /iclock/getrequest``: the device is alive; hand it its commands."""
        device = await self._device(serial, address, {})
        if device is None:
            return UNKNOWN
        if not device.verified:
            # it has not handshaken with its comm key since we started: CHECK makes it
            # handshake again (an id that is no command's: its result is ignored)
            return PushAnswer(200, push_wire.render_commands([(0, "CHECK")]))
        now = self.clock()
        details = push_wire.parse_info(info) if info else None
        await self._heard(device, now, address, "", details)
        if details is not None and details.records is not None:
            device.reported = details.records
            await self._fill_gap(device, now)
        assert device.lock is not None
        async with device.lock:  # one answer at a time per device: lines are sent once
            lines = await self._lines_to_send(device, now)
        return PushAnswer(200, push_wire.render_commands(lines))

    async def results(self, serial: str, body: bytes, address: str) -> PushAnswer:
        """``POST /iclock/devicecmd``: results of the lines sent, matched to the queue."""
        device = await self._device(serial, address, {})
        if device is None:
            return UNKNOWN
        if not device.verified:
            return REFUSED
        now = self.clock()
        results, bad = push_wire.parse_results(push_wire.decode(body))
        for b in bad:
            log.info("push %s: result line %d skipped: %s", device.spec.id, b.number, b.reason)
        finished: set[int] = set()
        for r in results:
            line = await self.store.answer_push_line(device.spec.id, r.id, r.code, r.extra, now)
            if line is None:
                continue  # not ours, or already answered (a result posted twice)
            if line.text == "INFO" and r.extra:
                info = push_wire.info_of_pairs(r.extra)
                previous = self._contacts.get(device.spec.id) or PushContact(device.spec.id,
                                                                             now, address)
                self._contacts[device.spec.id] = replace(
                    previous, firmware=info.firmware or None, users=info.users,
                    records=info.records, records_cap=info.records_cap)
            finished.add(line.command_id)
        for command_id in finished:
            await self._maybe_finish(device, command_id, now)
        await self._heard(device, now, address, "")
        return OK

    # --- the watch -----------------------------------------------------------------

    async def watch(self) -> None:
        """Once a second, for ever: write contacts, find silent devices, see queued work."""
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("push watch failed")
            await asyncio.sleep(WATCH_EVERY_S)

    async def tick(self) -> None:
        """One round of the watch (tests call it with their own clock)."""
        now = self.clock()
        if self._started_at is None:
            self._started_at = now
        await self.flush()
        self._queued = await self.store.devices_with_queued_commands()
        if self._expired_at is None or (now - self._expired_at).total_seconds() >= EXPIRE_EVERY_S:
            self._expired_at = now
            await self._expire(now)
        judged = [d for d in list(self._by_serial.values()) if await self._judges(d)]
        if not self.share.everything and judged:
            await self._hear_others(judged, now)
        silent = timedelta(seconds=self.offline_after_s)
        for device in judged:
            health = device.health
            last = device.heard_at or self._started_at
            if health.status is DeviceStatus.OFFLINE or now - last < silent:
                continue
            if health.status is DeviceStatus.UNKNOWN and device.heard_at is None and \
                    now - self._started_at < silent:
                continue
            if not self.share.everything and health.rebooting_until is None:
                await self._reboot_sent_elsewhere(device)
            change = health.failure(
                FailureKind.UNREACHABLE, f"no heartbeat for {self.offline_after_s:g} s", now)
            if change is not None:
                self.publish(await self.store.record_status(change))

    async def _judges(self, device: _Device) -> bool:
        """Whether this gateway keeps the device's status (its poller holds the site). A
        site gained since its status was last taken from the store is judged on from what
        its previous judge recorded, read first: what this gateway saw before is stale
        (judged on, it would record a transition the store already holds)."""
        site = device.spec.site_id
        if not self.share.holds(site):
            return False
        gained = self.share.gained_at(site)
        if device.adopted < gained:
            state = await self.store.device(device.spec.id)
            if state is not None:
                device.health = Health(device.spec.id, offline_after=1, status=state.status,
                                       reason=state.status_reason, since=state.status_since)
                if state.last_seen is not None and (device.heard_at is None
                                                    or state.last_seen > device.heard_at):
                    device.heard_at = state.last_seen
            device.adopted = gained
        return True

    async def _hear_others(self, judged: list[_Device], now: datetime) -> None:
        """Calls other listeners answered (their contacts, as written) count as heard: a
        device silent here may be talking to another listener."""
        heard = await self.store.push_last_seen()
        silent = timedelta(seconds=self.offline_after_s)
        for device in judged:
            seen = heard.get(device.spec.id)
            if seen is None or (device.heard_at is not None and seen <= device.heard_at):
                continue
            device.heard_at = seen
            health = device.health
            if health.status is not DeviceStatus.ONLINE and now - seen < silent and (
                    health.since is None or seen >= health.since):
                change = health.success(now)
                if change is not None:
                    self.publish(await self.store.record_status(change))

    async def _reboot_sent_elsewhere(self, device: _Device) -> None:
        """A restart another listener handed the device: its silence is the reboot."""
        for line in await self.store.push_lines(device.spec.id, state="sent"):
            if push_wire.is_reboot(line.text) and line.sent_at is not None:
                device.health.expect_reboot(line.sent_at + timedelta(seconds=REBOOT_WINDOW_S))

    async def flush(self) -> None:
        """Write the contacts heard since the last flush, in one transaction."""
        if self._contacts:
            contacts, self._contacts = list(self._contacts.values()), {}
            await self.store.record_push_contacts(contacts)

    # --- inside ----------------------------------------------------------------------

    async def _device(self, serial: str, address: str,
                      query: Mapping[str, str]) -> _Device | None:
        device = self._by_serial.get(serial)
        if device is not None:
            return device
        now = self.clock()
        last = self._pending_noted.get(serial)
        if last is None or (now - last).total_seconds() >= PENDING_NOTE_EVERY_S:
            self._pending_noted[serial] = now
            if len(self._pending_noted) > 10_000:  # a flood of invented serials
                self._pending_noted.clear()
            await self.store.note_pending_push(serial, address, "", query.get("pushver", ""),
                                               now)
            log.warning("push: unknown serial %s called from %s (pending approval)",
                        serial, address)
        return None

    async def _heard(self, device: _Device, now: datetime, address: str, version: str,
                     info: push_wire.DeviceInfo | None = None) -> None:
        device.heard_at = now
        previous = self._contacts.get(device.spec.id) or PushContact(device.spec.id, now, "")
        contact = replace(previous, at=now, address=address,
                          push_version=version or previous.push_version)
        if info is not None:
            contact = replace(contact, firmware=info.firmware or None, users=info.users,
                              records=info.records)
        self._contacts[device.spec.id] = contact
        if await self._judges(device):
            change = device.health.success(now)
            if change is not None:
                self.publish(await self.store.record_status(change))

    async def _attlog(self, device: _Device, text: str, now: datetime) -> PushAnswer:
        parsed = push_wire.parse_attlog(text)
        for b in parsed.bad[:5]:
            log.warning("push %s: ATTLOG line %d skipped: %s", device.spec.id, b.number,
                        b.reason)
        punches = [make_punch(device.spec.id, raw, device.zone, source="push",
                              received_at=now, clock_drift_s=None) for raw in parsed.punches]
        new = await self.store.insert_punches(device.spec.id, punches) if punches else 0
        device.uploaded_at = now
        if device.stored is not None:
            device.stored += new
        if new:
            self.publish(await self.store.add_event(
                EventKind.SYNC, f"{device.spec.id}: {new} new punch(es) pushed", at=now,
                device_id=device.spec.id,
                data={"new": new, "read": len(punches), "bad": len(parsed.bad)}))
        return PushAnswer(200, f"OK:{parsed.lines}")

    async def _operlog(self, device: _Device, text: str, now: datetime) -> PushAnswer:
        parsed = push_wire.parse_operlog(text)
        if parsed.users:
            await self.store.record_push_users(device.spec.id, parsed.users)
        for op in parsed.operations:
            what = push_wire.OPERATIONS.get(op.op)
            if what is None:
                continue
            self.publish(await self.store.add_event(
                EventKind.DEVICE_OPERATION,
                f"{device.spec.id}: {what}" + (f" by {op.operator}" if op.operator.strip("0")
                                               else ""),
                at=now, device_id=device.spec.id,
                data={"op": op.op, "at": op.at.isoformat() if op.at else None}))
        return PushAnswer(200, f"OK:{parsed.lines}")

    async def _lines_to_send(self, device: _Device, now: datetime) -> list[tuple[int, str]]:
        device_id = device.spec.id
        queued = await self.store.push_lines(device_id, state="queued")
        if not queued and device_id in self._queued:
            self._queued.discard(device_id)
            for command in await self.store.due_commands(device_id, now):
                plan = await self._plan(device, command)
                if plan.refused is not None or not plan.lines:
                    # ended in one step (another listener ending it too changes nothing)
                    state = CommandState.FAILED if plan.refused else CommandState.DONE
                    self.publish(await self.store.finish_command(
                        command, state, now, result=plan.report or None,
                        error=plan.refused or ""))
                    continue
                # started and its lines queued in one step, by one listener only
                if await self.store.start_push_command(command.id, device_id, plan.lines,
                                                       plan.report, now) is None:
                    continue  # another listener took it (the device called both at once)
                if COMMANDS[command.command].reboots:
                    break  # what follows waits for the device to come back
            queued = await self.store.push_lines(device_id, state="queued")
        if not queued:
            return []
        in_flight = len(await self.store.push_lines(device_id, state="sent"))
        batch = push_wire.batch_for_answer([(line.id, line.text) for line in queued],
                                           in_flight=in_flight)
        if batch:
            taken = set(await self.store.mark_push_lines_sent([cid for cid, _ in batch], now))
            batch = [(cid, text) for cid, text in batch if cid in taken]
            if any(push_wire.is_reboot(text) for _, text in batch):
                device.health.expect_reboot(now + timedelta(seconds=REBOOT_WINDOW_S))
        return batch

    async def _plan(self, device: _Device, command: Command) -> PushPlan:
        handler = PUSH_HANDLERS.get(command.command)
        if handler is None:
            return PushPlan(refused=f"a push device cannot run {command.command}")
        return await handler(_Target(device.spec.id, self.store), command.params)

    async def _maybe_finish(self, device: _Device, command_id: int, now: datetime) -> None:
        lines = await self.store.push_lines_of(command_id)
        if any(line.state in ("queued", "sent") for line in lines):
            return
        command = await self.store.command(command_id)
        if command is None or command.state.final:
            return
        if not lines:  # started by a listener that stopped before queuing its lines
            self.publish(await self.store.finish_command(
                command, CommandState.FAILED, now,
                error="interrupted before it reached the device"))
            return
        plan = await self.store.push_plan(command_id)
        if plan.get("stage") == READING_USERS and command.command == "sync_employees":
            query = lines[-1]
            # -1: nothing to send (no users); anything else is the device refusing
            if query.return_code in (0, -1):
                nxt = await sync_employees_lines(_Target(device.spec.id, self.store),
                                                 command.params)
                if nxt.lines:
                    await self.store.add_push_lines(command_id, device.spec.id, nxt.lines,
                                                    nxt.report)
                    return
                plan, lines = nxt.report, []
        done, result, error = outcome(lines, plan)
        if "stored_before" in result:  # resend_punches: what its uploads (and any live
            # punches meanwhile) added
            stored = await self.store.punch_count(device.spec.id)
            result["stored_since_asked"] = stored - int(result.pop("stored_before"))
            device.stored = stored
            # what is still missing once the device sent its log again is not a gap that
            # asking fills (records the device holds twice, say): not asked for again
            device.gap_explained = max((device.reported or 0) - stored, 0)
        users, removed = users_changed(lines)
        if users or removed:
            await self.store.record_push_users(device.spec.id, users, removed)
        self.publish(await self.store.finish_command(
            command, CommandState.DONE if done else CommandState.FAILED, now,
            result=result, error=error))

    async def _fill_gap(self, device: _Device, now: datetime) -> None:
        """A device that holds more records than are stored for it, once it has caught up,
        is asked (once, and again only after GAP_RETRY_S) to send its whole log again:
        what is missing is stored, the rest is stored once already. (Missing records
        happen when the database was restored from a backup, or another server took
        some of the device's uploads.)"""
        if device.reported is None or (await self._judges(device)
                                       and device.health.status is not DeviceStatus.ONLINE):
            return
        if device.uploaded_at is not None and \
                (now - device.uploaded_at).total_seconds() < 2 * self.delay_s:
            return  # still sending what it buffered
        if device.gap_asked_at is not None and \
                (now - device.gap_asked_at).total_seconds() < GAP_RETRY_S:
            return
        if device.stored is None:
            device.stored = await self.store.punch_count(device.spec.id)
        missing = device.reported - device.stored
        if missing > device.gap_explained:
            # other listeners may have stored what this one did not count: count again
            device.stored = await self.store.punch_count(device.spec.id)
            missing = device.reported - device.stored
        if missing <= device.gap_explained:
            return
        device.gap_asked_at = now
        try:
            submission = await enqueue(
                self.store, device.spec.id, "resend_punches", {}, now=now,
                source=f"engine: the device holds {device.reported} records, "
                       f"{device.stored} are stored",
                idempotency_key=f"gap:{device.spec.id}:{device.reported}:{device.stored}")
        except CommandError as e:  # the device left the fleet meanwhile
            log.info("push %s: gap not filled: %s", device.spec.id, e)
            return
        if submission.created:
            log.info("push %s: %d record(s) missing, asking for the log again",
                     device.spec.id, missing)
            self._queued.add(device.spec.id)

    async def _expire(self, now: datetime) -> None:
        """Lines a device took and never answered (it went away, or lost them) fail their
        command, so that nothing waits for ever."""
        expired = await self.store.expire_push_lines(
            now - timedelta(seconds=ANSWER_TIMEOUT_S), now)
        by_id = {d.spec.id: d for d in self._by_serial.values()}
        for command_id, device_id in expired.items():
            device = by_id.get(device_id)
            if device is not None:
                await self._maybe_finish(device, command_id, now)
        # commands whose every line was answered but that a listener stopped (kill -9)
        # before ending them or queuing their next lines: ended, or carried on, by the
        # holder of the device's site
        stranded = await self.store.stranded_push_commands(
            now - timedelta(seconds=STRANDED_AFTER_S))
        for command_id, device_id in stranded.items():
            device = by_id.get(device_id)
            if device is not None and await self._judges(device):
                await self._maybe_finish(device, command_id, now)

    async def _reboot_seen(self, device: _Device, now: datetime) -> None:
        """A device handshaking after a REBOOT we sent has run it: the line is answered."""
        for line in await self.store.push_lines(device.spec.id, state="sent"):
            if push_wire.is_reboot(line.text):
                answered = await self.store.answer_push_line(
                    device.spec.id, line.id, 0, {"seen": "the device started again"}, now)
                if answered is not None:
                    await self._maybe_finish(device, answered.command_id, now)


@dataclass(frozen=True, slots=True)
class _Target:
    """A push device as command planning sees it."""

    device_id: str
    store: Store
