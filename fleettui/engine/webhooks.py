"""Signed webhooks: from the store's outbox to each endpoint, at least once, in order.

Every fact that other systems hear about is first an outbox row, written in
the same transaction as the fact. The dispatcher gives each endpoint its own
copy of the rows it wants (``events`` filter), then POSTs them:

- signed per Standard Webhooks: ``webhook-id`` (stable per event, so a
  receiver deduplicates retries), ``webhook-timestamp``, ``webhook-signature``
  ``v1,<base64 HMAC-SHA256 of id.timestamp.body>`` with the endpoint's
  ``whsec_`` secret; optionally a plain hex HMAC of the body in a header of
  the endpoint's choosing (the article's scheme);
- during a secret rotation (an API endpoint's PATCH, or a config endpoint's
  ``previous_secret`` until ``previous_secret_until``)
  signed twice, ``v1,<new> v1,<previous>``, so a receiver still verifying with
  the previous secret keeps accepting until it switches; the hex header is
  signed with the new secret only (it has room for one signature);
- in order per endpoint and device: only the oldest undelivered event of a
  device is ever in flight, so a failing receiver holds that device's later
  events back rather than reordering them; devices go in parallel, at most
  ``concurrency`` requests in flight per endpoint (over one shared
  ``SpreadTransport``, called directly, which keeps that cheap), and
  endpoints go in parallel;
- retried with exponential backoff and jitter (1 s doubling to 10 min) for
  24 hours, then dead-lettered (replayable); latency recorded per delivery;
- only to addresses the egress rule allows (``fleettui/egress.py``), checked
  on the address each connection is actually opened to (``GuardedBackend``
  in ``transport.py``); a refused target fails like any other delivery, with
  ``refused target`` as its error;
- each failure recorded as ``<class>: <detail>`` (:func:`failure_class`): who
  may not see the detail (a viewer key, a viewer's screen) sees the class;
- sent by one poller only when several share the database: the one holding
  the site of the event's device (its ``SiteShare``), or the ``FLEET`` lease
  for an event of no device. Each round reads the share as it starts; a site
  lost meanwhile stops the rounds under way from starting more requests, and
  :meth:`WebhookDispatcher.quiesce` waits for the requests already out to be
  recorded, so the next holder, once the lease is let go, never sends them
  again. One poller sends all of a device's events: their order holds.

Endpoints come from the config (given to the dispatcher; their queue is keyed
by URL) and from the store (created through the HTTP API; keyed by their id).
The store's are read again at every round, so one created or deleted through
the API is served or dropped without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import random
import re
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import httpx

from fleettui.config import WebhookConfig
from fleettui.domain import (
    ConfigEndpoint,
    DeliveryResult,
    DueDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from fleettui.engine.share import SiteShare
from fleettui.engine.transport import GuardedBackend, RefusedTarget, Resolver, SpreadTransport
from fleettui.store import Store

log = logging.getLogger(__name__)


#: how much of a receiver's answer is read (the status is what counts)
RESPONSE_READ = 64 * 1024


def quiet_http_client_logs() -> None:
    """Silence the HTTP client's own request logs, whatever the root logger's level.

    httpx logs every request at INFO with its full URL, so a receiver's
    ``?token=`` lands in the log (about 60 lines a second under load); httpcore
    logs every connection step at DEBUG. Failures reach the log through the
    dispatcher, which never writes a URL; warnings and errors still pass.
    """
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


quiet_http_client_logs()  # at import: before any client of this process sends anything

SECRET_PREFIX = "whsec_"
#: every event type the outbox carries (an endpoint's ``events`` filter picks among them)
EVENT_TYPES: tuple[str, ...] = tuple(e.value for e in WebhookEvent)


def event_pattern_error(pattern: str) -> str | None:
    """Why ``pattern`` can match no event (None if it is a name, ``*`` or a prefix ``x.*``)."""
    if pattern == "*" or pattern in EVENT_TYPES:
        return None
    if pattern.endswith("*") and "*" not in pattern[:-1]:
        if any(e.startswith(pattern[:-1]) for e in EVENT_TYPES):
            return None
        return f"{pattern!r} matches no event"
    return f"{pattern!r} is not an event name (nor * nor a prefix ending in *)"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (raw bytes if it is not base64)."""
    body = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except ValueError:
        return body.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks signature header value: ``v1,<base64>``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature`` with one ``v1,<base64>`` per secret, space-separated."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets if s)


