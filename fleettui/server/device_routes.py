"""Devices registered over HTTP: register, change, remove; and the devices of a new site.

A device the config file declares is the file's: listed and commanded here,
changed only there (409 naming the file). A device registered here is the
store's own (origin "api"): the engine polls it from its next reconcile (at
once when the server runs in the poller's process, within seconds
otherwise), keeps polling it across restarts and config syncs, and stops when
it is removed. Removing never deletes: its punches and history stay.

The comm key is checked, stored (the poller needs it) and never shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from fleettui.config import DEVICE_ID_PATTERN, SERIAL_PATTERN, ConfigError, validate_device
from fleettui.domain import DeviceChanges, DeviceSpec
from fleettui.server.base import (
    AUTH_ERRORS,
    BODY_ERRORS,
    ERR,
    EXPECTED,
    ApiError,
    device_record,
    fleet_changed,
    json_body,
    json_object,
    json_type_ok,
    now_of,
    ok,
    param,
    requires,
    store_of,
)
from fleettui.store import ConflictKind, FleetConflict

#: a device as the API writes it; ``serial_number`` is the article's name for the serial
DEVICE_FIELDS: dict[str, type] = {
    "id": str, "serial_number": str, "site": str, "host": str, "port": int,
    "transport": str, "name": str, "comm_key": int, "live_capture": bool, "enabled": bool,
}
#: what a PATCH may change (a new serial is a new device: remove and register)
PATCH_FIELDS: dict[str, type] = {k: v for k, v in DEVICE_FIELDS.items()
                                 if k not in ("id", "serial_number")}
#: API field → [[devices]] key, where they differ
_CONFIG_KEY = {"serial_number": "serial"}
_API_FIELD = {v: k for k, v in _CONFIG_KEY.items()}
MAX_SITE_DEVICES = 500


def _at(index: int | None, field: str) -> str:
    return f"devices[{index}].{field}" if index is not None else field


def device_spec(body: dict[str, Any], index: int | None = None) -> DeviceSpec:
    """A registration body checked as a [[devices]] entry is; 400 naming the field."""
    data = {_CONFIG_KEY.get(k, k): v for k, v in body.items() if v is not None}
    if "id" not in data and isinstance(data.get("serial"), str):
        data["id"] = data["serial"].lower()  # default: the serial, as the article's ids read
    if data.get("transport", "tcp") != "push" and "host" not in data:
        raise ApiError(400, "missing_field", f"{_at(index, 'host')}: required (the device's "
                       'address), or transport "push" for a device that dials in')
    try:
        d = validate_device(data)
    except ConfigError as e:
        # an id made from a missing serial is the serial's problem, not the id's
        problems = [p for p in e.problems if p.key != "id" or "id" in body] or e.problems
        problem = problems[0]
        field = _API_FIELD.get(problem.key, problem.key)
        code = "missing_field" if "required key is missing" in problem.message \
            else "invalid_field"
        message = problem.message.replace("required key is missing", "required")
        raise ApiError(400, code, f"{_at(index, field)}: {message}") from None
    return DeviceSpec(id=d.id, serial=d.serial, site_id=d.site, host=d.host or "",
                      port=d.port, transport=d.transport, comm_key=d.comm_key,
                      live_capture=d.live_capture, name=d.name, enabled=d.enabled,
                      origin="api")


#: the HTTP status and error code that say each of the store's refusals
_CONFLICT_ANSWERS: dict[ConflictKind, tuple[int, str]] = {
    ConflictKind.BAD_REFERENCE: (400, "invalid_field"),
    ConflictKind.NOT_FOUND: (404, "not_found"),
    ConflictKind.TAKEN: (409, "conflict"),
    ConflictKind.CONFIG_OWNED: (409, "conflict"),
}


def conflict_error(e: FleetConflict) -> ApiError:
    """The store's refusal as an answer naming the field."""
    status, code = _CONFLICT_ANSWERS[e.kind]
    field = _at(e.index, e.field)
    return ApiError(status, code, f"{field}: {e.message}" if status != 404 else e.message)


