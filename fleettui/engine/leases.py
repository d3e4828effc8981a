"""The lease keeper: the sites a poller holds when several share one database.

Every ``lease_s / 5`` seconds (3 s at the default 15 s) a round:

1. says this poller is alive until now + ``lease_s`` (``poller_alive``);
2. renews every lease it still holds (one that ran out and was taken by
   another poller meanwhile is gone: polling it stops at once);
3. counts the live pollers and the sites, and aims at its fair share
   (``fair_share``: the sites split evenly, the oldest pollers taking the
   remainder, one each): below it, it claims free sites (no lease, or
   one run out: a dead poller's) up to that share at once; above it (a new
   poller joined), it lets go of at most ``STEP`` of its share per round,
   so that the newcomer takes sites over gradually, not all at once;
4. tries for the ``FLEET`` lease (the work of no site) when nobody holds it.

A site is let go only after its devices' work in hand is done and its
webhook deliveries in flight are recorded (``let_go``), so that the next
holder never runs a command or sends a delivery a second time. That wait
(a device's sync, a check timing out) may be longer than a lease: it runs
beside the rounds, which go on renewing every lease meanwhile, the one
being let go included (nobody may take it before its work is done).

A poller that cannot renew in time stops acting for every site ``SAFETY``
before its leases run out: another poller may hold them then. That is
checked by a watchdog beside the rounds (the database unreachable, or a
round stuck waiting for it) and at the end of every round (one that took so
long that what it renewed is about to run out acts for nothing).

A killed poller's sites are claimed by the others at their first round
after its leases run out: within ``lease_s`` + one round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from fleettui.domain import FLEET_LEASE, PollerInfo
from fleettui.engine.share import SiteShare
from fleettui.store import Store

log = logging.getLogger(__name__)

#: rounds per lease: a lease is renewed this many times before it would run out
ROUNDS_PER_LEASE = 5
#: the share of its fair share a poller above it lets go of per round (at least one site)
STEP = 0.2
#: a poller that could not renew stops acting this long before its leases run out
SAFETY = timedelta(seconds=1)

LetGo = Callable[[frozenset[str]], Awaitable[None]]


def new_identity(mode: str, now: datetime) -> PollerInfo:
    """This process as a poller: a new id each start (a restarted poller is a new one)."""
    host = socket.gethostname()
    ident = f"{host}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    return PollerInfo(ident, os.getpid(), host, mode, now, now, now)


def fair_share(sites: int, live: list[str], me: str) -> int:
    """How many sites this poller aims at: the sites split evenly over the live pollers,
    the first ``sites % pollers`` of them (oldest first) taking one more, so that the
    shares add up to the sites and every poller can reach its own."""
    if me not in live:
        live = [*live, me]
    base, extra = divmod(sites, len(live))
    return base + (1 if live.index(me) < extra else 0)


class LeaseKeeper:
    """Claims, renews, balances and lets go of this poller's site leases."""

    def __init__(self, store: Store, share: SiteShare, *, lease_s: float,
                 clock: Callable[[], datetime], identity: PollerInfo,
                 let_go: LetGo | None = None) -> None:
        self.store = store
        self.share = share
        self.lease = timedelta(seconds=lease_s)
        self.clock = clock
        self.identity = identity
        self._let_go = let_go
        #: until when the leases held are known to hold (the last renewal's)
        self.valid_until: datetime | None = None
        #: the sites being let go (still ours in the store, no longer acted for), and the
        #: task handing them over (one hand-over at a time)
        self._going: frozenset[str] = frozenset()
        self._handing: asyncio.Task[None] | None = None
        #: rounds run so far (a test waits for a few more rather than for a guessed time)
        self.rounds = 0

    @property
    def round_s(self) -> float:
        """Seconds between rounds."""
        return self.lease.total_seconds() / ROUNDS_PER_LEASE

    async def round(self) -> None:
        """One round: alive, renew, balance, the fleet lease (see the module)."""
        now = self.clock()
        me = self.identity.id
        handed = self._handing is not None and self._handing.done()
        await self.store.poller_alive(self.identity, now, self.lease)
        held = set(await self.store.renew_leases(me, now, self.lease))
        self.valid_until = now + self.lease
        if handed:  # it ended before this renewal: the leases it released are not in `held`
            self._handing, self._going = None, frozenset()
        live = [p.id for p in await self.store.pollers() if p.live(now)]
        fair = fair_share(len(await self.store.sites()), live, me)
        mine = held - {FLEET_LEASE} - self._going
        if len(mine) < fair or FLEET_LEASE not in held:
            held.update(await self.store.claim_leases(
                me, max(0, fair - len(mine)), now, self.lease, fleet=FLEET_LEASE not in held))
        # not ``elif``: a poller above its share that does not hold the fleet lease (tried
        # for it just above) lets go too, or a newcomer would never get its share
        if len(mine) > fair and self._handing is None:
            step = max(1, math.floor(fair * STEP))
            self._going = frozenset(sorted(mine)[-min(step, len(mine) - fair):])
            self._act_for(held)  # nothing new starts for them from now on
            self._handing = asyncio.get_running_loop().create_task(
                self._hand_over(self._going), name="leases:hand-over")
            # a quick hand-over ends within the round; a slow one goes on beside the rounds
            # (they keep renewing its leases: nobody takes them before their work is done)
            await asyncio.wait({self._handing}, timeout=self.round_s)
        self._act_for(held)
        self.rounds += 1

    def _act_for(self, held: set[str]) -> None:
        """Act for the leases held but those being let go, if they still hold long enough
        (a round that took nearly a lease to renew them acts for nothing)."""
        if self.valid_until is None or self.clock() >= self.valid_until - SAFETY:
            if self.share.held_sites() or self.share.holds(None):
                log.warning("the site leases were renewed too late to be relied on: stopping "
                            "work on every site until a round renews them in time")
            self.share.set(())
        else:
            self.share.set(held - self._going)

    async def _hand_over(self, going: frozenset[str]) -> None:
        """Let go of sites: once their work in hand is done (``let_go``), their leases are
        released, for another poller to take at its next round. The sites stay out of
        the share until a round renews after this (the leases released are not in it)."""
        try:
            if self._let_go is not None:
                await self._let_go(going)
            await self.store.release_leases(self.identity.id, sorted(going))
            log.info("let go of %d site(s) for a newcomer: %s", len(going),
                     ", ".join(sorted(going)))
        except Exception:  # they stay ours: acted for again from the next round
            log.exception("could not let go of site(s) %s", ", ".join(sorted(going)))

    def expire_if_stale(self) -> None:
        """Stop acting for every site when the leases may have run out unrenewed."""
        if self.valid_until is not None and self.clock() >= self.valid_until - SAFETY:
            if self.share.held_sites() or self.share.holds(None):
                log.warning("could not renew the site leases in time: stopping work on every "
                            "site until they are renewed")
            self.share.set(())

    async def _watch(self) -> None:
        """Beside the rounds: stop acting once the leases may run out unrenewed (a round
        stuck on the database would not notice)."""
        while True:
            self.expire_if_stale()
            left = (self.round_s if self.valid_until is None else
                    (self.valid_until - SAFETY - self.clock()).total_seconds())
            await asyncio.sleep(min(max(left, 0.05), self.round_s))

    async def run_forever(self, *, first_after: bool = False) -> None:
        """Rounds until cancelled (``first_after``: the first one round from now: the
        engine ran one at start), each ``round_s`` after the previous one began (a slow
        round does not push the renewals further apart); a failed round is logged and
        retried at the next. A hand-over under way is cancelled with it (``leave`` lets
        everything go)."""
        loop = asyncio.get_running_loop()
        watchdog = loop.create_task(self._watch(), name="leases:watch")
        try:
            if first_after:
                await asyncio.sleep(self.round_s)
            while True:
                began = loop.time()
                try:
                    await self.round()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("the site leases could not be renewed")
                    self.expire_if_stale()
                await asyncio.sleep(max(0.0, began + self.round_s - loop.time()))
        finally:
            for task in (watchdog, self._handing):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def leave(self) -> None:
        """Stop cleanly: every lease let go at once (the others take them at their next
        round, without waiting for them to run out) and this poller forgotten."""
        self.share.set(())
        await self.store.poller_gone(self.identity.id)
