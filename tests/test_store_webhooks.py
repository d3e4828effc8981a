"""The store's alerts, silences, webhook queues, webhook endpoints and API keys, called
directly: once per backend (a SQLite file, then a PostgreSQL database), and, where two
processes can meet, as two store objects on one PostgreSQL database calling at once."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from fleettui.domain import (
    AlertKind,
    ConfigEndpoint,
    DeliveryResult,
    DeviceState,
    EventKind,
    Punch,
    Site,
    TzFlag,
)
from fleettui.store import Store, open_store
from fleettui.store.shared.timetext import ts
from fleettui.store.where import is_postgres_url

T0 = datetime(2026, 3, 28, 9, 0, tzinfo=UTC)
ALL = ["*"]


async def _filled(target: str) -> Store:
    store = await open_store(target)
    await store.sync_fleet(
        [Site("wh-a", "Warehouse A", "UTC")],
        [DeviceState("dev_a", "SER1", "wh-a", "127.0.0.2", 4370, "tcp"),
         DeviceState("dev_b", "SER2", "wh-a", "127.0.0.3", 4370, "udp")])
    return store


@pytest.fixture
async def store(db_target: str) -> AsyncIterator[Store]:
    """A store with two devices, on each backend in turn."""
    s = await _filled(db_target)
    yield s
    await s.close()


@pytest.fixture
async def two(pg_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two store objects on one PostgreSQL database: two processes."""
    first = await _filled(pg_url)
    second = await open_store(pg_url)
    yield first, second
    await first.close()
    await second.close()


async def _rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    """A table as stored, read behind the store's back."""
    target = str(getattr(store, "url", "") or store.path)
    if is_postgres_url(target):  # the test server asks no password
        conn = await asyncpg.connect(target)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()
    with sqlite3.connect(target) as db:
        return list(db.execute(sql))


async def _outbox(store: Store) -> list[tuple[str, str]]:
    """The webhook outbox: (event type, payload text), in id order."""
    return [(r[0], r[1]) for r in
            await _rows(store, "SELECT event_type, payload FROM webhook_outbox ORDER BY id")]


async def _kinds(store: Store) -> list[EventKind]:
    return [e.kind for e in await store.events_after(0)]


async def _punches(store: Store, device_id: str, n: int, minute: int = 0) -> None:
    start = datetime(2026, 3, 2, 8, minute)
    await store.insert_punches(device_id, [
        Punch(device_id, str(1000 + i), start + timedelta(minutes=i), "UTC",
              (start + timedelta(minutes=i)).replace(tzinfo=UTC), TzFlag.OK, 0, 1, "sync", T0)
        for i in range(n)])


async def _open(store: Store, *, kind: AlertKind = AlertKind.OFFLINE, notify: bool = True,
                target: str = "dev_a") -> Any:
    return await store.open_alert(
        target_kind="device", target=target, site_id="wh-a", kind=kind, severity="warning",
        reason="no answer", since=T0 - timedelta(minutes=5), now=T0, notify=notify)


def _alert_body(event: str, alert_id: int, now: datetime, *, severity: str = "warning",
                acknowledged: bool = False) -> str:
    """An alert's webhook body, byte for byte."""
    return json.dumps({
        "event": event,
        "alert": {"id": alert_id, "kind": "offline", "severity": severity, "target": "dev_a",
                  "target_kind": "device", "site": "wh-a", "reason": "no answer",
                  "since": ts(T0 - timedelta(minutes=5)), "acknowledged": acknowledged},
        "timestamp": ts(now)})


# --- alerts -------------------------------------------------------------------------------


