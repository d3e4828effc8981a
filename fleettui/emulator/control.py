"""The emulator's control API: HTTP + JSON on loopback, for tests, demos and benchmarks.

Routes (``{id}`` is the device id of the fleet config):

    GET    /                         what this emulator serves, and the routes
    GET    /devices                  every device: state, faults, counts, clock
    GET    /devices/{id}             one device
    GET    /devices/{id}/attendance  every stored record
    GET    /devices/{id}/users       every enrolled user
    POST   /devices/{id}/punches     {"user_id": "1001", "at": "2026-03-28T08:01:00"}
                                     (at optional, device-local; state, verify optional)
                                     or {"count": 47} for generated punches
    PUT    /devices/{id}/faults      {"offline": true}, {"latency_ms": 300},
                                     {"flap": {"up_s": 20, "down_s": 10}}, {"garbage": true},
                                     {"clock_offset_s": 3600}, ... (merged with current faults)
                                     push terminals also: {"lost_answers": 1} (the server's
                                     answer to the next upload is lost: the same batch is
                                     posted again), {"resend_all_after_reboot": true},
                                     {"command_returns": {"DATA": -1005}} (null to clear)
    DELETE /devices/{id}/faults      clear every fault (clock offset and drift included)
    POST   /devices/{id}/power       {"on": false} powers off, {"on": true} powers on
    POST   /devices/{id}/restart     reboot (gone for the profile's reboot time)

A push terminal (``fleettui emulate --push N``) is acted on the same way: its
punches go into its log and are pushed; offline and flap stop its calls (it
buffers); restart and power make it handshake again. Its summary carries a
``push`` object (session, Delay, upload cursor, pending records, counters).

The control API has no authentication, so it only ever binds a loopback
address. Errors are JSON ``{"error": "..."}`` with a 4xx status.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime
from typing import Any

from aiohttp import web

from fleettui.emulator.faults import FaultError, known_fault_keys
from fleettui.emulator.fleet import Fleet, UnknownDevice

FLEET_KEY: web.AppKey[Fleet] = web.AppKey("fleet", Fleet)
MAX_BODY = 64 * 1024
MAX_GENERATED = 1_000_000

ROUTES = [
    "GET /devices",
    "GET /devices/{id}",
    "GET /devices/{id}/attendance",
    "GET /devices/{id}/users",
    "POST /devices/{id}/punches",
    "PUT /devices/{id}/faults",
    "DELETE /devices/{id}/faults",
    "POST /devices/{id}/power",
    "POST /devices/{id}/restart",
]


class BadRequest(ValueError):
    """The request body is not what the route expects."""


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except UnknownDevice as e:
        return _error(404, f"no device {e.args[0]!r} in this fleet")
    except (BadRequest, FaultError) as e:
        return _error(400, str(e))
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"request body larger than {MAX_BODY} bytes")
    except web.HTTPException as e:
        if e.status >= 400:
            return _error(e.status, e.reason)
        raise


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise BadRequest("a JSON body is required")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"body is not valid JSON: {e}") from None


def _fleet(request: web.Request) -> Fleet:
    return request.app[FLEET_KEY]


async def index(request: web.Request) -> web.Response:
    """What this emulator serves."""
    fleet = _fleet(request)
    return web.json_response(
        {
            "devices": len(fleet.devices),
            "routes": ROUTES,
            "faults": known_fault_keys(),
            "punches_generated": fleet.punches_generated,
        }
    )


async def list_devices(request: web.Request) -> web.Response:
    """Every device's summary."""
    return web.json_response({"devices": _fleet(request).summary()})


async def get_device(request: web.Request) -> web.Response:
    """One device's summary."""
    return web.json_response(_fleet(request).device(request.match_info["id"]).summary())


async def get_attendance(request: web.Request) -> web.Response:
    """Every record the device holds, oldest first."""
    dev = _fleet(request).device(request.match_info["id"])
    records = [p.to_json() for p in dev.log.records()]
    return web.json_response({"device": dev.id, "count": len(records), "records": records})


async def get_users(request: web.Request) -> web.Response:
    """Every user enrolled on the device."""
    dev = _fleet(request).device(request.match_info["id"])
    users = [u.to_json() for u in sorted(dev.users.values(), key=lambda u: u.uid)]
    return web.json_response({"device": dev.id, "count": len(users), "users": users})


