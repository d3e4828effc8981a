"""Issue 7's "done when": a script written for the article's API works against fleettui.

``article_script`` is what a customer of the article's service would have
written: a blocking httpx client that knows only a base URL and a key, using
the article's shapes (devices grouped by ``site``, a site's ``health``, a bulk
``restart``). It runs against fleettui's real server, over a store fed by a
real engine polling emulated devices on loopback; the restarts really happen
(the commands reach ``done`` and the emulated devices reboot). Meanwhile an
endpoint created through the API (the engine's config has none) receives the
punches, signed, without the engine being restarted.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from fleettui.config import parse_config
from fleettui.emulator.device import Profile
from fleettui.engine.engine import Engine
from fleettui.server import start_server
from fleettui.store import open_store
from tests import article_client, test_webhooks
from tests.conftest import Emulated, FakeClock, device_config, sample_users
from tests.test_engine import fleet_toml
from tests.test_http_api import NOW, serving
from tests.test_webhooks import Receiver

receiver = test_webhooks.receiver  # the fixture: a webhook receiver on loopback

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def article_script(base_url: str, key: str, site: str, *, polls: int = 300) -> dict[str, Any]:
    """List devices by site, read a site's health, restart every device of the site and
    wait (bounded) for the restart to be done. Only the base URL and key are fleettui's."""
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"},
                      timeout=10) as api:
        by_site: dict[str, list[str]] = defaultdict(list)
        for device in api.get("/v1/devices").raise_for_status().json()["devices"]:
            by_site[device["site"]].append(device["serial_number"])
        health = api.get(f"/v1/sites/{site}/health").raise_for_status().json()
        queued = api.post(f"/v1/sites/{site}/commands",
                          json={"command": "restart"}).raise_for_status().json()
        command = queued
        for _ in range(polls):
            command = api.get(f"/v1/commands/{queued['id']}").raise_for_status().json()
            if command["status"] != "queued":
                break
            time.sleep(0.1)
        return {"by_site": dict(by_site), "health": health, "queued": queued,
                "command": command}


async def _until(condition: Callable[[], Any], polls: int = 300) -> None:
    for _ in range(polls):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met")


async def test_the_articles_script_restarts_a_site_and_webhooks_follow(
    emulate: Callable[..., Emulated], tmp_path: Path, receiver: Receiver
) -> None:
    fake = FakeClock()  # the devices' own clock: a reboot lasts until the test moves it
    cfgs = [device_config(f"dev_art_{i}", profile=Profile(reboot_s=10)) for i in range(3)]
    em = emulate(cfgs, users={c.id: sample_users(5) for c in cfgs}, clock=fake)
    store = await open_store(tmp_path / "fleet.db")
    # the receiver is on loopback: the config lets webhooks reach it
    text = fleet_toml(cfgs, timeout_s=2) + "\n[security]\nallow_private_webhook_targets = true\n"
    engine = Engine(parse_config(text), store)
    admin = (await store.create_api_key("admin", "lead", datetime.now(UTC)))[1]
    operator = (await store.create_api_key("operator", "script", datetime.now(UTC)))[1]
    await engine.start()
    runner = await start_server(store, "127.0.0.1", 0, allow_private_webhook_targets=True)
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async def all_online() -> bool:
            return {d.status.value for d in await store.devices()} == {"online"}

        await _until(all_online)
        # an endpoint created over HTTP while the engine runs: no restart needed
        async with httpx.AsyncClient(base_url=base, timeout=10,
                                     headers={"Authorization": f"Bearer {admin}"}) as c:
            r = await c.post("/v1/webhooks", json={"url": receiver.url, "secret": SECRET,
                                                   "events": ["punch.created", "command.*"]})
            assert r.status_code == 201, r.text
        for c in cfgs:
            em.emu.call(em.fleet.generate_punches, c.id, 4)

        out = await asyncio.to_thread(article_script, base, operator, "site-a")

        serials = sorted(c.serial for c in cfgs)
        assert {k: sorted(v) for k, v in out["by_site"].items()} == {"site-a": serials}
        assert (out["health"]["online_count"], out["health"]["total_count"]) == (3, 3)
        assert out["queued"]["status"] == "queued" and out["queued"]["target_kind"] == "site"
        assert out["command"]["status"] == "done", out["command"]
        assert sorted(c["state"] for c in out["command"]["commands"]) == ["done"] * 3
        powers = em.emu.call(lambda: {d.power for d in em.fleet.devices.values()})
        assert powers == {"rebooting"}  # the restarts happened
        fake.advance(11)
        await _until(all_online)  # and every device came back

        def punches() -> list[dict[str, Any]]:
            return [e for e in receiver.events() if e["event"] == "punch.created"]

        async def delivered() -> bool:
            kinds = [e["event"] for e in receiver.events()]
            return len(punches()) == 12 and kinds.count("command.completed") == 3

        await _until(delivered)
        verifier = Webhook(SECRET)
        for headers, body in receiver.got:
            verifier.verify(body, headers)
        for c in cfgs:  # in order per device
            times = [e["punch"]["timestamp"] for e in punches()  # type: ignore[index]
                     if e["punch"]["device_id"] == c.id]  # type: ignore[index]
            assert len(times) == 4 and times == sorted(times)
    finally:
        await runner.cleanup()
        await engine.stop()
        await store.close()


async def test_the_articles_own_functions_run_verbatim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The article's ``get_all_devices``, ``check_fleet_health``, ``site_health_report`` and
    ``restart_all_devices_at_site`` (tests/article_client.py, as printed), run against
    fleettui's server: only ``BASE_URL`` and ``API_KEY`` are fleettui's."""
    async with serving(tmp_path / "fleet.db") as api:
        # tk2 went offline 12 h ago: the poller saw it until then
        await api.store.record_seen("tk2", NOW - timedelta(hours=12))
        article_client.BASE_URL = f"{str(api.client.base_url).rstrip('/')}/v1"
        article_client.API_KEY = api.keys["operator"]

        devices = await asyncio.to_thread(article_client.get_all_devices)
        assert sorted(d["serial_number"] for d in devices) == [
            "SER-LN1", "SER-TK1", "SER-TK2", "SER-TK3"]
        await asyncio.to_thread(article_client.check_fleet_health)
        printed = capsys.readouterr().out
        assert "4 devices across 2 sites" in printed
        assert "tokyo: 1/3 online" in printed and "lon: 1/1 online" in printed
        assert "SER-TK2" in printed and "offline" in printed

        report = await asyncio.to_thread(article_client.site_health_report, "tokyo")
        assert report == {"site": "Tokyo HQ", "devices_online": 1, "devices_total": 3,
                          "uptime_30d": 75.0, "avg_latency_ms": 50.0, "punches_today": 2,
                          "last_punch": "2026-03-28T15:45:00Z"}

        first = await asyncio.to_thread(article_client.restart_all_devices_at_site, "tokyo")
        assert first == [{"device": s, "status": 202, "queued": True}
                         for s in ("SER-TK1", "SER-TK2", "SER-TK3")]
        # run again the same day: the idempotency keys name the requests already queued
        again = await asyncio.to_thread(article_client.restart_all_devices_at_site, "tokyo")
        assert again == [{"device": s, "status": 200, "queued": True}
                         for s in ("SER-TK1", "SER-TK2", "SER-TK3")]
        queued = await api.store.commands(limit=50)
        assert sorted((c.device_id, c.command) for c in queued) == [
            ("tk1", "restart"), ("tk2", "restart"), ("tk3", "restart")]