async def test_an_alert_is_opened_changed_and_told_in_the_same_bytes(store: Store) -> None:
    alert = await _open(store)
    assert (alert.state, alert.notified, alert.notifications) == ("open", True, 1)
    assert alert.since == T0 - timedelta(minutes=5) and alert.last_notified_at == T0
    t1, t2, t3 = (T0 + timedelta(minutes=m) for m in (10, 20, 30))
    escalated = await store.update_alert(alert, t1, change="escalated", notify=True,
                                         severity="critical")
    assert (escalated.severity, escalated.escalated_at) == ("critical", t1)
    reminded = await store.update_alert(escalated, t2, change="reminder", notify=True)
    assert (reminded.notifications, reminded.last_notified_at) == (3, t2)
    acked = await store.acknowledge_alert(alert.id, "amina", t2)
    assert acked is not None and (acked.acknowledged_by, acked.acknowledged_at) == ("amina", t2)
    resolved = await store.update_alert(acked, t3, change="resolved", notify=True)
    assert (resolved.state, resolved.resolved_at) == ("resolved", t3)
    assert await store.acknowledge_alert(alert.id, "late", t3) is None

    assert await store.alerts() == []
    assert [a.id for a in await store.alerts(open_only=False)] == [alert.id]
    assert await _kinds(store) == [EventKind.ALERT_OPENED, EventKind.ALERT_ESCALATED,
                                   EventKind.ALERT_REMINDER, EventKind.ALERT_ACKNOWLEDGED,
                                   EventKind.ALERT_RESOLVED]
    acked_event = (await store.events_after(0))[3]
    assert (acked_event.message, acked_event.device_id, acked_event.site_id) == (
        f"alert {alert.id} acknowledged by amina", "dev_a", "wh-a")
    # a reminder is not a webhook; every body is the same bytes on every backend
    assert await _outbox(store) == [
        ("alert.opened", _alert_body("alert.opened", alert.id, T0)),
        ("alert.escalated", _alert_body("alert.escalated", alert.id, t1, severity="critical")),
        ("alert.resolved", _alert_body("alert.resolved", alert.id, t3, severity="critical",
                                       acknowledged=True)),
    ]


async def test_a_flap_alert_tells_the_device_facts_and_a_late_notification(
    store: Store,
) -> None:
    alert = await _open(store, kind=AlertKind.FLAPPING, notify=False)  # opened while silenced
    assert (alert.notified, alert.notifications, alert.last_notified_at) == (False, 0, None)
    told = await store.update_alert(alert, T0 + timedelta(minutes=1), change="notified",
                                    notify=True)
    assert told.notified and told.notifications == 1
    await store.update_alert(told, T0 + timedelta(minutes=2), change="resolved", notify=True)
    outbox = await _outbox(store)
    # told late, a flap is told whole: the device fact again, then the alert
    assert [kind for kind, _ in outbox] == ["device.flapping", "device.flapping",
                                           "alert.opened", "device.stable", "alert.resolved"]
    assert json.loads(outbox[0][1]) == {
        "event": "device.flapping", "timestamp": ts(T0),
        "device": {"id": "dev_a", "serial_number": "SER1", "site": "wh-a", "last_seen": None,
                   "reason": "no answer"}}
    assert await _kinds(store) == [EventKind.ALERT_OPENED, EventKind.ALERT_OPENED,
                                   EventKind.ALERT_RESOLVED]


async def test_silences_are_added_ended_and_expire_with_their_events(store: Store) -> None:
    short = await store.add_silence("dev_a", T0 + timedelta(minutes=10), "works", "ops", T0)
    long = await store.add_silence("wh-a", T0 + timedelta(hours=2), "move", "ops", T0)
    assert (short.target, short.until, short.created_by, short.ended_at) == (
        "dev_a", T0 + timedelta(minutes=10), "ops", None)
    assert [s.id for s in await store.active_silences(T0)] == [short.id, long.id]
    later = T0 + timedelta(minutes=30)
    assert [s.id for s in await store.active_silences(later)] == [long.id]
    assert await store.end_silence(short.id, later) is None  # already over
    ended = await store.end_silence(long.id, later)
    assert ended is not None and ended.ended_at == later
    assert await store.end_silence(long.id, later) is None
    assert await store.active_silences(later) == []
    events = await store.events_after(0)
    assert [e.kind for e in events] == [EventKind.SILENCE_ADDED, EventKind.SILENCE_ADDED,
                                        EventKind.SILENCE_EXPIRED, EventKind.SILENCE_ENDED]
    assert events[0].message == f"dev_a silenced until {ts(short.until)}: works"
    assert [e.data["silence_id"] for e in events] == [short.id, long.id, short.id, long.id]


