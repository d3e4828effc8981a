"""Dead webhook deliveries in the control room: counted in the header, listed, replayed.

The deliveries die for real: the real dispatcher sends to a real receiver on
loopback that refuses them, on an injected clock that lives through the 24 h
of retries. The app is a viewer of that store, driven with its Pilot.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from fleettui.engine.webhooks import WebhookDispatcher
from fleettui.store import Store
from fleettui.tui.app import FleetApp
from fleettui.tui.deadletters import DeadLetters, dead_table
from tests.test_engine import Clock
from tests.test_headless import fleettui
from tests.test_tui import wait_for
from tests.test_webhooks import (  # noqa: F401 (fixtures)
    SECRET,
    Receiver,
    _drain,
    _endpoint,
    _punches,
    receiver,
    store,
)


def _header(app: FleetApp) -> str:
    return str(app.query_one("#totals").render())


async def test_dead_deliveries_are_shown_and_replayed_from_the_control_room(
    store: Store, receiver: Receiver  # noqa: F811 (fixtures)
) -> None:
    await _punches(store, per_device=1)
    clock = Clock(datetime.now(UTC))
    dispatcher = WebhookDispatcher(store, [_endpoint(receiver.url)], clock=clock,
                                   allow_private_targets=True)
    receiver.always_fail = True
    for _ in range(40):
        await dispatcher.run_once()
        clock.now += timedelta(hours=1)
    assert (await store.webhook_stats(receiver.url)).dead == 3

    app = FleetApp(store, refresh_s=0.2)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: "3 dead webhooks" in _header(app))
        texts = [text for text, _cb, _help in app.palette_items()]
        assert "Dead webhook deliveries (3)" in texts
        assert "Replay 3 dead webhook deliveries" in texts

        app.show_dead_letters()
        await wait_for(pilot, lambda: isinstance(app.screen, DeadLetters))
        screen = app.screen
        assert isinstance(screen, DeadLetters)
        assert [r.device_id for r in screen.rows] == ["d3", "d2", "d1"]
        console = Console(width=140, record=True)
        console.print(dead_table(screen.rows, screen.total))
        shown = console.export_text()
        assert "punch.created" in shown and "503" in shown

        receiver.always_fail = False
        await pilot.press("r")  # replay all
        await wait_for(pilot, lambda: not isinstance(app.screen, DeadLetters))
        await wait_for(pilot, lambda: "dead webhook" not in _header(app))
        assert any("3 dead webhook deliveries queued again" in n.message
                   for n in app._notifications)
    await _drain(dispatcher)
    await dispatcher.close()
    assert (await store.webhook_stats(receiver.url)).delivered == 3
    # each once
    assert sorted(e["punch"]["device_id"] for e in receiver.events()) == ["d1", "d2", "d3"]


async def test_the_dead_count_reads_a_partial_index(store: Store) -> None:  # noqa: F811
    """The header counts dead deliveries every second: that must not scan the table."""
    rows = await store._db.execute_fetchall(
        "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'dead'")
    plan = " ".join(str(r[3]) for r in rows)
    assert "webhook_deliveries_dead" in plan
    assert await store.webhook_dead_count() == 0


async def test_fleettui_webhooks_lists_and_replays_dead_deliveries(
    store: Store, receiver: Receiver, tmp_path: Path  # noqa: F811 (fixtures)
) -> None:
    """``fleettui webhooks list|dead|replay`` as a real process on the same database."""
    clock = Clock(datetime.now(UTC))
    await store.create_webhook_endpoint(
        "wh_cli", url=receiver.url + "?api", events=["*"], secret=SECRET, enabled=True,
        hex_signature_header=None, timeout_s=5.0, now=clock.now)
    await _punches(store, per_device=1)  # after: a new endpoint hears events from then on
    dispatcher = WebhookDispatcher(store, [_endpoint(receiver.url)], clock=clock,
                                   allow_private_targets=True)
    receiver.always_fail = True
    for _ in range(40):
        await dispatcher.run_once()
        clock.now += timedelta(hours=1)
    await dispatcher.close()
    db = tmp_path / "fleet.db"

    listed = await asyncio.to_thread(fleettui, "webhooks", "list", "--db", db)
    assert listed.returncode == 0, listed.stderr
    assert "wh_cli" in listed.stdout and "dead 3" in listed.stdout
    assert SECRET not in listed.stdout + listed.stderr
    as_json = json.loads((await asyncio.to_thread(
        fleettui, "webhooks", "list", "--json", "--db", db)).stdout)
    assert [e["id"] for e in as_json["webhooks"]] == ["wh_cli"]
    assert as_json["webhooks"][0]["deliveries"]["dead"] == 3
    assert SECRET not in json.dumps(as_json)

    dead = await asyncio.to_thread(fleettui, "webhooks", "dead", "--db", db)
    assert dead.returncode == 0 and dead.stdout.count("punch.created") == 6

    unknown = await asyncio.to_thread(fleettui, "webhooks", "replay", "nope", "--db", db)
    assert unknown.returncode == 2 and "no webhook endpoint 'nope'" in unknown.stderr
    one = await asyncio.to_thread(fleettui, "webhooks", "replay", "wh_cli", "--db", db)
    assert one.returncode == 0 and one.stdout.startswith("3 dead deliveries queued again")
    assert await store.webhook_dead_count() == 3  # the other endpoint's stay dead
    rest = await asyncio.to_thread(fleettui, "webhooks", "replay", "--db", db)
    assert rest.stdout.startswith("3 dead deliveries queued again")
    assert await store.webhook_dead_count() == 0
