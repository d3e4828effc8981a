"""Push devices waiting for approval over HTTP: list them (viewer), approve one (admin).

A push device that calls without being known is held, storing nothing, until an
operator puts it on a site; what ``fleettui push pending`` and ``fleettui push
approve`` do from a shell.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fleettui.domain import PendingDevice
from fleettui.engine.approve import ApprovalError, approve_push_device
from fleettui.server.base import (
    AUTH_ERRORS,
    BODY_ERRORS,
    ERR,
    ApiError,
    device_record,
    fleet_changed,
    iso,
    json_body,
    json_object,
    now_of,
    ok,
    param,
    required,
    requires,
    store_of,
)
from fleettui.server.device_routes import conflict_error
from fleettui.store.errors import FleetConflict

APPROVE_FIELDS: dict[str, type] = {"site": str, "id": str, "name": str}


def pending_record(p: PendingDevice) -> dict[str, Any]:
    """A pending push device as the API shows it."""
    return {"serial": p.serial, "address": p.address, "firmware": p.firmware,
            "push_version": p.push_version, "first_seen": iso(p.first_seen),
            "last_seen": iso(p.last_seen), "requests": p.requests}


async def list_pending(request: web.Request) -> web.Response:
    """Serials that called without being known, most recently heard first."""
    pending = await store_of(request).pending_push_devices()
    return web.json_response({"pending": [pending_record(p) for p in pending]})


@requires("admin")
async def approve_pending(request: web.Request) -> web.Response:
    """Put a pending serial on a site, as a push device of the store's own."""
    body = await json_object(request, APPROVE_FIELDS)
    site = required(body, "site")
    name = body.get("name") or ""
    if len(name) > 120:
        raise ApiError(400, "invalid_field", "name: at most 120 characters")
    try:
        state = await approve_push_device(store_of(request), request.match_info["serial"],
                                          site, now_of(request), device_id=body.get("id"),
                                          name=name)
    except ApprovalError as e:
        status, code = (404, "not_found") if "waiting" in str(e) else (400, "invalid_field")
        raise ApiError(status, code, str(e)) from None
    except FleetConflict as e:
        raise conflict_error(e) from None
    fleet_changed(request)
    return web.json_response(device_record(state), status=201)


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/v1/push/pending", list_pending)
    app.router.add_post("/v1/push/pending/{serial}/approve", approve_pending)


SCHEMAS: dict[str, Any] = {
    "PendingPushDevice": {"type": "object", "properties": {
        "serial": {"type": "string"}, "address": {"type": "string"},
        "firmware": {"type": "string"}, "push_version": {"type": "string"},
        "first_seen": {"type": "string"}, "last_seen": {"type": "string"},
        "requests": {"type": "integer"}}},
    "ApproveBody": {"type": "object", "additionalProperties": False, "required": ["site"],
                    "properties": {"site": {"type": "string"}, "id": {"type": "string"},
                                   "name": {"type": "string", "maxLength": 120}}},
}

PATHS: dict[str, Any] = {
    "/v1/push/pending": {"get": {
        "summary": "push devices waiting for approval (viewer)",
        "description": "Role: viewer. Serials that called the push listener without being "
        "known: nothing of theirs is stored until approved.",
        "responses": {"200": {"description": "{\"pending\": [PendingPushDevice]}", "content": {
            "application/json": {"schema": {"type": "object", "properties": {"pending": {
                "type": "array", "items": {"$ref": "#/components/schemas/PendingPushDevice"}}}}}}},
            **AUTH_ERRORS},
    }},
    "/v1/push/pending/{serial}/approve": {"post": {
        "summary": "approve a pending push device onto a site (admin)",
        "description": "Role: admin. The device is kept like one registered over the API "
        "(id: the serial, lowercased, unless given); its buffered records then arrive.",
        "parameters": [param("serial", "path", "the device's serial", {"type": "string"},
                             required=True)],
        "requestBody": json_body("ApproveBody"),
        "responses": {"201": ok("the device", "Device"), **BODY_ERRORS, **AUTH_ERRORS,
                      "404": ERR, "409": ERR},
    }},
}
