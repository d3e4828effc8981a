"""Signed webhooks over real HTTP on loopback, verified by an independent implementation.

The receiver is a real aiohttp server in the test's event loop; signatures
are checked with the ``standardwebhooks`` package (not our code). The
dispatcher's clock is injected so that retry backoff and the 24-hour
dead-letter limit are lived through without waiting.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from fleettui.config import WebhookConfig, parse_config
from fleettui.domain import DeviceState, Punch, Site, TzFlag
from fleettui.engine.engine import Engine
from fleettui.engine.webhooks import WebhookDispatcher, sign
from fleettui.store import Store, open_store
from tests.conftest import Emulated
from tests.test_engine import Clock, fleet_toml

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


@dataclass
class Receiver:
    """A webhook receiver that can fail on purpose."""

    url: str = ""
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_every_other: bool = False
    always_fail: bool = False
    _n: int = 0
    runner: web.AppRunner | None = None
    site: web.TCPSite | None = None
    port: int = 0

    async def go_down(self) -> None:
        """Stop listening: deliveries now meet a refused connection."""
        assert self.site is not None
        await self.site.stop()

    async def come_back(self) -> None:
        """Listen again on the same port."""
        assert self.runner is not None
        self.site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await self.site.start()

    async def handle(self, request: web.Request) -> web.Response:
        """Take one delivery (or fail as told)."""
        self._n += 1
        body = await request.read()
        if self.always_fail or (self.fail_every_other and self._n % 2):
            return web.Response(status=503)
        self.got.append(({k.lower(): v for k, v in request.headers.items()}, body))
        return web.Response(status=204)

    def events(self) -> list[dict[str, Any]]:
        """Bodies received, deduplicated by webhook-id, in arrival order."""
        seen: set[str] = set()
        out = []
        for headers, body in self.got:
            if headers["webhook-id"] in seen:
                continue
            seen.add(headers["webhook-id"])
            out.append(json.loads(body))
        return out


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.runner, rec.site, rec.port = runner, site, runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{rec.port}/hook"
    yield rec
    await runner.cleanup()


async def _three_devices(where: str | Path) -> Store:
    s = await open_store(where)
    await s.sync_fleet([Site("s", "S", "UTC")], [
        DeviceState(f"d{i}", f"S{i}", "s", f"127.20.220.{i}", 4370, "tcp") for i in range(1, 4)
    ])
    return s


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A SQLite store with three devices (for tests of the dispatcher's own machinery)."""
    s = await _three_devices(tmp_path / "fleet.db")
    yield s
    await s.close()


@pytest.fixture
async def db_store(db_target: str) -> AsyncIterator[Store]:
    """A store with three devices, on each backend in turn (for what the store keeps)."""
    s = await _three_devices(db_target)
    yield s
    await s.close()


async def _punches(store: Store, per_device: int = 20, hour: int = 8) -> None:
    start = datetime(2026, 3, 2, hour, 0)
    for i in range(1, 4):
        await store.insert_punches(f"d{i}", [
            Punch(f"d{i}", str(1000 + n), start + timedelta(minutes=n), "UTC",
                  (start + timedelta(minutes=n)).replace(tzinfo=UTC), TzFlag.OK, n % 2, 1,
                  "sync", datetime.now(UTC))
            for n in range(per_device)
        ])


def _endpoint(url: str, **kw: object) -> WebhookConfig:
    return WebhookConfig(url=url, secret=SECRET, **kw)  # type: ignore[arg-type]


async def _drain(dispatcher: WebhookDispatcher, clock: Clock | None = None,
                 rounds: int = 500) -> None:
    for _ in range(rounds):
        made = await dispatcher.run_once()
        if clock is not None:
            clock.now += timedelta(minutes=11)  # past any backoff
        elif not made:
            return


async def _serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> tuple[str, web.AppRunner]:
    """A receiver of our own on a free loopback port: its URL, and its runner to clean up."""
    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}/hook", runner


def test_our_signature_is_what_standard_webhooks_computes() -> None:
    body = b'{"event":"punch.created"}'
    ts = int(datetime.now(UTC).timestamp())
    ours = sign(SECRET, "msg_42", ts, body)
    theirs = Webhook(SECRET).sign("msg_42", datetime.fromtimestamp(ts, UTC), body.decode())
    assert ours == theirs


