"""Realistic punches for an emulated fleet, planned ahead and replayable.

Two planners answer the same question, "which punches happen on which device
between these two instants?":

- ``ShiftPlanner``: people arriving and leaving around their shift times, in
  their site's local time, on the site's working days, with absences, habits
  (finger, card, face) and the odd accidental double punch. Each
  (site, employee, date) draws from its own seeded generator, so any window
  gives exactly the punches a longer window gives over the same span: the
  emulator can prefill history and then play live without gaps or repeats.
- ``RatePlanner``: a steady Poisson stream per device, for demos and
  benchmarks, deterministic and additive over windows as well.

Nothing here touches the network or the wall clock; time is always passed in.
"""

from __future__ import annotations

import random
import zlib
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from fleettui.emulator.fleetgen import DeviceSpec, Employee, FleetSpec, SiteSpec

__all__ = [
    "STATE_IN",
    "STATE_OUT",
    "VERIFY_CARD",
    "VERIFY_FACE",
    "VERIFY_FINGER",
    "VERIFY_PASSWORD",
    "PlannedPunch",
    "PunchPlanner",
    "RatePlanner",
    "ShiftPlanner",
]

#: attendance states (punch "status" on the device)
STATE_IN = 0
STATE_OUT = 1
#: verification modes as the device records them
VERIFY_PASSWORD = 0
VERIFY_FINGER = 1
VERIFY_CARD = 2
VERIFY_FACE = 15

#: arrival relative to shift start, minutes: mean, sd, clip range
_ARRIVE = (-7.0, 6.0, -40.0, 30.0)
#: departure relative to shift end, minutes: mean, sd, clip range
_LEAVE = (5.0, 8.0, -30.0, 60.0)
_ABSENT = 0.04
_DOUBLE = 0.02
_DOUBLE_GAP_S = (3, 40)
_HOME = 0.9
#: habits: share of people who use a card, a password; face users on face devices
_CARD_PEOPLE = 0.15
_PASSWORD_PEOPLE = 0.02
_FACE_PEOPLE = 0.45
#: how often someone uses their habit rather than falling back to a finger
_HABIT = 0.9
#: slack around a day's punch span when deciding whether a window can hold any
_SLACK = timedelta(hours=3)


@dataclass(slots=True)
class PlannedPunch:
    """One punch to make on a device.

    ``at`` is the device's naive local time (its site's zone); ``at_utc`` is
    the same instant in aware UTC, used to order and window punches.
    """

    device_id: str
    user_id: str
    at: datetime
    #: 0 check-in, 1 check-out
    state: int
    #: 1 fingerprint, 2 card, 15 face, 0 password
    verify: int
    at_utc: datetime | None = None


class PunchPlanner(Protocol):
    """Anything that plans the fleet's punches over a window of time."""

    def punches_between(self, start_utc: datetime, end_utc: datetime) -> list[PlannedPunch]:
        """Every punch at or after ``start_utc`` and before ``end_utc``, by UTC time."""
        ...


def _check_window(start_utc: datetime, end_utc: datetime) -> None:
    if start_utc.tzinfo is None or end_utc.tzinfo is None:
        raise ValueError("punches_between needs aware datetimes (UTC)")


def _utc(p: PlannedPunch) -> datetime:
    """A planned punch's UTC instant (planners always set it)."""
    assert p.at_utc is not None
    return p.at_utc


def _sort_key(p: PlannedPunch) -> tuple[datetime, str, str, int]:
    return (_utc(p), p.device_id, p.user_id, p.state)


def _to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """A naive local time as aware UTC (fold=0; a time in a DST gap still converts)."""
    return local.replace(tzinfo=tz).astimezone(UTC)


def _clipped_minutes(rng: random.Random, mean: float, sd: float, lo: float, hi: float) -> int:
    """A normal draw in minutes, clipped, returned as whole seconds."""
    return round(min(hi, max(lo, rng.gauss(mean, sd))) * 60)


class _Habits:
    """How each person verifies, stable over days: a per-person hash, cached."""

    def __init__(self, spec: FleetSpec, seed: int) -> None:
        self._seed = seed
        self._face = {
            d.config.id: d.config.profile.face_version is not None for d in spec.devices
        }
        self._habit: dict[tuple[str, str], float] = {}

    def verify(self, rng: random.Random, site_id: str, user_id: str, device_id: str) -> int:
        """The verification mode of one punch, drawn from ``rng``."""
        key = (site_id, user_id)
        u = self._habit.get(key)
        if u is None:
            h = zlib.crc32(f"{self._seed}:{site_id}:{user_id}".encode())
            u = self._habit[key] = h / 0x1_0000_0000
        if rng.random() >= _HABIT:
            return VERIFY_FINGER
        if u < _PASSWORD_PEOPLE:
            return VERIFY_PASSWORD
        if u < _PASSWORD_PEOPLE + _CARD_PEOPLE:
            return VERIFY_CARD
        if self._face.get(device_id) and u >= 1.0 - _FACE_PEOPLE:
            return VERIFY_FACE
        return VERIFY_FINGER


