"""The emulator's control HTTP API, against a real running server, checked through pyzk.

The API is served by the emulator thread on an ephemeral loopback port and
driven with a plain synchronous ``httpx.Client``; whatever it changes is then
observed the way a poller would, with unmodified pyzk over TCP or UDP.

The fleet runs on a FakeClock and a frozen wall clock, so device summaries
(clock included) are stable: "nothing changed" is asserted by comparing the
whole fleet listing before and after a refused request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from zk.exception import ZKNetworkError

from fleettui.emulator.control import MAX_BODY, ROUTES, check_loopback
from fleettui.emulator.faults import known_fault_keys
from tests.conftest import Emulated, FakeClock, device_config, sample_users

TRANSPORTS = [pytest.param(False, id="tcp"), pytest.param(True, id="udp")]
SHORT = 0.3
WALL = datetime(2026, 3, 28, 9, 30, 0, tzinfo=UTC)
DEV = "dev_api_01"
OTHER = "dev_api_02"


@dataclass
class Api:
    """A running fleet of two devices with its control API and an HTTP client."""

    em: Emulated
    http: httpx.Client
    clock: FakeClock

    def device(self, device_id: str = DEV) -> dict[str, Any]:
        """GET /devices/{id}, which must succeed."""
        r = self.http.get(f"/devices/{device_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def fleet_state(self) -> dict[str, Any]:
        """Everything the API shows: the fleet listing and every device's records."""
        listing = self.http.get("/devices").json()
        records = {
            d["id"]: self.http.get(f"/devices/{d['id']}/attendance").json()
            for d in listing["devices"]
        }
        return {"listing": listing, "records": records}


@pytest.fixture
def api(emulate: Callable[..., Emulated]) -> Iterator[Api]:
    """Two devices (20 users and 30 punches on the first, 5 users on the second)."""
    clock = FakeClock()
    first, second = device_config(DEV), device_config(OTHER)
    em = emulate(
        [first, second],
        users={DEV: sample_users(20), OTHER: sample_users(5)},
        control=True,
        clock=clock,
        wall_clock=lambda: WALL,
    )
    em.emu.call(em.fleet.generate_punches, DEV, 30)
    with httpx.Client(base_url=em.emu.control_url, timeout=10) as http:
        yield Api(em, http, clock)


def true_local(tz: str) -> datetime:
    """The true naive local time at WALL in a device's zone."""
    return WALL.astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def assert_error(r: httpx.Response, status: int, fragment: str) -> None:
    """A refused request: the given 4xx status and a JSON {"error": ...} naming the problem."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert fragment in body["error"]


# --- reads -------------------------------------------------------------------


def test_index_describes_the_emulator(api: Api) -> None:
    """GET / lists the device count, every route and every fault key."""
    r = api.http.get("/")
    assert r.status_code == 200
    assert r.json() == {
        "devices": 2,
        "routes": ROUTES,
        "faults": known_fault_keys(),
        "punches_generated": 0,
    }
    assert "PUT /devices/{id}/faults" in r.json()["routes"]


def test_devices_lists_every_device_with_ids_serials_and_counts(api: Api) -> None:
    """GET /devices: every device in configuration order, with identity and counts."""
    r = api.http.get("/devices")
    assert r.status_code == 200
    devices = r.json()["devices"]
    configs = [api.em.fleet.devices[i].config for i in (DEV, OTHER)]
    assert [d["id"] for d in devices] == [DEV, OTHER]
    assert [d["serial"] for d in devices] == [c.serial for c in configs]
    assert [(d["host"], d["port"]) for d in devices] == [(c.host, c.port) for c in configs]
    assert [(d["users"], d["records"]) for d in devices] == [(20, 30), (5, 0)]
    assert {(d["power"], d["reachable"], d["enabled"]) for d in devices} == {("on", True, True)}
    assert [d["faults"] for d in devices] == [{}, {}]


def test_device_shows_state_faults_counts_and_clock(api: Api) -> None:
    """GET /devices/{id}: power, faults, users, records and the device's own clock."""
    cfg = api.em.fleet.devices[DEV].config
    d = api.device()
    assert d["id"] == DEV
    assert d["serial"] == cfg.serial
    assert d["timezone"] == cfg.timezone
    assert (d["model"], d["firmware"]) == ("F18/ID", "Ver 6.60 Apr 26 2016")
    assert (d["power"], d["reachable"], d["enabled"]) == ("on", True, True)
    assert d["faults"] == {}
    assert (d["users"], d["records"], d["records_capacity"]) == (20, 30, 100_000)
    assert (d["rejected_punches"], d["door_unlocks"], d["door_open"]) == (0, 0, False)
    assert d["clock"] == true_local(cfg.timezone).isoformat()
    assert d["clock_offset_s"] == 0
    assert d["comm_key_set"] is False


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_attendance_lists_every_record_exactly_as_pyzk_reads_it(api: Api, udp: bool) -> None:
    """GET /devices/{id}/attendance returns the same records, in order, as pyzk downloads."""
    r = api.http.get(f"/devices/{DEV}/attendance")
    assert r.status_code == 200
    body = r.json()
    assert (body["device"], body["count"], len(body["records"])) == (DEV, 30, 30)
    conn = api.em.zk(DEV, udp=udp).connect()
    try:
        downloaded = conn.get_attendance()
    finally:
        conn.disconnect()
    # 40-byte records: pyzk's "status" is the verify type, "punch" the state
    assert [
        (rec["user_id"], datetime.fromisoformat(rec["at"]), rec["verify"], rec["state"],
         rec["uid"])
        for rec in body["records"]
    ] == [(a.user_id, a.timestamp, a.status, a.punch, a.uid) for a in downloaded]


