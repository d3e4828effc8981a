"""Webhooks are no way into the network and leave no secret in a log.

Real HTTP on loopback only (receivers on 127.0.0.1, real dispatcher, real
httpx); refused targets are refused before any connection is attempted, so
no packet ever leaves for 169.254.x, 10.x or a public address; names are
resolved by an injected resolver, never by DNS.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleettui.config import parse_config
from fleettui.domain import Punch, TzFlag
from fleettui.engine.webhooks import WebhookDispatcher
from fleettui.headless import JsonFormatter, run_headless
from fleettui.store import Store
from tests.test_engine import Clock
from tests.test_webhooks import (  # noqa: F401 (fixtures)
    SECRET,
    Receiver,
    _endpoint,
    _punches,
    receiver,
    store,
)

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