async def test_every_punch_arrives_signed_once_and_in_order(db_store: Store,
                                                           receiver: Receiver) -> None:
    await _punches(db_store)
    dispatcher = WebhookDispatcher(db_store, [_endpoint(receiver.url)], allow_private_targets=True)
    await _drain(dispatcher)
    await dispatcher.close()
    verifier = Webhook(SECRET)
    for headers, body in receiver.got:
        verifier.verify(body, headers)  # raises on a bad signature or timestamp
    events = receiver.events()
    assert len(events) == 60 and len(receiver.got) == 60
    for dev in ("d1", "d2", "d3"):
        users = [e["punch"]["user_id"] for e in events if e["punch"]["device_id"] == dev]
        assert users == [str(1000 + n) for n in range(20)]
    stats = await db_store.webhook_stats(receiver.url)
    assert (stats.delivered, stats.pending) == (60, 0)
    assert stats.avg_latency_ms is not None and stats.avg_latency_ms > 0


async def test_a_flaky_then_absent_receiver_still_gets_everything_in_order(
    db_store: Store, receiver: Receiver
) -> None:
    await _punches(db_store, per_device=10)
    clock = Clock(datetime.now(UTC))
    dispatcher = WebhookDispatcher(db_store, [_endpoint(receiver.url)], clock=clock, seed=3,
                                   allow_private_targets=True)
    receiver.fail_every_other = True
    for _ in range(3):
        await dispatcher.run_once()
        clock.now += timedelta(minutes=11)
    await receiver.go_down()  # then away for two hours: connections refused
    for _ in range(12):
        await dispatcher.run_once()
        clock.now += timedelta(minutes=10)
    refused = await db_store.webhook_stats(receiver.url)
    assert refused.pending > 0 and refused.dead == 0
    await receiver.come_back()
    await _drain(dispatcher, clock, rounds=200)
    await dispatcher.close()
    events = receiver.events()
    assert len(events) == 30
    for dev in ("d1", "d2", "d3"):
        users = [e["punch"]["user_id"] for e in events if e["punch"]["device_id"] == dev]
        assert users == [str(1000 + n) for n in range(10)]
    for headers, body in receiver.got:  # signed with the time of each attempt
        stamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
        expected = Webhook(SECRET).sign(headers["webhook-id"], stamp, body.decode())
        assert headers["webhook-signature"] == expected


async def test_after_24_hours_a_delivery_is_dead_and_can_be_replayed(
    db_store: Store, receiver: Receiver
) -> None:
    await _punches(db_store, per_device=1)
    clock = Clock(datetime.now(UTC))
    dispatcher = WebhookDispatcher(db_store, [_endpoint(receiver.url)], clock=clock,
                                   allow_private_targets=True)
    receiver.always_fail = True
    for _ in range(40):
        await dispatcher.run_once()
        clock.now += timedelta(hours=1)
    stats = await db_store.webhook_stats(receiver.url)
    assert (stats.dead, stats.delivered) == (3, 0)
    assert "webhook.dead" in [e.kind for e in await db_store.events_after(0)]
    receiver.always_fail = False
    assert await db_store.webhook_replay(receiver.url, clock.now) == 3
    await _drain(dispatcher)
    await dispatcher.close()
    assert (await db_store.webhook_stats(receiver.url)).delivered == 3


async def test_event_filters_and_the_hex_signature_header(db_store: Store,
                                                          receiver: Receiver) -> None:
    await _punches(db_store, per_device=2)
    only_alerts = WebhookDispatcher(db_store, [_endpoint(receiver.url, events=["alert.*"])],
                                    allow_private_targets=True)
    await _drain(only_alerts)
    assert receiver.got == []
    hexed = WebhookDispatcher(db_store, [_endpoint(receiver.url + "?x=1",
                                                hex_signature_header="X-Signature")],
                              allow_private_targets=True)
    await _drain(hexed)
    await only_alerts.close()
    await hexed.close()
    headers, body = receiver.got[0]
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    assert headers["x-signature"] == hmac.new(key, body, hashlib.sha256).hexdigest()


async def test_the_engine_delivers_synced_punches(one_device: Emulated, tmp_path: Path,
                                                  receiver: Receiver) -> None:
    cfg = one_device.fleet.devices["dev_test_01"].config
    text = fleet_toml([cfg]) + (  # the receiver is on loopback
        "\n[security]\nallow_private_webhook_targets = true\n"
        f'\n[[webhooks]]\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n')
    store = await open_store(tmp_path / "e.db")
    engine = Engine(parse_config(text), store)
    await engine.prepare()
    await engine.sweep()
    assert engine.webhooks is not None
    await _drain(engine.webhooks)
    # the config's endpoint is mirrored in the store (for the API and other views), secretless
    mirrored = await store.webhook_endpoints(with_secrets=True)
    assert [(e.origin, e.url, e.secret) for e in mirrored] == [
        ("config", receiver.url, "")]
    await engine.stop()
    await store.close()
    kinds = [e["event"] for e in receiver.events()]
    assert kinds.count("punch.created") == 30 and "device.online" in kinds
    assert SECRET not in repr(parse_config(text))