def test_users_lists_every_enrolled_user_as_pyzk_reads_them(api: Api) -> None:
    """GET /devices/{id}/users: every user by uid, matching pyzk's get_users."""
    r = api.http.get(f"/devices/{DEV}/users")
    assert r.status_code == 200
    body = r.json()
    assert (body["device"], body["count"]) == (DEV, 20)
    assert body["users"][0] == {
        "uid": 1, "user_id": "1001", "name": "Worker 1", "privilege": 0,
        "card": 5000001, "group_id": "1", "has_password": False,
    }
    conn = api.em.zk(DEV).connect()
    try:
        users = conn.get_users()
    finally:
        conn.disconnect()
    assert [(u["uid"], u["user_id"], u["name"], u["card"]) for u in body["users"]] == [
        (u.uid, u.user_id, u.name, u.card) for u in users
    ]


# --- punches -------------------------------------------------------------------


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_posted_punch_is_the_exact_record_pyzk_downloads(api: Api, udp: bool) -> None:
    """POST punches {"user_id", "at"}: 201, and pyzk reads back that very record."""
    r = api.http.post(
        f"/devices/{DEV}/punches", json={"user_id": "1001", "at": "2026-03-28T08:01:00"}
    )
    assert r.status_code == 201, r.text
    assert r.json() == {"stored": 1, "rejected": 0, "records": 31, "reason": None}
    conn = api.em.zk(DEV, udp=udp).connect()
    try:
        records = conn.get_attendance()
    finally:
        conn.disconnect()
    assert len(records) == 31
    last = records[-1]
    # defaults: state 0 (check-in), verify 1 (fingerprint); uid 1 is user 1001's
    assert (last.user_id, last.timestamp, last.status, last.punch, last.uid) == (
        "1001", datetime(2026, 3, 28, 8, 1, 0), 1, 0, 1
    )
    assert api.http.get(f"/devices/{DEV}/attendance").json()["records"][-1] == {
        "user_id": "1001", "at": "2026-03-28T08:01:00", "state": 0, "verify": 1, "uid": 1
    }


def test_posted_punch_with_state_and_verify_and_no_time(api: Api) -> None:
    """Optional fields: state and verify are stored; without "at" the device clock stamps it."""
    cfg = api.em.fleet.devices[DEV].config
    r = api.http.post(
        f"/devices/{DEV}/punches", json={"user_id": "1002", "state": 1, "verify": 2}
    )
    assert r.status_code == 201, r.text
    last = api.http.get(f"/devices/{DEV}/attendance").json()["records"][-1]
    assert last == {
        "user_id": "1002", "at": true_local(cfg.timezone).isoformat(), "state": 1,
        "verify": 2, "uid": 2,
    }


def test_generated_punches_add_that_many_records(api: Api) -> None:
    """POST punches {"count": 47}: 201 and 47 more records, seen by the API and by pyzk."""
    r = api.http.post(f"/devices/{DEV}/punches", json={"count": 47})
    assert r.status_code == 201, r.text
    assert r.json() == {"stored": 47, "rejected": 0, "records": 77, "reason": None}
    assert api.device()["records"] == 77
    assert api.http.get(f"/devices/{DEV}/attendance").json()["count"] == 77
    conn = api.em.zk(DEV).connect()
    try:
        conn.read_sizes()
        assert conn.records == 77
        assert len(conn.get_attendance()) == 77
    finally:
        conn.disconnect()


