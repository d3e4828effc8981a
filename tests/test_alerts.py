"""Alerting with an injected clock: flapping, confirmation, site grouping, escalation, silences.

End-to-end cases run the real engine against emulated devices whose faults
and clocks are driven by the test (both the emulator's monotonic clock and
the engine's wall clock move together, ten simulated seconds per step), so
half an hour of a flapping 3G link takes a few seconds. Rules that need many
devices feed statuses to the store directly, as the poller would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleettui.config import AlertSettings, parse_config
from fleettui.domain import AlertKind, DeviceState, DeviceStatus, Site, StatusChange
from fleettui.engine.alerts import FULL_READ_EVERY, AlertEngine, Notification, RateLimitedSink
from fleettui.engine.engine import Engine
from fleettui.engine.flapping import CountFlapDetector, FlapChange, WeightedFlapDetector
from fleettui.store import Store, open_store
from tests.conftest import Emulated, FakeClock, device_config, sample_users
from tests.test_engine import Clock, fleet_toml

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@dataclass
class Heard:
    """A sink that remembers every notification."""

    items: list[Notification] = field(default_factory=list)

    def __call__(self, n: Notification) -> None:
        self.items.append(n)

    def changes(self) -> list[str]:
        """What was heard, as change:target:kind."""
        return [f"{n.change}:{n.alert.target}:{n.alert.kind.value}" if n.alert else n.change
                for n in self.items]


@pytest.fixture
async def db(db_target: str) -> AsyncIterator[Store]:
    """The store the alert rules run over, on each backend in turn."""
    store = await open_store(db_target)
    yield store
    await store.close()


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Store]:
    """A SQLite store, for the emulated scenarios and the CLI (what they test is not the
    store's)."""
    store = await open_store(tmp_path / "fleet.db")
    yield store
    await store.close()


# --- the flap detector -------------------------------------------------------------


def test_weighted_percent_follows_nagios() -> None:
    det = WeightedFlapDetector(10, 25)
    for up in [True] * 21:
        det.sample(up)
    assert det.percent == 0
    alternating = WeightedFlapDetector(10, 25)
    changes = [alternating.sample(i % 2 == 0) for i in range(21)]
    assert alternating.percent == pytest.approx(100.0)
    assert changes.count(FlapChange.STARTED) == 1
    one_outage = WeightedFlapDetector(10, 25)
    for up in [True] * 10 + [False] * 11:
        one_outage.sample(up)
    assert not one_outage.flapping  # one change: about 5%


def test_hysteresis_keeps_the_detector_from_flapping() -> None:
    det = WeightedFlapDetector(10, 25)
    events = []
    # a blip every 4 samples for a long time, then calm
    for i in range(200):
        events.append(det.sample(i % 4 != 0))
    for _ in range(40):
        events.append(det.sample(True))
    assert [e for e in events if e] == [FlapChange.STARTED, FlapChange.STOPPED]


# --- end to end: engine + emulated devices ------------------------------------------


@dataclass
class Scenario:
    """A fleet, an engine and its alert engine, all on clocks the test moves."""

    em: Emulated
    engine: Engine
    clock: Clock
    fake: FakeClock
    heard: Heard

    async def run(self, seconds: float, step: float = 10.0) -> None:
        """Live through ``seconds``: sweep, sample and evaluate at every step."""
        elapsed = 0.0
        while elapsed < seconds:
            self.clock.now += timedelta(seconds=step)
            self.fake.advance(step)
            elapsed += step
            await self.engine.sweep()
            await self.engine.alerts.sample(self.clock.now)
            await self.engine.alerts.evaluate(self.clock.now)

    def fault(self, device_id: str, body: dict[str, object] | None) -> None:
        """Set (or with None, clear) a device's faults."""
        fleet = self.em.fleet
        if body is None:
            self.em.emu.run(fleet.clear_faults(device_id))
        else:
            self.em.emu.run(fleet.set_faults(device_id, body))


@pytest.fixture
async def scenario(emulate: Callable[..., Emulated],
                   sqlite_db: Store) -> AsyncIterator[Scenario]:
    db = sqlite_db
    fake = FakeClock()
    cfgs = [device_config(f"dev_alert_{i}") for i in range(3)]
    em = emulate(cfgs, users={c.id: sample_users(3) for c in cfgs}, clock=fake)
    clock = Clock(T0)
    heard = Heard()
    # a short socket timeout: a down device costs 0.1 s of real time per check
    config = parse_config(fleet_toml(cfgs, timeout_s=0.1, retry_after_s=0))
    engine = Engine(config, db, clock=clock, alert_sinks=[heard])
    await engine.prepare()
    await engine.sweep()
    yield Scenario(em, engine, clock, fake, heard)
    await engine.stop()


async def test_a_device_flapping_on_3g_for_30_minutes_notifies_at_most_twice(
    scenario: Scenario,
) -> None:
    scenario.fault("dev_alert_0", {"flap": {"up_s": 40, "down_s": 20}})
    await scenario.run(30 * 60)
    changes = scenario.heard.changes()
    assert changes == ["opened:dev_alert_0:flapping"]
    assert scenario.engine.alerts.flapping("dev_alert_0")[0] is True
    scenario.fault("dev_alert_0", None)  # the link is fixed
    await scenario.run(10 * 60)
    assert scenario.heard.changes() == ["opened:dev_alert_0:flapping",
                                        "resolved:dev_alert_0:flapping"]


async def test_a_real_10_minute_outage_gives_one_alert_and_one_recovery(
    scenario: Scenario,
) -> None:
    scenario.fault("dev_alert_1", {"offline": True})
    await scenario.run(10 * 60)
    scenario.fault("dev_alert_1", None)
    await scenario.run(2 * 60)
    assert scenario.heard.changes() == ["opened:dev_alert_1:offline",
                                        "resolved:dev_alert_1:offline"]


async def test_a_two_minute_blip_gives_nothing(scenario: Scenario) -> None:
    scenario.fault("dev_alert_2", {"offline": True})
    await scenario.run(2 * 60)
    scenario.fault("dev_alert_2", None)
    await scenario.run(10 * 60)
    assert scenario.heard.changes() == []
    history = await scenario.engine.store.status_history("dev_alert_2")
    assert DeviceStatus.OFFLINE in [c.status for c in history]  # it was seen, not alerted


async def test_a_restart_of_fleettui_during_an_open_alert_neither_repeats_nor_loses_it(
    scenario: Scenario, sqlite_db: Store
) -> None:
    db = sqlite_db
    scenario.fault("dev_alert_1", {"offline": True})
    await scenario.run(7 * 60)
    assert scenario.heard.changes() == ["opened:dev_alert_1:offline"]
    # fleettui restarts: a new engine on the same store
    await scenario.engine.stop()
    heard = Heard()
    config = scenario.engine.config
    scenario.engine = Engine(config, db, clock=scenario.clock, alert_sinks=[heard])
    await scenario.engine.prepare()
    await scenario.run(3 * 60)
    assert heard.changes() == []  # not opened again
    scenario.fault("dev_alert_1", None)
    await scenario.run(60)
    assert heard.changes() == ["resolved:dev_alert_1:offline"]  # not lost either


# --- rules over many devices: statuses fed as the poller writes them ------------------


async def _site(db: Store, n: int = 4) -> list[str]:
    ids = [f"s1_{i}" for i in range(n)] + ["s2_0", "s2_1"]
    await db.sync_fleet(
        [Site("s1", "Site 1", "UTC"), Site("s2", "Site 2", "UTC")],
        [DeviceState(d, f"SER{d}", d.split("_")[0], f"127.20.210.{i + 1}", 4370, "tcp")
         for i, d in enumerate(ids)],
    )
    for d in ids:
        await db.record_status(StatusChange(d, DeviceStatus.ONLINE, "", T0))
    return ids


async def _down(db: Store, device_id: str, at: datetime, reason: str = "no answer") -> None:
    await db.record_status(StatusChange(device_id, DeviceStatus.OFFLINE, reason, at))


async def _up(db: Store, device_id: str, at: datetime) -> None:
    await db.record_status(StatusChange(device_id, DeviceStatus.ONLINE, "", at))


def _engine(db: Store, heard: Heard, **settings: object) -> AlertEngine:
    return AlertEngine(db, AlertSettings(**settings), sinks=[heard])  # type: ignore[arg-type]


async def _tick(alerts: AlertEngine, start: datetime, minutes: int) -> datetime:
    now = start
    for _ in range(minutes):
        now += timedelta(minutes=1)
        await alerts.evaluate(now)
    return now


async def test_between_full_reads_only_what_changed_is_read_and_acted_on(db: Store) -> None:
    """A fleet at rest is read once per FULL_READ_EVERY, not device by device at every
    call; a device that goes down meanwhile is read alone and still opens (and
    resolves) its alert exactly when a full read would have."""
    await _site(db)
    heard = Heard()
    alerts = _engine(db, heard, confirm_after_s=20)
    now = T0 + timedelta(seconds=1)
    for _ in range(3):  # at rest
        await alerts.sample(now)
        await alerts.evaluate(now)
        now += timedelta(seconds=5)
    assert (alerts.full_reads, alerts.device_reads) == (1, 0)
    await _down(db, "s2_0", now)
    for _ in range(2):
        now += timedelta(seconds=10)
        await alerts.evaluate(now)
    assert heard.changes() == ["opened:s2_0:offline"]  # 20 s down: confirmed
    await _up(db, "s2_0", now)
    now += timedelta(seconds=5)
    await alerts.evaluate(now)
    assert heard.changes() == ["opened:s2_0:offline", "resolved:s2_0:offline"]
    assert now - T0 < FULL_READ_EVERY
    assert (alerts.full_reads, alerts.device_reads) == (1, 2)


async def test_a_site_down_between_full_reads_is_still_one_site_alert(db: Store) -> None:
    ids = await _site(db)
    heard = Heard()
    alerts = _engine(db, heard, confirm_after_s=20)
    now = T0 + timedelta(seconds=1)
    await alerts.evaluate(now)
    for d in ids[:4]:
        await _down(db, d, now)
    for _ in range(3):
        now += timedelta(seconds=10)
        await alerts.evaluate(now)
    assert heard.changes() == ["opened:s1:site_down"]
    assert alerts.full_reads == 1


@given(st.lists(st.booleans(), max_size=40), st.booleans(), st.booleans(),
       st.sampled_from(["weighted", "count"]))
def test_a_steady_detector_is_left_exactly_as_one_more_sample_would_leave_it(
    samples: list[bool], up: bool, flapping: bool, method: str
) -> None:
    """The alert engine skips sampling a device whose detector is steady at its status:
    that must be exactly what sampling it would have done (nothing), and a detector
    restored from its history must agree with the one that lived it."""
    def make(history: str = "") -> WeightedFlapDetector | CountFlapDetector:
        if method == "weighted":
            return WeightedFlapDetector(10, 25, history, flapping)
        return CountFlapDetector(3, 12, history, flapping)

    lived = make()
    lived.flapping = flapping
    for sample in samples:
        lived.sample(sample)
    restored = make(lived.history())
    restored.flapping = lived.flapping
    assert restored.steady(up) == lived.steady(up)
    if lived.steady(up):
        before = (lived.history(), lived.flapping, lived.percent)
        assert lived.sample(up) is None
        assert (lived.history(), lived.flapping, lived.percent) == before
    full = make("1" * 40)
    assert full.steady(True) == (not flapping) and not full.steady(False)


async def test_a_site_power_cut_is_one_site_alert(db: Store) -> None:
    ids = await _site(db)
    heard = Heard()
    alerts = _engine(db, heard)
    for d in ids[:4]:
        await _down(db, d, T0 + timedelta(seconds=5))
    await _down(db, "s2_0", T0 + timedelta(seconds=5))  # and one elsewhere
    now = await _tick(alerts, T0, 10)
    assert sorted(heard.changes()) == ["opened:s1:site_down", "opened:s2_0:offline"]
    for d in ids[:4]:
        await _up(db, d, now)
    await _tick(alerts, now, 2)
    assert heard.changes()[-1] == "resolved:s1:site_down"
    assert sum(1 for c in heard.changes() if "s1_" in c) == 0  # no device alert at all


async def test_an_alert_of_a_device_no_longer_polled_is_resolved(db: Store) -> None:
    from fleettui.domain import DeviceSpec

    await _site(db)
    await db.register_devices([DeviceSpec("api_1", "API1", "s2", "10.3.0.1", 4370)], T0)
    heard = Heard()
    alerts = _engine(db, heard)
    await _down(db, "api_1", T0)
    now = await _tick(alerts, T0, 10)
    assert heard.changes() == ["opened:api_1:offline"]
    await db.remove_api_device("api_1", now)  # removed over the API while down
    await _tick(alerts, now, 1)
    assert heard.changes()[-1] == "resolved:api_1:offline"
    assert await db.alerts() == []


async def test_a_silence_suppresses_then_expires(db: Store) -> None:
    await _site(db)
    heard = Heard()
    alerts = _engine(db, heard, escalate_after_s=0)
    await db.add_silence("s2", T0 + timedelta(minutes=30), "fibre works", "ops", T0)
    await _down(db, "s2_0", T0)
    now = await _tick(alerts, T0, 20)
    assert heard.changes() == []  # silenced: recorded, not heard
    assert [a.target for a in await db.alerts()] == ["s2_0"]
    now = await _tick(alerts, now, 15)  # the silence ends; the problem has not
    assert heard.changes() == ["opened:s2_0:offline"]
    events = await db.events_after(0)
    assert "silence.expired" in [e.kind for e in events]


async def test_escalation_reminders_and_acknowledgement(db: Store) -> None:
    await _site(db)
    heard = Heard()
    alerts = _engine(db, heard, escalate_after_s=1800, repeat_every_s=3600)
    await _down(db, "s2_1", T0)
    now = await _tick(alerts, T0, 29)
    assert heard.changes() == ["opened:s2_1:offline"]
    now = await _tick(alerts, now, 2)
    assert heard.changes()[-1] == "escalated:s2_1:offline"
    (alert,) = await db.alerts()
    assert alert.severity == "critical"
    now = await _tick(alerts, now, 61)
    assert heard.changes()[-1] == "reminder:s2_1:offline"
    await db.acknowledge_alert(alert.id, "amina", now)
    before = len(heard.items)
    now = await _tick(alerts, now, 180)
    assert len(heard.items) == before  # acknowledged: no more reminders
    await _up(db, "s2_1", now)
    await _tick(alerts, now, 1)
    assert heard.changes()[-1] == "resolved:s2_1:offline"


async def test_a_storm_is_summarised_not_replayed() -> None:
    heard = Heard()
    sink = RateLimitedSink(heard, limit=3, window=timedelta(minutes=1))
    for i in range(10):
        sink(Notification("opened", None, f"n{i}", T0 + timedelta(seconds=i)))
    sink.flush(T0 + timedelta(minutes=2))
    texts = [n.text for n in heard.items]
    assert texts == ["n0", "n1", "n2", "7 more alert notifications (7 opened)"]


async def test_per_site_confirmation_delay(db: Store) -> None:
    await _site(db)
    heard = Heard()
    alerts = _engine(db, heard, site_confirm_after_s={"s2": 60.0})
    await _down(db, "s2_0", T0)
    await _tick(alerts, T0, 2)
    assert heard.changes() == ["opened:s2_0:offline"]
    assert (await db.alerts())[0].kind is AlertKind.OFFLINE


async def test_alert_commands_from_the_cli(sqlite_db: Store) -> None:
    import json
    import subprocess
    import sys

    db = sqlite_db
    await _site(db)
    alerts = _engine(db, Heard())
    await _down(db, "s2_0", T0)
    await _tick(alerts, T0, 6)
    (alert,) = await db.alerts()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fleettui", *args, "--db", str(db.path)],
                              capture_output=True, text=True, timeout=60)

    listed = json.loads(cli("alerts", "--json").stdout)["alerts"]
    assert [(a["id"], a["kind"], a["target"], a["acknowledged"]) for a in listed] == [
        (alert.id, "offline", "s2_0", False)
    ]
    r = cli("ack", str(alert.id), "--by", "amina")
    assert r.returncode == 0 and "acknowledged" in r.stdout
    assert cli("ack", "999").returncode == 1
    r = cli("silence", "s2", "--for", "2h", "--reason", "fibre works")
    assert r.returncode == 0, r.stderr
    r = cli("alerts")
    assert "acknowledged by amina" in r.stdout and "silenced until" in r.stdout
    r = cli("silence", "nowhere", "--for", "2h", "--reason", "x")
    assert r.returncode == 2 and "no device or site" in r.stderr
    status = json.loads(cli("status", "--json").stdout)["devices"]
    assert {d["flapping"] for d in status} == {False}