@dataclass(frozen=True)
class Target:
    """One endpoint as the dispatcher serves it: ``key`` names its queue in the store."""

    key: str
    url: str
    events: tuple[str, ...]
    secret: str = field(repr=False)
    hex_signature_header: str | None = None
    timeout_s: float = 10.0
    #: the secret before a rotation, signing too until its overlap ends ("" when none)
    previous_secret: str = field(default="", repr=False)
    #: "config" (the file's: changed by a restart) or "api" (the store's: may be changed
    #: or deleted at any moment, so checked again before every send)
    origin: str = "config"

    @classmethod
    def from_config(cls, endpoint: WebhookConfig, now: datetime) -> Target:
        """A config endpoint: its queue is keyed by its URL; its previous secret signs
        too if ``now`` is before its ``previous_secret_until``."""
        until = endpoint.previous_secret_until
        previous = endpoint.previous_secret.get_secret_value() if (
            endpoint.previous_secret is not None and until is not None and now < until) else ""
        return cls(endpoint.url, endpoint.url, tuple(endpoint.events),
                   endpoint.secret.get_secret_value(), endpoint.hex_signature_header,
                   endpoint.timeout_s, previous)

    @classmethod
    def from_store(cls, endpoint: WebhookEndpoint, now: datetime) -> Target:
        """An endpoint created through the API (read from the store with its secrets),
        with its previous secret if its overlap is not over at ``now``."""
        until = endpoint.previous_secret_until
        previous = endpoint.previous_secret if until is not None and now < until else ""
        return cls(endpoint.delivery_key, endpoint.url, endpoint.events, endpoint.secret,
                   endpoint.hex_signature_header, endpoint.timeout_s, previous, origin="api")

    @property
    def signing_secrets(self) -> tuple[str, ...]:
        """The secrets that sign a delivery: the current one, then the previous one."""
        return tuple(s for s in (self.secret, self.previous_secret) if s)


def config_endpoint_id(url: str) -> str:
    """The stable id the API shows for a config endpoint (derived from its URL)."""
    return "cfg_" + hashlib.sha256(url.encode()).hexdigest()[:12]


def config_endpoints(endpoints: Sequence[WebhookConfig]) -> list[ConfigEndpoint]:
    """The config's endpoints as ``store.sync_webhook_endpoints`` mirrors them (no secret)."""
    return [
        ConfigEndpoint(config_endpoint_id(e.url), e.url, tuple(e.events), e.enabled,
                       e.hex_signature_header, e.timeout_s)
        for e in endpoints
    ]


#: what a failed delivery's error says first: all a viewer is shown of it (with "HTTP 503")
FAILURE_CLASSES = ("refused target", "connection refused", "connection failed",
                   "name not resolved", "timeout", "TLS error", "protocol error",
                   "request failed")
_HTTP_STATUS = re.compile(r"HTTP \d{3}")


def failure_text(error: httpx.HTTPError) -> str:
    """A failed request as stored: ``<class>: <detail>``, the class one of FAILURE_CLASSES.

    The detail is httpx's own message (never the response body, nor the URL).
    """
    detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    causes: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and len(causes) < 8:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    refused = next((c for c in causes if isinstance(c, RefusedTarget)), None)
    if refused is not None:
        return str(refused)  # "refused target: <host> is ...; how to allow it"
    if isinstance(error, httpx.TimeoutException):
        kind = "timeout"
    elif any(isinstance(c, ssl.SSLError) for c in causes):
        kind = "TLS error"
    elif isinstance(error, httpx.ConnectError):
        text = str(error).lower()
        if "name resolution failed" in text:
            kind = "name not resolved"
        elif any(isinstance(c, ConnectionRefusedError) for c in causes) or (
                "connect call failed" in text or "refused" in text):
            kind = "connection refused"
        else:
            kind = "connection failed"
    elif isinstance(error, httpx.NetworkError):
        kind = "connection failed"
    elif isinstance(error, httpx.ProtocolError):
        kind = "protocol error"
    else:
        kind = "request failed"
    return f"{kind}: {detail}"


def failure_class(error: str) -> str:
    """The class of a stored delivery error (``HTTP 503``, ``timeout``, ``refused
    target``...): what may be shown to anyone. An error of an older kind, stored
    before classes, is ``delivery failed``; no error is ``""``."""
    if not error:
        return ""
    head = error.split(":", 1)[0]
    if _HTTP_STATUS.fullmatch(head) or head in FAILURE_CLASSES:
        return head
    return "delivery failed"