class ShiftPlanner:
    """Punches of people working their shifts: the realistic planner.

    Each employee works their ``Shift`` on the site's working days (offices
    Monday to Friday, warehouses and factories Monday to Saturday, farms,
    stores and clinics every day): arriving about 7 minutes early, leaving
    about 5 minutes late, mostly on their home device, absent about one day
    in 25. A night shift's check-out falls on the next local date.

    Plans are computed per (site, local date) and kept in a small cache, so a
    caller asking for consecutive short windows (live play) pays once per day.
    """

    def __init__(self, spec: FleetSpec, seed: int = 1, *, cache_days: int = 4) -> None:
        self.spec = spec
        self.seed = seed
        self._tz = {s.id: ZoneInfo(s.timezone) for s in spec.sites}
        self._habits = _Habits(spec, seed)
        self._cache: OrderedDict[tuple[str, date], tuple[list[datetime], list[PlannedPunch]]]
        self._cache = OrderedDict()
        self._cache_size = max(1, cache_days) * max(1, len(spec.sites))
        #: per site: earliest shift start and latest shift end, as offsets from
        #: the local midnight of the day the shifts start
        self._span: dict[str, tuple[timedelta, timedelta]] = {}
        for site_id, employees in spec.employees.items():
            shifts = {e.shift for e in employees}
            if shifts:
                self._span[site_id] = (
                    min(_offset(s.start) for s in shifts),
                    max(_offset(s.end) + timedelta(days=s.crosses_midnight) for s in shifts),
                )

    def punches_between(self, start_utc: datetime, end_utc: datetime) -> list[PlannedPunch]:
        """Every punch of the fleet in ``[start_utc, end_utc)``, sorted by UTC time."""
        _check_window(start_utc, end_utc)
        out: list[PlannedPunch] = []
        if end_utc <= start_utc:
            return out
        for site in self.spec.sites:
            if not self.spec.devices_at(site.id) or not self.spec.employees.get(site.id):
                continue
            tz = self._tz[site.id]
            day = start_utc.astimezone(tz).date() - timedelta(days=1)
            last = end_utc.astimezone(tz).date() + timedelta(days=1)
            while day <= last:
                if day.weekday() in site.workdays and self._may_overlap(
                    site, day, start_utc, end_utc
                ):
                    keys, plan = self._day_plan(site, day)
                    out.extend(plan[bisect_left(keys, start_utc) : bisect_left(keys, end_utc)])
                day += timedelta(days=1)
        out.sort(key=_sort_key)
        return out

    def _may_overlap(self, site: SiteSpec, day: date, start: datetime, end: datetime) -> bool:
        """Whether shifts starting on ``day`` at ``site`` can punch inside the window."""
        tz = self._tz[site.id]
        midnight = datetime.combine(day, time())
        first, last = self._span[site.id]
        lo = _to_utc(midnight + first + timedelta(minutes=_ARRIVE[2]), tz) - _SLACK
        hi = _to_utc(midnight + last + timedelta(minutes=_LEAVE[3]), tz) + _SLACK
        return lo < end and start < hi

    def _day_plan(
        self, site: SiteSpec, day: date
    ) -> tuple[list[datetime], list[PlannedPunch]]:
        """All punches of shifts starting on local ``day`` at ``site``, by UTC time."""
        key = (site.id, day)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        plan: list[PlannedPunch] = []
        for employee in self.spec.employees[site.id]:
            plan.extend(self._employee_day(site, employee, day))
        plan.sort(key=_sort_key)
        result = ([_utc(p) for p in plan], plan)
        self._cache[key] = result
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return result

    def _employee_day(self, site: SiteSpec, e: Employee, day: date) -> list[PlannedPunch]:
        """The punches of one person's shift starting on ``day`` (maybe none)."""
        rng = random.Random(f"{self.seed}:{site.id}:{e.user_id}:{day.isoformat()}")
        if rng.random() < _ABSENT:
            return []
        tz = self._tz[site.id]
        devices = self.spec.devices_at(site.id)
        home = self.spec.home_device(site.id, e.user_id)
        start = datetime.combine(day, e.shift.start)
        end = datetime.combine(day + timedelta(days=e.shift.crosses_midnight), e.shift.end)
        arrive = start + timedelta(seconds=_clipped_minutes(rng, *_ARRIVE))
        leave = end + timedelta(seconds=_clipped_minutes(rng, *_LEAVE))
        out: list[PlannedPunch] = []
        for state, at in ((STATE_IN, arrive), (STATE_OUT, leave)):
            device_id = home
            if len(devices) > 1 and rng.random() >= _HOME:
                device_id = _other_device(rng, devices, home)
            verify = self._habits.verify(rng, site.id, e.user_id, device_id)
            out.append(PlannedPunch(device_id, e.user_id, at, state, verify, _to_utc(at, tz)))
            if rng.random() < _DOUBLE:
                again = at + timedelta(seconds=rng.randint(*_DOUBLE_GAP_S))
                out.append(
                    PlannedPunch(device_id, e.user_id, again, state, verify, _to_utc(again, tz))
                )
        return out


