"""The HTTP API over real HTTP on loopback: every route, every error path, the article's script.

The server runs in the test's event loop on 127.0.0.1 port 0, over a real
SQLite store; its clock is injected so uptime and "today" are deterministic.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from fleettui.domain import (
    DeliveryResult,
    DeviceState,
    DeviceStatus,
    Punch,
    Site,
    StatusChange,
    TzFlag,
)
from fleettui.server import start_server
from fleettui.server.app import MAX_BODY, OPENAPI
from fleettui.store import Store, open_store

#: 16:00 UTC is already 01:00 on the 29th in Tokyo (UTC+9, no DST)
NOW = datetime(2026, 3, 28, 16, 0, tzinfo=UTC)


@dataclass
class Api:
    """A running server, a client for it, its store and a key per role."""

    client: httpx.AsyncClient
    store: Store
    keys: dict[str, str]
    revoked: str

    def auth(self, role: str) -> dict[str, str]:
        """The Authorization header of a live key with ``role``."""
        return {"Authorization": f"Bearer {self.keys[role]}"}

    async def get(self, path: str, role: str = "viewer", **kw: Any) -> httpx.Response:
        """GET as ``role``."""
        return await self.client.get(path, headers=self.auth(role), **kw)

    async def post(self, path: str, role: str = "operator", **kw: Any) -> httpx.Response:
        """POST as ``role``."""
        return await self.client.post(path, headers=self.auth(role), **kw)


def _punch(device: str, tz: str, utc: datetime, user: str = "1001") -> Punch:
    local = utc.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
    return Punch(device, user, local, tz, utc, TzFlag.OK, 0, 1, "sync", NOW)


async def _fill(store: Store) -> None:
    sites = [
        Site("tokyo", "Tokyo HQ", "Asia/Tokyo", "1-1 Chiyoda"),
        Site("lon", "London", "UTC", "1 Strand"),
    ]
    devices = [
        DeviceState("tk1", "SER-TK1", "tokyo", "127.0.0.2", 4370, "tcp"),
        DeviceState("tk2", "SER-TK2", "tokyo", "127.0.0.3", 4370, "udp"),
        DeviceState("tk3", "SER-TK3", "tokyo", "127.0.0.5", 4370, "tcp"),
        DeviceState("ln1", "SER-LN1", "lon", "127.0.0.4", 4370, "tcp"),
    ]
    await store.sync_fleet(sites, devices)
    day = timedelta(hours=24)
    # tk1 online all day; tk2 online 12 h then offline: the site averages 75 %
    await store.record_status(StatusChange("tk1", DeviceStatus.ONLINE, "", NOW - day))
    await store.record_status(StatusChange("tk2", DeviceStatus.ONLINE, "", NOW - day))
    await store.record_status(
        StatusChange("tk2", DeviceStatus.OFFLINE, "timeout", NOW - timedelta(hours=12))
    )
    await store.record_status(StatusChange("ln1", DeviceStatus.ONLINE, "", NOW - day))
    await store.record_identity("tk1", model="SpeedFace-V5L", firmware="Ver 6.60",
                                platform="ZMM510", mac="00:17:61:00:00:01")
    await store.record_clock("tk1", 3.04, NOW)
    # Tokyo: one punch yesterday (23:00 local), two today (00:30 and 00:45 local)
    await store.insert_punches("tk1", [
        _punch("tk1", "Asia/Tokyo", NOW - timedelta(hours=2)),
        _punch("tk1", "Asia/Tokyo", NOW - timedelta(minutes=30)),
    ])
    await store.insert_punches("tk2", [
        _punch("tk2", "Asia/Tokyo", NOW - timedelta(minutes=15), user="1002")
    ])
    # two delivered webhooks (40 and 60 ms) and the rest pending
    await store.webhook_enqueue("https://hooks.example/x", ["*"], NOW)
    due = await store.webhook_due("https://hooks.example/x", NOW)
    results = [DeliveryResult(outbox_id=row.outbox_id, ok=True, latency_ms=ms)
               for row, ms in zip(due[:2], (40.0, 60.0), strict=True)]
    await store.webhook_results("https://hooks.example/x", results, NOW)


@asynccontextmanager
async def serving(db: Path, clock: Callable[[], datetime] = lambda: NOW, *,
                  allow_private_webhook_targets: bool = True) -> AsyncIterator[Api]:
    """The API over a filled store at ``db``, its clock ``clock``, with a key per role
    (webhooks to private targets allowed unless told: the tests' receivers are local)."""
    store = await open_store(db)
    await _fill(store)
    keys = {role: (await store.create_api_key(role, f"{role} key", NOW))[1]
            for role in ("viewer", "operator", "admin")}
    rid, revoked = await store.create_api_key("admin", "old", NOW)
    await store.revoke_api_key(rid, NOW)
    runner = await start_server(store, "127.0.0.1", 0, clock=clock,
                                allow_private_webhook_targets=allow_private_webhook_targets)
    port = runner.addresses[0][1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        yield Api(client, store, keys, revoked)
    await runner.cleanup()
    await store.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(tmp_path / "fleet.db") as running:
        yield running


def _err(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"]["code"] == code
    return str(body["error"]["message"])


# --- reading ------------------------------------------------------------------


async def test_healthz_needs_no_key(api: Api) -> None:
    r = await api.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_devices_list_filters_and_one_device(api: Api) -> None:
    r = await api.get("/v1/devices")
    assert r.status_code == 200
    devices = r.json()["devices"]
    assert [d["id"] for d in devices] == ["ln1", "tk1", "tk2", "tk3"]
    tk1 = next(d for d in devices if d["id"] == "tk1")
    for key in ("id", "serial_number", "site", "status", "last_seen", "reason", "model",
                "firmware", "records", "records_capacity", "clock_drift_s"):
        assert key in tk1
    assert (tk1["serial_number"], tk1["site"], tk1["status"], tk1["model"],
            tk1["clock_drift_s"]) == ("SER-TK1", "tokyo", "online", "SpeedFace-V5L", 3.0)
    r = await api.get("/v1/devices", params={"site": "tokyo", "status": "offline"})
    assert [(d["id"], d["reason"]) for d in r.json()["devices"]] == [("tk2", "timeout")]
    r = await api.get("/v1/devices", params={"site": "nowhere"})
    assert r.json() == {"devices": []}
    _err(await api.get("/v1/devices", params={"status": "sleepy"}), 400, "invalid_parameter")
    r = await api.get("/v1/devices/tk2")
    assert r.status_code == 200 and r.json()["status"] == "offline"
    assert "tk9" in _err(await api.get("/v1/devices/tk9"), 404, "not_found")


async def test_sites_site_and_health(api: Api) -> None:
    r = await api.get("/v1/sites")
    assert r.json() == {"sites": [
        {"id": "lon", "name": "London", "timezone": "UTC", "address": "1 Strand",
         "online_count": 1, "total_count": 1},
        {"id": "tokyo", "name": "Tokyo HQ", "timezone": "Asia/Tokyo", "address": "1-1 Chiyoda",
         "online_count": 1, "total_count": 3},
    ]}
    r = await api.get("/v1/sites/tokyo")
    assert r.status_code == 200
    assert r.json()["name"] == "Tokyo HQ"
    assert [d["id"] for d in r.json()["devices"]] == ["tk1", "tk2", "tk3"]
    h = (await api.get("/v1/sites/tokyo/health")).json()
    assert h == {
        "id": "tokyo",
        "name": "Tokyo HQ",
        "online_count": 1,
        "total_count": 3,
        "uptime_percentage": 75.0,  # tk1 100 %, tk2 50 %, tk3 never known (not counted)
        "avg_webhook_latency_ms": 50.0,
        "punches_today": 2,  # the 23:00 punch was yesterday in Tokyo
        "last_punch_at": "2026-03-28T15:45:00Z",
    }
    lon = (await api.get("/v1/sites/lon/health")).json()
    assert (lon["punches_today"], lon["last_punch_at"], lon["uptime_percentage"]) == (
        0, None, 100.0)
    _err(await api.get("/v1/sites/mars"), 404, "not_found")
    _err(await api.get("/v1/sites/mars/health"), 404, "not_found")


async def test_punches_since_and_site(api: Api) -> None:
    r = await api.get("/v1/punches")
    body = r.json()
    assert body["next_cursor"] is None
    assert [p["utc_time"] for p in body["punches"]] == [
        "2026-03-28T14:00:00Z", "2026-03-28T15:30:00Z", "2026-03-28T15:45:00Z"]
    r = await api.get("/v1/punches", params={"since": "2026-03-28T15:00:00Z"})
    assert len(r.json()["punches"]) == 2
    r = await api.get("/v1/punches", params={"since": "2026-03-29T00:40:00+09:00"})
    assert [p["user_id"] for p in r.json()["punches"]] == ["1002"]
    r = await api.get("/v1/punches", params={"site": "lon"})
    assert r.json() == {"punches": [], "next_cursor": None}
    for params in ({"since": "yesterday"}, {"limit": "0"}, {"limit": "10001"},
                   {"limit": "ten"}, {"limit": "\u00b2"}, {"limit": "9" * 40},
                   {"cursor": "!!not-a-cursor"}, {"cursor": "MTIz"}, {"page": "2"},
                   {"since": "99999-01-01"}, {"since": "0001-01-01T00:00:00+05:00"}):
        _err(await api.get("/v1/punches", params=params), 400, "invalid_parameter")


async def test_cursor_pagination_over_250_punches(api: Api) -> None:
    base = NOW - timedelta(days=2)
    punches = [_punch("ln1", "UTC", base + timedelta(minutes=i), user=str(1000 + i))
               for i in range(250)]
    # stored newest first, and some sharing a time: ids do not follow time order
    punches += [_punch("ln1", "UTC", base + timedelta(minutes=99), user=f"9{i}")
                for i in range(5)]
    await api.store.insert_punches("ln1", list(reversed(punches)))
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"site": "lon", "limit": 100}
        if cursor:
            params["cursor"] = cursor
        body = (await api.get("/v1/punches", params=params)).json()
        pages += 1
        seen += body["punches"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert pages == 3
    assert len(seen) == 255
    assert len({p["id"] for p in seen}) == 255  # no duplicates
    keys = [(p["utc_time"], p["id"]) for p in seen]
    assert keys == sorted(keys)  # in order


async def test_alerts(api: Api) -> None:
    assert (await api.get("/v1/alerts")).json() == {"alerts": []}
    r = await api.get("/v1/alerts", params={"state": "all"})
    assert r.status_code == 200 and r.json() == {"alerts": []}
    _err(await api.get("/v1/alerts", params={"state": "maybe"}), 400, "invalid_parameter")


async def test_metrics_prometheus_text(api: Api) -> None:
    r = await api.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = r.text.splitlines()
    assert 'fleettui_devices{status="online"} 2' in lines
    assert 'fleettui_devices{status="offline"} 1' in lines
    assert 'fleettui_devices{status="unknown"} 1' in lines
    assert "fleettui_punches_total 3" in lines
    assert 'fleettui_webhook_deliveries{state="delivered"} 2' in lines
    pending = (await api.store.webhook_stats()).pending
    assert pending >= 1
    assert f'fleettui_webhook_deliveries{{state="pending"}} {pending}' in lines
    assert 'fleettui_webhook_deliveries{state="dead"} 0' in lines
    assert "# TYPE fleettui_punches_total counter" in lines
    for line in lines:  # every sample line is "name{labels} number"
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            float(value)
            assert name.startswith("fleettui_")
    _err(await api.client.get("/metrics"), 401, "unauthorized")


async def test_openapi_lists_every_route(api: Api) -> None:
    r = await api.client.get("/v1/openapi.json")  # public
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    app_routes = set()
    from fleettui.server import make_app

    for route in make_app(api.store).router.routes():
        if route.method != "HEAD":
            app_routes.add((route.method.lower(), route.resource.canonical))  # type: ignore[union-attr]
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == app_routes
    punch_params = {p["name"] for p in doc["paths"]["/v1/punches"]["get"]["parameters"]}
    assert punch_params == {"since", "site", "limit", "cursor"}
    assert doc == OPENAPI


# --- commands -----------------------------------------------------------------


async def test_device_command_queue_and_read_back(api: Api) -> None:
    r = await api.post("/v1/devices/tk1/commands",
                       json={"command": "unlock", "params": {"seconds": 3}})
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["command"], body["status"], body["target"]) == ("unlock", "queued", "tk1")
    assert body["queued"] is True  # accepted into the queue (the article reads this)
    assert body["summary"]["queued"] == 1
    got = (await api.get(f"/v1/commands/{body['id']}")).json()
    assert got["id"] == body["id"] and got["queued"] is True
    assert [(c["device_id"], c["state"]) for c in got["commands"]] == [("tk1", "queued")]
    _err(await api.get("/v1/commands/99999"), 404, "not_found")
    for bad in ("abc", "9" * 40, "\u00b2", "-1"):
        _err(await api.get(f"/v1/commands/{bad}"), 404, "not_found")
    _err(await api.post("/v1/devices/tk9/commands", json={"command": "restart"}), 404,
         "not_found")
    _err(await api.post("/v1/sites/mars/commands", json={"command": "restart"}), 404,
         "not_found")


async def test_idempotency(api: Api) -> None:
    payload = {"command": "restart", "idempotency_key": "abc-123"}
    first = await api.post("/v1/devices/tk1/commands", json=payload)
    again = await api.post("/v1/devices/tk1/commands", json=payload)
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"]
    # the repeat names the request queued the first time: in the queue, once
    assert first.json()["queued"] is True and again.json()["queued"] is True
    other = await api.post("/v1/devices/tk1/commands",
                           json={"command": "sync_time", "idempotency_key": "abc-123"})
    _err(other, 409, "idempotency_conflict")
    assert "queued" not in other.json()  # an error: the article's .get("queued", False)
    doc = (await api.client.get("/v1/openapi.json")).json()
    schema = doc["components"]["schemas"]["CommandRequest"]
    assert schema["properties"]["queued"]["type"] == "boolean" and "queued" in schema["required"]
    elsewhere = await api.post("/v1/devices/tk2/commands", json=payload)
    _err(elsewhere, 409, "idempotency_conflict")


async def test_bad_bodies_are_400_naming_the_field(api: Api) -> None:
    url = "/v1/devices/tk1/commands"
    _err(await api.post(url, content=b"{not json"), 400, "bad_json")
    _err(await api.post(url, content=b""), 400, "bad_json")
    _err(await api.post(url, json=["restart"]), 400, "bad_json")
    assert "colour" in _err(await api.post(url, json={"command": "restart", "colour": 1}),
                            400, "unknown_field")
    assert "command" in _err(await api.post(url, json={"command": 7}), 400, "invalid_field")
    assert "params" in _err(await api.post(url, json={"command": "unlock", "params": [1]}),
                            400, "invalid_field")
    assert "idempotency_key" in _err(
        await api.post(url, json={"command": "restart", "idempotency_key": True}),
        400, "invalid_field")
    _err(await api.post(url, json={}), 400, "missing_field")
    assert "reboot" in _err(await api.post(url, json={"command": "reboot"}),
                            400, "invalid_command")
    assert "seconds" in _err(await api.post(url, json={"command": "unlock",
                                                       "params": {"seconds": "x"}}),
                             400, "invalid_command")
    big = b'{"command": "restart", "params": {"x": "' + b"a" * MAX_BODY + b'"}}'
    _err(await api.post(url, content=big), 413, "too_large")
    _err(await api.client.put("/v1/devices/tk1", headers=api.auth("admin")), 405,
         "method_not_allowed")
    _err(await api.get("/v1/nothing-here"), 404, "not_found")


# --- auth -----------------------------------------------------------------------


async def test_auth_errors(api: Api) -> None:
    _err(await api.client.get("/v1/devices"), 401, "unauthorized")
    _err(await api.client.get("/v1/devices", headers={"Authorization": "Basic abc"}), 401,
         "unauthorized")
    wrong = await api.client.get("/v1/devices", headers={"Authorization": "Bearer ftk_nope"})
    assert "ftk_nope" not in _err(wrong, 401, "unauthorized")
    revoked = await api.client.get("/v1/devices",
                                   headers={"Authorization": f"Bearer {api.revoked}"})
    assert api.revoked not in _err(revoked, 401, "unauthorized")
    # no body is read before the key is checked
    _err(await api.client.post("/v1/devices/tk1/commands", content=b"{bad"), 401,
         "unauthorized")
    viewer = await api.post("/v1/devices/tk1/commands", role="viewer",
                            json={"command": "restart"})
    _err(viewer, 403, "forbidden")
    _err(await api.post("/v1/sites/tokyo/commands", role="viewer", json={"command": "restart"}),
         403, "forbidden")
    for role in ("viewer", "operator", "admin"):
        assert (await api.get("/v1/sites", role=role)).status_code == 200
    admin = await api.post("/v1/devices/tk1/commands", role="admin", json={"command": "restart"})
    assert admin.status_code == 202
    for key in api.keys.values():
        assert key not in admin.text


# --- the article's script ---------------------------------------------------------


async def test_a_script_written_for_the_articles_api(api: Api) -> None:
    """List devices grouped by site, read a site's health, restart every device of a site."""
    base, key = str(api.client.base_url), api.keys["operator"]
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers) as c:
        by_site: dict[str, list[str]] = defaultdict(list)
        for d in (await c.get("/v1/devices")).json()["devices"]:
            by_site[d["site"]].append(d["serial_number"])
        assert dict(by_site) == {"lon": ["SER-LN1"],
                                 "tokyo": ["SER-TK1", "SER-TK2", "SER-TK3"]}
        health = (await c.get("/v1/sites/tokyo/health")).json()
        assert f"{health['online_count']}/{health['total_count']}" == "1/3"
        assert health["uptime_percentage"] == 75.0
        r = await c.post("/v1/sites/tokyo/commands", json={"command": "restart"})
        assert r.status_code == 202
        body = r.json()
        assert (body["status"], body["target_kind"], body["summary"]["total"]) == (
            "queued", "site", 3)
        assert body["queued"] is True
        back = (await c.get(f"/v1/commands/{body['id']}")).json()
        assert sorted(c["device_id"] for c in back["commands"]) == ["tk1", "tk2", "tk3"]
        assert {c["state"] for c in back["commands"]} == {"queued"}
    # the bulk command is idempotent too
    again = await api.post("/v1/sites/tokyo/commands",
                           json={"command": "restart", "idempotency_key": "k1"})
    repeat = await api.post("/v1/sites/tokyo/commands",
                            json={"command": "restart", "idempotency_key": "k1"})
    assert (again.status_code, repeat.status_code) == (202, 200)
    assert again.json()["id"] == repeat.json()["id"]
    _err(await api.post("/v1/sites/tokyo/commands", json={"command": "restart", "x": 1}),
         400, "unknown_field")


async def test_a_keys_use_is_written_at_most_once_a_minute(tmp_path: Path) -> None:
    """Authenticated reads cost no write transaction: ``last_used_at`` is written on a key's
    first use, then again only once a minute has passed on the (injected) clock."""
    now = [NOW]
    db = tmp_path / "fleet.db"
    async with serving(db, clock=lambda: now[0]) as api:
        watcher = sqlite3.connect(db)  # data_version moves when another connection commits

        def commits() -> int:
            return int(watcher.execute("PRAGMA data_version").fetchone()[0])

        async def last_used(role: str) -> str | None:
            rows = await api.store.api_keys()
            used = next(k.last_used_at for k in rows if k.name == f"{role} key")
            return used.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if used else None

        try:
            assert (await api.get("/v1/sites")).status_code == 200
            assert await last_used("viewer") == "2026-03-28T16:00:00.000000Z"
            before = commits()
            for seconds in (1, 30, 59):
                now[0] = NOW + timedelta(seconds=seconds)
                assert (await api.get("/v1/sites")).status_code == 200
                assert (await api.get("/v1/devices")).status_code == 200
            assert commits() == before  # six authenticated reads, not one write
            assert await last_used("viewer") == "2026-03-28T16:00:00.000000Z"
            # each key has its own note: the operator's first use is written
            assert (await api.get("/v1/sites", role="operator")).status_code == 200
            assert await last_used("operator") == "2026-03-28T16:00:59.000000Z"
            now[0] = NOW + timedelta(seconds=61)
            assert (await api.get("/v1/sites")).status_code == 200
            assert await last_used("viewer") == "2026-03-28T16:01:01.000000Z"
            # the note spares the write, never the check: a revoked key is refused at once
            viewer_id = next(k.id for k in await api.store.api_keys()
                             if k.name == "viewer key")
            await api.store.revoke_api_key(viewer_id, now[0])
            _err(await api.get("/v1/sites"), 401, "unauthorized")
        finally:
            watcher.close()