# --- delivery queues ----------------------------------------------------------------------


async def test_a_queue_takes_what_it_wants_once_and_each_device_in_order(store: Store) -> None:
    await _punches(store, "dev_a", 3)
    await _punches(store, "dev_b", 2)
    await _open(store)  # alert.opened, about dev_a
    assert await store.webhook_enqueue("alerts", ["alert.*"], T0) == 1
    assert await store.webhook_enqueue("punches", ["punch.created"], T0) == 5
    assert await store.webhook_enqueue("all", ALL, T0) == 6
    assert await store.webhook_enqueue("all", ALL, T0) == 0  # nothing new
    due = await store.webhook_due("all", T0)
    assert [d.event_type for d in due] == ["punch.created"] * 5 + ["alert.opened"]
    assert [d.outbox_id for d in due] == sorted(d.outbox_id for d in due)
    a = [d.outbox_id for d in due if d.device_id == "dev_a"]
    b = [d.outbox_id for d in due if d.device_id == "dev_b"]
    assert [d.outbox_id for d in await store.webhook_due("all", T0, per_device=2)] == sorted(
        a[:2] + b)

    # dev_a's oldest event waits for its retry: all of dev_a waits behind it, dev_b does not
    retry = T0 + timedelta(minutes=5)
    await store.webhook_results("all", [
        DeliveryResult(a[0], ok=False, error="HTTP 503", error_class="http 503",
                       retry_at=retry),
        DeliveryResult(b[0], ok=True, latency_ms=10.0),
        DeliveryResult(b[1], ok=True, latency_ms=30.0)], T0)
    assert await store.webhook_due("all", T0) == []
    assert [d.outbox_id for d in await store.webhook_due("all", retry)] == a
    assert (await store.webhook_due("all", retry))[0].attempts == 1
    stats = await store.webhook_stats("all")
    assert (stats.pending, stats.delivered, stats.dead, stats.avg_latency_ms) == (4, 2, 0, 20.0)
    delivered = await store.webhook_deliveries("all", "delivered")
    assert [d.outbox_id for d in delivered] == [b[1], b[0]]
    assert delivered[0].delivered_at == T0 and delivered[0].endpoint_id is None


async def test_dead_deliveries_are_told_listed_and_replayed(store: Store) -> None:
    await _punches(store, "dev_a", 3)
    await store.webhook_enqueue("https://hooks.example.com/T0/secret-path", ALL, T0)
    await store.webhook_enqueue("other", ALL, T0)
    endpoint = "https://hooks.example.com/T0/secret-path"
    ids = [d.outbox_id for d in await store.webhook_due(endpoint, T0)]
    gave_up = T0 + timedelta(hours=24)
    await store.webhook_results(endpoint, [
        DeliveryResult(i, ok=False, error="connect refused at 10.0.0.1",
                       error_class="connection", dead=True) for i in ids[:2]], gave_up)
    await store.webhook_results("other", [
        DeliveryResult(ids[0], ok=False, error="x", error_class="timeout", dead=True)], gave_up)
    assert await store.webhook_dead_count() == 3
    dead = await store.webhook_dead()
    assert [d.outbox_id for d in dead] == [ids[1], ids[0], ids[0]]  # newest first
    assert {(d.endpoint, d.outbox_id) for d in dead} == {
        (endpoint, ids[1]), (endpoint, ids[0]), ("other", ids[0])}
    assert dead[0].last_error == "connect refused at 10.0.0.1" and dead[0].attempts == 1
    events = [e for e in await store.events_after(0) if e.kind is EventKind.WEBHOOK_DEAD]
    assert [e.message for e in events] == [
        f"webhook to https://hooks.example.com/… gave up on event {ids[0]}: connection",
        f"webhook to https://hooks.example.com/… gave up on event {ids[1]}: connection",
        f"webhook to other gave up on event {ids[0]}: timeout"]
    assert "secret-path" not in " ".join(e.message for e in events)

    later = gave_up + timedelta(hours=1)
    assert await store.webhook_replay(endpoint, later, []) == 0
    assert await store.webhook_replay(endpoint, later, [ids[1]]) == 1
    assert await store.webhook_replay(None, later) == 2
    assert await store.webhook_replay(None, later) == 0
    again = await store.webhook_deliveries(endpoint, "pending")
    assert {d.outbox_id for d in again} == set(ids)
    assert all(d.created_at == later for d in again if d.outbox_id != ids[2])


