"""Alerts when several pollers share one database: each site's alerts judged, and told,
by the poller holding the site.

Two alert engines run on one store (on PostgreSQL: two store objects on one
database, as two pollers are), each with a ``SiteShare`` the test sets as the
lease keeper would. Time is injected and ``sample``/``evaluate`` called
directly, in an order the test chooses.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast

import pytest

from fleettui.config import AlertSettings
from fleettui.domain import AlertKind, DeviceState, DeviceStatus, EventKind, Site, StatusChange
from fleettui.engine.alerts import AlertEngine
from fleettui.engine.share import SiteShare
from fleettui.store import Store, open_store
from fleettui.store.where import is_postgres_url
from tests.test_alerts import T0, Heard, _down, _site, _up


@pytest.fixture
async def pair(db_target: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two pollers' stores on one database (SQLite, one process's: one store object)."""
    first = await open_store(db_target)
    second = await open_store(db_target) if is_postgres_url(db_target) else first
    yield first, second
    if second is not first:
        await second.close()
    await first.close()


def _engine(store: Store, heard: Heard, sites: set[str], **settings: object) -> AlertEngine:
    return AlertEngine(store, AlertSettings(**settings),  # type: ignore[arg-type]
                       sinks=[heard], share=SiteShare(sites))


async def _both(engines: list[AlertEngine], start: datetime, minutes: int,
                step: timedelta = timedelta(minutes=1)) -> datetime:
    """Evaluate with every engine in turn, once a minute, for ``minutes``."""
    now = start
    for _ in range(minutes):
        now += step
        for alerts in engines:
            await alerts.evaluate(now)
    return now


async def _alert_events(store: Store) -> list[tuple[str, str]]:
    """The alert events logged: (kind, device or site), in order."""
    return [(e.kind.value, e.device_id or e.site_id or "") for e in await store.events_after(0)
            if e.kind.value.startswith("alert.")]


async def test_each_sites_outage_is_alerted_and_told_once_by_its_holder(
    pair: tuple[Store, Store],
) -> None:
    one, two = pair
    await _site(one)
    heard_a, heard_b = Heard(), Heard()
    a = _engine(one, heard_a, {"s1"}, escalate_after_s=600)
    b = _engine(two, heard_b, {"s2"}, escalate_after_s=600)
    await _down(one, "s1_0", T0)
    await _down(one, "s2_0", T0)
    now = await _both([a, b], T0, 12)
    assert heard_a.changes() == ["opened:s1_0:offline", "escalated:s1_0:offline"]
    assert heard_b.changes() == ["opened:s2_0:offline", "escalated:s2_0:offline"]
    await _up(one, "s1_0", now)
    await _up(one, "s2_0", now)
    await _both([a, b], now, 1)
    assert heard_a.changes()[-1] == "resolved:s1_0:offline"
    assert heard_b.changes()[-1] == "resolved:s2_0:offline"
    assert len(heard_a.items) == len(heard_b.items) == 3
    events = await _alert_events(one)
    for device_id in ("s1_0", "s2_0"):
        assert [k for k, target in events if target == device_id] == [
            "alert.opened", "alert.escalated", "alert.resolved"]
    assert await one.alerts() == []


async def test_a_site_moved_mid_outage_is_continued_not_opened_again(
    pair: tuple[Store, Store],
) -> None:
    one, two = pair
    await _site(one)
    heard_a, heard_b = Heard(), Heard()
    a = _engine(one, heard_a, {"s1", "s2"}, escalate_after_s=0, repeat_every_s=1800)
    b = _engine(two, heard_b, set(), escalate_after_s=0, repeat_every_s=1800)
    await _down(one, "s2_0", T0)
    now = await _both([a, b], T0, 10)
    assert heard_a.changes() == ["opened:s2_0:offline"] and heard_b.changes() == []
    (opened,) = await one.alerts()
    # the lease of s2 moves: the first poller loses it, the second takes it over
    a.share.set({"s1"})
    b.share.set({"s2"})
    reads = (a.full_reads, b.full_reads)
    now += timedelta(seconds=10)
    await _both([a, b], now, 1, step=timedelta(0))
    assert (a.full_reads, b.full_reads) == (reads[0], reads[1] + 1)  # the gained site read
    assert heard_b.changes() == [] and (await two.alerts()) == [opened]
    now = await _both([a, b], now, 25)  # 35 minutes after it was told: one reminder
    assert heard_a.changes() == ["opened:s2_0:offline"]
    assert heard_b.changes() == ["reminder:s2_0:offline"]
    assert [a.id for a in await two.alerts()] == [opened.id]  # the same alert, continued
    await _up(one, "s2_0", now)
    now += timedelta(seconds=30)
    await a.evaluate(now)  # s2 is no longer the first poller's: nothing done for it
    assert (await one.alerts())[0].open
    await b.evaluate(now)
    assert heard_a.changes() == ["opened:s2_0:offline"]
    assert heard_b.changes() == ["reminder:s2_0:offline", "resolved:s2_0:offline"]
    assert await _alert_events(one) == [("alert.opened", "s2_0"), ("alert.reminder", "s2_0"),
                                        ("alert.resolved", "s2_0")]