def backoff(attempts: int, rng: random.Random) -> timedelta:
    """Delay before the next try after ``attempts`` failures: doubling, capped, jittered."""
    base = min(600.0, 2.0 ** max(attempts - 1, 0))
    return timedelta(seconds=base * (0.5 + rng.random()))


class _Halt(Enum):
    """Why a delivery was not attempted (it keeps its place in the queue)."""

    #: the endpoint is gone or changed: nothing more is sent to it this round
    GONE = "gone"
    #: the poller lost a site after the round began: the round starts no more requests
    CUT = "cut"


@dataclass(eq=False)
class _Round:
    """One endpoint round under way, as :meth:`WebhookDispatcher.quiesce` waits for it."""

    #: set once the round is over: its attempts recorded (or it failed)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: a site was lost since the round read the share: start no more requests
    cut: bool = False


class WebhookDispatcher:
    """Delivers the outbox to every enabled endpoint of the config and of the store."""

    def __init__(
        self,
        store: Store,
        endpoints: list[WebhookConfig],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        concurrency: int = 16,
        max_age: timedelta = timedelta(hours=24),
        seed: int | None = None,
        allow_private_targets: bool = False,
        resolver: Resolver | None = None,
        share: SiteShare | None = None,
    ) -> None:
        """``allow_private_targets`` is the config's ``[security]
        allow_private_webhook_targets``; ``resolver`` replaces the system's for the
        egress check (tests); ``share`` the sites this poller sends for (None: all of
        them, and the events of no device: a poller alone on its database)."""
        self.store = store
        self.share = share if share is not None else SiteShare.whole()
        #: the rounds under way (quiesce waits for those begun before it is called)
        self._rounds: set[_Round] = set()
        self.share.on_change(self._share_changed)
        self.endpoints = [e for e in endpoints if e.enabled]
        self.clock = clock
        self._transport: SpreadTransport | None = None
        self._urls: dict[str, httpx.URL] = {}
        self._concurrency = concurrency
        #: requests in flight, per endpoint (its key)
        self._limits: dict[str, asyncio.Semaphore] = {}
        self.max_age = max_age
        self.allow_private_targets = allow_private_targets
        #: every connection of the dispatcher's own client is opened through it
        self.guard = (GuardedBackend(allow_private_targets) if resolver is None
                      else GuardedBackend(allow_private_targets, resolver))
        self._rng = random.Random(seed)
        self._kick = asyncio.Event()
        #: each running lane's own kick, and the endpoints the lanes serve (by key)
        self._lane_kicks: dict[str, asyncio.Event] = {}
        self._targets: dict[str, Target] = {}
        #: rounds of run_forever's loop so far (each reads the endpoints again): a test
        #: waits for a few more of them rather than for a guessed time
        self.ticks = 0

    @property
    def transport(self) -> SpreadTransport:
        """The one shared transport every delivery goes through (made on first use).

        Deliveries go to it directly, not through an ``httpx.AsyncClient``: the
        client's layer (cookie jar, redirects, auth, default headers, a response
        read whole) was 40% of the dispatcher's CPU per delivery, and a webhook
        needs none of it; a receiver's cookies are not kept, its redirects not
        followed. A transport of our own also means no proxy from the
        environment: the request goes where the guard checked.
        """
        if self._transport is None:
            quiet_http_client_logs()
            self._transport = SpreadTransport(self._concurrency, network_backend=self.guard)
        return self._transport

    def _share_changed(self, gained: frozenset[str], lost: frozenset[str]) -> None:
        """The sites held changed: a round under way that may hold a lost site's
        deliveries starts no more requests (the rest keep their place); every lane
        looks again at once, with the new share."""
        if lost:
            for round_ in self._rounds:
                round_.cut = True
        self.kick()

    async def quiesce(self) -> None:
        """Return once no round that began before this call is still sending: each has
        recorded its attempts (or failed).

        Called after the share let go of a site and before its lease is released:
        rounds begun since read the new share and never fetch that site's
        deliveries; the ones begun before were cut (no new request) and are
        waited for here, so what they sent is recorded before the next holder
        can fetch it. The wait is bounded by the requests in flight (each by its
        endpoint's timeout).
        """
        for round_ in list(self._rounds):
            await round_.done.wait()

    def kick(self, *_: Any) -> None:
        """Something was committed: look at the outbox now rather than at the next tick."""
        self._kick.set()
        for lane in self._lane_kicks.values():
            lane.set()

    async def close(self) -> None:
        """Close the transport's connections."""
        if self._transport is not None:
            await self._transport.aclose()

    async def run_once(self) -> int:
        """Queue new events for each endpoint and send what is due; returns attempts made.

        Each device's due events go out one after the other, stopping at the
        first failure (the rest keep their place); devices go in parallel, and
        so do endpoints. Only the events of the sites the share holds (and of no
        device if it holds ``FLEET``) are sent.
        """
        made = await asyncio.gather(*(self._endpoint_round(e) for e in await self.targets()))
        return sum(made)

    async def _endpoint_round(self, endpoint: Target) -> int:
        """One endpoint's share of a round: queue, send what is due, record; attempts made.

        An API endpoint deleted, paused or moved to another URL meanwhile hears
        nothing more from this round: nothing is queued for a deleted one (its
        cursor is gone with it; queueing would start again from the first
        event), and every send first checks that it is still there as it was.

        The share is read as the round begins, in the same step as the round is
        counted as under way (nothing awaited between): a round that read a site
        as held is one that :meth:`quiesce` waits for.
        """
        round_ = _Round()
        self._rounds.add(round_)
        sites, deviceless = self.share.sites_filter(), self.share.holds(None)
        try:
            return await self._round(endpoint, round_, sites, deviceless)
        finally:
            self._rounds.discard(round_)
            round_.done.set()

    async def _round(self, endpoint: Target, round_: _Round, sites: frozenset[str] | None,
                     deviceless: bool) -> int:
        """The work of ``_endpoint_round``, for the share it read."""
        now = self.clock()
        await self.store.webhook_enqueue(endpoint.key, endpoint.events, now,
                                         registered=endpoint.origin == "api")
        by_device: dict[str | None, list[DueDelivery]] = {}
        for d in await self.store.webhook_due(endpoint.key, now, sites=sites,
                                              deviceless=deviceless):
            by_device.setdefault(d.device_id, []).append(d)
        if not by_device:
            return 0
        limit = self._limits.setdefault(endpoint.key, asyncio.Semaphore(self._concurrency))
        results = await asyncio.gather(*(
            self._deliver_in_order(endpoint, queue, limit, round_)
            for queue in by_device.values()))
        flat = [r for batch in results for r in batch if isinstance(r, DeliveryResult)]
        await self.store.webhook_results(endpoint.key, flat, self.clock())
        if any(r is _Halt.GONE for batch in results for r in batch):  # gone or changed
            if self._targets.get(endpoint.key) == endpoint:
                del self._targets[endpoint.key]  # its lane ends; the loop reads them again
            self._kick.set()
        return len(flat)

    async def _still_as_known(self, endpoint: Target) -> bool:
        """Whether ``endpoint`` may be sent to now: a config one always; an API one if
        the store still has it, enabled, at the same URL."""
        if endpoint.origin != "api":
            return True
        known = await self.store.webhook_endpoint(endpoint.key)
        return known is not None and known.enabled and known.url == endpoint.url

    async def targets(self) -> list[Target]:
        """The config's enabled endpoints, then the store's (read now: one query).

        A previous secret whose overlap is over stops signing at once and is
        cleared from the store here (lazily: the first round that sees it).
        """
        known = await self.store.webhook_endpoints(with_secrets=True, origin="api")
        now = self.clock()
        if any(e.previous_secret_until is not None and e.previous_secret_until <= now
               for e in known):
            await self.store.webhook_forget_previous_secrets(now)
        return [Target.from_config(e, now) for e in self.endpoints] + [
            Target.from_store(e, now) for e in known if e.enabled]

    async def _deliver_in_order(
        self, endpoint: Target, queue: list[DueDelivery], limit: asyncio.Semaphore,
        round_: _Round,
    ) -> list[DeliveryResult | _Halt]:
        """One device's due deliveries, one after the other, up to the first failure (or
        halt: the endpoint gone or changed, or the round cut; the rest keep their
        place)."""
        out: list[DeliveryResult | _Halt] = []
        for delivery in queue:
            result = await self._deliver(endpoint, delivery, limit, round_)
            out.append(result)
            if not isinstance(result, DeliveryResult) or not result.ok:
                break
        return out

    async def run_forever(self, idle_s: float = 0.5) -> None:
        """Deliver until cancelled: each endpoint in a lane of its own, at once after a
        kick, else every ``idle_s``.

        Lanes keep endpoints apart: a receiver that hangs until its timeout (a
        firewall dropping packets) holds back its own events only, never the
        other endpoints'. This loop reads the endpoints again at every kick or
        tick, starting a lane for a new one; a lane whose endpoint is gone ends.
        """
        _ = self.transport  # made now (its TLS context takes ~20 ms), not on the first event
        lanes: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                self._kick.clear()  # before the read: a kick during it means read again
                try:
                    self._targets = {t.key: t for t in await self.targets()}
                except Exception:
                    log.exception("webhook endpoints could not be read")
                for key in self._targets:
                    if key not in lanes or lanes[key].done():
                        lanes[key] = asyncio.get_running_loop().create_task(
                            self._lane(key, idle_s), name=f"webhooks:{key}")
                for key in [k for k, task in lanes.items() if task.done()]:
                    del lanes[key]
                self.ticks += 1
                await _wait(self._kick, idle_s)
        finally:
            for task in lanes.values():
                task.cancel()
            for task in lanes.values():
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _lane(self, key: str, idle_s: float) -> None:
        """One endpoint's deliveries, round after round, while it is an endpoint.

        The kick is cleared before a round, never after: an event committed while
        a round runs (after it queued the outbox) leaves the kick set, so the lane
        goes round again at once instead of leaving that event for the idle tick.
        """
        kick = self._lane_kicks.setdefault(key, asyncio.Event())
        try:
            while (endpoint := self._targets.get(key)) is not None:
                kick.clear()
                try:
                    made = await self._endpoint_round(endpoint)
                except Exception:
                    log.exception("webhook dispatch failed")  # no URL: it may hold a token
                    made = 0
                if made:
                    continue
                await _wait(kick, idle_s)
        finally:
            self._lane_kicks.pop(key, None)

    async def _deliver(
        self, endpoint: Target, delivery: DueDelivery, limit: asyncio.Semaphore,
        round_: _Round,
    ) -> DeliveryResult | _Halt:
        """One attempt at one delivery: its result for the store, or why it was not
        attempted (the endpoint gone or changed; the round cut by a site lost)."""
        body = delivery.payload.encode()
        msg_id = f"msg_{delivery.outbox_id}"
        now = self.clock()
        stamp = int(now.timestamp())
        headers = {"content-type": "application/json", "webhook-id": msg_id,
                   "webhook-timestamp": str(stamp), "user-agent": "fleettui-webhooks"}
        secret = endpoint.secret
        if secret:
            headers["webhook-signature"] = signature_header(
                endpoint.signing_secrets, msg_id, stamp, body)
            if endpoint.hex_signature_header:  # one value: the new secret only
                headers[endpoint.hex_signature_header] = hmac.new(
                    secret_key(secret), body, hashlib.sha256).hexdigest()
        error = ""
        latency_ms: float | None = None
        async with limit:
            if round_.cut:  # checked once a request may start: the wait may be long
                return _Halt.CUT
            if not await self._still_as_known(endpoint):
                return _Halt.GONE
            if round_.cut:  # lost while the endpoint was looked up
                return _Halt.CUT
            started = time.perf_counter()
            try:
                status = await self._post(endpoint.url, body, headers, endpoint.timeout_s)
                latency_ms = (time.perf_counter() - started) * 1000
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
            except httpx.HTTPError as e:
                error = failure_text(e)
        done = self.clock()
        if not error:
            return DeliveryResult(delivery.outbox_id, ok=True, latency_ms=latency_ms)
        attempts = delivery.attempts + 1
        dead = done - delivery.created_at >= self.max_age
        return DeliveryResult(
            delivery.outbox_id, ok=False, error=error, error_class=failure_class(error),
            dead=dead, retry_at=None if dead else done + backoff(attempts, self._rng),
        )


    async def _post(self, url: str, body: bytes, headers: dict[str, str],
                    timeout_s: float) -> int:
        """POST ``body`` to ``url`` through the transport; the response's status.

        ``timeout_s`` bounds each phase (connect, write, each read), as httpx's
        own timeout does. At most RESPONSE_READ bytes of the answer are read: a
        receiver cannot make the dispatcher hold a large body (the connection
        is closed, not reused, when it sent more).
        """
        parsed = self._urls.get(url)
        if parsed is None:  # parsing a URL was 6% of a delivery's CPU: once per endpoint
            if len(self._urls) > 1000:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        request = httpx.Request("POST", parsed, content=body, headers=headers,
                                extensions={"timeout": httpx.Timeout(timeout_s).as_dict()})
        response = await self.transport.handle_async_request(request)
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        try:
            read = 0
            async for chunk in stream:
                read += len(chunk)
                if read > RESPONSE_READ:
                    break
        finally:
            await stream.aclose()
        return response.status_code


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    """Wait for ``event``, at most ``timeout_s``.

    asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
    cancellation that lands as the event comes, and stop() then waits forever.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