@requires("admin")
async def register_device(request: web.Request) -> web.Response:
    """Register a device; the poller starts polling it without a restart."""
    body = await json_object(request, DEVICE_FIELDS)
    spec = device_spec(body)
    try:
        (state,) = await store_of(request).register_devices([spec], now_of(request))
    except FleetConflict as e:
        raise conflict_error(e) from None
    fleet_changed(request)
    return web.json_response(device_record(state), status=201)


def _changes(spec: DeviceSpec, given: Iterable[str]) -> DeviceChanges:
    """The fields of ``spec`` (the device as it would be) that the request gave."""
    changes: DeviceChanges = {}
    if "site" in given:
        changes["site_id"] = spec.site_id
    if "host" in given:
        changes["host"] = spec.host
    if "port" in given:
        changes["port"] = spec.port
    if "transport" in given:
        changes["transport"] = spec.transport
    if "comm_key" in given:
        changes["comm_key"] = spec.comm_key
    if "live_capture" in given:
        changes["live_capture"] = spec.live_capture
    if "name" in given:
        changes["name"] = spec.name
    if "enabled" in given:
        changes["enabled"] = spec.enabled
    return changes


@requires("admin")
async def patch_device(request: web.Request) -> web.Response:
    """Change a registered device (site, address, comm key, name, enabled, live capture)."""
    body = await json_object(request, PATCH_FIELDS)
    given = {k: v for k, v in body.items() if v is not None}
    if not given:
        raise ApiError(400, "missing_field",
                       f"nothing to change: give one of {', '.join(PATCH_FIELDS)}")
    store = store_of(request)
    device_id = request.match_info["id"]
    current = await store.device(device_id)
    if current is None or current.origin != "api":
        # the store says which: unknown (404) or the config file's (409)
        try:
            await store.update_api_device(device_id, {}, now_of(request))
        except FleetConflict as e:
            raise conflict_error(e) from None
    assert current is not None
    merged = {"id": current.id, "serial_number": current.serial, "site": current.site_id,
              "host": current.host, "port": current.port, "transport": current.transport,
              "name": current.name, "enabled": current.enabled, **given}
    spec = device_spec(merged)
    try:
        state = await store.update_api_device(device_id, _changes(spec, given),
                                              now_of(request))
    except FleetConflict as e:
        raise conflict_error(e) from None
    fleet_changed(request)
    return web.json_response(device_record(state))


@requires("admin")
async def delete_device(request: web.Request) -> web.Response:
    """Stop polling a registered device (its punches and history stay)."""
    try:
        await store_of(request).remove_api_device(request.match_info["id"], now_of(request))
    except FleetConflict as e:
        raise conflict_error(e) from None
    fleet_changed(request)
    return web.Response(status=204)


def site_devices(items: list[Any],
                 site_id: str) -> tuple[list[DeviceSpec], list[str], list[int]]:
    """POST /v1/sites ``devices``: objects register new devices at the site, strings name
    registered devices to move there (the article's shape).

    Returns the new devices, the ids to move, and each one's place in the body
    (new ones first, then moves: the store's order) to name it in an error.
    """
    if len(items) > MAX_SITE_DEVICES:
        raise ApiError(400, "invalid_field", f"devices: at most {MAX_SITE_DEVICES} entries")
    new: list[DeviceSpec] = []
    move: list[str] = []
    new_at: list[int] = []
    move_at: list[int] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            move.append(item)
            move_at.append(i)
        elif isinstance(item, dict):
            # no "site": the device goes to the new site
            unknown = sorted(set(item) - set(DEVICE_FIELDS) | ({"site"} & set(item)))
            if unknown:
                raise ApiError(400, "unknown_field", "unknown field(s): "
                               + ", ".join(f"devices[{i}].{u}" for u in unknown))
            for name, kind in DEVICE_FIELDS.items():
                if item.get(name) is not None and not json_type_ok(item[name], kind):
                    raise ApiError(400, "invalid_field",
                                   f"devices[{i}].{name}: expected {EXPECTED[kind]}")
            new.append(device_spec({**item, "site": site_id}, i))
            new_at.append(i)
        else:
            raise ApiError(400, "invalid_field",
                           f"devices[{i}]: expected a device id or a device object")
    return new, move, new_at + move_at


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_post("/v1/devices", register_device)
    app.router.add_patch("/v1/devices/{id}", patch_device)
    app.router.add_delete("/v1/devices/{id}", delete_device)


