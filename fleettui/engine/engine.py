"""The engine: every device's poller, scheduled, over one store.

``Engine`` turns the configuration into pollers, schedules their checks on
one timetable (``checks.py``: a timer per device on the event loop, spread by
jitter, stretched by backoff while a device stays down), runs blocking device
I/O in one bounded thread pool (a check on an open session runs on the loop:
``devices/zk_check.py``), writes the checks' liveness facts in one
batch a second, and tells listeners about each event after it is committed.
APScheduler runs the few fleet-wide jobs (reconcile, alerts, schedules).
It knows no screen and no HTTP: the TUI, the headless service and the API
are listeners and readers of the store.

On a database several pollers share (PostgreSQL), the engine acts only for
the sites its lease keeper holds (``share``, ``leases.py``): it polls their
devices, runs their commands and schedules, alerts on them and relays their
webhooks; a site gained is taken over (its half-run commands failed first), a
site lost is let go once its work in hand is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from fleettui.config import Config, ScheduleConfig
from fleettui.devices.base import Driver, Endpoint
from fleettui.devices.zk import ZkDriver
from fleettui.domain import FLEET_LEASE, DeviceSpec, DeviceState, DeviceStatus, Event, Site
from fleettui.engine.alerts import AlertEngine, Sink
from fleettui.engine.checks import CheckStats, CheckTimetable
from fleettui.engine.leases import LeaseKeeper, new_identity
from fleettui.engine.liveness import LivenessBuffer
from fleettui.engine.poller import DevicePoller, PollPolicy
from fleettui.engine.push import PushGateway
from fleettui.engine.queued import QueuedCommands
from fleettui.engine.schedules import fire, schedule_site, trigger_for
from fleettui.engine.sessions import StoreSessionLedger
from fleettui.engine.share import SiteShare
from fleettui.engine.sync import SyncProgress
from fleettui.engine.webhooks import WebhookDispatcher, config_endpoints
from fleettui.store import Store

log = logging.getLogger(__name__)

#: how often open alerts are re-evaluated (confirmation delays, escalation, silences)
EVALUATE_EVERY_S = 10.0
#: how often the store is read for devices registered through the API by another process
RECONCILE_EVERY_S = 5.0
#: how often the checks' liveness facts are written, and the command queue re-read
HOUSEKEEPING_EVERY_S = 1.0

DriverFactory = Callable[[Endpoint, ThreadPoolExecutor], Driver]
Listener = Callable[[Event], None]


def _same_poll(a: DeviceSpec | None, b: DeviceSpec) -> bool:
    """Whether two specs poll the same way (a new name needs no new poller)."""
    return a is not None and replace(a, name="") == replace(b, name="")


def utc_now() -> datetime:
    """The real clock (the default; tests inject their own)."""
    return datetime.now(UTC)


class Engine:
    """Polls every enabled device of a config into a store."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Callable[[], datetime] = utc_now,
        driver_factory: DriverFactory | None = None,
        seed: int | None = None,
        alert_sinks: list[Sink] | None = None,
        mode: str = "headless poller",
    ) -> None:
        """``mode`` names this poller among those sharing a database (``fleettui
        pollers``)."""
        self.config = config
        self.store = store
        self.clock = clock
        poll = config.poll
        self.policy = PollPolicy(
            check_interval_s=poll.check_interval_s,
            retry_after_s=poll.retry_after_s,
            offline_after_failures=poll.offline_after_failures,
            backoff_max_s=poll.backoff_max_s,
            clock_check_interval_s=poll.clock_check_interval_s,
            sync_batch=poll.sync_batch,
        )
        self._pool = ThreadPoolExecutor(max_workers=poll.workers, thread_name_prefix="device")
        self._driver_factory = driver_factory or self._zk_driver
        self._rng = random.Random(seed)
        self._scheduler: AsyncIOScheduler | None = None
        self._checks: CheckTimetable | None = None
        self._housekeeping_task: asyncio.Task[None] | None = None
        #: answered checks' last_seen and counters, written once a second
        self.liveness = LivenessBuffer()
        #: the devices with commands waiting (signalled by the store, re-read each second)
        self.queued = QueuedCommands()
        store.add_queue_listener(self._on_queued)
        self._tasks: set[asyncio.Task[None]] = set()
        #: each device's tasks in flight (checks, syncs): waited for before its site goes
        self._device_tasks: dict[str, set[asyncio.Task[None]]] = {}
        #: the sites this poller acts for: all of them, unless the database is shared, when
        #: the lease keeper holds a share of them (``leases.py``)
        self.share = SiteShare() if store.shared else SiteShare.whole()
        self.leases: LeaseKeeper | None = None
        if store.shared:
            self.leases = LeaseKeeper(store, self.share, lease_s=poll.lease_s, clock=clock,
                                      identity=new_identity(mode, clock()),
                                      let_go=self._let_go)
            self.share.on_change(self._on_share_change)
        self._lease_task: asyncio.Task[None] | None = None
        self.listeners: list[Listener] = []
        self.alerts = AlertEngine(store, config.alerts, sinks=alert_sinks, share=self.share)
        # always there: endpoints created through the API live in the store
        self.webhooks = WebhookDispatcher(
            store, list(config.webhooks), clock=clock,
            allow_private_targets=config.security.allow_private_webhook_targets,
            share=self.share)
        self.listeners.append(self.webhooks.kick)
        self._webhook_task: asyncio.Task[None] | None = None
        push = config.push
        #: the devices that dial in: answered by the push listener, never polled
        self.push = PushGateway(store, clock=clock, publish=self._publish,
                                delay_s=push.delay_s, offline_after_s=push.offline_after,
                                error_delay_s=push.error_delay_s, share=self.share)
        self._push_task: asyncio.Task[None] | None = None
        self.pollers: dict[str, DevicePoller] = {}
        #: the devices polled now (those of the sites held)
        self._specs: dict[str, DeviceSpec] = {}
        #: every enabled device to poll, held or not (config and API devices)
        self._wanted: dict[str, DeviceSpec] = {}
        #: ids the config declares (an API device of the same id is the config's)
        self._config_ids = frozenset(d.id for d in config.devices)
        self._reconcile_lock = asyncio.Lock()
        self._clash_logged: set[str] = set()
        self._stopping = False
        self._prepared = False

    def _zk_driver(self, endpoint: Endpoint, pool: ThreadPoolExecutor) -> Driver:
        poll = self.config.poll
        ledger = StoreSessionLedger(self.store, endpoint.device_id, asyncio.get_running_loop(),
                                    self.clock)
        return ZkDriver(endpoint, pool, timeout_s=poll.timeout_s,
                        bulk_timeout_s=poll.bulk_timeout_s, sessions=ledger)

    # --- lifecycle ------------------------------------------------------

    async def prepare(self) -> None:
        """Write the configured fleet into the store and build a poller per device (of the
        sites held, on a database several pollers share: the first lease round runs here).

        Commands a previous poller left half-run are marked failed (never run twice).
        """
        cfg = self.config
        if self.share.everything:  # shared: a site's are interrupted when it is taken over
            await self.store.interrupt_sent_commands(self.clock())
        await self.alerts.load(self.clock())
        await self.store.sync_webhook_endpoints(config_endpoints(cfg.webhooks), self.clock())
        await self.store.sync_fleet(
            [Site(s.id, s.name, s.timezone, s.address) for s in cfg.sites],
            [
                DeviceState(id=d.id, serial=d.serial, site_id=d.site, host=d.host or "",
                            port=d.port,
                            transport=d.transport, name=d.name, enabled=d.enabled)
                for d in cfg.devices
            ],
        )
        if self.leases is not None:
            await self.leases.round()  # this poller's first share of the sites
        for d in cfg.devices:
            if d.enabled:
                await self._add(DeviceSpec(
                    id=d.id, serial=d.serial, site_id=d.site, host=d.host or "", port=d.port,
                    transport=d.transport, comm_key=d.comm_key, live_capture=d.live_capture,
                    name=d.name, timezone=cfg.site(d.site).timezone))
        for spec in await self._api_specs():
            await self._add(spec)
        await self.queued.refresh(self.store)
        self._prepared = True

    async def _api_specs(self) -> list[DeviceSpec]:
        """The enabled API devices to poll: not one the config file also declares (by
        serial or address; two pollers on one device would fight over its sessions)."""
        taken = {d.serial: d.id for d in self.config.devices}
        taken.update({f"{d.host.lower()}:{d.port}/{d.transport}": d.id
                      for d in self.config.devices if d.host})
        specs = []
        for spec in await self.store.api_device_specs():
            clash = taken.get(spec.serial) or taken.get(
                f"{spec.host.lower()}:{spec.port}/{spec.transport}")
            if clash is not None:
                if spec.id not in self._clash_logged:
                    self._clash_logged.add(spec.id)
                    log.warning("device %s (registered over the API) is the config's %s: "
                                "only the config's is polled", spec.id, clash)
                continue
            specs.append(spec)
        return specs

    async def _add(self, spec: DeviceSpec) -> None:
        """Build the device's poller from its spec; schedule it if the engine runs (a push
        device goes to the push gateway instead: it calls, it is not called, and is
        answered whoever holds its site; only that holder judges its status). A polled
        device of a site another poller holds is only remembered, until its site is ours."""
        self._wanted[spec.id] = spec
        if spec.transport != "push" and not self.share.holds(spec.site_id):
            return
        if spec.transport == "push":
            self.push.add(spec, await self.store.device(spec.id))
            self._specs[spec.id] = spec
            return
        endpoint = Endpoint(spec.id, spec.host, spec.port, spec.transport, spec.serial,
                            comm_key=spec.comm_key)
        live = spec.live_capture
        poller = DevicePoller(
            device_id=spec.id,
            site_id=spec.site_id,
            zone=ZoneInfo(spec.timezone),
            driver=self._driver_factory(endpoint, self._pool),
            store=self.store,
            policy=self.policy,
            clock=self.clock,
            publish=self._publish,
            live=self.config.poll.live_capture if live is None else live,
            request_retry=partial(self._retry, spec.id),
            spawn=partial(self._spawn_for, spec.id),
            liveness=self.liveness,
            queued=self.queued,
        )
        await poller.restore()
        self.pollers[spec.id] = poller
        self._specs[spec.id] = spec
        if self._checks is not None:
            self._schedule(spec.id, poller)

    def _retire(self, device_id: str, *, forget: bool = True) -> None:
        """Stop polling a device: no more checks; its driver closes after any work in hand
        (``forget`` False: its site went to another poller, it stays wanted)."""
        if forget:
            self._wanted.pop(device_id, None)
        spec = self._specs.pop(device_id, None)
        if spec is not None and spec.transport == "push":
            self.push.remove(device_id)
            return
        poller = self.pollers.pop(device_id, None)
        if poller is None:
            return
        poller.retired = True
        self.liveness.discard(device_id)
        if self._checks is not None:
            self._checks.remove(device_id)
        self.spawn(poller.driver.close())

    async def reconcile(self) -> None:
        """Poll exactly the enabled devices registered through the API, as the store lists them.

        New ones get a poller and their first check at once, removed or disabled
        ones stop, and a changed one (address, site, comm key) gets a new
        poller. The HTTP server asks for this when it changes a device
        (``reconcile_soon``); a periodic job covers a server in another process.
        """
        async with self._reconcile_lock:
            if self._stopping:
                return
            wanted = {s.id: s for s in await self._api_specs()}
            changed = False
            for device_id, spec in list(self._wanted.items()):
                if spec.origin == "api" and not _same_poll(wanted.get(device_id), spec):
                    log.info("device %s: %s", device_id,
                             "changed" if device_id in wanted else "no longer polled")
                    self._retire(device_id)
                    changed = True
            for device_id, spec in wanted.items():
                if device_id not in self._wanted and device_id not in self._config_ids:
                    log.info("device %s: now polled (registered through the API)", device_id)
                    await self._add(spec)
                    changed = True
            if changed:
                self.alerts.invalidate()  # the fleet it follows changed shape: read it whole

    def reconcile_soon(self) -> None:
        """Reconcile in the background (the fleet changed in the store)."""
        self.spawn(self._reconcile_logged())

    async def _reconcile_logged(self) -> None:
        try:
            await self.reconcile()
        except Exception:
            log.exception("could not pick up the devices registered through the API")

    async def start(self) -> None:
        """Prepare, then schedule every device's checks (first ones spread by jitter)."""
        if not self._prepared:
            await self.prepare()
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._checks = CheckTimetable(self._tick, jitter_s=self.config.poll.jitter_s,
                                      rng=self._rng)
        for device_id, poller in self.pollers.items():
            self._schedule(device_id, poller)
        self._scheduler.add_job(self._reconcile_logged,
                                IntervalTrigger(seconds=RECONCILE_EVERY_S), id="fleet:reconcile",
                                coalesce=True, max_instances=1, misfire_grace_time=None)
        alerts = self.config.alerts
        self._scheduler.add_job(self._alert_sample, IntervalTrigger(seconds=alerts.flap_sample_s),
                                id="alerts:sample", coalesce=True, max_instances=1,
                                misfire_grace_time=None)
        self._scheduler.add_job(self._alert_evaluate, IntervalTrigger(seconds=EVALUATE_EVERY_S),
                                id="alerts:evaluate", coalesce=True, max_instances=1,
                                misfire_grace_time=None)
        for schedule in self.config.schedules:
            if schedule.enabled:
                self._scheduler.add_job(
                    self._fire_schedule, trigger_for(self.config, schedule), args=[schedule],
                    id=f"schedule:{schedule.name}", coalesce=True, misfire_grace_time=300,
                )
        self._scheduler.start()
        self._housekeeping_task = asyncio.get_running_loop().create_task(self._housekeeping())
        if self.leases is not None:
            self._lease_task = asyncio.get_running_loop().create_task(
                self.leases.run_forever(first_after=True))
        self._webhook_task = asyncio.get_running_loop().create_task(
            self.webhooks.run_forever())
        if self.config.push.enabled:
            self._push_task = asyncio.get_running_loop().create_task(self.push.watch())

    def _schedule(self, device_id: str, poller: DevicePoller) -> None:
        """The device's place on the timetable, its first check spread by jitter."""
        assert self._checks is not None
        first = self._rng.uniform(0, max(self.config.poll.jitter_s, 0.05))
        self._checks.add(device_id, poller.interval_s, first)

    @property
    def check_stats(self) -> CheckStats | None:
        """How punctual the scheduled checks were (None before ``start``)."""
        return self._checks.stats if self._checks is not None else None

    async def _housekeeping(self) -> None:
        """Every second: write the liveness batch, re-read which devices have commands."""
        while True:
            await asyncio.sleep(HOUSEKEEPING_EVERY_S)
            try:
                await self.flush_liveness()
                await self.queued.refresh(self.store)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not write the devices' last-seen batch")

    async def flush_liveness(self) -> None:
        """Write the pending liveness facts now (kept for the next try if the write fails)."""
        batch = self.liveness.take()
        if not batch:
            return
        try:
            await self.store.record_seen_many(batch)
        except BaseException:
            for seen in batch:
                if seen.device_id not in self.liveness:
                    self.liveness.note(seen)
            raise

    def _on_queued(self, device_ids: Sequence[str]) -> None:
        """Commands were queued in this process: their online devices are checked now."""
        self.queued.mark(device_ids)
        if self._checks is None or self._stopping:
            return
        for device_id in device_ids:
            poller = self.pollers.get(device_id)
            if poller is not None and poller.health.status is DeviceStatus.ONLINE:
                self._checks.soon(device_id, 0.0)

    async def _alert_sample(self) -> None:
        try:
            await self.alerts.sample(self.clock())
        except Exception:
            log.exception("alert sampling failed")

    async def _alert_evaluate(self) -> None:
        try:
            await self.alerts.evaluate(self.clock())
        except Exception:
            log.exception("alert evaluation failed")

    async def _fire_schedule(self, schedule: ScheduleConfig) -> None:
        if not self.share.holds(schedule_site(self.config, schedule)):
            return  # its site's holder fires it (the same idempotency key, were both to)
        try:
            request = await fire(self.store, self.config, schedule, self.clock())
        except Exception:
            log.exception("schedule %s failed to queue its command", schedule.name)
            return
        if request is not None:
            log.info("schedule %s queued request %d", schedule.name, request.id)

    async def stop(self) -> None:
        """Stop scheduling, let in-flight work finish (writes complete), close devices."""
        self._stopping = True
        self.store.remove_queue_listener(self._on_queued)
        if self._lease_task is not None:
            self._lease_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease_task
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._checks is not None:
            self._checks.close()
            self._checks = None
        if self._housekeeping_task is not None:
            self._housekeeping_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping_task
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=60)
        with contextlib.suppress(Exception):
            await self.flush_liveness()
        if self._push_task is not None:
            self._push_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._push_task
            await self.push.flush()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
        await self.webhooks.close()
        await asyncio.gather(*(p.driver.close() for p in self.pollers.values()),
                             return_exceptions=True)
        if self.leases is not None:  # last: the sites are handed on once the work is done
            try:
                await self.leases.leave()
            except Exception:
                log.exception("could not let the site leases go (they run out on their own)")
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- scheduling -----------------------------------------------------

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run engine work as a tracked task (stop waits for it to finish)."""
        if self._stopping:
            if asyncio.iscoroutine(coro):
                coro.close()
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("engine task failed", exc_info=task.exception())

    def _spawn_for(self, device_id: str, coro: Awaitable[None]) -> None:
        """``spawn``, the task also counted as the device's work in flight."""
        if self._stopping:
            if asyncio.iscoroutine(coro):
                coro.close()
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        self._device_tasks.setdefault(device_id, set()).add(task)
        task.add_done_callback(self._task_done)
        task.add_done_callback(partial(self._device_task_done, device_id))

    def _device_task_done(self, device_id: str, task: asyncio.Task[None]) -> None:
        tasks = self._device_tasks.get(device_id)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._device_tasks[device_id]

    def _tick(self, device_id: str) -> None:
        self._spawn_for(device_id, self._check_and_reschedule(device_id))

    # --- the sites held (several pollers on one database) -------------------

    def _on_share_change(self, gained: frozenset[str], lost: frozenset[str]) -> None:
        """The lease keeper changed the sites held: stop polling the lost ones' devices at
        once, take the gained ones over (in the background: it reads the store)."""
        for device_id, spec in list(self._specs.items()):
            if spec.site_id in lost and spec.transport != "push":
                self._retire(device_id, forget=False)
        if lost:
            self.alerts.invalidate()
        if gained - {FLEET_LEASE}:
            self.spawn(self._take_over(gained - {FLEET_LEASE}))

    async def _take_over(self, sites: frozenset[str]) -> None:
        """Poll the devices of sites just taken: commands their last holder left half-run
        are failed first (never run twice), then each device gets its poller."""
        try:
            failed = await self.store.interrupt_sent_commands(self.clock(), sorted(sites))
            if failed:
                log.info("%d command(s) left running by the previous holder of %s: failed",
                         failed, ", ".join(sorted(sites)))
            for spec in [s for s in self._wanted.values() if s.site_id in sites]:
                if (spec.id not in self._specs and self.share.holds(spec.site_id)
                        and not self._stopping):
                    await self._add(spec)
            self.alerts.invalidate()
            log.info("now polling site(s) %s", ", ".join(sorted(sites)))
        except Exception:
            log.exception("could not take over site(s) %s", ", ".join(sorted(sites)))

    async def _let_go(self, sites: frozenset[str]) -> None:
        """Before a site is handed to another poller: its devices' work in hand finishes
        (a command half-run would be failed by the next holder) and the webhook deliveries
        in flight are recorded (the next holder must not send them again)."""
        tasks = {t for spec in self._wanted.values() if spec.site_id in sites
                 for t in self._device_tasks.get(spec.id, ())}
        if tasks:
            await asyncio.wait(tasks, timeout=60)
        await self.webhooks.quiesce()

    async def _check_and_reschedule(self, device_id: str) -> None:
        poller = self.pollers.get(device_id)
        if poller is None:  # retired since the tick was due
            return
        before = poller.interval_s
        await poller.check()
        if poller.interval_s != before and self._checks is not None and not self._stopping:
            self._checks.reschedule(device_id, poller.interval_s)

    def _retry(self, device_id: str, delay: float) -> None:
        if self._checks is None or self._stopping:
            return
        self._checks.soon(device_id, delay)

    async def sweep(self) -> None:
        """Check every device once, all at once (what a scheduled round does), with the
        command queue re-read first and the liveness batch written after."""
        await self.queued.refresh(self.store)
        await asyncio.gather(*(p.check() for p in self.pollers.values()))
        await self.flush_liveness()

    def sync_progress(self, device_id: str) -> SyncProgress | None:
        """The device's sync in progress (records stored of those to store), or None."""
        poller = self.pollers.get(device_id)
        return poller.sync_progress if poller is not None else None

    # --- events ---------------------------------------------------------

    def _publish(self, event: Event) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed")