def _int_field(body: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadRequest(f"{key}: expected an integer from {lo} to {hi}, got {value!r}")
    return value


async def post_punches(request: web.Request) -> web.Response:
    """Make a user punch (or generate ``count`` punches) on the device."""
    fleet = _fleet(request)
    dev = fleet.device(request.match_info["id"])
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise BadRequest('expected an object: {"user_id": "1001"} or {"count": 47}')
    unknown = set(body) - {"user_id", "at", "state", "verify", "count"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    if "count" in body:
        if "user_id" in body:
            raise BadRequest("give either user_id or count, not both")
        count = _int_field(body, "count", 1, 1, MAX_GENERATED)
        stored, rejected = fleet.generate_punches(dev.id, count)
    else:
        user_id = body.get("user_id")
        if not isinstance(user_id, str) or not user_id or len(user_id) > 24:
            raise BadRequest("user_id: expected a string of 1 to 24 characters")
        at = None
        if body.get("at") is not None:
            try:
                at = datetime.fromisoformat(str(body["at"]))
            except ValueError:
                raise BadRequest(f"at: expected ISO local time, got {body['at']!r}") from None
            if at.tzinfo is not None:
                raise BadRequest("at: devices keep naive local time; drop the UTC offset")
            if not 2000 <= at.year <= 2099:
                raise BadRequest("at: the device clock only holds years 2000-2099")
        state = _int_field(body, "state", 0, 0, 255)
        verify = _int_field(body, "verify", 1, 0, 255)
        p = dev.punch(user_id, at, state=state, verify=verify)
        stored, rejected = (1, 0) if p else (0, 1)
    status = 201 if stored else 409
    return web.json_response(
        {
            "stored": stored,
            "rejected": rejected,
            "records": len(dev.log),
            "reason": None if stored else _rejection_reason(dev),
        },
        status=status,
    )


def _rejection_reason(dev: Any) -> str:
    if dev.power != "on":
        return f"device is {dev.power}"
    if not dev.enabled:
        return "device is disabled"
    return "record buffer is full"


async def put_faults(request: web.Request) -> web.Response:
    """Add or change faults (merged with the ones in force)."""
    fleet = _fleet(request)
    fleet.device(request.match_info["id"])
    body = await _json_body(request)
    return web.json_response(await fleet.set_faults(request.match_info["id"], body))


async def delete_faults(request: web.Request) -> web.Response:
    """Clear every fault."""
    return web.json_response(await _fleet(request).clear_faults(request.match_info["id"]))


async def post_power(request: web.Request) -> web.Response:
    """Power a device off or on."""
    dev = _fleet(request).device(request.match_info["id"])
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("on"), bool) or len(body) != 1:
        raise BadRequest('expected {"on": true} or {"on": false}')
    if body["on"]:
        dev.power_on()
    else:
        dev.power_off()
    return web.json_response(dev.summary())


async def post_restart(request: web.Request) -> web.Response:
    """Reboot a device as if RESTART had been sent."""
    dev = _fleet(request).device(request.match_info["id"])
    dev.restart()
    return web.json_response(dev.summary())


def make_app(fleet: Fleet) -> web.Application:
    """The control API application for a fleet."""
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY)
    app[FLEET_KEY] = fleet
    app.router.add_get("/", index)
    app.router.add_get("/devices", list_devices)
    app.router.add_get("/devices/{id}", get_device)
    app.router.add_get("/devices/{id}/attendance", get_attendance)
    app.router.add_get("/devices/{id}/users", get_users)
    app.router.add_post("/devices/{id}/punches", post_punches)
    app.router.add_put("/devices/{id}/faults", put_faults)
    app.router.add_delete("/devices/{id}/faults", delete_faults)
    app.router.add_post("/devices/{id}/power", post_power)
    app.router.add_post("/devices/{id}/restart", post_restart)
    return app


def check_loopback(host: str) -> None:
    """Refuse to bind the unauthenticated control API anywhere but loopback."""
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ValueError(
            f"the control API has no authentication and binds loopback only, not {host!r}"
        )


async def start_control(fleet: Fleet, host: str = "127.0.0.1", port: int = 0) -> web.AppRunner:
    """Serve the control API; returns the runner (``runner.addresses`` has the port)."""
    check_loopback(host)
    runner = web.AppRunner(make_app(fleet), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port the control API listens on."""
    return int(runner.addresses[0][1])