# --- faults --------------------------------------------------------------------


@pytest.mark.parametrize("udp", TRANSPORTS)
def test_control_api_turns_a_device_offline_and_back(api: Api, udp: bool) -> None:
    """PUT {"offline": true}: pyzk times out; DELETE faults: pyzk answers again."""
    serial = api.em.fleet.devices[DEV].config.serial
    r = api.http.put(f"/devices/{DEV}/faults", json={"offline": True})
    assert r.status_code == 200, r.text
    assert (r.json()["faults"], r.json()["reachable"]) == ({"offline": True}, False)
    with pytest.raises(ZKNetworkError, match="timed out"):
        api.em.zk(DEV, udp=udp, timeout=SHORT).connect()
    # the neighbour is not affected
    assert api.device(OTHER)["reachable"] is True

    r = api.http.delete(f"/devices/{DEV}/faults")
    assert r.status_code == 200, r.text
    assert (r.json()["faults"], r.json()["reachable"]) == ({}, True)
    conn = api.em.zk(DEV, udp=udp, timeout=SHORT).connect()
    try:
        assert conn.get_serialnumber() == serial
    finally:
        conn.disconnect()


def test_fault_updates_merge_and_delete_clears_them_all(api: Api) -> None:
    """PUT faults merges with the faults in force; DELETE clears all, clock offset included."""
    r = api.http.put(f"/devices/{DEV}/faults", json={"latency_ms": 5})
    assert r.json()["faults"] == {"latency_ms": 5.0}
    r = api.http.put(f"/devices/{DEV}/faults", json={"garbage": True})
    assert r.status_code == 200
    assert r.json()["faults"] == {"latency_ms": 5.0, "garbage": True}
    r = api.http.put(
        f"/devices/{DEV}/faults",
        json={"flap": {"up_s": 20, "down_s": 10}, "clock_offset_s": 60, "latency_ms": 7},
    )
    assert r.json()["faults"] == {
        "flap": {"up_s": 20.0, "down_s": 10.0}, "latency_ms": 7.0, "garbage": True,
    }
    assert r.json()["clock_offset_s"] == 60
    assert api.device()["faults"] == r.json()["faults"]

    r = api.http.delete(f"/devices/{DEV}/faults")
    assert r.status_code == 200
    assert (r.json()["faults"], r.json()["clock_offset_s"]) == ({}, 0)
    assert r.json()["clock"] == true_local(r.json()["timezone"]).isoformat()


# --- power and restart ---------------------------------------------------------


def test_power_off_then_on(api: Api) -> None:
    """POST power {"on": false}: gone for pyzk, punches refused (409); {"on": true}: back."""
    r = api.http.post(f"/devices/{DEV}/power", json={"on": False})
    assert r.status_code == 200, r.text
    assert (r.json()["power"], r.json()["reachable"]) == ("off", False)
    with pytest.raises(ZKNetworkError, match="timed out"):
        api.em.zk(DEV, timeout=SHORT).connect()

    r = api.http.post(f"/devices/{DEV}/punches", json={"user_id": "1001"})
    assert r.status_code == 409
    assert r.json() == {"stored": 0, "rejected": 1, "records": 30, "reason": "device is off"}
    r = api.http.post(f"/devices/{DEV}/punches", json={"count": 3})
    assert r.status_code == 409
    assert (r.json()["stored"], r.json()["rejected"]) == (0, 3)
    assert r.json()["reason"] == "device is off"
    assert api.device()["rejected_punches"] == 4

    r = api.http.post(f"/devices/{DEV}/power", json={"on": True})
    assert r.status_code == 200
    assert (r.json()["power"], r.json()["reachable"], r.json()["records"]) == ("on", True, 30)
    conn = api.em.zk(DEV, timeout=SHORT).connect()
    try:
        assert len(conn.get_attendance()) == 30
    finally:
        conn.disconnect()


