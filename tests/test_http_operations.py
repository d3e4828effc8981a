"""Silences, acknowledgements and site creation through the HTTP API, over real HTTP.

The server's clock is fixed (``NOW``), so "until" and "in force" are exact.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fleettui.domain import AlertKind, DeviceState, Site
from fleettui.store import Store, open_store
from tests import test_http_api
from tests.test_http_api import NOW, Api, _err

api = test_http_api.api  # the fixture: a server over a filled store, a key per role


def _z(minutes: int) -> str:
    return (NOW + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


# --- silences ---------------------------------------------------------------------------------


async def test_silence_a_device_and_a_site_list_and_end(api: Api) -> None:
    r = await api.post("/v1/silences", json={"target": "tk2", "duration_minutes": 90,
                                             "reason": "swapping the reader"})
    assert r.status_code == 201, r.text
    dev = r.json()
    assert (dev["target"], dev["target_kind"], dev["until"], dev["reason"]) == (
        "tk2", "device", _z(90), "swapping the reader")
    assert dev["created_by"].startswith("api key ") and dev["ended_at"] is None
    r = await api.post("/v1/silences", json={"target": "tokyo", "until": _z(30),
                                             "reason": "power work"})
    site = r.json()
    assert (r.status_code, site["target_kind"], site["until"]) == (201, "site", _z(30))
    listed = (await api.get("/v1/silences")).json()["silences"]
    assert [s["id"] for s in listed] == [dev["id"], site["id"]]
    # an open alert of tk2 shows it is silenced
    await _open_alert(api.store)
    alerts = (await api.get("/v1/alerts")).json()["alerts"]
    assert alerts[0]["silenced_until"] == _z(90)
    ended = await api.client.delete(f"/v1/silences/{dev['id']}", headers=api.auth("operator"))
    assert ended.status_code == 200 and ended.json()["ended_at"] == _z(0)
    assert [s["id"] for s in (await api.get("/v1/silences")).json()["silences"]] == [site["id"]]
    _err(await api.client.delete(f"/v1/silences/{dev['id']}", headers=api.auth("operator")),
         404, "not_found")
    kinds = [e.kind for e in await api.store.events_after(0)]
    assert kinds.count("silence.added") == 2 and "silence.ended" in kinds


async def test_silence_errors(api: Api) -> None:
    ok = {"target": "tk1", "duration_minutes": 10, "reason": "r"}
    _err(await api.client.post("/v1/silences", json=ok), 401, "unauthorized")
    _err(await api.post("/v1/silences", role="viewer", json=ok), 403, "forbidden")
    _err(await api.client.delete("/v1/silences/1", headers=api.auth("viewer")), 403,
         "forbidden")
    _err(await api.client.get("/v1/silences"), 401, "unauthorized")

    async def bad(body: object, status: int = 400, code: str = "invalid_field") -> str:
        return _err(await api.post("/v1/silences", json=body), status, code)

    _err(await api.post("/v1/silences", content=b"{"), 400, "bad_json")
    assert "target" in await bad({"duration_minutes": 5, "reason": "r"}, code="missing_field")
    assert "reason" in await bad({"target": "tk1", "duration_minutes": 5},
                                 code="missing_field")
    assert "until" in await bad({"target": "tk1", "reason": "r"}, code="missing_field")
    assert "exactly one" in await bad({**ok, "until": _z(5)}, code="missing_field")
    assert "mute" in await bad({**ok, "mute": True}, code="unknown_field")
    assert "duration_minutes" in await bad({**ok, "duration_minutes": "10"})
    assert "duration_minutes" in await bad({**ok, "duration_minutes": 1.5})
    assert "duration_minutes" in await bad({**ok, "duration_minutes": 0})
    assert "duration_minutes" in await bad({**ok, "duration_minutes": 10**9})
    assert "target" in await bad({**ok, "target": ["tk1"]})
    assert "reason" in await bad({**ok, "reason": "  "})
    no_dur = {"target": "tk1", "reason": "r"}
    assert "until" in await bad({**no_dur, "until": "tomorrow"})
    assert "future" in await bad({**no_dur, "until": _z(-1)})
    assert "30 days" in await bad({**no_dur, "until": _z(60 * 24 * 31)})
    assert "mars" in await bad({**ok, "target": "mars"}, 404, "not_found")
    for bad_id in ("99", "x", "-1", "9" * 30):
        _err(await api.client.delete(f"/v1/silences/{bad_id}", headers=api.auth("operator")),
             404, "not_found")


# --- acknowledgements -------------------------------------------------------------------------


async def _open_alert(store: Store) -> int:
    alert = await store.open_alert(
        target_kind="device", target="tk2", site_id="tokyo", kind=AlertKind.OFFLINE,
        severity="warning", reason="timeout", since=NOW - timedelta(hours=12),
        now=NOW - timedelta(hours=11), notify=True)
    return alert.id


async def test_acknowledge_an_alert(api: Api) -> None:
    alert_id = await _open_alert(api.store)
    _err(await api.client.post(f"/v1/alerts/{alert_id}/ack"), 401, "unauthorized")
    _err(await api.post(f"/v1/alerts/{alert_id}/ack", role="viewer"), 403, "forbidden")
    r = await api.post(f"/v1/alerts/{alert_id}/ack")  # no body: who is the key
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["id"], body["acknowledged"]) == (alert_id, True)
    assert body["acknowledged_by"].startswith("api key ")
    r = await api.post(f"/v1/alerts/{alert_id}/ack", json={"by": "night shift"})
    assert r.json()["acknowledged_by"] == "night shift"
    listed = (await api.get("/v1/alerts")).json()["alerts"]
    assert listed[0]["acknowledged"] is True
    _err(await api.post(f"/v1/alerts/{alert_id}/ack", json={"by": 3}), 400, "invalid_field")
    _err(await api.post(f"/v1/alerts/{alert_id}/ack", json={"who": "x"}), 400, "unknown_field")
    _err(await api.post(f"/v1/alerts/{alert_id}/ack", content=b"nope"), 400, "bad_json")
    for bad_id in ("999", "abc", "1.5"):
        _err(await api.post(f"/v1/alerts/{bad_id}/ack"), 404, "not_found")
    await api.store.update_alert((await api.store.alerts())[0], NOW, change="resolved",
                                 notify=False)
    _err(await api.post(f"/v1/alerts/{alert_id}/ack"), 404, "not_found")  # no longer open


# --- sites ------------------------------------------------------------------------------------


async def test_create_a_site_in_the_articles_shape(api: Api, tmp_path: Path) -> None:
    body = {"name": "Casablanca Plant 2", "location": {"address": "12 Bd Zerktouni",
                                                       "timezone": "Africa/Casablanca"},
            "devices": []}
    r = await api.post("/v1/sites", role="admin", json=body)
    assert r.status_code == 201, r.text
    site = r.json()
    assert (site["id"], site["name"], site["timezone"], site["address"], site["devices"]) == (
        "casablanca-plant-2", "Casablanca Plant 2", "Africa/Casablanca", "12 Bd Zerktouni", [])
    assert site["total_count"] == 0
    listed = [s["id"] for s in (await api.get("/v1/sites")).json()["sites"]]
    assert "casablanca-plant-2" in listed
    assert (await api.get("/v1/sites/casablanca-plant-2/health")).json()["total_count"] == 0
    r = await api.post("/v1/sites", role="admin",
                       json={"id": "paris_1", "name": "Paris", "location": {"timezone": "UTC"}})
    assert r.status_code == 201 and r.json()["address"] == ""
    # the engine syncing the config's fleet again keeps the API's sites
    await api.store.sync_fleet(
        [Site("tokyo", "Tokyo HQ", "Asia/Tokyo", "1-1 Chiyoda")],
        [DeviceState("tk1", "SER-TK1", "tokyo", "127.0.0.2", 4370, "tcp")])
    listed = [s["id"] for s in (await api.get("/v1/sites")).json()["sites"]]
    assert listed == ["casablanca-plant-2", "paris_1", "tokyo"]
    # a config site of the same id takes an API site over: the config then owns it
    await api.store.sync_fleet([Site("paris_1", "Paris (config)", "Europe/Paris")], [])
    await api.store.sync_fleet([], [])
    listed = [s["id"] for s in (await api.get("/v1/sites")).json()["sites"]]
    assert listed == ["casablanca-plant-2"]
    assert "site.created" in [e.kind for e in await api.store.events_after(0)]


async def test_site_creation_survives_a_restart(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.db")
    assert await store.create_site(Site("x", "X", "UTC", "addr"), NOW)
    assert not await store.create_site(Site("x", "Other", "UTC", ""), NOW)
    await store.close()
    store = await open_store(tmp_path / "s.db")
    await store.sync_fleet([], [])
    assert [s.id for s in await store.sites()] == ["x"]
    await store.close()


async def test_a_version_1_database_gains_the_new_tables_and_keeps_its_sites(
    tmp_path: Path,
) -> None:
    import sqlite3

    from fleettui.store.schema import MIGRATIONS

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # a database written before migration 2 existed
        db.executescript(MIGRATIONS[0])
        db.execute("INSERT INTO sites (id, name, timezone) VALUES ('old', 'Old', 'UTC')")
        db.execute("PRAGMA user_version = 1")
    store = await open_store(path)
    assert await store.schema_version() == len(MIGRATIONS) >= 2
    assert await store.webhook_endpoints() == []
    await store.sync_fleet([], [])  # a config site: removed when the config drops it
    assert await store.sites() == []
    await store.close()


async def test_site_creation_errors(api: Api) -> None:
    ok = {"name": "Lyon", "location": {"timezone": "Europe/Paris"}}
    _err(await api.client.post("/v1/sites", json=ok), 401, "unauthorized")
    for role in ("viewer", "operator"):
        assert "admin" in _err(await api.post("/v1/sites", role=role, json=ok), 403,
                               "forbidden")

    async def bad(body: object, code: str = "invalid_field", status: int = 400) -> str:
        return _err(await api.post("/v1/sites", role="admin", json=body), status, code)

    _err(await api.post("/v1/sites", role="admin", content=b"{]"), 400, "bad_json")
    assert "name" in await bad({"location": {"timezone": "UTC"}}, "missing_field")
    assert "location" in await bad({"name": "A"}, "missing_field")
    assert "location.timezone" in await bad({"name": "A", "location": {}}, "missing_field")
    assert "location.floor" in await bad({"name": "A", "location": {"timezone": "UTC",
                                                                    "floor": 2}},
                                         "unknown_field")
    assert "Europe/Pariss" in await bad({"name": "A", "location": {"timezone": "Europe/Pariss"}})
    assert "location.timezone" in await bad({"name": "A", "location": {"timezone": 1}})
    assert "location.address" in await bad({"name": "A", "location": {"timezone": "UTC",
                                                                      "address": ["x"]}})
    assert "location" in await bad({"name": "A", "location": "Paris"})
    assert "name" in await bad({"name": 7, "location": {"timezone": "UTC"}})
    assert "name" in await bad({"name": "", "location": {"timezone": "UTC"}})
    assert "name" in await bad({"name": "€€€", "location": {"timezone": "UTC"}})
    assert "id" in await bad({**ok, "id": "Not An Id"})
    assert "devices[0].serial" in await bad({**ok, "devices": [{"serial": "X1"}]},
                                            "unknown_field")
    assert "devices" in await bad({**ok, "devices": {"serial": "X1"}})
    assert "tokyo" in await bad({**ok, "id": "tokyo"}, "duplicate", 409)
    assert "tk1" in await bad({**ok, "id": "tk1"}, "duplicate", 409)  # a device's id
    assert (await api.post("/v1/sites", role="admin", json=ok)).status_code == 201
    assert "lyon" in await bad(ok, "duplicate", 409)
