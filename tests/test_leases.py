"""The lease keeper on both backends, with time injected: alone it takes every site; a
newcomer gets its fair share gradually, never a site two hold at once; a poller that
stops renewing loses its sites to the others once its leases run out, and one that
cannot renew stops acting before they do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from fleettui.domain import FLEET_LEASE, PollerInfo, Site
from fleettui.engine.leases import LeaseKeeper
from fleettui.engine.share import SiteShare
from fleettui.store import Store, open_store

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
SITES = [f"site-{n:02d}" for n in range(10)]


class Clock:
    """The keepers' clock, moved by the test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def stores(db_target: str) -> AsyncIterator[list[Store]]:
    """Three store objects on one database (three processes, on PostgreSQL), ten sites."""
    opened = [await open_store(db_target) for _ in range(3)]
    await opened[0].sync_fleet([Site(s, s, "UTC") for s in SITES], [])
    yield opened
    for s in opened:
        await s.close()


def _keeper(store: Store, name: str, clock: Clock,
            let_go: list[frozenset[str]] | None = None) -> LeaseKeeper:
    identity = PollerInfo(name, 1, "box", "headless poller", clock(), clock(), clock())

    async def noted(sites: frozenset[str]) -> None:
        if let_go is not None:
            let_go.append(sites)

    return LeaseKeeper(store, SiteShare(), lease_s=15, clock=clock, identity=identity,
                       let_go=noted)


async def test_alone_a_poller_takes_every_site_and_the_fleet_work(stores: list[Store]) -> None:
    clock = Clock()
    keeper = _keeper(stores[0], "a", clock)
    await keeper.round()
    assert keeper.share.held_sites() == frozenset(SITES)
    assert keeper.share.holds(None)


async def test_a_newcomer_gets_its_share_gradually_and_no_site_is_held_twice(
    stores: list[Store],
) -> None:
    clock = Clock()
    handed: list[frozenset[str]] = []
    a, b = _keeper(stores[0], "a", clock, handed), _keeper(stores[1], "b", clock)
    await a.round()
    rounds = 0
    while len(b.share.held_sites()) < 5:
        clock.advance(a.round_s)
        await b.round()
        await a.round()
        assert not a.share.held_sites() & b.share.held_sites()
        rounds += 1
        assert rounds < 20, "the shares never balanced"
    assert len(a.share.held_sites()) == 5 and rounds > 1  # handed over, not all at once
    assert all(len(step) <= 1 for step in handed)  # a fifth of a share of five: one a round
    assert a.share.holds(None) and not b.share.holds(None)  # the fleet work stays put


async def test_a_dead_pollers_sites_are_taken_once_its_leases_run_out(
    stores: list[Store],
) -> None:
    clock = Clock()
    a, b, c = (_keeper(s, n, clock) for s, n in zip(stores, "abc", strict=True))
    for _ in range(15):  # three pollers settle at 4, 3, 3 (ten sites)
        for k in (a, b, c):
            await k.round()
        clock.advance(a.round_s)
    assert sorted(len(k.share.held_sites()) for k in (a, b, c)) == [3, 3, 4]
    dead = set(a.share.held_sites())
    # a stops renewing (killed): within the lease its sites stay its own
    clock.advance(10)
    await b.round()
    await c.round()
    assert not (b.share.held_sites() | c.share.held_sites()) & dead
    clock.advance(6)  # a's leases have run out
    await b.round()
    await c.round()
    assert b.share.held_sites() | c.share.held_sites() == frozenset(SITES)
    assert not b.share.held_sites() & c.share.held_sites()
    assert b.share.holds(None) != c.share.holds(None)  # the fleet work went to one of them


async def test_a_poller_that_cannot_renew_stops_acting_before_its_leases_run_out(
    stores: list[Store],
) -> None:
    clock = Clock()
    keeper = _keeper(stores[0], "a", clock)
    await keeper.round()
    clock.advance(13.5)
    keeper.expire_if_stale()  # 1.5 s left: it still acts
    assert keeper.share.held_sites() == frozenset(SITES)
    clock.advance(0.6)
    keeper.expire_if_stale()  # less than a second left: it stops
    assert keeper.share.held_sites() == frozenset() and not keeper.share.holds(None)


async def test_leaving_hands_every_site_on_at_once(stores: list[Store]) -> None:
    clock = Clock()
    a, b = _keeper(stores[0], "a", clock), _keeper(stores[1], "b", clock)
    await a.round()
    await b.round()
    await a.leave()
    assert a.share.held_sites() == frozenset()
    await b.round()
    assert b.share.held_sites() == frozenset(SITES) and b.share.holds(FLEET_LEASE)
    assert [p.id for p in await stores[0].pollers()] == ["b"]
