"""One device's polling: liveness check, status, punch sync, clock, live capture.

In the spirit of Home Assistant's DataUpdateCoordinator: one coordinator per
device, backing off while the device stays offline, telling listeners only
when something changed. The scheduling itself (when ``check`` runs) is the
engine's; this class decides what a check does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from fleettui.commands import COMMANDS
from fleettui.devices.base import DeviceFailure, Driver
from fleettui.domain import (
    CommandState,
    DeviceStatus,
    Event,
    EventKind,
    FailureKind,
    Liveness,
    RawPunch,
    StatusChange,
)
from fleettui.engine.executor import CommandRefused, execute
from fleettui.engine.health import Health
from fleettui.engine.liveness import LivenessBuffer
from fleettui.engine.queued import QueuedCommands
from fleettui.engine.sync import (
    SyncProgress,
    SyncResult,
    drift_seconds,
    make_punch,
    store_dump,
)
from fleettui.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """The timing knobs of polling (from the config's [poll] section)."""

    check_interval_s: float = 4.0
    retry_after_s: float = 0.5
    offline_after_failures: int = 2
    backoff_max_s: float = 60.0
    clock_check_interval_s: float = 300.0
    sync_batch: int = 5000
    #: how long a device we restarted may stay silent before it counts as offline
    reboot_window_s: float = 120.0
    #: checks' worth of time an online device may go without its counts read (watchdog)
    stall_after_checks: int = 3
    #: the same allowance while an attendance download runs (100,000 records on a
    #: slow link take minutes)
    sync_stall_s: float = 900.0


class DevicePoller:
    """What happens at each check of one device."""

    def __init__(
        self,
        *,
        device_id: str,
        site_id: str,
        zone: ZoneInfo,
        driver: Driver,
        store: Store,
        policy: PollPolicy,
        clock: Callable[[], datetime],
        publish: Callable[[Event], None],
        live: bool = False,
        request_retry: Callable[[float], None] | None = None,
        spawn: Callable[[Awaitable[None]], None] | None = None,
        liveness: LivenessBuffer | None = None,
        queued: QueuedCommands | None = None,
    ) -> None:
        self.device_id = device_id
        self.site_id = site_id
        self.zone = zone
        self.driver = driver
        self.store = store
        self.policy = policy
        self.clock = clock
        self.publish = publish
        self.live = live
        self.request_retry = request_retry
        self.spawn = spawn
        #: where an answered check's last_seen and counters wait for the engine's batch
        #: write (None: written at once)
        self.liveness = liveness
        #: the devices with commands waiting (None: the queue is read at every check)
        self.queued = queued
        self.health = Health(device_id, offline_after=policy.offline_after_failures)
        self.interval_s = policy.check_interval_s
        self.busy = False
        #: the engine stopped polling this device (removed or changed): no more checks
        self.retired = False
        self._last_clock_check: datetime | None = None
        self._drift: float | None = None
        self._synced_count: int | None = None
        #: when the device's counts were last read and checked (the watchdog's reference)
        self.counts_read_at: datetime | None = None
        self._first_check_at: datetime | None = None
        self._live_started = False
        #: live punches held until the catch-up sync after live capture (re)registered
        #: (None: not holding; see _on_live_registered)
        self.live_held: list[RawPunch] | None = None
        self._live_epoch = 0
        self._catch_up_pending = False
        self.last_sync: SyncResult | None = None
        #: the sync in progress, if any (read by views; None when idle)
        self.sync_progress: SyncProgress | None = None

    async def restore(self) -> None:
        """Pick up the status and sync cursor the store remembers (after a restart)."""
        state = await self.store.device(self.device_id)
        if state is not None:
            self.health.status = state.status
            self.health.reason = state.status_reason
            self.health.since = state.status_since
            self._drift = state.clock_drift_s
            self._synced_count = state.synced_records if state.last_sync_at else None

    async def check(self) -> None:
        """One liveness check, and whatever it calls for (sync, clock, live capture)."""
        if self.retired:
            return
        if self._first_check_at is None:
            self._first_check_at = self.clock()
        if self.busy:
            await self._watch()
            return
        self.busy = True
        try:
            await self._check()
        finally:
            self.busy = False
        if self._catch_up_pending and not self.retired and self.spawn is not None:
            self._catch_up_pending = False  # live capture registered during that check
            self.spawn(self.check())

    async def _check(self) -> None:
        epoch = self._live_epoch
        try:
            sizes = await self.driver.check()
        except DeviceFailure as failure:
            await self._failed(failure)
            return
        now = self.clock()
        self.counts_read_at = now
        was = self.health.status
        change = self.health.success(now)
        await self._transition(change)
        self.interval_s = self.policy.check_interval_s
        seen = Liveness(self.device_id, now, users=sizes.users, users_cap=sizes.users_cap,
                        records=sizes.records, records_cap=sizes.records_cap)
        if self.liveness is None or change is not None:
            # a device coming (back) online gets its last_seen with its status
            await self.store.record_seen_many([seen])
            if self.liveness is not None:
                self.liveness.discard(self.device_id)
        else:
            self.liveness.note(seen)
        identity = self.driver.identity
        if identity is not None and was is not DeviceStatus.ONLINE:
            await self.store.record_identity(
                self.device_id, model=identity.model, firmware=identity.firmware,
                platform=identity.platform, mac=identity.mac,
            )
        try:
            if sizes.records != self._synced_count:
                await self.sync()
            elif self.live_held is not None and epoch == self._live_epoch:
                # counted after live capture registered and nothing new since the last
                # sync: no punch fell between the two, nothing to catch up
                await self._release_live()
            elif self._clock_due(now):
                await self._read_clock()
        except DeviceFailure as failure:
            await self._failed(failure)
            return
        if self.live and not self._live_started:
            self.driver.start_live(self._on_live_punch, self._on_live_error,
                                   self._on_live_registered)
            self._live_started = True
        await self.run_commands()

    async def _watch(self) -> None:
        """The stale-count watchdog: a check is still running (a device holding a reply,
        a download crawling), so the status was not refreshed. A device that counts as
        online but whose counts have not been read for a few check intervals is put in
        error, saying so, rather than shown healthy while nothing syncs; the next check
        that answers brings it back online."""
        health = self.health
        if health.status is not DeviceStatus.ONLINE:
            return
        now = self.clock()
        if health.rebooting_until is not None and now < health.rebooting_until:
            return  # silent on purpose: we restarted it
        since = self.counts_read_at or self._first_check_at
        if since is None:
            return
        allowed = self.policy.stall_after_checks * self.policy.check_interval_s
        if self.sync_progress is not None:
            allowed = max(allowed, self.policy.sync_stall_s)
        if (now - since).total_seconds() > allowed:
            await self._transition(health.stalled(
                f"stalled: record count not read for over {allowed:g} s", now))

    async def run_commands(self) -> None:
        """Run the device's queued commands, in order; stop at one the device did not answer.

        The queue is read only when the engine knows of commands for this device."""
        queued, token = self.queued, None
        if queued is not None:
            if self.device_id not in queued:
                return
            token = queued.token(self.device_id)
        commands = await self.store.due_commands(self.device_id, self.clock())
        if not commands and queued is not None:
            queued.drained(self.device_id, token)
        for command in commands:
            await self.store.start_command(command.id, self.clock())
            try:
                result = await execute(self, command)
            except CommandRefused as refused:
                event = await self.store.finish_command(
                    command, CommandState.FAILED, self.clock(), error=str(refused))
                self.publish(event)
                continue
            except DeviceFailure as failure:
                error = str(failure)
                if failure.kind in (FailureKind.UNREACHABLE, FailureKind.REFUSED):
                    error += " (the device stopped answering: it may or may not have run)"
                event = await self.store.finish_command(
                    command, CommandState.FAILED, self.clock(), error=error)
                self.publish(event)
                if failure.kind in (FailureKind.UNREACHABLE, FailureKind.REFUSED):
                    return  # the rest wait for the device to come back
                continue
            event = await self.store.finish_command(
                command, CommandState.DONE, self.clock(), result=result)
            self.publish(event)
            if COMMANDS[command.command].reboots:
                self.health.expect_reboot(
                    self.clock() + timedelta(seconds=self.policy.reboot_window_s))
                self._synced_count = None
                return  # the device is going away: later commands wait for it

    def _clock_due(self, now: datetime) -> bool:
        last = self._last_clock_check
        return last is None or (now - last).total_seconds() >= self.policy.clock_check_interval_s

    async def _read_clock(self) -> None:
        device_time = await self.driver.read_time()
        now = self.clock()
        self._drift = drift_seconds(device_time, self.zone, now)
        self._last_clock_check = now
        await self.store.record_clock(self.device_id, self._drift, now)

    async def sync(self) -> SyncResult:
        """Read the clock, download the attendance log, store what is new, oldest first."""
        started = self.clock()
        epoch = self._live_epoch
        self.sync_progress = SyncProgress(0, None, started)
        try:
            await self._read_clock()  # drift recorded at every sync, and kept with its punches
            dump = await self.driver.read_attendance()
            now = self.clock()

            def progress(done: int, total: int) -> None:
                self.sync_progress = SyncProgress(done, total, started)

            result = await store_dump(
                self.store, self.device_id, self.zone, dump, now=now,
                clock_drift_s=self._drift, batch=self.policy.sync_batch, progress=progress,
            )
        finally:
            self.sync_progress = None
        if epoch == self._live_epoch:
            self._synced_count = result.read + result.bad_records
        else:
            self._synced_count = None  # live capture re-registered meanwhile: catch up again
        self.last_sync = result
        if result.new or result.bad_records:
            message = f"{self.device_id}: {result.new} new punch(es) stored"
            if result.bad_records:
                message += f", {result.bad_records} unreadable record(s) skipped"
            event = await self.store.add_event(
                EventKind.SYNC, message, at=now, device_id=self.device_id,
                data={"new": result.new, "read": result.read, "bad": result.bad_records},
            )
            self.publish(event)
        if epoch == self._live_epoch and self.live_held is not None:
            await self._release_live()
        return result

    async def _failed(self, failure: DeviceFailure) -> None:
        now = self.clock()
        change = self.health.failure(failure.kind, str(failure), now)
        await self._transition(change)
        if self.health.status in (DeviceStatus.OFFLINE, DeviceStatus.ERROR):
            # back off while it stays down: fewer wasted timeouts, same recovery
            self.interval_s = min(self.interval_s * 2, self.policy.backoff_max_s)
        elif (
            self.health.failures < self.policy.offline_after_failures
            and self.policy.retry_after_s > 0
            and self.request_retry is not None
        ):
            self.request_retry(self.policy.retry_after_s)

    async def _transition(self, change: StatusChange | None) -> None:
        if change is None:
            return
        event = await self.store.record_status(change)
        self.publish(event)
        if change.status is DeviceStatus.ONLINE and change.previous in (
            DeviceStatus.OFFLINE, DeviceStatus.ERROR,
        ):
            self._synced_count = None  # back from an outage: sync the backlog at once

    # --- live capture ---------------------------------------------------

    def _on_live_registered(self) -> None:
        """A live session registered (at start, or after a reconnect).

        Punches made while it was (re)registering are only in the device's log,
        and the next sync would store them after the live punches that follow:
        ``punch.created`` out of time order. So live punches are held from here
        until a sync that started after this registration has stored the log,
        then released in device-time order (those the sync stored are dropped
        as duplicates). A check is asked for at once; it downloads only if the
        record count moved since the last sync, as always.
        """
        self._live_epoch += 1
        if self.live_held is None:
            self.live_held = []
        if self.busy:
            self._catch_up_pending = True
        elif self.spawn is not None and not self.retired:
            self.spawn(self.check())

    def _on_live_punch(self, raw: RawPunch) -> None:
        if self.live_held is not None:
            self.live_held.append(raw)
        elif self.spawn is not None:
            self.spawn(self._store_live(raw))

    async def _release_live(self) -> None:
        """Store the held live punches oldest first, then let live punches through again
        (any arriving meanwhile join the queue, so the order holds)."""
        epoch, held = self._live_epoch, self.live_held
        while held and epoch == self._live_epoch:
            held.sort(key=lambda r: r.local_time)
            await self._store_live(held.pop(0))
        if epoch == self._live_epoch:  # else re-registered meanwhile: hold for its catch-up
            self.live_held = None

    async def _store_live(self, raw: RawPunch) -> None:
        now = self.clock()
        punch = make_punch(self.device_id, raw, self.zone, source="live", received_at=now,
                           clock_drift_s=self._drift)
        if await self.store.insert_punches(self.device_id, [punch]):
            event = await self.store.add_event(
                EventKind.PUNCH,
                f"{self.device_id}: user {raw.user_id} punched at {raw.local_time}",
                at=now, device_id=self.device_id,
                data={"user_id": raw.user_id, "local_time": raw.local_time.isoformat()},
            )
            self.publish(event)

    def _on_live_error(self, reason: str) -> None:
        log.debug("%s live capture: %s", self.device_id, reason)