def _offset(t: time) -> timedelta:
    """A time of day as an offset from midnight."""
    return timedelta(hours=t.hour, minutes=t.minute, seconds=t.second)


def _other_device(rng: random.Random, devices: list[DeviceSpec], home: str) -> str:
    """A device of the site other than ``home`` (the gate someone seldom uses)."""
    others = [d.config.id for d in devices if d.config.id != home]
    return rng.choice(others) if others else home


class RatePlanner:
    """A steady stream of punches: a Poisson process of ``rate_per_minute`` per device.

    For demos and benchmarks. Each punch is made by a random employee enrolled
    on the device; its state follows the device's local time of day (check-in
    before noon, check-out after), alternating for someone punching twice in
    the same minute. Time is cut into one-minute buckets, each drawn from its
    own seeded generator, so results are deterministic and additive over
    windows like ``ShiftPlanner``'s.
    """

    BUCKET_S = 60

    def __init__(
        self, spec: FleetSpec, rate_per_minute: float, seed: int = 1, *, cache_buckets: int = 8
    ) -> None:
        if not rate_per_minute >= 0:
            raise ValueError(f"rate_per_minute must be >= 0, got {rate_per_minute}")
        self.spec = spec
        self.rate_per_minute = rate_per_minute
        self.seed = seed
        self._devices = [d for d in spec.devices if spec.employees.get(d.site_id)]
        self._tz = {s.id: ZoneInfo(s.timezone) for s in spec.sites}
        self._habits = _Habits(spec, seed)
        self._cache: OrderedDict[int, list[PlannedPunch]] = OrderedDict()
        self._cache_size = max(1, cache_buckets)

    def punches_between(self, start_utc: datetime, end_utc: datetime) -> list[PlannedPunch]:
        """Every punch of the fleet in ``[start_utc, end_utc)``, sorted by UTC time."""
        _check_window(start_utc, end_utc)
        out: list[PlannedPunch] = []
        if end_utc <= start_utc or not self._devices or self.rate_per_minute == 0:
            return out
        first = int(start_utc.timestamp() // self.BUCKET_S)
        last = int(-(-end_utc.timestamp() // self.BUCKET_S))
        for bucket in range(first, last):
            punches = self._bucket(bucket)
            if first < bucket < last - 1:
                out.extend(punches)
            else:
                out.extend(p for p in punches if start_utc <= _utc(p) < end_utc)
        return out

    def _bucket(self, bucket: int) -> list[PlannedPunch]:
        """The punches of one one-minute bucket (epoch minute ``bucket``), cached."""
        hit = self._cache.get(bucket)
        if hit is not None:
            self._cache.move_to_end(bucket)
            return hit
        rng = random.Random(f"rate:{self.seed}:{bucket}")
        # the fleet's stream is the superposition of the devices' streams
        rate_per_s = self.rate_per_minute * len(self._devices) / 60.0
        base = datetime.fromtimestamp(bucket * self.BUCKET_S, UTC)
        t = 0.0
        out: list[PlannedPunch] = []
        last_state: dict[tuple[str, str], int] = {}
        while True:
            t += rng.expovariate(rate_per_s)
            if t >= self.BUCKET_S:
                break
            device = self._devices[rng.randrange(len(self._devices))]
            employee = rng.choice(self.spec.employees[device.site_id])
            at_utc = base + timedelta(seconds=int(t))
            local = at_utc.astimezone(self._tz[device.site_id]).replace(tzinfo=None)
            key = (device.config.id, employee.user_id)
            previous = last_state.get(key)
            if previous is None:
                state = STATE_IN if local.hour < 12 else STATE_OUT
            else:
                state = STATE_OUT if previous == STATE_IN else STATE_IN
            last_state[key] = state
            verify = self._habits.verify(rng, device.site_id, employee.user_id, key[0])
            out.append(PlannedPunch(key[0], employee.user_id, local, state, verify, at_utc))
        self._cache[bucket] = out
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return out