# --- endpoints ----------------------------------------------------------------------------


async def test_endpoints_are_mirrored_created_changed_rotated_and_deleted(
    store: Store,
) -> None:
    config = [ConfigEndpoint("cfg1", "https://a.example.com/h", ("punch.*",)),
              ConfigEndpoint("cfg2", "https://b.example.com/h", ALL, enabled=False,
                             hex_signature_header="X-Sig", timeout_s=3)]
    await store.sync_webhook_endpoints(config, T0)
    await store.sync_webhook_endpoints(config[1:], T0)  # cfg1 left the config
    (cfg2,) = await store.webhook_endpoints()
    assert (cfg2.id, cfg2.origin, cfg2.delivery_key, cfg2.events, cfg2.enabled,
            cfg2.hex_signature_header, cfg2.timeout_s) == (
        "cfg2", "config", "https://b.example.com/h", ("*",), False, "X-Sig", 3.0)

    await _punches(store, "dev_a", 2)
    made = await store.create_webhook_endpoint(
        "wh_1", url="https://c.example.com/h?token=abc", events=["alert.*"], secret="s3cr3t-1",
        enabled=True, hex_signature_header=None, timeout_s=10.0, now=T0)
    assert (made.origin, made.delivery_key, made.events, made.secret) == (
        "api", "wh_1", ("alert.*",), "")
    # it hears what comes after it was made, not the history
    assert await store.webhook_enqueue("wh_1", ALL, T0, registered=True) == 0
    await _punches(store, "dev_a", 1, minute=30)
    assert await store.webhook_enqueue("wh_1", ALL, T0, registered=True) == 1

    t1 = T0 + timedelta(hours=1)
    changed = await store.update_webhook_endpoint(
        "wh_1", {"events": ["punch.*"], "enabled": False, "timeout_s": 5.0}, t1,
        new_secret="s3cr3t-2", previous_until=t1 + timedelta(hours=1))
    assert changed is not None
    assert (changed.events, changed.enabled, changed.timeout_s, changed.previous_secret_until) \
        == (("punch.*",), False, 5.0, t1 + timedelta(hours=1))
    await store.update_webhook_endpoint("wh_1", {}, t1, new_secret="s3cr3t-3",
                                        previous_until=t1 + timedelta(hours=2))
    (own,) = await store.webhook_endpoints(with_secrets=True, origin="api")
    assert (own.secret, own.previous_secret) == ("s3cr3t-3", "s3cr3t-2")
    assert (await store.webhook_endpoint("wh_1")).secret == ""  # type: ignore[union-attr]
    assert await store.webhook_forget_previous_secrets(t1 + timedelta(minutes=119)) == 0
    assert await store.webhook_forget_previous_secrets(t1 + timedelta(hours=2)) == 1
    (own,) = await store.webhook_endpoints(with_secrets=True, origin="api")
    assert (own.previous_secret, own.previous_secret_until) == ("", None)
    rotated = await store.update_webhook_endpoint("wh_1", {}, t1, new_secret="s3cr3t-4",
                                                  previous_until=t1)  # no overlap
    assert rotated is not None and rotated.previous_secret_until is None
    (own,) = await store.webhook_endpoints(with_secrets=True, origin="api")
    assert (own.secret, own.previous_secret) == ("s3cr3t-4", "")

    with pytest.raises(ValueError, match="cannot change origin"):
        await store.update_webhook_endpoint("wh_1", {"origin": "x"}, t1)  # type: ignore[typeddict-unknown-key]
    assert await store.update_webhook_endpoint("cfg2", {"enabled": True}, t1) is None
    assert await store.delete_webhook_endpoint("cfg2", t1) is False
    assert await store.delete_webhook_endpoint("wh_1", t1) is True
    assert await store.webhook_deliveries("wh_1") == []
    # a round that began before the delete neither queues nor starts again from 0
    await _punches(store, "dev_b", 1)
    assert await store.webhook_enqueue("wh_1", ALL, t1, registered=True) == 0
    assert await _rows(store, "SELECT * FROM webhook_cursors WHERE endpoint = 'wh_1'") == []
    messages = [e.message for e in await store.events_after(0) if e.kind.value.startswith(
        "webhook.")]
    assert messages[0] == "webhook endpoint wh_1 created for https://c.example.com/…"
    assert messages[1] == (
        "webhook endpoint wh_1 changed: enabled, events, timeout_s, secret rotated (the"
        f" previous one also signs until {ts(t1 + timedelta(hours=1))})")
    assert messages[-2:] == [
        "webhook endpoint wh_1 changed: secret rotated (the previous one no longer signs)",
        "webhook endpoint wh_1 deleted"]
    assert not any("s3cr3t" in m or "token" in m for m in messages)