async def test_device_and_command_facts_reach_the_outbox_in_the_articles_shape(
    db_store: Store, receiver: Receiver
) -> None:
    from fleettui.domain import DeviceStatus, StatusChange

    now = datetime.now(UTC)
    await db_store.record_status(StatusChange("d1", DeviceStatus.ONLINE, "", now))
    await db_store.record_status(StatusChange("d1", DeviceStatus.OFFLINE, "no answer", now))
    dispatcher = WebhookDispatcher(db_store, [_endpoint(receiver.url, events=["device.*"])],
                                   allow_private_targets=True)
    await _drain(dispatcher)
    await dispatcher.close()
    events = receiver.events()
    assert [e["event"] for e in events] == ["device.online", "device.offline"]
    offline = events[1]
    assert offline["device"] == {"id": "d1", "serial_number": "S1", "site": "s",
                                 "last_seen": None, "reason": "no answer"}
    assert "timestamp" in offline


async def test_a_dispatcher_alone_sends_every_sites_events_and_the_fleets(
    db_store: Store, receiver: Receiver
) -> None:
    """No share given: a poller alone on its database sends everything, the events of
    no device (a site's alert) and of a device the store does not know included."""
    from fleettui.domain import AlertKind, DeviceStatus, StatusChange

    now = datetime.now(UTC)
    await _punches(db_store, per_device=1)
    await db_store.open_alert(target_kind="site", target="s", site_id="s",
                              kind=AlertKind.SITE_DOWN, severity="critical", reason="down",
                              since=now, now=now, notify=True)
    await db_store.record_status(StatusChange("ghost", DeviceStatus.ONLINE, "", now))
    dispatcher = WebhookDispatcher(db_store, [_endpoint(receiver.url)], allow_private_targets=True)
    assert dispatcher.share.everything
    await _drain(dispatcher)
    await dispatcher.close()
    assert sorted(str(e["event"]) for e in receiver.events()) == [
        "alert.opened", "device.online", "punch.created", "punch.created", "punch.created"]
    assert len(receiver.got) == 5


async def test_a_dispatcher_stops_when_cancelled_as_a_kick_arrives(store: Store) -> None:
    """engine.stop() cancels the delivery loop; an event committed at that very moment
    must not swallow the cancellation (Python 3.11's wait_for does: stop() hung)."""
    dispatcher = WebhookDispatcher(store, [], allow_private_targets=True)
    task = asyncio.get_running_loop().create_task(dispatcher.run_forever(idle_s=3600))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not dispatcher._kick._waiters:  # until its first round is done and it waits
        assert loop.time() < deadline, "the dispatcher never waited for a kick"
        await asyncio.sleep(0.01)
    dispatcher.kick()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)  # bounded: a swallowed cancel fails, not hangs
    await dispatcher.close()