def test_restart_reboots_for_the_profile_reboot_time(api: Api) -> None:
    """POST restart: open sessions drop, the device is gone until its reboot time has passed."""
    conn = api.em.zk(DEV, timeout=SHORT).connect()
    r = api.http.post(f"/devices/{DEV}/restart")
    assert r.status_code == 200, r.text
    assert (r.json()["power"], r.json()["reachable"]) == ("rebooting", False)
    with pytest.raises(ZKNetworkError):
        conn.get_serialnumber()  # the connection was dropped
    with pytest.raises(ZKNetworkError, match="timed out"):
        api.em.zk(DEV, timeout=SHORT).connect()

    api.clock.advance(api.em.fleet.devices[DEV].profile.reboot_s)
    assert api.device()["power"] == "on"
    conn = api.em.zk(DEV, timeout=SHORT).connect()
    try:
        assert conn.get_serialnumber() == api.em.fleet.devices[DEV].config.serial
    finally:
        conn.disconnect()


# --- refused requests ------------------------------------------------------------

BIG = b'{"user_id": "' + b"1" * (MAX_BODY + 1024) + b'"}'

BAD_REQUESTS = [
    # unknown device, on every route
    pytest.param("GET", "/devices/dev_nope", None, 404, "no device 'dev_nope'", id="get-404"),
    pytest.param("GET", "/devices/dev_nope/attendance", None, 404, "dev_nope", id="att-404"),
    pytest.param("GET", "/devices/dev_nope/users", None, 404, "dev_nope", id="users-404"),
    pytest.param("POST", "/devices/dev_nope/punches", {"json": {"count": 1}}, 404, "dev_nope",
                 id="punch-404"),
    pytest.param("PUT", "/devices/dev_nope/faults", {"json": {"offline": True}}, 404,
                 "dev_nope", id="faults-404"),
    pytest.param("DELETE", "/devices/dev_nope/faults", None, 404, "dev_nope",
                 id="clear-404"),
    pytest.param("POST", "/devices/dev_nope/power", {"json": {"on": False}}, 404, "dev_nope",
                 id="power-404"),
    pytest.param("POST", "/devices/dev_nope/restart", None, 404, "dev_nope",
                 id="restart-404"),
    # not JSON, or not an object
    pytest.param("POST", f"/devices/{DEV}/punches", {"content": b"{nope"}, 400,
                 "body is not valid JSON", id="punch-bad-json"),
    pytest.param("PUT", f"/devices/{DEV}/faults", {"content": b'{"offline": tru'}, 400,
                 "body is not valid JSON", id="faults-bad-json"),
    pytest.param("PUT", f"/devices/{DEV}/faults", {"content": b"\xff\xfe{}"}, 400,
                 "body is not valid JSON", id="faults-not-utf8"),
    pytest.param("POST", f"/devices/{DEV}/punches", {"content": b""}, 400,
                 "a JSON body is required", id="punch-empty"),
    pytest.param("POST", f"/devices/{DEV}/punches", {"json": [{"count": 1}]}, 400,
                 "expected an object", id="punch-array"),
    pytest.param("PUT", f"/devices/{DEV}/faults", {"json": ["offline"]}, 400,
                 "faults must be a JSON object", id="faults-array"),
    pytest.param("PUT", f"/devices/{DEV}/faults", {"json": True}, 400,
                 "faults must be a JSON object", id="faults-bool"),
    pytest.param("POST", f"/devices/{DEV}/power", {"json": "off"}, 400,
                 'expected {"on": true}', id="power-string"),
    # faults that cannot be applied (nothing is applied, not even the valid part)
    pytest.param("PUT", f"/devices/{DEV}/faults", {"json": {"bogus": True}}, 400,
                 "unknown fault 'bogus'", id="fault-unknown-key"),
    pytest.param("PUT", f"/devices/{DEV}/faults", {"json": {"offline": True, "udp_loss": 2}},
                 400, "udp_loss", id="fault-out-of-range"),
    pytest.param("PUT", f"/devices/{DEV}/faults", {"json": {"flap": {"up_s": 20}}}, 400,
                 "flap: missing down_s", id="fault-flap-no-down"),
    pytest.param("PUT", f"/devices/{DEV}/faults", {"json": {}}, 400, "no fault given",
                 id="fault-empty"),
    # punches
    pytest.param("POST", f"/devices/{DEV}/punches", {"json": {"count": 0}}, 400, "count:",
                 id="count-0"),
    pytest.param("POST", f"/devices/{DEV}/punches", {"json": {"count": 10**9}}, 400,
                 "count: expected an integer from 1 to 1000000", id="count-huge"),
    pytest.param("POST", f"/devices/{DEV}/punches", {"json": {"count": "5"}}, 400, "count:",
                 id="count-string"),
    pytest.param("POST", f"/devices/{DEV}/punches", {"json": {"user_id": "1001", "who": 1}},
                 400, "unknown field(s): who", id="unknown-field"),
    pytest.param("POST", f"/devices/{DEV}/punches",
                 {"json": {"user_id": "1001", "at": "2026-03-28T08:01:00+01:00"}}, 400,
                 "drop the UTC offset", id="at-with-timezone"),
    pytest.param("POST", f"/devices/{DEV}/punches",
                 {"json": {"user_id": "1001", "at": "2026-03-28T08:01:00Z"}}, 400,
                 "drop the UTC offset", id="at-zulu"),
    pytest.param("POST", f"/devices/{DEV}/punches",
                 {"json": {"user_id": "1001", "at": "yesterday"}}, 400,
                 "at: expected ISO local time", id="at-not-iso"),
    pytest.param("POST", f"/devices/{DEV}/punches",
                 {"json": {"user_id": "1001", "at": "1999-12-31T23:59:59"}}, 400,
                 "2000-2099", id="at-out-of-range"),
    pytest.param("POST", f"/devices/{DEV}/punches", {"json": {"user_id": "1001", "count": 2}},
                 400, "either user_id or count, not both", id="user-and-count"),
    pytest.param("POST", f"/devices/{DEV}/punches", {"json": {"user_id": 1001}}, 400,
                 "user_id: expected a string", id="user-id-int"),
    pytest.param("POST", f"/devices/{DEV}/punches", {"json": {"user_id": "1" * 25}}, 400,
                 "user_id: expected a string of 1 to 24", id="user-id-long"),
    pytest.param("POST", f"/devices/{DEV}/punches", {"json": {"user_id": "1001", "state": 256}},
                 400, "state:", id="state-range"),
    pytest.param("POST", f"/devices/{DEV}/punches", {"content": BIG}, 413,
                 f"larger than {MAX_BODY} bytes", id="punch-body-too-large"),
    pytest.param("PUT", f"/devices/{DEV}/faults", {"content": BIG}, 413,
                 f"larger than {MAX_BODY} bytes", id="faults-body-too-large"),
    # power
    pytest.param("POST", f"/devices/{DEV}/power", {"json": {"on": "yes"}}, 400,
                 'expected {"on": true}', id="power-not-bool"),
    pytest.param("POST", f"/devices/{DEV}/power", {"json": {"on": False, "now": True}}, 400,
                 'expected {"on": true}', id="power-extra-field"),
    # routing
    pytest.param("GET", f"/devices/{DEV}/punches", None, 405, "Method Not Allowed",
                 id="wrong-method"),
    pytest.param("GET", "/nowhere", None, 404, "Not Found", id="unknown-route"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "fragment"), BAD_REQUESTS)
