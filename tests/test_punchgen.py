"""Punch planning: realism in site-local time, determinism, window additivity, DST."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from fleettui.emulator.device import DeviceConfig, Profile
from fleettui.emulator.fleetgen import (
    DeviceSpec,
    Employee,
    FleetSpec,
    Shift,
    SiteSpec,
    generate_fleet,
)
from fleettui.emulator.punchgen import PlannedPunch, RatePlanner, ShiftPlanner

MONDAY = datetime(2024, 6, 3, tzinfo=UTC)


def one_site_fleet(
    kind: str,
    zone: str,
    shift: Shift,
    *,
    people: int = 60,
    devices: int = 2,
    face: bool = False,
) -> FleetSpec:
    """A hand-built fleet: one site, a few devices, everyone on the same shift."""
    site = SiteSpec(f"{kind}-a", f"{kind} A", zone, "1 Test Road", kind)
    profile = Profile(face_version=7 if face else None)
    devs = [
        DeviceSpec(
            DeviceConfig(id=f"dev_{i}", serial=f"S{i}", timezone=zone, profile=profile),
            site.id,
            "tcp",
        )
        for i in range(devices)
    ]
    staff = [Employee(str(1001 + i), f"P{i}", 10_000_000 + i, shift) for i in range(people)]
    return FleetSpec([site], devs, {site.id: staff})


def key(p: PlannedPunch) -> tuple[object, ...]:
    return (p.at_utc, p.device_id, p.user_id, p.at, p.state, p.verify)


@pytest.fixture(scope="module")
def fleet() -> FleetSpec:
    return generate_fleet(10, 80, seed=3)


@pytest.fixture(scope="module")
def week(fleet: FleetSpec) -> list[PlannedPunch]:
    return ShiftPlanner(fleet, seed=3).punches_between(MONDAY, MONDAY + timedelta(days=7))


def test_punches_are_sorted_in_window_and_consistent(
    fleet: FleetSpec, week: list[PlannedPunch]
) -> None:
    assert week
    times = [p.at_utc for p in week]
    assert times == sorted(times)  # type: ignore[type-var]
    for p in week:
        assert p.at_utc is not None and MONDAY <= p.at_utc < MONDAY + timedelta(days=7)
        site = fleet.site(fleet.device(p.device_id).site_id)
        local = p.at_utc.astimezone(ZoneInfo(site.timezone)).replace(tzinfo=None)
        assert local == p.at and p.at.tzinfo is None
        assert p.state in (0, 1)
        assert p.verify in (0, 1, 2, 15)
        enrolled = {e.user_id for e in fleet.employees_for_device(p.device_id)}
        assert p.user_id in enrolled


def test_same_seed_same_punches(fleet: FleetSpec) -> None:
    end = MONDAY + timedelta(days=2)
    a = ShiftPlanner(fleet, seed=8).punches_between(MONDAY, end)
    b = ShiftPlanner(fleet, seed=8).punches_between(MONDAY, end)
    c = ShiftPlanner(fleet, seed=9).punches_between(MONDAY, end)
    assert a == b
    assert a != c


def test_windows_are_additive(fleet: FleetSpec) -> None:
    a = MONDAY + timedelta(hours=3, minutes=17, seconds=5)
    b = a + timedelta(hours=13, minutes=41, seconds=29)
    c = b + timedelta(days=1, hours=5)
    whole = ShiftPlanner(fleet, seed=4).punches_between(a, c)
    planner = ShiftPlanner(fleet, seed=4)
    parts = planner.punches_between(a, b) + planner.punches_between(b, c)
    assert [key(p) for p in parts] == [key(p) for p in whole]
    # many small windows, one planner, caches warm: still the same punches
    step = timedelta(minutes=47)
    pieces: list[PlannedPunch] = []
    t = a
    while t < c:
        pieces += planner.punches_between(t, min(t + step, c))
        t += step
    assert [key(p) for p in pieces] == [key(p) for p in whole]


def test_arrivals_cluster_around_shift_start(
    fleet: FleetSpec, week: list[PlannedPunch]
) -> None:
    shift_of = {
        (site_id, e.user_id): e.shift for site_id, es in fleet.employees.items() for e in es
    }
    early: list[float] = []
    late: list[float] = []
    for p in week:
        shift = shift_of[(fleet.device(p.device_id).site_id, p.user_id)]
        ref = shift.start if p.state == 0 else shift.end
        delta = datetime.combine(p.at.date(), p.at.time()) - datetime.combine(p.at.date(), ref)
        minutes = delta.total_seconds() / 60
        if minutes > 12 * 60:  # e.g. arriving 21:55 for a 22:00 shift seen from 00:00
            minutes -= 24 * 60
        elif minutes < -12 * 60:
            minutes += 24 * 60
        assert -45 <= minutes <= 65
        (early if p.state == 0 else late).append(minutes)
    assert abs(statistics.median(early)) <= 15
    assert -10 <= statistics.mean(early) <= -4  # people come a few minutes early
    assert 2 <= statistics.mean(late) <= 8  # and leave a few minutes late


def test_some_people_are_absent(fleet: FleetSpec, week: list[PlannedPunch]) -> None:
    site = fleet.sites[0]  # head office: five working days
    staff = fleet.employees[site.id]
    ins = {
        (p.user_id, p.at.date())
        for p in week
        if p.state == 0 and fleet.device(p.device_id).site_id == site.id
    }
    expected = len(staff) * 5
    assert 0.90 * expected < len(ins) < expected


def test_no_office_punches_on_sunday(fleet: FleetSpec, week: list[PlannedPunch]) -> None:
    offices = {s.id for s in fleet.sites if s.kind == "office"}
    assert offices
    office_punches = [p for p in week if fleet.device(p.device_id).site_id in offices]
    assert office_punches
    assert {p.at.weekday() for p in office_punches} == {0, 1, 2, 3, 4}


def test_no_office_punches_on_weekends_in_a_hand_built_fleet() -> None:
    spec = one_site_fleet("office", "Africa/Lagos", Shift("Day", time(8), time(17)))
    punches = ShiftPlanner(spec).punches_between(MONDAY, MONDAY + timedelta(days=14))
    days = Counter(p.at.weekday() for p in punches)
    assert set(days) == {0, 1, 2, 3, 4}


def test_night_shift_crosses_midnight() -> None:
    spec = one_site_fleet("warehouse", "Asia/Kolkata", Shift("Night", time(22), time(6)))
    punches = ShiftPlanner(spec).punches_between(MONDAY, MONDAY + timedelta(days=3))
    ins = [p for p in punches if p.state == 0]
    outs = [p for p in punches if p.state == 1]
    assert ins and outs
    assert all(time(21, 20) <= p.at.time() <= time(22, 30) for p in ins)
    assert all(time(5, 30) <= p.at.time() <= time(7, 0) for p in outs)
    # each check-in is followed by that person's check-out on the next local date
    by_user: dict[str, list[PlannedPunch]] = {}
    for p in punches:
        by_user.setdefault(p.user_id, []).append(p)
    paired = 0
    for mine in by_user.values():
        for first, second in itertools.pairwise(mine):
            if first.state == 0 and second.state == 1:
                assert second.at.date() == first.at.date() + timedelta(days=1)
                assert timedelta(hours=7) < second.at - first.at < timedelta(hours=9, minutes=30)
                paired += 1
    assert paired > 60


@pytest.mark.parametrize(
    "day",
    [datetime(2024, 3, 31, tzinfo=UTC), datetime(2024, 10, 27, tzinfo=UTC)],
    ids=["spring-forward", "fall-back"],
)
def test_dst_days_in_paris(day: datetime) -> None:
    # arrivals around 02:23 local land in the 02:00-03:00 gap (March) or overlap (October)
    for shift in (Shift("Night", time(22), time(6)), Shift("Dawn", time(2, 30), time(10))):
        spec = one_site_fleet("clinic", "Europe/Paris", shift, people=40)
        start, end = day - timedelta(days=1), day + timedelta(days=1)
        punches = ShiftPlanner(spec).punches_between(start, end)
        assert punches
        assert all(p.at_utc is not None and start <= p.at_utc < end for p in punches)
        planner = ShiftPlanner(spec)
        split = planner.punches_between(start, day) + planner.punches_between(day, end)
        assert [key(p) for p in split] == [key(p) for p in punches]


def test_double_punches_exist_but_are_rare(week: list[PlannedPunch]) -> None:
    doubles = 0
    last: dict[tuple[str, str], PlannedPunch] = {}
    for p in week:
        prev = last.get((p.device_id, p.user_id))
        if prev is not None and prev.state == p.state:
            gap = p.at - prev.at
            if timedelta(seconds=3) <= gap <= timedelta(seconds=40):
                doubles += 1
        last[(p.device_id, p.user_id)] = p
    assert doubles > 0
    assert doubles / len(week) < 0.05


def test_people_mostly_punch_on_their_home_device(
    fleet: FleetSpec, week: list[PlannedPunch]
) -> None:
    multi = {s.id for s in fleet.sites if len(fleet.devices_at(s.id)) > 1}
    mine = [p for p in week if fleet.device(p.device_id).site_id in multi]
    assert mine
    home = sum(
        p.device_id == fleet.home_device(fleet.device(p.device_id).site_id, p.user_id)
        for p in mine
    )
    assert 0.8 < home / len(mine) < 0.97


def test_verify_modes(fleet: FleetSpec, week: list[PlannedPunch]) -> None:
    modes = Counter(p.verify for p in week)
    assert modes[1] == max(modes.values())  # fingerprint is the most common
    assert modes[2] > 0  # some cards
    assert modes[0] < 0.05 * len(week)  # passwords are rare
    for p in week:
        if p.verify == 15:
            assert fleet.device(p.device_id).config.profile.face_version is not None


def test_face_verify_only_on_face_devices() -> None:
    shift = Shift("Day", time(8), time(17))
    faceless = one_site_fleet("store", "UTC", shift, face=False)
    faced = one_site_fleet("store", "UTC", shift, face=True)
    window = (MONDAY, MONDAY + timedelta(days=7))
    assert all(p.verify != 15 for p in ShiftPlanner(faceless).punches_between(*window))
    assert any(p.verify == 15 for p in ShiftPlanner(faced).punches_between(*window))


def test_window_edge_cases(fleet: FleetSpec) -> None:
    planner = ShiftPlanner(fleet)
    assert planner.punches_between(MONDAY, MONDAY) == []
    assert planner.punches_between(MONDAY + timedelta(hours=1), MONDAY) == []
    with pytest.raises(ValueError, match="aware"):
        planner.punches_between(datetime(2024, 6, 3), datetime(2024, 6, 4))


def test_500_device_fleet_over_a_day() -> None:
    spec = generate_fleet(30, 500, seed=2)
    people = sum(len(es) for es in spec.employees.values())
    punches = ShiftPlanner(spec).punches_between(MONDAY, MONDAY + timedelta(days=1))
    # roughly one check-in and one check-out per person per working day
    assert 0.8 * people < len(punches) < 2.5 * people


def test_rate_planner_rate_and_additivity(fleet: FleetSpec) -> None:
    planner = RatePlanner(fleet, rate_per_minute=2.0, seed=5)
    a = MONDAY + timedelta(seconds=17)
    c = a + timedelta(hours=1)
    punches = planner.punches_between(a, c)
    expected = 2.0 * 60 * len(fleet.devices)
    assert 0.9 * expected < len(punches) < 1.1 * expected
    times = [p.at_utc for p in punches]
    assert times == sorted(times)  # type: ignore[type-var]
    per_device = Counter(p.device_id for p in punches)
    assert len(per_device) == len(fleet.devices)
    b = a + timedelta(minutes=23, seconds=31)
    fresh = RatePlanner(fleet, rate_per_minute=2.0, seed=5)
    split = fresh.punches_between(a, b) + fresh.punches_between(b, c)
    assert [key(p) for p in split] == [key(p) for p in punches]
    for p in punches[:500]:
        assert p.at_utc is not None and a <= p.at_utc < c
        assert p.state in (0, 1) and p.verify in (0, 1, 2, 15)
        assert p.user_id in {e.user_id for e in fleet.employees_for_device(p.device_id)}
        zone = ZoneInfo(fleet.site(fleet.device(p.device_id).site_id).timezone)
        assert p.at == p.at_utc.astimezone(zone).replace(tzinfo=None)


def test_rate_planner_states_follow_time_of_day() -> None:
    spec = one_site_fleet("store", "UTC", Shift("Day", time(9), time(18)), people=500)
    planner = RatePlanner(spec, rate_per_minute=3.0)
    morning = planner.punches_between(MONDAY + timedelta(hours=8), MONDAY + timedelta(hours=9))
    evening = planner.punches_between(MONDAY + timedelta(hours=17), MONDAY + timedelta(hours=18))
    assert Counter(p.state for p in morning).most_common(1)[0][0] == 0
    assert Counter(p.state for p in evening).most_common(1)[0][0] == 1


def test_rate_planner_edge_cases(fleet: FleetSpec) -> None:
    assert RatePlanner(fleet, 0).punches_between(MONDAY, MONDAY + timedelta(hours=1)) == []
    with pytest.raises(ValueError):
        RatePlanner(fleet, -1)
    with pytest.raises(ValueError):
        RatePlanner(fleet, 1).punches_between(datetime(2024, 6, 3), datetime(2024, 6, 4))
    a = RatePlanner(fleet, 1.5, seed=1).punches_between(MONDAY, MONDAY + timedelta(minutes=5))
    b = RatePlanner(fleet, 1.5, seed=1).punches_between(MONDAY, MONDAY + timedelta(minutes=5))
    assert a == b
