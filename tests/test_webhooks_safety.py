"""Webhooks are no way into the network and leave no secret in a log.

Real HTTP on loopback only (receivers on 127.0.0.1, real dispatcher, real
httpx); refused targets are refused before any connection is attempted, so
no packet ever leaves for 169.254.x, 10.x or a public address; names are
resolved by an injected resolver, never by DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from fleettui.config import parse_config
from fleettui.domain import Punch, TzFlag
from fleettui.engine.webhooks import WebhookDispatcher
from fleettui.headless import JsonFormatter, run_headless
from fleettui.store import Store
from tests import test_http_api
from tests.test_engine import Clock
from tests.test_http_api import Api
from tests.test_http_webhooks import _punch
from tests.test_webhooks import (  # noqa: F401 (fixtures)
    SECRET,
    Receiver,
    _endpoint,
    _punches,
    receiver,
    store,
)

api = test_http_api.api  # the fixture: a server over a filled store

TOKEN = "SECRET" + os.urandom(8).hex()


def _everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record as caplog shows it, as the headless JSON lines show it,
    and its raw arguments (a URL passed as an argument counts even if unformatted)."""
    as_json = JsonFormatter()
    parts = [caplog.text]
    for record in caplog.records:
        parts += [record.getMessage(), as_json.format(record), repr(record.args)]
    return "\n".join(parts)


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Wait (bounded) until ``condition()`` is true, looking every 20 ms."""
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not {what} within {timeout_s} s") from None


# --- no secrets in logs ------------------------------------------------------------


async def test_a_token_in_a_receiver_url_is_in_no_log_line_nor_event(
    store: Store, receiver: Receiver, caplog: pytest.LogCaptureFixture,  # noqa: F811
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{receiver.url}?token={TOKEN}"
    clock = Clock(datetime.now(UTC))
    await _punches(store, per_device=3)
    dispatcher = WebhookDispatcher(store, [_endpoint(url)], clock=clock)
    await dispatcher.run_once()
    assert len(receiver.got) == 9  # delivered, with the token, to the receiver
    receiver.always_fail = True
    await _punches(store, per_device=1, hour=9)
    await dispatcher.run_once()  # HTTP 503
    await receiver.go_down()
    for _ in range(30):  # connection refused, hour after hour, until they die
        clock.now += timedelta(hours=1)
        await dispatcher.run_once()
    assert (await store.webhook_stats(url))["dead"] == 3
    await store.create_webhook_endpoint(
        "wh_tokened", url=f"https://hooks.example/x?token={TOKEN}", events=["*"],
        secret=SECRET, enabled=True, hex_signature_header=None, timeout_s=5.0, now=clock.now)
    await dispatcher.close()

    assert TOKEN not in _everything_logged(caplog)
    events = await store.events_after(0)
    assert {"webhook.dead", "webhook.created"} <= {e.kind for e in events}
    assert not [e.message for e in events if TOKEN in e.message]


async def test_headless_logs_no_token_of_a_receiver_url(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture,  # noqa: F811
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{receiver.url}?token={TOKEN}"
    config = parse_config("\n".join([
        "[[sites]]", 'id = "s"', 'name = "S"', 'timezone = "UTC"', "",
        # listed, never polled: the test writes its punches into the store itself
        "[[devices]]", 'id = "d1"', 'serial = "S1"', 'site = "s"', 'host = "127.20.221.1"',
        "enabled = false", "",
        "[[webhooks]]", f'url = "{url}"', f'secret = "{SECRET}"', "",
    ]))
    db = tmp_path / "fleet.db"
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(run_headless(config, db, stop=stop))
    await _until(lambda: any("polling" in r.getMessage() for r in caplog.records), "started")
    writer = await Store.open(db)
    start = datetime(2026, 3, 2, 8, 0)
    await writer.insert_punches("d1", [
        Punch("d1", str(1000 + n), start + timedelta(minutes=n), "UTC",
              (start + timedelta(minutes=n)).replace(tzinfo=UTC), TzFlag.OK, 0, 1, "sync",
              datetime.now(UTC))
        for n in range(5)])
    await writer.close()
    await _until(lambda: len(receiver.got) >= 5, "delivered")
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0
    assert TOKEN not in _everything_logged(caplog)


# --- a deleted endpoint hears nothing more -----------------------------------------


@dataclass
class HookedReceiver:
    """A receiver on 127.0.0.1 that runs ``on_receive(n)`` inside its n-th request,
    before answering it: what happens there happens while that delivery is in flight."""

    url: str = ""
    got: list[bytes] = field(default_factory=list)
    on_receive: Callable[[int], Awaitable[None]] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        """Take one delivery."""
        self.got.append(await request.read())
        if self.on_receive is not None:
            await self.on_receive(len(self.got))
        return web.Response(status=204)


@pytest.fixture
async def hooked() -> AsyncIterator[HookedReceiver]:
    rec = HookedReceiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield rec
    await runner.cleanup()


async def test_an_endpoint_deleted_while_its_lane_delivers_hears_nothing_more(
    api: Api, hooked: HookedReceiver
) -> None:
    made = await api.post("/v1/webhooks", role="admin",
                          json={"url": hooked.url, "events": ["punch.created"]})
    assert made.status_code == 201, made.text
    endpoint_id = made.json()["id"]
    # one device: its events go one after the other, so none is in flight but the 10th
    for n in range(60):
        await _punch(api, "ln1", str(8000 + n), n)
    deleted = asyncio.Event()

    async def delete_during_the_tenth(n: int) -> None:
        if n == 10:
            r = await api.client.delete(f"/v1/webhooks/{endpoint_id}", headers=api.auth("admin"))
            assert r.status_code == 204
            deleted.set()

    hooked.on_receive = delete_during_the_tenth
    dispatcher = WebhookDispatcher(api.store, [])
    task = asyncio.get_running_loop().create_task(dispatcher.run_forever(idle_s=0.05))
    try:
        await _until(deleted.is_set, "deleted")
        for n in range(5):  # committed after the delete
            await _punch(api, "ln1", str(9000 + n), 100 + n)
        dispatcher.kick()
        seen = dispatcher.ticks
        await _until(lambda: dispatcher.ticks >= seen + 5, "five more dispatcher rounds")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await dispatcher.close()
    assert len(hooked.got) == 10  # the one in flight at the delete, and nothing after
    # and nothing was queued for it again (its history from the first event)
    assert await api.store.webhook_stats(endpoint_id) == {
        "pending": 0, "delivered": 0, "dead": 0, "avg_latency_ms": None}
