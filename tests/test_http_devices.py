"""Devices registered over HTTP: polled without a restart, kept, changed, removed.

The first tests run a real engine polling emulated devices on loopback, with
the real server in the same loop; then every refusal over real HTTP against a
filled store (``test_http_api.api``); the last, an engine's start over API
devices, once per backend (the store's own refusals, per backend, are
``test_store_fleet``'s).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleettui.config import parse_config
from fleettui.engine.engine import Engine
from fleettui.server import start_server
from fleettui.store import open_store
from tests import test_http_api
from tests.conftest import Emulated, device_config, sample_users
from tests.test_article_script import _until
from tests.test_engine import fleet_toml
from tests.test_http_api import Api, _err

api = test_http_api.api  # the fixture: a server over a filled store, a key per role

COMM_KEY = 271828  # the emulated device's password: must never be shown back


def _body(cfg: Any, **extra: Any) -> dict[str, Any]:
    return {"serial_number": cfg.serial, "host": cfg.host, "port": cfg.port,
            "comm_key": cfg.comm_key, **extra}


async def test_a_site_created_with_devices_is_polled_at_once_and_kept(
    emulate: Callable[..., Emulated], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    known = device_config("dev_conf_1")
    new = [device_config(f"dev_api_{i}", comm_key=COMM_KEY) for i in range(2)]
    em = emulate([known, *new], users={c.id: sample_users(3) for c in [known, *new]})
    for c in new:
        em.emu.call(em.fleet.generate_punches, c.id, 7)
    config = parse_config(fleet_toml([known], timeout_s=2))
    store = await open_store(tmp_path / "fleet.db")
    admin = (await store.create_api_key("admin", "lead", datetime.now(UTC)))[1]
    engine = Engine(config, store)
    await engine.start()
    runner = await start_server(store, "127.0.0.1", 0, on_fleet_change=engine.reconcile_soon)
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10,
                                     headers={"Authorization": f"Bearer {admin}"}) as c:
            # the article's body, its devices given in full (they are new to fleettui)
            r = await c.post("/v1/sites", json={
                "name": "Warehouse - Gate A",
                "location": {"address": "123 Industrial Ave, Casablanca",
                             "timezone": "Africa/Casablanca"},
                "devices": [_body(new[0], id="dev_warehouse_01"), _body(new[1])]})
            assert r.status_code == 201, r.text
            site = r.json()
            assert site["id"] == "warehouse-gate-a" and site["total_count"] == 2
            ids = [d["id"] for d in site["devices"]]
            assert ids == ["dev_warehouse_01", new[1].serial.lower()]
            assert {d["origin"] for d in site["devices"]} == {"api"}

            async def synced() -> bool:
                devices = {d.id: d for d in await store.devices("warehouse-gate-a")}
                counts = [await store.punch_count(i) for i in ids]
                return counts == [7, 7] and all(
                    d.status.value == "online" for d in devices.values())

            await _until(synced)  # polled, and their punches stored, with no restart

            # disabled: the engine stops polling it; enabled again: polled again
            r = await c.patch(f"/v1/devices/{ids[1]}", json={"enabled": False})
            assert r.status_code == 200 and r.json()["enabled"] is False
            await _until(lambda: _not_polled(engine, ids[1]))
            r = await c.patch(f"/v1/devices/{ids[1]}", json={"enabled": True, "name": "Gate"})
            assert r.json()["name"] == "Gate"
            await _until(lambda: _polled(engine, ids[1]))

            listed = (await c.get("/v1/devices")).text
            assert str(COMM_KEY) not in listed and "comm_key" not in listed
        await engine.stop()

        # a restart (a config sync) keeps the registered devices and polls them again
        engine = Engine(parse_config(fleet_toml([known], timeout_s=2)), store)
        await engine.prepare()
        assert set(engine.pollers) == {"dev_conf_1", *ids}
        assert {d.id: d.origin for d in await store.devices()} == {
            "dev_conf_1": "config", ids[0]: "api", ids[1]: "api"}
        await engine.start()
        async with httpx.AsyncClient(base_url=base, timeout=10,
                                     headers={"Authorization": f"Bearer {admin}"}) as c:
            assert (await c.delete(f"/v1/devices/{ids[0]}")).status_code == 204
            assert ids[0] not in [d["id"] for d in (await c.get("/v1/devices")).json()["devices"]]
            _err(await c.get(f"/v1/devices/{ids[0]}"), 404, "not_found")
        # the server runs apart from this engine now: its periodic reconcile picks it up
        await engine.reconcile()
        assert ids[0] not in engine.pollers
        assert await store.punch_count(ids[0]) == 7  # removing keeps the punches
        kinds = [e.kind for e in await store.events_after(0)]
        assert kinds.count("device.registered") == 2 and "device.removed" in kinds
    finally:
        await runner.cleanup()
        await engine.stop()
        await store.close()
    assert str(COMM_KEY) not in caplog.text


async def _polled(engine: Engine, device_id: str) -> bool:
    return device_id in engine.pollers


async def _not_polled(engine: Engine, device_id: str) -> bool:
    return device_id not in engine.pollers


async def test_a_device_registered_by_another_process_is_picked_up(
    emulate: Callable[..., Emulated], tmp_path: Path
) -> None:
    known = device_config("dev_conf_2")
    other = device_config("dev_other_1")
    emulate([known, other], users={c.id: sample_users(2) for c in (known, other)})
    store = await open_store(tmp_path / "fleet.db")
    engine = Engine(parse_config(fleet_toml([known], timeout_s=2)), store)
    await engine.start()
    # a viewer's server: no engine in its process, so no hook
    viewer_store = await open_store(tmp_path / "fleet.db")
    admin = (await viewer_store.create_api_key("admin", "a", datetime.now(UTC)))[1]
    runner = await start_server(viewer_store, "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}",
                                     headers={"Authorization": f"Bearer {admin}"}) as c:
            r = await c.post("/v1/devices", json={**_body(other), "site": "site-a"})
            assert r.status_code == 201, r.text
        assert other.serial.lower() not in engine.pollers
        await engine.reconcile()  # what the engine's periodic job runs
        assert other.serial.lower() in engine.pollers

        async def online() -> bool:
            d = await store.device(other.serial.lower())
            return d is not None and d.status.value == "online"

        await _until(online)
    finally:
        await runner.cleanup()
        await viewer_store.close()
        await engine.stop()
        await store.close()


# --- refusals, over real HTTP -----------------------------------------------------------------

NEW = {"serial_number": "NEW-1", "site": "tokyo", "host": "10.9.0.1"}


async def test_registering_a_device_refuses_bad_input_naming_the_field(api: Api) -> None:
    async def post(body: object, role: str = "admin") -> httpx.Response:
        return await api.post("/v1/devices", role=role, json=body)

    _err(await api.client.post("/v1/devices", json=NEW), 401, "unauthorized")
    assert "admin" in _err(await post(NEW, "operator"), 403, "forbidden")
    _err(await api.post("/v1/devices", role="admin", content=b"{"), 400, "bad_json")
    assert "serial" in _err(await post({**NEW, "serial": "X"}), 400, "unknown_field")
    assert "serial_number" in _err(await post({"site": "tokyo", "host": "h"}), 400,
                                   "missing_field")
    assert "host" in _err(await post({**NEW, "host": "10.0.0.999"}), 400, "invalid_field")
    assert "port" in _err(await post({**NEW, "port": 70000}), 400, "invalid_field")
    assert "port" in _err(await post({**NEW, "port": "4370"}), 400, "invalid_field")
    assert "transport" in _err(await post({**NEW, "transport": "ftp"}), 400, "invalid_field")
    assert "id" in _err(await post({**NEW, "id": "no spaces"}), 400, "invalid_field")
    message = _err(await post({**NEW, "comm_key": 12345678}), 400, "invalid_field")
    assert "comm_key" in message and "12345678" not in message
    assert "no site 'osaka'" in _err(await post({**NEW, "site": "osaka"}), 400,
                                     "invalid_field")
    # taken: a config device's id, a serial, an address, a site's id
    assert "config file" in _err(await post({**NEW, "id": "tk1"}), 409, "conflict")
    assert "tk2" in _err(await post({**NEW, "serial_number": "SER-TK2"}), 409, "conflict")
    assert "tk2" in _err(await post({**NEW, "host": "127.0.0.3", "port": 4370,
                                     "transport": "udp"}), 409, "conflict")
    assert "site" in _err(await post({**NEW, "id": "lon"}), 409, "conflict")
    assert [d.id for d in await api.store.devices()] == ["ln1", "tk1", "tk2", "tk3"]

    r = await post(NEW)
    assert r.status_code == 201 and r.json()["id"] == "new-1"
    assert "already taken" in _err(await post(NEW), 409, "conflict")


async def test_changing_and_removing_refuse_config_devices_and_unknown_ones(api: Api) -> None:
    async def patch(device: str, body: object) -> httpx.Response:
        return await api.client.patch(f"/v1/devices/{device}", json=body,
                                      headers=api.auth("admin"))

    async def delete(device: str) -> httpx.Response:
        return await api.client.delete(f"/v1/devices/{device}", headers=api.auth("admin"))

    assert "config file" in _err(await patch("tk1", {"name": "x"}), 409, "conflict")
    _err(await patch("nope", {"name": "x"}), 404, "not_found")
    assert "config file" in _err(await delete("tk1"), 409, "conflict")
    _err(await delete("nope"), 404, "not_found")
    _err(await api.client.delete("/v1/devices/tk1", headers=api.auth("operator")), 403,
         "forbidden")

    assert (await api.post("/v1/devices", role="admin", json=NEW)).status_code == 201
    _err(await patch("new-1", {}), 400, "missing_field")
    _err(await patch("new-1", {"serial_number": "NEW-2"}), 400, "unknown_field")
    assert "no site" in _err(await patch("new-1", {"site": "osaka"}), 400, "invalid_field")
    assert "tk1" in _err(await patch("new-1", {"host": "127.0.0.2"}), 409, "conflict")
    r = await patch("new-1", {"site": "lon", "port": 4371, "comm_key": 9})
    assert r.status_code == 200 and (r.json()["site"], r.json()["origin"]) == ("lon", "api")
    updated = [e for e in await api.store.events_after(0) if e.kind == "device.updated"]
    assert updated[-1].data["fields"] == ["port", "site_id", "comm_key"]
    assert "9" not in updated[-1].message.replace("4371", "")

    assert (await delete("new-1")).status_code == 204
    _err(await delete("new-1"), 404, "not_found")
    # the same device again (same id and serial) comes back; another serial may not take
    # the id its punches keep
    assert "removed device" in _err(
        await api.post("/v1/devices", role="admin", json={**NEW, "id": "new-1",
                                                          "serial_number": "OTHER"}),
        409, "conflict")
    assert (await api.post("/v1/devices", role="admin", json=NEW)).status_code == 201


async def test_a_new_site_takes_registered_devices_by_id_all_or_nothing(api: Api) -> None:
    site = {"name": "Warehouse - Gate A",
            "location": {"address": "123 Industrial Ave", "timezone": "Africa/Casablanca"}}

    async def create(devices: list[Any]) -> httpx.Response:
        return await api.post("/v1/sites", role="admin", json={**site, "devices": devices})

    for serial in ("W-1", "W-2"):
        r = await api.post("/v1/devices", role="admin",
                           json={"serial_number": serial, "site": "lon",
                                 "host": f"10.1.0.{serial[-1]}"})
        assert r.status_code == 201, r.text

    # a config device stays where the file puts it; an unknown id; a bad entry: nothing made
    assert "devices[1].id" in _err(await create(["w-1", "tk1"]), 409, "conflict")
    assert "devices[2].id: no device 'nope'" in _err(
        await create([{"serial_number": "W-3", "host": "10.1.0.3"}, "w-1", "nope"]), 400,
        "invalid_field")
    assert "devices[0].site" in _err(
        await create([{"serial_number": "W-3", "host": "10.1.0.3", "site": "lon"}]), 400,
        "unknown_field")
    assert "devices[1].host" in _err(
        await create(["w-1", {"serial_number": "W-3", "host": "10.1.0.1"}]), 409, "conflict")
    assert "devices[0]" in _err(await create([7]), 400, "invalid_field")
    assert "devices[0].port" in _err(
        await create([{"serial_number": "W-3", "host": "10.1.0.3", "port": "x"}]), 400,
        "invalid_field")
    _err(await api.get("/v1/sites/warehouse-gate-a"), 404, "not_found")
    assert (await api.get("/v1/devices/w-3")).status_code == 404
    assert {d.id: d.site_id for d in await api.store.devices("lon")} == {
        "ln1": "lon", "w-1": "lon", "w-2": "lon"}

    # the article's shape: ids of devices fleettui already knows
    r = await create(["w-1", "w-2", {"serial_number": "W-3", "host": "10.1.0.3"}])
    assert r.status_code == 201, r.text
    assert [d["id"] for d in r.json()["devices"]] == ["w-3", "w-1", "w-2"]
    detail = (await api.get("/v1/sites/warehouse-gate-a")).json()
    assert sorted(d["id"] for d in detail["devices"]) == ["w-1", "w-2", "w-3"]
    moved = [e for e in await api.store.events_after(0) if e.kind == "device.moved"]
    assert [(e.device_id, e.data["from"]) for e in moved] == [("w-1", "lon"), ("w-2", "lon")]


async def test_the_control_room_shows_a_site_and_device_registered_over_http(
    emulate: Callable[..., Emulated], tmp_path: Path
) -> None:
    from fleettui.tui.app import FleetApp
    from fleettui.tui.panel import DevicePanel, render_detail
    from fleettui.tui.tree import SiteTree
    from tests.test_tui import wait_for
    from tests.test_tui_panels import plain

    known = device_config("dev_conf_3")
    new = device_config("dev_api_tui")
    emulate([known, new], users={c.id: sample_users(2) for c in (known, new)})
    store = await open_store(tmp_path / "fleet.db")
    admin = (await store.create_api_key("admin", "a", datetime.now(UTC)))[1]
    engine = Engine(parse_config(fleet_toml([known], timeout_s=2)), store)
    app = FleetApp(store, engine, refresh_s=0.2, http=("127.0.0.1", 0))
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.api is not None)
            assert app.api is not None
            app.set_view("tree")  # (a fleet with nothing wrong would open on the map)
            base = f"http://127.0.0.1:{app.api.addresses[0][1]}"
            async with httpx.AsyncClient(base_url=base, timeout=10,
                                         headers={"Authorization": f"Bearer {admin}"}) as c:
                r = await c.post("/v1/sites", json={
                    "name": "Farm 9", "location": {"timezone": "Africa/Casablanca"},
                    "devices": [_body(new, id="dev_farm_9")]})
                assert r.status_code == 201, r.text
                # a site with no device yet shows too
                r = await c.post("/v1/sites", json={
                    "name": "Farm 10", "location": {"timezone": "Africa/Casablanca"}})
                assert r.status_code == 201, r.text
            tree = app.query_one("#tree", SiteTree)
            await wait_for(pilot, lambda: "farm-10" in tree.site_nodes)
            app.jump(("device", "dev_farm_9"))
            panel = app.query_one("#panel", DevicePanel)
            await wait_for(pilot, lambda: panel.detail is not None
                           and panel.detail.device.id == "dev_farm_9")
            assert panel.detail is not None
            assert "through the HTTP API" in plain(render_detail(panel.detail))
            await wait_for(pilot, lambda: "dev_farm_9" in tree.device_nodes
                           and "farm-9" in tree.site_nodes
                           and app.rows["dev_farm_9"].device.status.value == "online",
                           timeout=20)
    finally:
        await store.close()


async def test_an_api_device_that_is_also_in_the_config_is_polled_once(
    db_target: str, caplog: pytest.LogCaptureFixture
) -> None:
    from fleettui.domain import DeviceSpec

    known = replace(device_config("dev_conf_4"), port=4370)  # never contacted
    config = parse_config(fleet_toml([known], timeout_s=2))
    store = await open_store(db_target)
    try:
        writer = Engine(parse_config(fleet_toml([])), store)  # site-a, no device
        await writer.prepare()
        await writer.stop()  # on a shared database, a poller left running keeps site-a
        now = datetime.now(UTC)
        # the same device registered over the API under another id, before it was configured
        await store.register_devices([DeviceSpec("twin", "OTHER", "site-a", known.host,
                                                 known.port)], now)
        await store.register_devices([DeviceSpec("twin2", known.serial.lower() + "x",
                                                 "site-a", "10.0.0.1", 4370)], now)
        engine = Engine(config, store)
        await engine.prepare()
        assert set(engine.pollers) == {"dev_conf_4", "twin2"}
        assert "twin (registered over the API) is the config's dev_conf_4" in caplog.text
    finally:
        await store.close()


async def test_a_site_the_config_drops_stays_while_api_devices_stand_there(
    db_target: str,
) -> None:
    from fleettui.domain import DeviceSpec

    store = await open_store(db_target)
    try:
        await Engine(parse_config(fleet_toml([])), store).prepare()  # site-a
        await store.register_devices([DeviceSpec("api_9", "API9", "site-a", "10.0.0.9", 4370)],
                                     datetime.now(UTC))
        empty = "[poll]\ncheck_interval_s = 1\n"  # no site at all any more
        await Engine(parse_config(empty), store).prepare()
        assert [s.id for s in await store.sites()] == ["site-a"]
        assert [d.id for d in await store.devices("site-a")] == ["api_9"]
    finally:
        await store.close()