class Racing:
    """A poller's store on which another poller acts first, at a chosen moment: just
    before this poller's next call of a method (after it read, before it writes)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._first: dict[str, Callable[[], object]] = {}

    def before(self, method: str, first: Callable[[], object]) -> None:
        """Run ``first`` once (and await it, if it is a coroutine), at the next call of
        ``method``, before it."""
        self._first[method] = first

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)
        first = self._first.pop(name, None)
        if first is None:
            return method

        async def after_first(*args: Any, **kwargs: Any) -> Any:
            done = first()
            if inspect.isawaitable(done):
                await done
            return await method(*args, **kwargs)
        return after_first


async def test_a_change_another_poller_made_first_is_not_told_again(
    pair: tuple[Store, Store],
) -> None:
    """A lease changing hands may leave two pollers judging one site for a moment: when
    the other makes a change between this one's read and its write, the store hands
    back the change made (no new event), and this poller tells nothing."""
    one, two = pair
    await _site(one)
    heard_a, heard_b = Heard(), Heard()
    a = _engine(one, heard_a, {"s2"}, escalate_after_s=600)
    racing = Racing(two)
    b = _engine(cast(Store, racing), heard_b, {"s2"}, escalate_after_s=600)
    await _down(one, "s2_1", T0)
    second = timedelta(seconds=1)
    for minutes, write in ((6, "open_alert"), (11, "update_alert"), (12, "update_alert")):
        now = T0 + timedelta(minutes=minutes)
        if minutes == 12:
            await _up(one, "s2_1", now - 2 * second)
        racing.before(write, partial(a.evaluate, now - second))
        await b.evaluate(now)
        assert racing._first == {}  # the other poller did act first
    assert heard_a.changes() == ["opened:s2_1:offline", "escalated:s2_1:offline",
                                 "resolved:s2_1:offline"]
    assert heard_b.changes() == []
    assert [k for k, _ in await _alert_events(one)] == [
        "alert.opened", "alert.escalated", "alert.resolved"]


async def test_a_site_lost_while_sampling_is_written_no_more(
    pair: tuple[Store, Store],
) -> None:
    one, _ = pair
    await _site(one)
    racing = Racing(one)
    heard = Heard()
    a = _engine(cast(Store, racing), heard, {"s2"})
    now = T0
    racing.before("active_silences", lambda: a.share.set(set()))
    for i in range(21):  # flapping starts: its site is lost as the alert is to be opened
        now += timedelta(seconds=15)
        before = await one.flap_states()
        await _flip(one, a, "s2_0", i % 2 == 1, now)
        if "active_silences" not in racing._first:
            break
    assert not a.share.holds("s2")
    assert await one.flap_states() == before and await one.alerts() == []
    assert heard.changes() == []


async def _flip(store: Store, alerts: AlertEngine, device_id: str, up: bool,
                now: datetime) -> None:
    """The device's status as the poller would write it, then one sample."""
    status = DeviceStatus.ONLINE if up else DeviceStatus.OFFLINE
    await store.record_status(StatusChange(device_id, status, "" if up else "no answer", now))
    await alerts.sample(now)


async def test_flap_state_is_carried_over_with_the_site(pair: tuple[Store, Store]) -> None:
    one, two = pair
    await _site(one)
    heard_a, heard_b = Heard(), Heard()
    a = _engine(one, heard_a, {"s2"})
    b = _engine(two, heard_b, {"s1"})
    await a.load(T0)
    await b.load(T0)
    now = T0
    for i in range(21):  # a 3G link: a change at every sample, until it is flapping
        now += timedelta(seconds=15)
        await _flip(one, a, "s2_0", i % 2 == 1, now)
        await b.sample(now)
        if a.flapping("s2_0")[0]:
            break
    assert a.flapping("s2_0")[0] and heard_a.changes() == ["opened:s2_0:flapping"]
    assert not b.flapping("s2_0")[0]  # as last read from the store: its site is not held
    saved = (await one.flap_states())["s2_0"]
    assert saved.flapping
    a.share.set(set())
    b.share.set({"s1", "s2"})
    await _flip(one, a, "s2_0", True, now + timedelta(seconds=1))
    assert (await one.flap_states())["s2_0"] == saved  # no longer the first's to write
    now += timedelta(seconds=15)
    await b.sample(now)
    assert b.flapping("s2_0")[0] and heard_b.changes() == []  # taken over, not reopened
    for _ in range(40):  # the link is fixed: it stops flapping, and the alert is resolved
        now += timedelta(seconds=15)
        await b.sample(now)
        await a.sample(now)
        if not b.flapping("s2_0")[0]:
            break
    assert heard_b.changes() == ["resolved:s2_0:flapping"]
    assert heard_a.changes() == ["opened:s2_0:flapping"]
    assert await one.alerts() == []
    assert not (await two.flap_states())["s2_0"].flapping
    assert [k for k, target in await _alert_events(one) if target == "s2_0"] == [
        "alert.opened", "alert.resolved"]


