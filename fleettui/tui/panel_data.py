"""Reads what the device and site panels show, from the store, cheaply enough for every second.

The app refreshes the panel of the one selected device or site every
second. Status history is a small indexed range; punches are counted in SQL
per minute over the site's local day and cached until the scope's newest
punch changes (or ``ttl_s`` passes, for late arrivals); the 30-day uptime is
cached for ``ttl_s``. A viewer (no engine) counts a device's stored
punches only while a long sync is evidently running.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from fleettui.domain import DeviceState, DeviceStatus, Site
from fleettui.engine.sync import SyncProgress
from fleettui.printable import printable_fields
from fleettui.store import Store
from fleettui.tui.charts import (
    HourBucket,
    heartbeat,
    hourly,
    local_day,
    recent,
    seen,
    site_heartbeat,
    sync_worth_showing,
    uptime,
)
from fleettui.tui.model import DeviceRow
from fleettui.tui.panel import DeviceDetail
from fleettui.tui.pictures import site_zone
from fleettui.tui.site_panel import SiteDetail

DAY = timedelta(hours=24)
MONTH = timedelta(days=30)
#: how long a finished site-wide request stays under "Work in progress"
WORK_SHOWN_FOR = timedelta(hours=1)


@dataclass(slots=True)
class _Counted:
    stamp: object
    at: datetime
    hours: list[HourBucket]


class PanelReader:
    """Builds ``DeviceDetail`` / ``SiteDetail`` from the store, with small caches."""

    def __init__(self, store: Store, *, ttl_s: float = 30.0) -> None:
        self.store = store
        self.ttl = timedelta(seconds=ttl_s)
        self._punches: dict[tuple[str, str, datetime], _Counted] = {}
        self._month: dict[str, tuple[datetime, tuple[float | None, float]]] = {}
        #: how many times punches were counted in SQL (for tests of the cache)
        self.punch_queries = 0

    async def _hours(
        self, kind: str, ident: str, zone: ZoneInfo, now: datetime, stamp: object
    ) -> list[HourBucket]:
        """Punches per local hour of the site's day for a device or site (cached)."""
        _today, start, end = local_day(now, zone)
        key = (kind, ident, start)
        hit = self._punches.get(key)
        if hit is not None and hit.stamp == stamp and now - hit.at < self.ttl:
            # same counts; only which hours are still to come moves on
            return hourly_from(hit.hours, now)
        if len(self._punches) > 64:
            self._punches.clear()
        self.punch_queries += 1
        if kind == "device":
            minutes = await self.store.punches_per_minute(start, end, device_id=ident)
        else:
            minutes = await self.store.punches_per_minute(start, end, site_id=ident)
        hours = hourly(minutes, zone, now)
        self._punches[key] = _Counted(stamp, now, hours)
        return hours

    async def _uptime_30d(self, device_id: str, now: datetime) -> tuple[float | None, float]:
        """The share of the last 30 days the device was online, and how much of them was
        known (cached for ``ttl``)."""
        hit = self._month.get(device_id)
        if hit is not None and now - hit[0] < self.ttl and now >= hit[0]:
            return hit[1]
        history = await self.store.status_history(device_id, since=now - MONTH)
        value = (uptime(history, now - MONTH, now), seen(history, now - MONTH, now))
        self._month[device_id] = (now, value)
        return value

    async def _stored_sync(self, device: DeviceState, now: datetime) -> SyncProgress | None:
        """A long sync seen from the store (a viewer has no engine to ask): punches stored
        for the device so far of the records it holds, while far more are held than the
        last finished sync stored."""
        if device.status is not DeviceStatus.ONLINE or not sync_worth_showing(
            None, device.records, device.synced_records
        ):
            return None
        stored = await self.store.punch_count(device.id)  # the unique key's device prefix
        held = device.records or 0
        return SyncProgress(stored, held, now) if stored < held else None

    async def device(
        self, device: DeviceState, site: Site | None, row: DeviceRow | None, now: datetime,
        *, slots: int, sync: SyncProgress | None = None, viewer: bool = False,
    ) -> DeviceDetail:
        """Everything the device panel shows.

        ``sync``: the engine's progress of a running sync; a ``viewer`` (no
        engine) estimates a long one from the store instead.
        """
        if sync is None and viewer:
            sync = await self._stored_sync(device, now)
        history = [printable_fields(h)
                   for h in await self.store.status_history(device.id, since=now - DAY)]
        zone = site_zone(site)
        hours: list[HourBucket] = []
        if zone is not None:
            hours = await self._hours("device", device.id, zone, now, device.last_punch_at)
        month = await self._uptime_30d(device.id, now)
        return DeviceDetail(
            device=device,
            site=site,
            now=now,
            uptime_24h=uptime(history, now - DAY, now),
            uptime_30d=month[0],
            seen_24h_s=seen(history, now - DAY, now),
            seen_30d_s=month[1],
            flapping=row.flapping if row else False,
            flap_pct=row.flap_pct if row else 0.0,
            issues=row.issues if row else (),
            marks=row.labelled_marks() if row else [],
            commands=[printable_fields(c)
                      for c in await self.store.commands(device_id=device.id, limit=6)],
            heartbeat=heartbeat(history, now, slots=slots),
            punches_today=sum(h.count for h in hours) if zone is not None else None,
            hours=hours,
            sync=sync,
        )

    async def site(
        self, site: Site, rows: list[DeviceRow], now: datetime, *, slots: int, schedules: str = "",
    ) -> SiteDetail:
        """Everything the site panel shows (``rows``: the site's devices, unfiltered)."""
        histories = await self.store.site_status_history(site.id, now - DAY)
        ids = [r.id for r in rows]
        bars = [heartbeat(histories.get(i, []), now, slots=slots) for i in ids]
        shares = [u for u in (uptime(histories.get(i, []), now - DAY, now) for i in ids)
                  if u is not None]
        last = max((r.device.last_punch_at for r in rows if r.device.last_punch_at),
                   default=None)
        zone = site_zone(site)
        hours: list[HourBucket] = []
        if zone is not None:
            hours = await self._hours("site", site.id, zone, now, (last, tuple(ids)))
        return SiteDetail(
            site=site,
            now=now,
            devices=sorted(rows, key=lambda r: (not r.problem, r.id)),
            uptime_24h=sum(shares) / len(shares) if shares else None,
            heartbeat=site_heartbeat(bars) if bars else [],
            punches_today=sum(h.count for h in hours) if zone is not None else None,
            last_punch=last,
            hours=hours,
            requests=[r for r in await self.store.site_requests(site.id, limit=3)
                      if recent(r, now, WORK_SHOWN_FOR)],
            in_flight=await self.store.site_commands_in_flight(site.id),
            schedules=schedules,
            polled_by=await self._holder(site.id, now),
        )

    async def _holder(self, site_id: str, now: datetime) -> str:
        """Which poller polls the site, when several share the database: "pid 812 on
        box-a (headless poller)", "nobody now" while it waits for a taker; "" alone."""
        pollers = [p for p in await self.store.pollers() if p.live(now)]
        if not pollers:
            return ""
        for p in pollers:
            if site_id in p.sites:
                return f"pid {p.pid} on {p.host} ({p.mode})"
        return "nobody now (its lease is being taken over)"


def hourly_from(hours: list[HourBucket], now: datetime) -> list[HourBucket]:
    """Cached buckets with "still to come" recomputed for ``now``."""
    return [HourBucket(h.start, h.label, h.count, h.start > now) for h in hours]