# --- API keys -----------------------------------------------------------------------------


async def test_an_api_key_is_stored_as_its_hash_used_and_revoked(store: Store) -> None:
    with pytest.raises(ValueError, match="role"):
        await store.create_api_key("root", "x", T0)
    made = await store.create_api_key("operator", "ci", T0)
    other = await store.create_api_key("viewer", "", T0)
    assert made.key.startswith("ftk_") and made.id != other.id
    assert await store.api_key_role(made.key, T0, record_use=False) == (made.id, "operator")
    assert (await store.api_keys())[0].last_used_at is None
    assert await store.api_key_role(made.key, T0 + timedelta(minutes=1)) == (made.id,
                                                                          "operator")
    assert await store.api_key_role("ftk_" + "x" * 43, T0) is None
    listed = await store.api_keys()
    assert [(k.id, k.name, k.role, k.prefix, k.last_used_at, k.live) for k in listed] == [
        (made.id, "ci", "operator", made.key[:8], T0 + timedelta(minutes=1), True),
        (other.id, "", "viewer", other.key[:8], None, True)]
    assert await store.revoke_api_key(made.id, T0) is True
    assert await store.revoke_api_key(made.id, T0) is False
    assert await store.api_key_role(made.key, T0) is None
    assert not (await store.api_keys())[0].live
    stored = " ".join(str(v) for row in await _rows(store, "SELECT * FROM api_keys")
                      for v in row)
    assert made.key not in stored and made.key[8:] not in stored


