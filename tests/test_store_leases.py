"""The store's pollers and site leases, on both backends: claimed in id order, renewed,
lost when they run out and taken by another poller then, let go, and (on PostgreSQL)
never taken by two pollers claiming at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from fleettui.domain import FLEET_LEASE, PollerInfo, Site
from fleettui.store import Store, open_store

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=15)


def _poller(name: str, pid: int = 100) -> PollerInfo:
    return PollerInfo(name, pid, "box-" + name, "headless poller", T0, T0, T0)


@pytest.fixture
async def store(db_target: str) -> AsyncIterator[Store]:
    """A store with five sites (site-1 .. site-5) and no device."""
    s = await open_store(db_target)
    await s.sync_fleet([Site(f"site-{i}", f"Site {i}", "UTC") for i in range(1, 6)], [])
    yield s
    await s.close()


async def test_sites_are_claimed_in_order_renewed_and_listed_by_poller(store: Store) -> None:
    a, b = _poller("a", 1), _poller("b", 2)
    await store.poller_alive(a, T0, LEASE)
    await store.poller_alive(b, T0 + timedelta(seconds=1), LEASE)
    assert await store.claim_leases("a", 2, T0, LEASE, fleet=True) == [
        FLEET_LEASE, "site-1", "site-2"]
    assert await store.claim_leases("b", 10, T0, LEASE, fleet=True) == [
        "site-3", "site-4", "site-5"]  # the fleet lease is a's
    assert await store.renew_leases("a", T0 + timedelta(seconds=5), LEASE) == [
        FLEET_LEASE, "site-1", "site-2"]
    listed = await store.pollers()
    assert [(p.id, p.pid, p.host, p.sites) for p in listed] == [
        ("a", 1, "box-a", (FLEET_LEASE, "site-1", "site-2")),
        ("b", 2, "box-b", ("site-3", "site-4", "site-5"))]
    assert listed[0].live(T0 + timedelta(seconds=14)) and not listed[0].live(T0 + LEASE)
    leases = {lease.site_id: lease for lease in await store.site_leases()}
    assert leases["site-1"].expires_at == T0 + timedelta(seconds=5) + LEASE
    assert leases["site-3"].since == T0


async def test_a_lease_run_out_is_taken_by_another_and_not_renewed_by_its_old_holder(
    store: Store,
) -> None:
    await store.claim_leases("a", 5, T0, LEASE, fleet=True)
    assert await store.claim_leases("b", 5, T0 + timedelta(seconds=14), LEASE, fleet=True) == []
    later = T0 + LEASE  # a's leases run out now
    assert await store.claim_leases("b", 2, later, LEASE, fleet=True) == [
        FLEET_LEASE, "site-1", "site-2"]
    assert await store.renew_leases("a", later, LEASE) == ["site-3", "site-4", "site-5"]


async def test_let_go_and_gone(store: Store) -> None:
    await store.poller_alive(_poller("a"), T0, LEASE)
    await store.claim_leases("a", 5, T0, LEASE)
    await store.release_leases("a", ["site-2", "site-4"])
    await store.release_leases("b", ["site-1"])  # not b's: nothing happens
    assert await store.claim_leases("b", 5, T0, LEASE) == ["site-2", "site-4"]
    await store.poller_gone("a")
    assert [p.id for p in await store.pollers()] == []
    assert await store.claim_leases("b", 5, T0, LEASE) == ["site-1", "site-3", "site-5"]


async def test_a_poller_dead_long_ago_is_forgotten(store: Store) -> None:
    await store.poller_alive(_poller("dead"), T0, LEASE)
    await store.poller_alive(_poller("live"), T0 + timedelta(minutes=5), LEASE)
    assert [p.id for p in await store.pollers()] == ["dead", "live"]  # run out, still listed
    await store.poller_alive(_poller("live"), T0 + timedelta(minutes=11), LEASE)
    assert [p.id for p in await store.pollers()] == ["live"]


async def test_removed_sites_are_never_claimed(store: Store) -> None:
    await store.sync_fleet([Site("site-1", "Site 1", "UTC")], [])
    assert await store.claim_leases("a", 5, T0, LEASE) == ["site-1"]


async def test_two_pollers_claiming_at_once_never_take_the_same_site(pg_url: str) -> None:
    stores = [await open_store(pg_url) for _ in range(3)]
    try:
        await stores[0].sync_fleet([Site(f"s{i:03d}", f"S{i}", "UTC") for i in range(90)], [])
        held: list[list[str]] = [[], [], []]
        for _ in range(4):  # rounds of racing claims: a site never goes to two pollers
            taken = await asyncio.gather(*(
                s.claim_leases(f"p{n}", 20, T0, LEASE, fleet=True)
                for n, s in enumerate(stores)))
            for mine, new in zip(held, taken, strict=True):
                mine.extend(new)
            every = [site for mine in held for site in mine]
            assert len(every) == len(set(every))
        assert sorted(every) == sorted([FLEET_LEASE] + [f"s{i:03d}" for i in range(90)])
    finally:
        for s in stores:
            await s.close()
