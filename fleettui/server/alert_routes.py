"""Silences and acknowledgements over HTTP (operator): what the TUI palette and the CLI do.

A silence stops notifications for a device or a whole site until a time; an
acknowledgement stops an open alert's reminders. Both go through the store's
methods, so the event log records them as it does for the TUI.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from fleettui.domain import Silence
from fleettui.report import alert_record
from fleettui.server.base import (
    AUTH_ERRORS,
    BODY_ERRORS,
    ERR,
    NULLABLE_STR,
    ApiError,
    iso,
    json_body,
    json_object,
    now_of,
    ok,
    param,
    parse_time,
    required,
    small_int,
    store_of,
    who,
)

SILENCE_FIELDS: dict[str, type] = {"target": str, "until": str, "duration_minutes": int,
                                   "reason": str}
ACK_FIELDS: dict[str, type] = {"by": str}
MAX_SILENCE = timedelta(days=30)
MAX_REASON = 500


def silence_record(s: Silence, kind: str | None = None) -> dict[str, Any]:
    """A silence as the API shows it."""
    return {
        "id": s.id,
        "target": s.target,
        "target_kind": kind,
        "until": iso(s.until),
        "reason": s.reason,
        "created_by": s.created_by or None,
        "created_at": iso(s.created_at),
        "ended_at": iso(s.ended_at),
    }


async def _target_kind(request: web.Request, target: str) -> str | None:
    store = store_of(request)
    if await store.device(target) is not None:
        return "device"
    if any(s.id == target for s in await store.sites()):
        return "site"
    return None


async def create_silence(request: web.Request) -> web.Response:
    """Silence a device or a site until ``until`` or for ``duration_minutes``."""
    body = await json_object(request, SILENCE_FIELDS)
    target = required(body, "target")
    reason = required(body, "reason").strip()
    if not reason or len(reason) > MAX_REASON:
        raise ApiError(400, "invalid_field", f"reason: expected 1 to {MAX_REASON} characters")
    now = now_of(request)
    until_text: str | None = body.get("until")
    minutes: int | None = body.get("duration_minutes")
    if (until_text is None) == (minutes is None):
        raise ApiError(400, "missing_field", "until or duration_minutes: give exactly one")
    if until_text is None:
        assert minutes is not None
        if not 1 <= minutes <= MAX_SILENCE.total_seconds() // 60:
            raise ApiError(400, "invalid_field",
                           f"duration_minutes: expected 1 to {MAX_SILENCE.days * 24 * 60}")
        until = now + timedelta(minutes=minutes)
    else:
        until = parse_time("until", until_text)
        if until <= now:
            raise ApiError(400, "invalid_field", "until: must be in the future")
        if until - now > MAX_SILENCE:
            raise ApiError(400, "invalid_field",
                           f"until: at most {MAX_SILENCE.days} days from now")
    kind = await _target_kind(request, target)
    if kind is None:
        raise ApiError(404, "not_found", f"no device or site {target[:80]!r}")
    silence = await store_of(request).add_silence(target, until, reason, who(request), now)
    return web.json_response(silence_record(silence, kind), status=201)


async def list_silences(request: web.Request) -> web.Response:
    """Silences in force now."""
    out = []
    for s in await store_of(request).active_silences(now_of(request)):
        out.append(silence_record(s, await _target_kind(request, s.target)))
    return web.json_response({"silences": out})


async def delete_silence(request: web.Request) -> web.Response:
    """End a silence now (notifications resume)."""
    text = request.match_info["id"]
    s = (await store_of(request).end_silence(int(text), now_of(request))
         if small_int(text) else None)
    if s is None:
        raise ApiError(404, "not_found", f"no silence in force with id {text[:40]!r}")
    return web.json_response(silence_record(s, await _target_kind(request, s.target)))


async def ack_alert(request: web.Request) -> web.Response:
    """Acknowledge an open alert: its reminders stop."""
    text = request.match_info["id"]
    body = await json_object(request, ACK_FIELDS, optional_body=True)
    by = (body.get("by") or "").strip()[:100] or who(request)
    store = store_of(request)
    now = now_of(request)
    alert = await store.acknowledge_alert(int(text), by, now) if small_int(text) else None
    if alert is None:
        raise ApiError(404, "not_found", f"no open alert with id {text[:40]!r}")
    return web.json_response(alert_record(alert, await store.active_silences(now)))


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/v1/silences", list_silences)
    app.router.add_post("/v1/silences", create_silence)
    app.router.add_delete("/v1/silences/{id}", delete_silence)
    app.router.add_post("/v1/alerts/{id}/ack", ack_alert)


# --- OpenAPI ----------------------------------------------------------------------------------

_SILENCE_PROPS: dict[str, Any] = {
    "id": {"type": "integer"}, "target": {"type": "string"},
    "target_kind": {"type": ["string", "null"], "enum": ["device", "site", None]},
    "until": {"type": "string"}, "reason": {"type": "string"},
    "created_by": NULLABLE_STR, "created_at": {"type": "string"}, "ended_at": NULLABLE_STR,
}
ALERT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {
    "id": {"type": "integer"}, "target_kind": {"type": "string"}, "target": {"type": "string"},
    "site": NULLABLE_STR, "kind": {"type": "string"}, "severity": {"type": "string"},
    "state": {"type": "string"}, "reason": {"type": "string"}, "since": NULLABLE_STR,
    "opened_at": NULLABLE_STR, "resolved_at": NULLABLE_STR, "acknowledged": {"type": "boolean"},
    "acknowledged_by": NULLABLE_STR, "silenced_until": NULLABLE_STR,
    "notifications": {"type": "integer"}}}

SCHEMAS: dict[str, Any] = {
    "Silence": {"type": "object", "required": list(_SILENCE_PROPS), "properties": _SILENCE_PROPS},
    "SilenceBody": {
        "type": "object", "additionalProperties": False, "required": ["target", "reason"],
        "examples": [{"target": "tokyo", "duration_minutes": 120,
                      "reason": "power work in the building"}],
        "properties": {
            "target": {"type": "string", "description": "a device id or a site id"},
            "until": {"type": ["string", "null"], "format": "date-time",
                      "description": "ISO 8601 (UTC if no offset), in the next 30 days"},
            "duration_minutes": {"type": ["integer", "null"], "minimum": 1,
                                 "maximum": MAX_SILENCE.days * 24 * 60},
            "reason": {"type": "string", "minLength": 1, "maxLength": MAX_REASON},
        },
        "description": "exactly one of until and duration_minutes",
    },
    "AckBody": {"type": "object", "additionalProperties": False, "properties": {
        "by": {"type": ["string", "null"], "description": "who (default: the API key's id)"}}},
    "Alert": ALERT_SCHEMA,
}

_SID = param("id", "path", "silence id", {"type": "integer"}, required=True)

PATHS: dict[str, Any] = {
    "/v1/silences": {
        "get": {
            "summary": "silences in force (viewer)",
            "description": "Role: viewer.",
            "responses": {"200": {"description": "{\"silences\": [Silence]}", "content": {
                "application/json": {"schema": {"type": "object", "properties": {"silences": {
                    "type": "array", "items": {"$ref": "#/components/schemas/Silence"}}}}}}},
                **AUTH_ERRORS},
        },
        "post": {
            "summary": "silence a device or a site (operator)",
            "description": "Role: operator. No notifications for the target (a site: all its "
            "devices) until `until` or for `duration_minutes`. 404 for an unknown target.",
            "requestBody": json_body("SilenceBody"),
            "responses": {"201": ok("the silence", "Silence"), **BODY_ERRORS, **AUTH_ERRORS,
                          "404": ERR},
        },
    },
    "/v1/silences/{id}": {"delete": {
        "summary": "end a silence now (operator)",
        "description": "Role: operator. 404 if no silence in force has this id.",
        "parameters": [_SID],
        "responses": {"200": ok("the ended silence", "Silence"), **AUTH_ERRORS, "404": ERR},
    }},
    "/v1/alerts/{id}/ack": {"post": {
        "summary": "acknowledge an open alert (operator)",
        "description": "Role: operator. Its reminders stop. The body is optional.",
        "parameters": [param("id", "path", "alert id", {"type": "integer"}, required=True)],
        "requestBody": json_body("AckBody", required=False),
        "responses": {"200": ok("the alert", "Alert"), **BODY_ERRORS, **AUTH_ERRORS,
                      "404": ERR},
    }},
}