async def test_no_secret_is_logged(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    made = await store.create_api_key("admin", "ops", T0)
    await store.api_key_role(made.key, T0)
    await store.create_webhook_endpoint(
        "wh_9", url="https://c.example.com/h", events=ALL, secret="whsec_never_logged_1",
        enabled=True, hex_signature_header=None, timeout_s=10.0, now=T0)
    await store.update_webhook_endpoint("wh_9", {}, T0, new_secret="whsec_never_logged_2",
                                        previous_until=T0 + timedelta(hours=1))
    await store.webhook_endpoints(with_secrets=True)
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert "never_logged" not in logged and made.key not in logged


# --- two processes at once (PostgreSQL) ---------------------------------------------------


async def test_two_processes_opening_one_alert_open_and_tell_it_once(
    two: tuple[Store, Store],
) -> None:
    first, second = two
    opened = await asyncio.gather(*(_open(s) for s in (first, second, first, second)))
    assert len({a.id for a in opened}) == 1
    assert [a.id for a in await first.alerts()] == [opened[0].id]
    assert await _kinds(first) == [EventKind.ALERT_OPENED]
    assert [kind for kind, _ in await _outbox(first)] == ["alert.opened"]
    # once resolved, the next one is a new alert
    await first.update_alert(opened[0], T0, change="resolved", notify=True)
    again = await _open(second)
    assert again.id != opened[0].id and again.open


async def test_two_processes_changing_one_alert_change_and_tell_it_once(
    two: tuple[Store, Store],
) -> None:
    first, second = two
    alert = await _open(first)
    later = T0 + timedelta(minutes=30)
    escalated = await asyncio.gather(*(
        s.update_alert(alert, later, change="escalated", notify=True, severity="critical")
        for s in (first, second)))
    assert {a.escalated_at for a in escalated} == {later}
    assert {a.notifications for a in escalated} == {2}
    reminded = await asyncio.gather(*(
        s.update_alert(escalated[0], later + timedelta(hours=1), change="reminder", notify=True)
        for s in (first, second)))
    assert {a.notifications for a in reminded} == {3}
    resolved = await asyncio.gather(*(
        s.update_alert(reminded[0], later + timedelta(hours=2), change="resolved", notify=True)
        for s in (first, second)))
    assert {a.resolved_at for a in resolved} == {later + timedelta(hours=2)}
    assert await _kinds(first) == [EventKind.ALERT_OPENED, EventKind.ALERT_ESCALATED,
                                   EventKind.ALERT_REMINDER, EventKind.ALERT_RESOLVED]
    assert [kind for kind, _ in await _outbox(first)] == [
        "alert.opened", "alert.escalated", "alert.resolved"]


async def test_two_processes_closing_expired_silences_tell_each_once(
    two: tuple[Store, Store],
) -> None:
    first, second = two
    for target in ("dev_a", "dev_b"):
        await first.add_silence(target, T0 + timedelta(minutes=1), "", "ops", T0)
    later = T0 + timedelta(minutes=2)
    answers = await asyncio.gather(first.active_silences(later), second.active_silences(later))
    assert answers == [[], []]
    assert (await _kinds(first)).count(EventKind.SILENCE_EXPIRED) == 2


async def test_two_processes_filling_one_queue_hand_each_event_over_once(
    two: tuple[Store, Store],
) -> None:
    first, second = two
    writing = True

    async def write() -> None:
        nonlocal writing
        for minute in range(0, 40, 2):  # 20 transactions, two punches each
            await _punches(first, "dev_a" if minute % 4 else "dev_b", 2, minute=minute)
        writing = False

    async def enqueue(store: Store) -> int:
        given = 0
        while writing:
            given += await store.webhook_enqueue("hook", ALL, T0)
            await asyncio.sleep(0)
        return given

    _, got_first, got_second = await asyncio.gather(write(), enqueue(first), enqueue(second))
    rest = await first.webhook_enqueue("hook", ALL, T0)
    assert got_first + got_second + rest == 40
    queued = await _rows(first, "SELECT outbox_id FROM webhook_deliveries ORDER BY outbox_id")
    assert queued == await _rows(first, "SELECT id FROM webhook_outbox ORDER BY id")


async def test_a_delete_racing_a_round_leaves_no_queue_behind(
    two: tuple[Store, Store],
) -> None:
    first, second = two
    for n in range(5):
        endpoint = f"wh_{n}"
        await first.create_webhook_endpoint(
            endpoint, url="https://c.example.com/h", events=ALL, secret="s", enabled=True,
            hex_signature_header=None, timeout_s=10.0, now=T0)
        await _punches(first, "dev_a", 2, minute=2 * n)
        await asyncio.gather(second.webhook_enqueue(endpoint, ALL, T0, registered=True),
                             first.delete_webhook_endpoint(endpoint, T0))
        await second.webhook_enqueue(endpoint, ALL, T0, registered=True)
    assert await _rows(first, "SELECT * FROM webhook_deliveries") == []
    assert await _rows(first, "SELECT * FROM webhook_cursors") == []
