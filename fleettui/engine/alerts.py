"""Alerting that an ops team trusts: flapping, confirmation, grouping, escalation, silences.

Inputs are device statuses from the store; time is passed in, so a test can
live through hours in microseconds. Two entry points, both idempotent:

- ``sample(now)`` at a fixed cadence feeds each device's flap detector;
- ``evaluate(now)`` opens, escalates, reminds and resolves alerts:
  - a device offline (or in error) for the confirmation delay opens one alert,
    unless it is flapping, silenced, or its site is down as a whole;
  - when ``site_share`` of a site's devices are down past the delay, one
    site alert (power or uplink) replaces their device alerts (inhibition);
  - an open alert escalates to critical after ``escalate_after_s``, and is
    repeated every ``repeat_every_s`` until resolved or acknowledged;
  - a recovery is notified only if the problem was.

Both follow the fleet incrementally: the whole fleet is read at the first call
and at least every ``FULL_READ_EVERY`` (what no event says: a device disabled
in the config); in between only the devices with a ``device.*`` event since
the last call are read again, a device whose flap history is steady is not
sampled, and evaluation looks only at what changed, what is down and what has
an open alert. A fleet at rest costs next to nothing, whatever its size.

Every change is written to the store first (alert row, event, webhook outbox
row in one transaction) and only then handed to the sinks, each rate-limited
so that a storm arrives as a summary, not a replay.

Several pollers on one database each judge the sites they hold (a
``SiteShare``), so each alert is opened, escalated, reminded and resolved by
one poller, and told once. The store makes a change once even when two
pollers ask at once (a site changing hands): what it hands back says whether
this call made it, and only a change made here is told to this poller's sinks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fleettui.config import AlertSettings
from fleettui.domain import Alert, AlertKind, DeviceState, DeviceStatus, FlapState, Silence
from fleettui.engine.flapping import (
    CountFlapDetector,
    FlapChange,
    WeightedFlapDetector,
)
from fleettui.engine.share import SiteShare
from fleettui.store import Store

log = logging.getLogger("fleettui.alerts")

#: flap histories are written to the store every this many samples (and at every
#: flapping change): a restart loses at most that much history, never a state
PERSIST_EVERY = 4
#: the whole fleet is read again at least this often; in between, only what changed
FULL_READ_EVERY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Notification:
    """Something a person should hear about: an alert opened, escalated, repeated, resolved."""

    change: str  # "opened", "escalated", "reminder", "resolved", "summary"
    alert: Alert | None
    text: str
    at: datetime


Sink = Callable[[Notification], None]


@dataclass
class RateLimitedSink:
    """At most ``limit`` notifications per ``window``; the rest become one summary.

    When a window closes with notifications held back, the next notification
    (or the next ``flush``) is preceded by "N more alert notifications: ...".
    """

    sink: Sink
    limit: int = 10
    window: timedelta = timedelta(seconds=60)
    _start: datetime | None = None
    _sent: int = 0
    _held: list[Notification] = field(default_factory=list)

    def __call__(self, n: Notification) -> None:
        self.flush(n.at)
        if self._sent < self.limit:
            self._sent += 1
            self.sink(n)
        else:
            self._held.append(n)

    def flush(self, now: datetime) -> None:
        """Close the window if it is over, summarising what was held back."""
        if self._start is None or now - self._start >= self.window:
            if self._held:
                kinds: dict[str, int] = {}
                for h in self._held:
                    kinds[h.change] = kinds.get(h.change, 0) + 1
                detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
                self.sink(Notification("summary", None,
                                       f"{len(self._held)} more alert notifications ({detail})",
                                       now))
                self._held.clear()
            self._start = now
            self._sent = 0


def log_sink(n: Notification) -> None:
    """A sink that writes one log line per notification."""
    level = logging.WARNING if n.change in ("opened", "escalated", "reminder") else logging.INFO
    log.log(level, "%s", n.text)


class AlertEngine:
    """Alert rules over the store's device statuses, for the sites this poller holds.

    With a ``SiteShare`` of some sites (several pollers on one database), only the
    devices of held sites are sampled and judged, and only their alerts (and their
    sites') opened, escalated, reminded and resolved: each alert is acted on, and
    told, by one poller. A site gained is taken over as its last holder left it (its
    devices' flap histories and its open alerts are in the store); a site lost is
    dropped at once, nothing more written for it.
    """

    def __init__(
        self,
        store: Store,
        settings: AlertSettings,
        *,
        sinks: list[Sink] | None = None,
        share: SiteShare | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.sinks: list[Sink] = [
            RateLimitedSink(s, settings.sink_max, timedelta(seconds=settings.sink_window_s))
            for s in (sinks if sinks is not None else [log_sink])
        ]
        #: the sites acted for (alone on the database: all of them)
        self.share = share if share is not None else SiteShare.whole()
        self._flap: dict[str, WeightedFlapDetector | CountFlapDetector] = {}
        #: flap states of devices out of the view (held by another poller, or left), as
        #: last known: what ``flapping`` answers for them; never sampled nor written here
        self._others: dict[str, FlapState] = {}
        self._samples = 0
        self._config_silences_added = False
        #: the enabled devices of held sites as last read, by id, and their ids by site
        self._view: dict[str, DeviceState] = {}
        self._by_site: dict[str, set[str]] = {}
        #: devices down (offline or in error) in the view
        self._down: set[str] = set()
        #: devices changed since the last evaluation (all of them after a full read)
        self._dirty: set[str] = set()
        #: devices sampled since their flap history was last written
        self._unsaved: set[str] = set()
        #: devices come into a shared view (a site gained, a device moved in) whose flap
        #: history is still to be read from the store (another poller's, until now)
        self._entered: set[str] = set()
        self._seen_event = 0
        self._full_read_at: datetime | None = None
        #: one update of the view at a time (sampling and evaluation run side by side)
        self._following = asyncio.Lock()
        #: whole-fleet reads and single-device reads made so far (a test reads these)
        self.full_reads = 0
        self.device_reads = 0
        self.share.on_change(self._share_changed)

    def invalidate(self) -> None:
        """Read the whole fleet at the next call (the fleet was changed by a reconcile)."""
        self._full_read_at = None

    def _share_changed(self, gained: frozenset[str], lost: frozenset[str]) -> None:
        """The share changed: a lost site's devices leave the view now (nothing is done
        for them from here on); a gained site's are read, whole, at the next call."""
        for site_id in lost:
            for device_id in sorted(self._by_site.get(site_id, ())):
                self._put(device_id, None)
        if gained:
            self.invalidate()

    async def _follow(self, now: datetime) -> None:
        """Bring the view up to date: the whole fleet when due, else what changed."""
        async with self._following:
            if self._full_read_at is None or now - self._full_read_at >= FULL_READ_EVERY \
                    or now < self._full_read_at:
                newest = await self.store.last_event_id()  # first: a later change is seen next
                fresh = {d.id: d for d in await self.store.devices()}
                # no await from here to the time set: a site gained later reads again
                for device_id in [i for i in self._view if i not in fresh]:
                    self._put(device_id, None)
                for device_id, d in fresh.items():
                    self._put(device_id, d)
                self._seen_event, self._full_read_at = newest, now
                self.full_reads += 1
                if not self.share.everything:
                    await self._restore(others=True)
                return
            changes = await self.store.devices_changed_after(self._seen_event)
            self._seen_event = changes.newest_event
            for device_id in changes.device_ids:
                self._put(device_id, await self.store.device(device_id, removed=False))
                self.device_reads += 1
            if self._entered:
                await self._restore(others=False)

    def _put(self, device_id: str, fresh: DeviceState | None) -> None:
        """Put a device as just read into the view (None, disabled, or of a site not held:
        out of it); it is looked at by the next evaluation."""
        old = self._view.pop(device_id, None)
        if old is not None:
            members = self._by_site.get(old.site_id, set())
            members.discard(device_id)
            if not members:
                self._by_site.pop(old.site_id, None)
        self._down.discard(device_id)
        if fresh is not None and fresh.enabled and self.share.holds(fresh.site_id):
            self._view[device_id] = fresh
            self._by_site.setdefault(fresh.site_id, set()).add(device_id)
            if self._is_down(fresh):
                self._down.add(device_id)
            if old is None and not self.share.everything:
                self._entered.add(device_id)
                self._others.pop(device_id, None)
        elif old is not None and not self.share.everything:
            self._leave(device_id)
        self._dirty.add(device_id)

    def _leave(self, device_id: str) -> None:
        """A device leaves a shared view: its flap history is no longer ours to keep or
        write (what it was is still answered by ``flapping``)."""
        self._entered.discard(device_id)
        self._unsaved.discard(device_id)
        det = self._flap.pop(device_id, None)
        if det is not None:
            self._others[device_id] = FlapState(device_id, det.history(), det.flapping,
                                                det.percent)

    async def _restore(self, *, others: bool) -> None:
        """Take over the flap histories of devices come into a shared view from the store,
        as their last holder saved them (``others``: and refresh those of the rest)."""
        entered, self._entered = self._entered, set()
        states = await self.store.flap_states()
        for device_id in sorted(entered):
            if device_id in self._view:  # not lost meanwhile
                state = states.get(device_id)
                self._flap[device_id] = (self._detector(state.history, state.flapping)
                                         if state else self._detector())
                self._unsaved.discard(device_id)
        if others:
            self._others = {i: s for i, s in states.items() if i not in self._view}

    def _detector(self, history: str = "", flapping: bool = False
                  ) -> WeightedFlapDetector | CountFlapDetector:
        s = self.settings
        if s.flap_method == "count":
            return CountFlapDetector(s.flap_count, int(s.flap_window_s / s.flap_sample_s),
                                     history, flapping)
        return WeightedFlapDetector(s.flap_low, s.flap_high, history, flapping)

    async def load(self, now: datetime) -> None:
        """Restore flap histories; add the config's maintenance windows once.

        Sharing a database, a device's history is read when its site is first held
        (at the first full read), and the config's silences are added by the holder of
        the fleet's work (``FLEET``), once it holds it."""
        if self.share.everything:
            for device_id, state in (await self.store.flap_states()).items():
                self._flap[device_id] = self._detector(state.history, state.flapping)
        await self._add_config_silences(now)

    async def _add_config_silences(self, now: datetime) -> None:
        """Add the config's maintenance windows not in the store yet (once, by the poller
        that does the fleet's work)."""
        if self._config_silences_added or not self.share.holds(None):
            return
        existing = {(s.target, s.until) for s in await self.store.active_silences(now)}
        for sc in self.settings.silences:
            if sc.until > now and (sc.target, sc.until) not in existing:
                await self.store.add_silence(sc.target, sc.until, sc.reason, "config", now)
        self._config_silences_added = True

    def flapping(self, device_id: str) -> tuple[bool, float]:
        """Whether a device is flapping now, and its percent state change (of a device of
        a site another poller holds: as last read from the store)."""
        d = self._flap.get(device_id)
        if d is not None:
            return d.flapping, d.percent
        other = self._others.get(device_id)
        return (other.flapping, other.percent) if other else (False, 0.0)

    # --- sampling -------------------------------------------------------

    async def sample(self, now: datetime) -> None:
        """Sample every known device's status into its flap history (a device whose
        history is steady at its status is left as it is: sampling it changes nothing)."""
        await self._follow(now)
        context: tuple[list[Silence], dict[tuple[str, AlertKind], Alert]] | None = None
        changed: list[FlapState] = []
        self._samples += 1
        persist_all = self._samples % PERSIST_EVERY == 0
        for d in sorted(self._view.values(), key=lambda d: d.id):
            if d.status is DeviceStatus.UNKNOWN or d.id not in self._view:
                continue  # unknown, or its site lost while an alert was being opened
            up = d.status is DeviceStatus.ONLINE
            det = self._flap.setdefault(d.id, self._detector())
            if det.steady(up):
                continue
            change = det.sample(up)
            self._unsaved.add(d.id)
            if change is None:
                continue
            changed.append(FlapState(d.id, det.history(), det.flapping, det.percent))
            self._unsaved.discard(d.id)
            if context is None:  # read once, and only when some flapping changed
                context = (await self.store.active_silences(now),
                           {(a.target, a.kind): a for a in await self.store.alerts()})
            silences, open_alerts = context
            if change is FlapChange.STARTED:
                await self._open(
                    target_kind="device", target=d.id, site_id=d.site_id,
                    kind=AlertKind.FLAPPING, severity="warning",
                    reason=f"unstable connectivity ({det.percent:.0f}% state change)",
                    since=now, now=now, notify=not self._silenced(d.id, d.site_id, silences),
                )
            elif change is FlapChange.STOPPED:
                flap_alert = open_alerts.get((d.id, AlertKind.FLAPPING))
                if flap_alert is not None:
                    await self._resolve(flap_alert, now)
        if persist_all:
            changed += [FlapState(i, kept.history(), kept.flapping, kept.percent)
                        for i in sorted(self._unsaved) if (kept := self._flap.get(i))]
            self._unsaved.clear()
        if not self.share.everything:  # of a site lost meanwhile: no longer ours to write
            changed = [c for c in changed if c.device_id in self._view]
        if changed:
            await self.store.save_flap_states(changed, now)

    # --- rules ----------------------------------------------------------

    async def evaluate(self, now: datetime) -> None:
        """Open, escalate, remind and resolve alerts as of ``now``."""
        for sink in self.sinks:
            if isinstance(sink, RateLimitedSink):
                sink.flush(now)
        await self._follow(now)
        await self._add_config_silences(now)
        dirty, self._dirty = self._dirty, set()
        silences = await self.store.active_silences(now)
        open_alerts = [a for a in await self.store.alerts() if self._concerns(a)]
        by_key = {(a.target_kind, a.target, a.kind): a for a in open_alerts}
        # what can need a decision: a device that changed, one down (its confirmation
        # delay runs with time alone), one with an open alert, and their sites
        wanted = dirty | self._down | {a.target for a in open_alerts
                                       if a.target_kind == "device"}
        sites = {self._view[i].site_id for i in wanted if i in self._view}
        sites.update(a.target for a in open_alerts if a.target_kind == "site")
        members = sorted((self._view[i] for s in sites for i in self._by_site.get(s, ())),
                         key=lambda d: d.id)
        down_sites = await self._sites(members, by_key, silences, now)
        for d in members:
            if d.id in wanted:
                await self._device(d, by_key, silences, down_sites, now)
        for alert in open_alerts:
            if await self._orphaned(alert):
                # its device was removed or disabled (or its site has none left): nothing
                # will ever resolve it otherwise
                await self._resolve(alert, now)
        for alert in await self.store.alerts():
            if self._mine(alert):
                await self._escalate_and_remind(alert, silences, now)

    def _concerns(self, alert: Alert) -> bool:
        """Whether an open alert is this poller's to look at: of a site held, or of a
        device in the view (or once of a held site: it may have to be resolved)."""
        if self.share.everything:
            return True
        if alert.target_kind == "site":
            return self.share.holds(alert.target)
        return alert.target in self._view or self.share.holds(alert.site_id)

    def _mine(self, alert: Alert) -> bool:
        """Whether an open alert is this poller's to escalate and remind: of a site held,
        or of a device in the view (of a site held)."""
        if self.share.everything:
            return True
        if alert.target_kind == "site":
            return self.share.holds(alert.target)
        return alert.target in self._view

    async def _orphaned(self, alert: Alert) -> bool:
        """Whether an alert this poller looks at has nothing left to resolve it: its site
        has no device left, or its device is gone (removed, disabled). Sharing, a device
        out of the view is read first: moved to a site another poller holds, it is that
        poller's alert now."""
        if alert.target_kind == "site" or self.share.everything:
            return alert.target not in self._view and alert.target not in self._by_site
        if alert.target in self._view or not self.share.holds(alert.site_id):
            return False
        device = await self.store.device(alert.target, removed=False)
        self.device_reads += 1
        return device is None or not device.enabled

    def _site_of(self, alert: Alert) -> str | None:
        """The site whose holder acts on an alert: a site alert's own, a device alert's
        device's (as in the view; else the site it was opened for)."""
        if alert.target_kind == "site":
            return alert.target
        device = self._view.get(alert.target)
        return device.site_id if device is not None else alert.site_id

    def _confirm(self, site_id: str) -> timedelta:
        s = self.settings
        return timedelta(seconds=s.site_confirm_after_s.get(site_id, s.confirm_after_s))

    @staticmethod
    def _is_down(d: DeviceState) -> bool:
        return d.status in (DeviceStatus.OFFLINE, DeviceStatus.ERROR)

    async def _sites(
        self,
        devices: list[DeviceState],
        by_key: dict[tuple[str, str, AlertKind], Alert],
        silences: list[Silence],
        now: datetime,
    ) -> set[str]:
        """Open and resolve site alerts; returns the sites whose devices are inhibited."""
        s = self.settings
        by_site: dict[str, list[DeviceState]] = {}
        for d in devices:
            by_site.setdefault(d.site_id, []).append(d)
        down_sites: set[str] = set()
        for site_id, members in by_site.items():
            alert: Alert | None = by_key.get(("site", site_id, AlertKind.SITE_DOWN))
            confirm = self._confirm(site_id)
            down = [
                d for d in members
                if self._is_down(d) and d.status_since is not None
                and now - d.status_since >= confirm
            ]
            enough = len(members) >= s.site_min_devices and len(down) >= s.site_share * len(
                members
            )
            if enough:
                down_sites.add(site_id)
                if alert is None:
                    await self._open(
                        target_kind="site", target=site_id, site_id=site_id,
                        kind=AlertKind.SITE_DOWN, severity="critical",
                        reason=f"{len(down)} of {len(members)} devices down together "
                               "(power or uplink?)",
                        since=min(d.status_since for d in down if d.status_since), now=now,
                        notify=not self._silenced(None, site_id, silences),
                    )
            elif alert is not None:
                still_down = [d for d in members if self._is_down(d)]
                if len(still_down) < s.site_share * len(members):
                    await self._resolve(alert, now)
                else:
                    down_sites.add(site_id)  # recovering, not yet: keep inhibiting
        return down_sites

    async def _device(
        self,
        d: DeviceState,
        by_key: dict[tuple[str, str, AlertKind], Alert],
        silences: list[Silence],
        down_sites: set[str],
        now: datetime,
    ) -> None:
        flapping = self.flapping(d.id)[0]
        for kind in (AlertKind.OFFLINE, AlertKind.ERROR):
            alert: Alert | None = by_key.get(("device", d.id, kind))
            wanted = d.status.value == kind.value
            if alert is not None and not wanted:
                await self._resolve(alert, now)
            elif (
                alert is None
                and wanted
                and not flapping
                and d.site_id not in down_sites
                and d.status_since is not None
                and now - d.status_since >= self._confirm(d.site_id)
            ):
                await self._open(
                    target_kind="device", target=d.id, site_id=d.site_id, kind=kind,
                    severity="warning", reason=d.status_reason, since=d.status_since,
                    now=now, notify=not self._silenced(d.id, d.site_id, silences),
                )

    async def _escalate_and_remind(self, alert: Alert, silences: list[Silence],
                                   now: datetime) -> None:
        s = self.settings
        device = alert.target if alert.target_kind == "device" else None
        silenced = self._silenced(device, alert.site_id, silences)
        if silenced or alert.acknowledged_at is not None:
            return
        if not alert.notified:
            # opened while silenced; the silence is over and the problem is not
            await self._change(alert, now, change="notified", notify=True)
            return
        if (
            s.escalate_after_s
            and alert.escalated_at is None
            and alert.kind is not AlertKind.FLAPPING
            and now - alert.since >= timedelta(seconds=s.escalate_after_s)
        ):
            await self._change(alert, now, change="escalated", notify=True,
                               severity="critical")
            return
        if (
            s.repeat_every_s
            and alert.last_notified_at is not None
            and now - alert.last_notified_at >= timedelta(seconds=s.repeat_every_s)
        ):
            await self._change(alert, now, change="reminder", notify=True)

    async def _resolve(self, alert: Alert, now: datetime) -> None:
        # a recovery is news only to whoever heard about the problem
        await self._change(alert, now, change="resolved", notify=alert.notified)

    async def _open(
        self,
        *,
        target_kind: str,
        target: str,
        site_id: str,
        kind: AlertKind,
        severity: str,
        reason: str,
        since: datetime,
        now: datetime,
        notify: bool,
    ) -> None:
        """Open an alert of a site held now, and tell the sinks if this call opened it: an
        alert already open (another poller opened it first) is not told again."""
        if not self.share.holds(site_id):
            return
        alert = await self.store.open_alert(
            target_kind=target_kind, target=target, site_id=site_id, kind=kind,
            severity=severity, reason=reason, since=since, now=now, notify=notify)
        if notify and alert.notified and alert.opened_at == now:
            self._notify("opened", alert, now)

    async def _change(self, alert: Alert, now: datetime, *, change: str, notify: bool,
                      severity: str | None = None) -> None:
        """Make one change to an alert of a site held now, and tell the sinks if this call
        made it: a change another poller made first comes back as the alert stands, with
        that poller's time, and is not told again."""
        if not self.share.holds(self._site_of(alert)):
            return
        fresh = await self.store.update_alert(alert, now, change=change, notify=notify,
                                              severity=severity)
        made_at = {"resolved": fresh.resolved_at,
                   "escalated": fresh.escalated_at}.get(change, fresh.last_notified_at)
        if notify and made_at == now:
            self._notify(_TOLD[change], fresh, now)

    @staticmethod
    def _silenced(device_id: str | None, site_id: str | None, silences: list[Silence]) -> bool:
        targets = {t for t in (device_id, site_id) if t}
        return any(s.target in targets for s in silences)

    def _notify(self, change: str, alert: Alert, now: datetime) -> None:
        what = {
            AlertKind.OFFLINE: "offline", AlertKind.ERROR: "in error",
            AlertKind.FLAPPING: "flapping", AlertKind.SITE_DOWN: "down (whole site)",
        }[alert.kind]
        verb = {"opened": "is", "escalated": "still", "reminder": "still",
                "resolved": "no longer"}[change]
        text = f"[{alert.severity}] {alert.target_kind} {alert.target} {verb} {what}"
        if alert.reason and change != "resolved":
            text += f": {alert.reason}"
        n = Notification(change, alert, text, now)
        for sink in self.sinks:
            try:
                sink(n)
            except Exception:
                log.exception("alert sink failed")


#: what each change of ``update_alert`` is told as ("notified": opened, told late)
_TOLD = {"resolved": "resolved", "escalated": "escalated", "reminder": "reminder",
         "notified": "opened"}