_ID = param("id", "path", "device id", {"type": "string"}, required=True)
# null means "not given" (the default), as for every body of this API
_DEVICE_PROPS: dict[str, Any] = {
    "id": {"type": ["string", "null"], "pattern": DEVICE_ID_PATTERN,
           "description": "default: the serial number, lowercased"},
    "serial_number": {"type": "string", "pattern": SERIAL_PATTERN},
    "site": {"type": "string", "description": "an existing site's id"},
    "host": {"type": "string", "description": "IPv4 or IPv6 address, or a host name"},
    "port": {"type": ["integer", "null"], "minimum": 1, "maximum": 65535, "default": 4370},
    "transport": {"type": ["string", "null"], "enum": ["tcp", "udp", None], "default": "tcp"},
    "name": {"type": ["string", "null"], "maxLength": 120},
    "comm_key": {"type": ["integer", "null"], "minimum": 0, "maximum": 999999,
                 "description": "the device's password; stored, never shown"},
    "live_capture": {"type": ["boolean", "null"],
                     "description": "real-time punches; null follows [poll] live_capture"},
    "enabled": {"type": ["boolean", "null"], "default": True},
}
SCHEMAS: dict[str, Any] = {
    "DeviceBody": {
        "type": "object", "additionalProperties": False,
        "required": ["serial_number", "site", "host"],
        "examples": [{"id": "dev_warehouse_04", "serial_number": "CQZ7224460281",
                      "site": "warehouse-gate-a", "host": "10.20.0.14"}],
        "properties": _DEVICE_PROPS,
    },
    "SiteDeviceBody": {
        "type": "object", "additionalProperties": False,
        "required": ["serial_number", "host"],
        "examples": [{"id": "dev_warehouse_01", "serial_number": "CQZ7224460277",
                      "host": "10.20.0.11"}],
        "properties": {k: v for k, v in _DEVICE_PROPS.items() if k != "site"},
    },
    "DevicePatch": {
        "type": "object", "additionalProperties": False, "minProperties": 1,
        "examples": [{"host": "10.20.0.15"}, {"enabled": False}],
        "properties": {k: {**v, "type": v["type"] if isinstance(v["type"], list)
                           else [v["type"], "null"]}
                       for k, v in _DEVICE_PROPS.items() if k not in ("id", "serial_number")},
    },
}
PATHS: dict[str, Any] = {
    "/v1/devices": {"post": {
        "summary": "register a device (admin)",
        "description": "Role: admin. The device is polled from now on, without a restart, "
        "and kept across restarts. 409 when its id, serial or address is taken; 400 for an "
        "unknown site.",
        "requestBody": json_body("DeviceBody"),
        "responses": {"201": ok("the device", "Device"), **BODY_ERRORS, **AUTH_ERRORS,
                      "409": ERR},
    }},
    "/v1/devices/{id}": {
        "patch": {
            "summary": "change a registered device (admin)",
            "description": "Role: admin. Devices registered over the API only: one the "
            "config file declares is changed there (409).",
            "parameters": [_ID], "requestBody": json_body("DevicePatch"),
            "responses": {"200": ok("the device", "Device"), **BODY_ERRORS, **AUTH_ERRORS,
                          "404": ERR, "409": ERR},
        },
        "delete": {
            "summary": "stop polling a registered device (admin)",
            "description": "Role: admin. Its punches and history stay. A device the config "
            "file declares is removed there (409).",
            "parameters": [_ID],
            "responses": {"204": {"description": "removed"}, **AUTH_ERRORS, "404": ERR,
                          "409": ERR},
        },
    },
}