def test_bad_request_is_refused_with_a_json_error_and_changes_nothing(
    api: Api, method: str, path: str, kwargs: dict[str, Any] | None, status: int,
    fragment: str,
) -> None:
    """Each bad request: a clear 4xx JSON {"error": ...}; no device state changes at all."""
    api.http.put(f"/devices/{DEV}/faults", json={"latency_ms": 1})  # a fault already in force
    before = api.fleet_state()
    r = api.http.request(method, path, **(kwargs or {}))
    assert_error(r, status, fragment)
    assert api.fleet_state() == before


def test_absurd_clock_offset_is_refused_with_400_and_changes_nothing(api: Api) -> None:
    """PUT {"clock_offset_s": 1e12} (valid JSON) must be a 400 like any out-of-range fault."""
    before = api.fleet_state()
    r = api.http.put(f"/devices/{DEV}/faults", json={"clock_offset_s": 1e12})
    assert_error(r, 400, "clock_offset_s")
    assert api.fleet_state() == before


# --- loopback only -----------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.20.0.9", "::1", "localhost"])
def test_check_loopback_accepts_loopback_hosts(host: str) -> None:
    """The unauthenticated API may bind loopback addresses (v4, v6, and "localhost")."""
    check_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_check_loopback_refuses_anything_else(host: str) -> None:
    """Binding all interfaces or a LAN address is refused, naming the address."""
    with pytest.raises(ValueError, match="loopback only"):
        check_loopback(host)