async def test_an_event_committed_during_an_empty_round_is_sent_without_waiting(
    store: Store, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A punch committed while a lane's round runs (after the round queued the outbox,
    before it found nothing due) kicks the lane; that kick must start another round.
    Clearing it after the round left the event for the idle tick: at ``idle_s=0.5``
    that was the bench's punch -> webhook p99 of 504 ms. Here the tick is an hour,
    so a lost kick fails the bounded wait instead of passing late."""
    dispatcher = WebhookDispatcher(store, [_endpoint(receiver.url)], allow_private_targets=True)
    real_enqueue = store.webhook_enqueue
    armed = asyncio.Event()

    async def enqueue_then_commit(*args: object, **kw: object) -> object:
        queued = await real_enqueue(*args, **kw)  # type: ignore[arg-type]
        if armed.is_set():  # the race, made to happen: a commit between queue and read
            armed.clear()
            await _punches(store, per_device=1)
            dispatcher.kick()
        return queued

    monkeypatch.setattr(store, "webhook_enqueue", enqueue_then_commit)
    task = asyncio.get_running_loop().create_task(dispatcher.run_forever(idle_s=3600))
    loop = asyncio.get_running_loop()
    try:
        deadline = loop.time() + 30
        while not ((lane := dispatcher._lane_kicks.get(receiver.url)) and lane._waiters):
            assert loop.time() < deadline, "the lane never waited for a kick"
            await asyncio.sleep(0.01)
        armed.set()
        dispatcher.kick()  # an empty round, during which three punches are committed
        deadline = loop.time() + 30
        while len(receiver.events()) < 3:
            assert loop.time() < deadline, "the kick that came during the round was lost"
            await asyncio.sleep(0.02)
        assert not armed.is_set()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        await dispatcher.close()


async def test_devices_go_in_parallel_within_the_endpoints_bound_each_in_order(
    db_target: str,
) -> None:
    """At most ``concurrency`` requests in flight to an endpoint, one per device, over at
    most ``concurrency`` kept-alive connections (the dispatcher's own client)."""
    store = await open_store(db_target)
    devices = [f"p{i:02d}" for i in range(12)]
    await store.sync_fleet([Site("s", "S", "UTC")], [
        DeviceState(d, f"S{d}", "s", f"127.20.221.{i + 1}", 4370, "tcp")
        for i, d in enumerate(devices)
    ])
    start = datetime(2026, 3, 2, 8, 0)
    for d in devices:
        await store.insert_punches(d, [
            Punch(d, str(1000 + n), start + timedelta(minutes=n), "UTC",
                  (start + timedelta(minutes=n)).replace(tzinfo=UTC), TzFlag.OK, 0, 1, "sync",
                  datetime.now(UTC))
            for n in range(6)
        ])
    limit = 4
    in_flight: dict[str, int] = {}
    most = {"all": 0, "device": 0}
    full = asyncio.Event()  # the first wave waits until the bound is reached
    got: list[tuple[str, str]] = []
    peers: set[object] = set()

    async def hook(request: web.Request) -> web.Response:
        punch = (await request.json())["punch"]
        dev = punch["device_id"]
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        in_flight[dev] = in_flight.get(dev, 0) + 1
        most["device"] = max(most["device"], in_flight[dev])
        most["all"] = max(most["all"], sum(in_flight.values()))
        if most["all"] >= limit:
            full.set()
        await full.wait()
        got.append((dev, punch["user_id"]))
        in_flight[dev] -= 1
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    dispatcher = WebhookDispatcher(store, [_endpoint(url)], concurrency=limit,
                                   allow_private_targets=True)
    try:
        await _drain(dispatcher)
    finally:
        await dispatcher.close()
        await runner.cleanup()
        await store.close()
    assert (most["all"], most["device"]) == (limit, 1)
    assert len(got) == 72 and len(peers) <= limit  # connections kept alive, not churned
    for d in devices:
        assert [u for dev, u in got if dev == d] == [str(1000 + n) for n in range(6)]


async def test_a_receiver_that_hangs_holds_back_only_its_own_events(
    store: Store, receiver: Receiver
) -> None:
    """A firewall that drops packets makes each delivery wait for its timeout; the other
    endpoints' deliveries must not wait with it (each endpoint has a lane of its own)."""
    hung = asyncio.Event()
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        hung.set()
        await release.wait()  # answers only when the test ends
        return web.Response(status=204)

    slow_url, runner = await _serve(hang)
    dispatcher = WebhookDispatcher(store, [_endpoint(slow_url, timeout_s=120),
                                           _endpoint(receiver.url)], allow_private_targets=True)
    task = asyncio.get_running_loop().create_task(dispatcher.run_forever(idle_s=3600))
    loop = asyncio.get_running_loop()
    try:
        await _punches(store, per_device=1)
        dispatcher.kick()
        await asyncio.wait_for(hung.wait(), 30)  # the slow endpoint's lane is stuck
        for batch in (1, 2):  # and events committed meanwhile still reach the other one
            await _punches(store, per_device=1, hour=8 + batch)
            dispatcher.kick()
            deadline = loop.time() + 30
            while len(receiver.events()) < 3 * (batch + 1):
                assert loop.time() < deadline, "the healthy endpoint waited for the hung one"
                await asyncio.sleep(0.02)
        assert not release.is_set()
    finally:
        release.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        await dispatcher.close()
        await runner.cleanup()


async def test_a_receiver_answering_an_endless_body_is_not_read_whole(store: Store) -> None:
    """Only the status of an answer counts: a receiver that streams a body without end
    (hostile, or broken) gets its delivery marked done, the connection cut after the
    first RESPONSE_READ bytes, and the next events still go out."""
    from fleettui.engine.webhooks import RESPONSE_READ

    cut = asyncio.Event()
    sent: list[int] = []

    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        total = 0
        try:
            while total < 1 << 30:  # a gigabyte, unless the dispatcher hangs up first
                await response.write(b"x" * 65536)
                total += 65536
        except (ConnectionResetError, ConnectionError):
            cut.set()
        sent.append(total)
        return response

    url, runner = await _serve(endless)
    dispatcher = WebhookDispatcher(store, [_endpoint(url)], allow_private_targets=True)
    try:
        await _punches(store, per_device=2)
        await _drain(dispatcher)
        await asyncio.wait_for(cut.wait(), 30)
        assert await store.webhook_due(url, datetime.now(UTC) + timedelta(days=2)) == []
        assert len(sent) >= 1 and min(sent) < 1 << 30
        assert RESPONSE_READ < 1 << 20
    finally:
        await dispatcher.close()
        await runner.cleanup()