async def test_a_site_alert_moves_with_its_site(pair: tuple[Store, Store]) -> None:
    one, two = pair
    ids = await _site(one)
    heard_a, heard_b = Heard(), Heard()
    a = _engine(one, heard_a, {"s1"}, confirm_after_s=60)
    b = _engine(two, heard_b, {"s2"}, confirm_after_s=60)
    for d in ids[:4]:
        await _down(one, d, T0)
    now = await _both([a, b], T0, 3)
    assert heard_a.changes() == ["opened:s1:site_down"] and heard_b.changes() == []
    a.share.set(set())
    b.share.set({"s1", "s2"})
    now = await _both([a, b], now, 3)  # down still: neither opened again nor device alerts
    assert heard_b.changes() == [] and len(await two.alerts()) == 1
    for d in ids[:4]:
        await _up(one, d, now)
    await _both([a, b], now, 1)
    assert heard_a.changes() == ["opened:s1:site_down"]
    assert heard_b.changes() == ["resolved:s1:site_down"]


async def test_an_alert_of_a_device_moved_to_another_pollers_site_is_that_pollers(
    pair: tuple[Store, Store],
) -> None:
    one, two = pair
    await _site(one)
    heard_a, heard_b = Heard(), Heard()
    a = _engine(one, heard_a, {"s2"})
    b = _engine(two, heard_b, {"s1"})
    await _down(one, "s2_0", T0)
    now = await _both([a, b], T0, 6)
    assert heard_a.changes() == ["opened:s2_0:offline"]
    ids = [f"s1_{i}" for i in range(4)] + ["s2_0", "s2_1"]
    await one.sync_fleet(  # s2_0 is moved to s1, still down
        [Site("s1", "Site 1", "UTC"), Site("s2", "Site 2", "UTC")],
        [DeviceState(d, f"SER{d}", "s1" if d == "s2_0" else d.split("_")[0],
                     f"127.20.210.{i + 1}", 4370, "tcp") for i, d in enumerate(ids)])
    now = await _both([a, b], now, 2)  # the first no longer sees it: not resolved for that
    assert heard_a.changes() == ["opened:s2_0:offline"] and heard_b.changes() == []
    assert [x.target for x in await one.alerts()] == ["s2_0"]
    await _up(one, "s2_0", now)
    await _both([a, b], now, 1)
    assert heard_a.changes() == ["opened:s2_0:offline"]
    assert heard_b.changes() == ["resolved:s2_0:offline"]


# --- the store: an alert opened, and changed, once -------------------------------------


async def test_an_alert_opened_twice_is_the_one_open_and_a_stale_change_is_not_made(
    db_target: str,
) -> None:
    """On both backends: opening an alert already open answers the open one (no error,
    nothing written), and a change made since the alert was read is not made again."""
    store = await open_store(db_target)
    try:
        await _site(store)

        async def open_it(now: datetime) -> object:
            return await store.open_alert(
                target_kind="device", target="s2_0", site_id="s2", kind=AlertKind.OFFLINE,
                severity="warning", reason="no answer", since=T0, now=now, notify=True)

        first = await open_it(T0)
        again = await open_it(T0 + timedelta(seconds=1))
        assert again == first
        (alert,) = await store.alerts()
        t1, t2, t3 = (T0 + timedelta(minutes=m) for m in (1, 2, 3))
        escalated = await store.update_alert(alert, t1, change="escalated", notify=True,
                                             severity="critical")
        stale = await store.update_alert(alert, t2, change="escalated", notify=True,
                                         severity="critical")
        assert stale == escalated and stale.escalated_at == t1
        reminded = await store.update_alert(escalated, t2, change="reminder", notify=True)
        assert reminded.last_notified_at == t2
        late = await store.update_alert(escalated, t3, change="reminder", notify=True)
        assert late == reminded
        told = await store.update_alert(reminded, t3, change="notified", notify=True)
        assert told == reminded  # told already
        resolved = await store.update_alert(reminded, t3, change="resolved", notify=True)
        assert (resolved.state, resolved.resolved_at) == ("resolved", t3)
        twice = await store.update_alert(reminded, t3 + timedelta(minutes=1),
                                         change="resolved", notify=True)
        assert twice == resolved
        kinds = [e.kind for e in await store.events_after(0)
                 if e.kind.value.startswith("alert.")]
        assert kinds == [EventKind.ALERT_OPENED, EventKind.ALERT_ESCALATED,
                         EventKind.ALERT_REMINDER, EventKind.ALERT_RESOLVED]
    finally:
        await store.close()
