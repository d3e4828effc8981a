"""Webhook deliveries when several pollers share one database: each sent once, by the
poller holding its device's site (the ``FLEET`` lease's holder for events of no device).

Two dispatchers on one store stand for two pollers (on PostgreSQL, each on a
store object of its own over the same database: two processes). One real HTTP
receiver takes everything; it tells the senders apart by the hex signature
header each one's config names (the queue is keyed by the URL, shared by both).
Rounds are driven with ``run_once``; a request held open by the receiver stands
for one in flight while a site moves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from fleettui.config import WebhookConfig
from fleettui.domain import (
    AlertKind,
    DeliveryResult,
    DeviceState,
    DeviceStatus,
    Punch,
    Site,
    StatusChange,
    TzFlag,
)
from fleettui.engine.share import FLEET, SiteShare
from fleettui.engine.webhooks import WebhookDispatcher
from fleettui.store import Store, open_store
from tests.test_webhooks import SECRET, _serve

#: the fleet: two sites of two devices each
SITES = {"sa": ("a1", "a2"), "sb": ("b1", "b2")}
SITE_OF = {d: s for s, devices in SITES.items() for d in devices}
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class Sent:
    """What the receiver took: (sender, outbox id), in arrival order."""

    got: list[tuple[str, int]] = field(default_factory=list)
    #: called on each request before it is answered (a test holds one open with it)
    before_answer: Callable[[str, int, dict[str, object]], Awaitable[None]] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        """Note the sender (by its header) and the event, then answer 204."""
        body = await request.json()
        sender = "A" if "x-from-a" in request.headers else "B"
        outbox_id = int(request.headers["webhook-id"].removeprefix("msg_"))
        self.got.append((sender, outbox_id))
        if self.before_answer is not None:
            await self.before_answer(sender, outbox_id, body)
        return web.Response(status=204)

    def ids(self) -> list[int]:
        """Outbox ids received, in arrival order (duplicates kept)."""
        return [i for _, i in self.got]


@pytest.fixture
async def sent() -> AsyncIterator[tuple[Sent, str]]:
    """The receiver, and its URL."""
    rec = Sent()
    url, runner = await _serve(rec.handle)
    yield rec, url
    await runner.cleanup()


async def _fleet(where: str) -> Store:
    store = await open_store(where)
    await store.sync_fleet([Site(s, s.upper(), "UTC") for s in SITES], [
        DeviceState(d, f"S{d}", site, f"127.20.222.{i + 1}", 4370, "tcp")
        for i, (d, site) in enumerate(SITE_OF.items())
    ])
    return store


@pytest.fixture
async def pollers(db_target: str) -> AsyncIterator[tuple[Store, Store]]:
    """The stores of two pollers on one database: two store objects on PostgreSQL (two
    processes), the one store on SQLite (one writer: one process)."""
    first = await _fleet(db_target)
    second = await open_store(db_target) if db_target.startswith("postgresql") else first
    yield first, second
    if second is not first:
        await second.close()
    await first.close()


async def _punches(store: Store, per_device: int) -> None:
    start = datetime(2026, 3, 2, 8, 0)
    for d in SITE_OF:
        await store.insert_punches(d, [
            Punch(d, str(1000 + n), start + timedelta(minutes=n), "UTC",
                  (start + timedelta(minutes=n)).replace(tzinfo=UTC), TzFlag.OK, 0, 1, "sync",
                  NOW)
            for n in range(per_device)
        ])


async def _fleet_events(store: Store) -> None:
    """Events of no device (a site's alert each) and one of a device the store does not
    know (``ghost``): the fleet's work, sent by the ``FLEET`` holder only."""
    for site in SITES:
        await store.open_alert(target_kind="site", target=site, site_id=site,
                               kind=AlertKind.SITE_DOWN, severity="critical",
                               reason="every device down", since=NOW, now=NOW, notify=True)
    await store.record_status(StatusChange("ghost", DeviceStatus.ONLINE, "", NOW))


def _dispatcher(store: Store, url: str, name: str, share: SiteShare,
                concurrency: int = 16) -> WebhookDispatcher:
    endpoint = WebhookConfig(url=url, secret=SECRET,  # type: ignore[arg-type]
                             hex_signature_header=f"X-From-{name}")
    return WebhookDispatcher(store, [endpoint], share=share, concurrency=concurrency,
                             clock=lambda: NOW, allow_private_targets=True)


async def _rounds(*dispatchers: WebhookDispatcher) -> None:
    """Rounds of every dispatcher at once, until a round of all of them sends nothing."""
    for _ in range(50):
        if not sum(await asyncio.gather(*(d.run_once() for d in dispatchers))):
            return
    raise AssertionError("the dispatchers never ran dry")


async def _owners(store: Store, url: str) -> dict[int, str | None]:
    """Each queued delivery's device (None: no device)."""
    return {d.outbox_id: d.device_id for d in await store.webhook_deliveries(url, limit=1000)}


def _in_order_per_device(got: list[tuple[str, int]], owners: dict[int, str | None]) -> None:
    by_device: dict[str | None, list[int]] = {}
    for _, outbox_id in got:
        by_device.setdefault(owners[outbox_id], []).append(outbox_id)
    for device, ids in by_device.items():
        assert ids == sorted(ids), f"{device}'s events out of order: {ids}"


async def test_due_deliveries_narrowed_to_the_sites_held(db_target: str) -> None:
    """``webhook_due``'s ``sites`` and ``deviceless``: a device's deliveries all in or all
    out, oldest first, ``per_device`` still counted per device."""
    store = await _fleet(db_target)
    try:
        await _punches(store, per_device=3)
        await _fleet_events(store)
        await store.webhook_enqueue("q", ["*"], NOW)

        async def devices(**kw: object) -> list[str | None]:
            due = await store.webhook_due("q", NOW, **kw)  # type: ignore[arg-type]
            assert [d.outbox_id for d in due] == sorted(d.outbox_id for d in due)
            return sorted({d.device_id for d in due}, key=lambda d: (d is None, d or ""))

        every = ["a1", "a2", "b1", "b2", "ghost", None]
        assert await devices() == every
        assert await devices(sites=None, deviceless=True) == every
        assert await devices(sites=["sa"]) == ["a1", "a2", "ghost", None]
        assert await devices(sites={"sa", "sb"}, deviceless=False) == ["a1", "a2", "b1", "b2"]
        assert await devices(deviceless=False) == ["a1", "a2", "b1", "b2"]
        assert await devices(sites=(), deviceless=True) == ["ghost", None]
        assert await devices(sites=(), deviceless=False) == []
        assert await devices(sites=["elsewhere"], deviceless=False) == []
        narrowed = await store.webhook_due("q", NOW, per_device=2, sites=["sb"],
                                           deviceless=False)
        assert [d.device_id for d in narrowed].count("b1") == 2 and len(narrowed) == 4
        # a failed head holds its device back (later events wait), narrowed or not
        b1_head = next(d for d in narrowed if d.device_id == "b1")
        await store.webhook_results("q", [DeliveryResult(
            b1_head.outbox_id, ok=False, error="HTTP 503", error_class="HTTP 503",
            retry_at=NOW + timedelta(minutes=1))], NOW)
        assert await devices(sites=["sb"], deviceless=False) == ["b2"]
        # a device moved to the other site: its deliveries go with it
        await store.sync_fleet([Site(s, s.upper(), "UTC") for s in SITES], [
            DeviceState(d, f"S{d}", "sb" if d == "a2" else site, f"127.20.222.{i + 1}",
                        4370, "tcp")
            for i, (d, site) in enumerate(SITE_OF.items())
        ])
        assert await devices(sites=["sb"], deviceless=False) == ["a2", "b2"]
    finally:
        await store.close()


async def test_each_event_is_sent_once_by_the_holder_of_its_site(
    pollers: tuple[Store, Store], sent: tuple[Sent, str]
) -> None:
    first, second = pollers
    rec, url = sent
    await _punches(first, per_device=5)
    await _fleet_events(second)
    a = _dispatcher(first, url, "A", SiteShare({"sa", FLEET}))
    b = _dispatcher(second, url, "B", SiteShare({"sb"}))
    try:
        await _rounds(a, b)
    finally:
        await a.close()
        await b.close()
    owners = await _owners(first, url)
    assert len(owners) == 4 * 5 + 3
    assert sorted(rec.ids()) == sorted(owners)  # every event, each exactly once
    for sender, outbox_id in rec.got:
        device = owners[outbox_id]
        site = SITE_OF.get(device or "")  # None: no device, or one the store does not know
        assert sender == ("B" if site == "sb" else "A"), (sender, device)
    assert {owners[i] for s, i in rec.got if s == "A"} == {"a1", "a2", "ghost", None}
    _in_order_per_device(rec.got, owners)
    stats = await second.webhook_stats(url)
    assert (stats.delivered, stats.pending, stats.dead) == (len(owners), 0, 0)


async def test_a_site_moved_with_a_delivery_in_flight_is_sent_once(
    pollers: tuple[Store, Store], sent: tuple[Sent, str]
) -> None:
    """A holds both sites, and sends b1's first event, held open by the receiver. A then
    loses sb: its round starts no more requests, ``quiesce`` waits for the one out to be
    recorded, a round of A begun after the loss sends sa's events only; then B gets sb
    and sends the rest of its events, none of them a second time."""
    first, second = pollers
    rec, url = sent
    await _punches(first, per_device=4)
    share_a, share_b = SiteShare({"sa", "sb", FLEET}), SiteShare(())
    a = _dispatcher(first, url, "A", share_a, concurrency=1)  # one request at a time
    b = _dispatcher(second, url, "B", share_b)
    held, release = asyncio.Event(), asyncio.Event()

    async def hold_b1_first(sender: str, outbox_id: int, body: dict[str, object]) -> None:
        punch = body.get("punch")
        if isinstance(punch, dict) and (punch["device_id"], punch["user_id"]) == ("b1", "1000"):
            held.set()
            await release.wait()

    rec.before_answer = hold_b1_first
    loop = asyncio.get_running_loop()
    try:
        round_a = loop.create_task(a.run_once())
        await asyncio.wait_for(held.wait(), 30)
        share_a.set({"sa", FLEET})  # sb lost: what the lease keeper does before letting go
        moved = len(rec.got)
        quiet = loop.create_task(a.quiesce())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not quiet.done(), "quiesce returned with a delivery still in flight"
        release.set()
        await asyncio.wait_for(quiet, 30)
        assert round_a.done()  # quiesce returned: the round's attempts are recorded
        await round_a
        assert len(rec.got) == moved, "the round went on sending after the site was lost"
        owners = await _owners(first, url)
        b1_first = rec.got[-1][1]
        assert owners[b1_first] == "b1"
        later = NOW + timedelta(days=1)
        assert b1_first not in {d.outbox_id for d in await second.webhook_due(url, later)}

        await _rounds(a)  # begun after the loss: sa only
        after_loss = rec.got[moved:]
        assert after_loss and all(SITE_OF.get(owners[i] or "") == "sa" for _, i in after_loss)
        assert await second.webhook_due(url, later, sites=["sb"],
                                        deviceless=False)  # sb's rest waits for its holder
        await asyncio.wait_for(a.quiesce(), 30)  # nothing under way: at once

        share_b.set({"sb"})  # the lease let go, then claimed by B
        await _rounds(a, b)
    finally:
        release.set()
        await a.close()
        await b.close()
    assert sorted(rec.ids()) == sorted(owners)  # each once, though sb changed hands mid-round
    for sender, outbox_id in rec.got[moved:]:
        assert sender == ("B" if SITE_OF.get(owners[outbox_id] or "") == "sb" else "A")
    _in_order_per_device(rec.got, owners)
    assert [i for s, i in rec.got if owners[i] == "b1" and s == "B"] == sorted(
        i for i, d in owners.items() if d == "b1" and i != b1_first)
