"""Webhook endpoints over HTTP: list, create, change, rotate secrets, delete; their
deliveries and dead-letter replay.

Endpoints of the config file are listed (the engine mirrors them into the
store at start) but only changed in that file; endpoints created here live in
the store, and the engine's dispatcher serves them from its next round. A
secret is generated when none is given and shown once, in the creation
answer: it is stored (it must be, to sign) but never shown again nor logged.
A PATCH rotates it the same way (``rotate_secret`` or a given ``secret``):
the new one is shown once, and the previous one keeps signing next to it for
``previous_secret_valid_s`` so that receivers switch without a gap.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import datetime, timedelta
from typing import Any

import httpx
from aiohttp import web

from fleettui.domain import DeliveryStats, EndpointChanges, WebhookDelivery, WebhookEndpoint
from fleettui.egress import url_refusal
from fleettui.engine.webhooks import (
    EVENT_TYPES,
    SECRET_PREFIX,
    event_pattern_error,
    failure_class,
)
from fleettui.server.base import (
    ALLOW_PRIVATE_KEY,
    AUTH_ERRORS,
    BODY_ERRORS,
    ERR,
    NULLABLE_STR,
    ROLE_RANK,
    ApiError,
    iso,
    json_body,
    json_object,
    now_of,
    ok,
    param,
    required,
    requires,
    role_of,
    small_int,
    store_of,
)

ENDPOINT_FIELDS: dict[str, type] = {
    "url": str, "events": list, "secret": str, "enabled": bool,
    "hex_signature_header": str, "timeout_s": float,
}
PATCH_FIELDS: dict[str, type] = {**ENDPOINT_FIELDS, "rotate_secret": bool,
                                  "previous_secret_valid_s": float}
#: how long a rotated-out secret keeps signing next to the new one, by default and at most
DEFAULT_OVERLAP_S = 24 * 3600
MAX_OVERLAP_S = 7 * 24 * 3600
REPLAY_FIELDS: dict[str, type] = {"outbox_ids": list}
DELIVERY_STATES = ("pending", "delivered", "dead")
MAX_URL = 2048
MAX_EVENTS = 32
MAX_REPLAY_IDS = 1000
DEFAULT_DELIVERIES = 100
MAX_DELIVERIES = 1000
#: headers the dispatcher sets itself: a hex signature header may not take their name
RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "user-agent",
                              "webhook-id", "webhook-timestamp", "webhook-signature"})


def endpoint_record(e: WebhookEndpoint, stats: DeliveryStats, now: datetime
                    ) -> dict[str, Any]:
    """An endpoint as the API shows it: never its secret (nor the previous one)."""
    latency = stats.avg_latency_ms
    until = e.previous_secret_until
    return {
        "id": e.id,
        "origin": e.origin,
        "url": e.url,
        "events": list(e.events),
        "enabled": e.enabled,
        "hex_signature_header": e.hex_signature_header,
        "timeout_s": e.timeout_s,
        "created_at": iso(e.created_at),
        "previous_secret_until": iso(until) if until is not None and until > now else None,
        "deliveries": {"pending": stats.pending, "delivered": stats.delivered,
                       "dead": stats.dead,
                       "avg_latency_ms": round(latency, 1) if latency is not None else None},
    }


def delivery_record(d: WebhookDelivery, detail: bool = False) -> dict[str, Any]:
    """One delivery of one event to one endpoint; its ``last_error`` in full with
    ``detail`` (admin keys), else only its class ("timeout", "HTTP 500",
    "refused target"...), which tells nothing of the network behind."""
    error = d.last_error or ""
    return {
        "outbox_id": d.outbox_id,
        "webhook_id": f"msg_{d.outbox_id}",
        "event_type": d.event_type,
        "device_id": d.device_id,
        "state": d.state,
        "attempts": d.attempts,
        "last_error": (error if detail else failure_class(error)) or None,
        "created_at": iso(d.created_at),
        "next_attempt_at": iso(d.next_attempt_at) if d.state == "pending" else None,
        "delivered_at": iso(d.delivered_at),
        "latency_ms": round(d.latency_ms, 1) if d.latency_ms is not None else None,
    }


def _check_url(request: web.Request, url: str) -> str:
    """A webhook URL the API accepts: http(s), with a host, no credentials, and a
    target the egress rule allows (a 400 naming the host otherwise)."""
    if len(url) > MAX_URL:
        raise ApiError(400, "invalid_field", f"url: longer than {MAX_URL} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise ApiError(400, "invalid_field", "url: not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ApiError(400, "invalid_field", "url: expected an http:// or https:// URL with a host")
    if parsed.userinfo:
        raise ApiError(400, "invalid_field",
                       "url: must not hold credentials; the secret signs every delivery")
    refused = url_refusal(url, request.app[ALLOW_PRIVATE_KEY])
    if refused is not None:
        raise ApiError(400, "refused_target", f"url: {refused}")
    return url


def _check_events(events: list[Any] | None) -> list[str]:
    if events is None:
        return ["*"]
    if not events:
        raise ApiError(400, "invalid_field", "events: expected at least one event name or pattern")
    if len(events) > MAX_EVENTS:
        raise ApiError(400, "invalid_field", f"events: at most {MAX_EVENTS} entries")
    for e in events:
        if not isinstance(e, str):
            raise ApiError(400, "invalid_field", "events: expected an array of strings")
        why = event_pattern_error(e)
        if why:
            raise ApiError(400, "invalid_field",
                           f"events: {why[:120]}; known events: {', '.join(EVENT_TYPES)}")
    return list(dict.fromkeys(events))


def _check_secret(secret: str | None) -> str:
    """The secret to store: the one given (checked), or a new one."""
    if secret is None:
        return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    # the value itself never goes into a message
    body = secret.removeprefix(SECRET_PREFIX)
    if body == secret:
        raise ApiError(400, "invalid_field", f"secret: expected a {SECRET_PREFIX}<base64> secret")
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_field",
                       f"secret: the part after {SECRET_PREFIX} is not base64") from None
    if not 16 <= len(key) <= 128:
        raise ApiError(400, "invalid_field", "secret: expected 16 to 128 bytes of key")
    return secret


def _check_rotation(body: dict[str, Any], now: datetime) -> tuple[str | None, datetime | None]:
    """The new secret of a PATCH (None: no rotation) and until when the old one signs too."""
    given = body.get("secret")
    rotate = body.get("rotate_secret") is True
    overlap = body.get("previous_secret_valid_s")
    if given is not None and rotate:
        raise ApiError(400, "invalid_field",
                       "secret: give either secret or rotate_secret: true, not both")
    if given is None and not rotate:
        if overlap is not None:
            raise ApiError(400, "invalid_field", "previous_secret_valid_s: only with a new "
                           "secret (rotate_secret: true, or secret)")
        return None, None
    if overlap is None:
        overlap = DEFAULT_OVERLAP_S
    if not 0 <= overlap <= MAX_OVERLAP_S:
        raise ApiError(400, "invalid_field", "previous_secret_valid_s: expected 0 to "
                       f"{MAX_OVERLAP_S} seconds (7 days)")
    secret = _check_secret(given)  # generated when rotating
    return secret, now + timedelta(seconds=overlap) if overlap else None


def _check_header(name: str | None) -> str | None:
    if name is None:
        return None
    if not (0 < len(name) <= 64 and name.isascii()
            and all(c.isalnum() or c == "-" for c in name)):
        raise ApiError(400, "invalid_field",
                       "hex_signature_header: expected a header name (letters, digits, -)")
    if name.lower() in RESERVED_HEADERS:
        raise ApiError(400, "invalid_field",
                       f"hex_signature_header: {name} is a header fleettui sets itself")
    return name


def _check_timeout(value: float) -> float:
    if not 0 < value <= 120:
        raise ApiError(400, "invalid_field", "timeout_s: expected more than 0 and at most 120")
    return float(value)


async def _no_other_for(request: web.Request, url: str, itself: str | None) -> None:
    """409 if an endpoint other than ``itself`` already delivers to ``url``."""
    for e in await store_of(request).webhook_endpoints():
        if e.url == url and e.id != itself:
            where = "the config file" if e.origin == "config" else "the API"
            raise ApiError(409, "duplicate",
                           f"endpoint {e.id} ({where}) already delivers to this url")


async def _endpoint_or_404(request: web.Request) -> WebhookEndpoint:
    endpoint_id = request.match_info["id"]
    e = await store_of(request).webhook_endpoint(endpoint_id)
    if e is None:
        raise ApiError(404, "not_found", f"no webhook endpoint {endpoint_id[:80]!r}")
    return e


@requires("admin")
async def list_webhooks(request: web.Request) -> web.Response:
    """Every endpoint, from the config and from the API, with its delivery counts."""
    store = store_of(request)
    now = now_of(request)
    out = []
    for e in await store.webhook_endpoints():
        out.append(endpoint_record(e, await store.webhook_stats(e.delivery_key), now))
    return web.json_response({"webhooks": out})


@requires("admin")
async def create_webhook(request: web.Request) -> web.Response:
    """Add an endpoint; 201 with its secret, the only time it is shown."""
    body = await json_object(request, ENDPOINT_FIELDS)
    url = _check_url(request, required(body, "url"))
    events = _check_events(body.get("events"))
    header = _check_header(body.get("hex_signature_header"))
    timeout_s = body.get("timeout_s")
    timeout_s = 10.0 if timeout_s is None else _check_timeout(timeout_s)
    enabled = body.get("enabled")
    secret = _check_secret(body.get("secret"))
    store = store_of(request)
    now = now_of(request)
    await _no_other_for(request, url, None)
    created = await store.create_webhook_endpoint(
        "wh_" + secrets.token_hex(6), url=url, events=events, secret=secret,
        enabled=True if enabled is None else enabled, hex_signature_header=header,
        timeout_s=float(timeout_s), now=now,
    )
    record = endpoint_record(created, await store.webhook_stats(created.delivery_key), now)
    return web.json_response({**record, "secret": secret}, status=201)


@requires("admin")
async def update_webhook(request: web.Request) -> web.Response:
    """Change an API-created endpoint, or rotate its secret; a config one is 409.

    A rotation answers with the new secret, the only time it is shown.
    """
    e = await _endpoint_or_404(request)
    body = await json_object(request, PATCH_FIELDS)
    if e.origin == "config":
        raise ApiError(409, "config_endpoint",
                       f"endpoint {e.id} is defined in the config file ([[webhooks]]): "
                       "change it (and its secret) there")
    now = now_of(request)
    new_secret, previous_until = _check_rotation(body, now)
    changes: EndpointChanges = {}
    if body.get("url") is not None:
        changes["url"] = _check_url(request, body["url"])
        await _no_other_for(request, changes["url"], e.id)
    if body.get("events") is not None:
        changes["events"] = _check_events(body["events"])
    if "hex_signature_header" in body:  # null removes it
        changes["hex_signature_header"] = _check_header(body["hex_signature_header"])
    if body.get("timeout_s") is not None:
        changes["timeout_s"] = _check_timeout(body["timeout_s"])
    if body.get("enabled") is not None:
        changes["enabled"] = body["enabled"]
    store = store_of(request)
    updated = await store.update_webhook_endpoint(e.id, changes, now, new_secret=new_secret,
                                                  previous_until=previous_until)
    if updated is None:  # deleted meanwhile
        raise ApiError(404, "not_found", f"no webhook endpoint {e.id!r}")
    record = endpoint_record(updated, await store.webhook_stats(updated.delivery_key), now)
    if new_secret is not None:
        record["secret"] = new_secret
    return web.json_response(record)


@requires("admin")
async def delete_webhook(request: web.Request) -> web.Response:
    """Remove an API-created endpoint with its queue; a config one is 409."""
    e = await _endpoint_or_404(request)
    if e.origin == "config":
        raise ApiError(409, "config_endpoint",
                       f"endpoint {e.id} is defined in the config file ([[webhooks]]): "
                       "remove or disable it there")
    await store_of(request).delete_webhook_endpoint(e.id, now_of(request))
    return web.Response(status=204)


async def list_deliveries(request: web.Request) -> web.Response:
    """An endpoint's deliveries, newest first: ``?state=dead|pending|delivered``, ``?limit=``."""
    e = await _endpoint_or_404(request)
    q = request.query
    unknown = sorted(set(q) - {"state", "limit"})
    if unknown:
        raise ApiError(400, "invalid_parameter", f"unknown parameter(s): {', '.join(unknown)}")
    state = q.get("state")
    if state is not None and state not in DELIVERY_STATES:
        raise ApiError(400, "invalid_parameter",
                       f"state: expected one of {', '.join(DELIVERY_STATES)}")
    limit = DEFAULT_DELIVERIES
    if "limit" in q:
        text = q["limit"]
        if not small_int(text) or not 1 <= int(text) <= MAX_DELIVERIES:
            raise ApiError(400, "invalid_parameter",
                           f"limit: expected an integer from 1 to {MAX_DELIVERIES}")
        limit = int(text)
    rows = await store_of(request).webhook_deliveries(e.delivery_key, state, limit)
    detail = ROLE_RANK.get(role_of(request), 0) >= ROLE_RANK["admin"]
    return web.json_response({"deliveries": [delivery_record(d, detail) for d in rows]})


@requires("admin")
async def replay_webhook(request: web.Request) -> web.Response:
    """Queue an endpoint's dead deliveries again: all, or those of ``outbox_ids``."""
    e = await _endpoint_or_404(request)
    body = await json_object(request, REPLAY_FIELDS, optional_body=True)
    ids = body.get("outbox_ids")
    if ids is not None:
        if not ids or len(ids) > MAX_REPLAY_IDS:
            raise ApiError(400, "invalid_field",
                           f"outbox_ids: expected 1 to {MAX_REPLAY_IDS} ids")
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**63
                   for i in ids):
            raise ApiError(400, "invalid_field", "outbox_ids: expected positive integers")
    n = await store_of(request).webhook_replay(e.delivery_key, now_of(request), ids)
    return web.json_response({"replayed": n})


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/v1/webhooks", list_webhooks)
    app.router.add_post("/v1/webhooks", create_webhook)
    app.router.add_patch("/v1/webhooks/{id}", update_webhook)
    app.router.add_delete("/v1/webhooks/{id}", delete_webhook)
    app.router.add_get("/v1/webhooks/{id}/deliveries", list_deliveries)
    app.router.add_post("/v1/webhooks/{id}/replay", replay_webhook)


# --- OpenAPI ----------------------------------------------------------------------------------

_STATS = {"type": "object", "properties": {
    "pending": {"type": "integer"}, "delivered": {"type": "integer"},
    "dead": {"type": "integer"}, "avg_latency_ms": {"type": ["number", "null"]}}}
_ENDPOINT_PROPS: dict[str, Any] = {
    "id": {"type": "string"},
    "origin": {"type": "string", "enum": ["config", "api"]},
    "url": {"type": "string"},
    "events": {"type": "array", "items": {"type": "string"}},
    "enabled": {"type": "boolean"},
    "hex_signature_header": NULLABLE_STR,
    "timeout_s": {"type": "number"},
    "created_at": {"type": "string"},
    "previous_secret_until": {"type": ["string", "null"],
                              "description": "during a secret rotation: until when the "
                              "previous secret also signs (null: no rotation under way)"},
    "deliveries": _STATS,
}
_EVENT_PATTERN = {"type": "string", "description": "an event name, * or a prefix such as "
                  f"device.*; events: {', '.join(EVENT_TYPES)}"}

SCHEMAS: dict[str, Any] = {
    "WebhookEndpoint": {"type": "object", "required": list(_ENDPOINT_PROPS),
                        "properties": _ENDPOINT_PROPS, "additionalProperties": False},
    "WebhookCreated": {"type": "object", "required": [*_ENDPOINT_PROPS, "secret"],
                       "additionalProperties": False,
                       "properties": {**_ENDPOINT_PROPS, "secret": {
                           "type": "string",
                           "description": "whsec_ secret: shown here only, never again"}}},
    "WebhookUpdated": {"type": "object", "required": list(_ENDPOINT_PROPS),
                       "additionalProperties": False,
                       "properties": {**_ENDPOINT_PROPS, "secret": {
                           "type": "string",
                           "description": "only after a rotation: the new whsec_ secret, "
                           "shown here only, never again"}}},
    "WebhookBody": {
        "type": "object", "additionalProperties": False, "required": ["url"],
        "examples": [{"url": "https://payroll.example/hooks/fleettui",
                      "events": ["punch.created", "device.*"]}],
        "properties": {
            "url": {"type": "string", "maxLength": MAX_URL,
                    "description": "http:// or https://, without credentials; never a "
                    "link-local or cloud metadata target, nor a private, loopback or other "
                    "non-public one unless [security] allow_private_webhook_targets = true "
                    "(400 refused_target)"},
            "events": {"type": ["array", "null"], "items": _EVENT_PATTERN, "minItems": 1,
                       "maxItems": MAX_EVENTS, "description": "default [\"*\"]"},
            "secret": {"type": ["string", "null"],
                       "description": "whsec_<base64 of 16 to 128 bytes>; generated if absent"},
            "enabled": {"type": ["boolean", "null"], "description": "default true"},
            "hex_signature_header": {"type": ["string", "null"],
                                     "pattern": "^[A-Za-z0-9-]{1,64}$",
                                     "description": "also send a hex HMAC-SHA256 of the body "
                                     "in this header (the article's scheme)"},
            "timeout_s": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 120,
                          "description": "default 10"},
        },
    },
    "WebhookPatch": {
        "type": "object", "additionalProperties": False,
        "examples": [{"enabled": False}, {"rotate_secret": True,
                                           "previous_secret_valid_s": 3600}],
        "properties": {
            "url": {"type": ["string", "null"], "maxLength": MAX_URL},
            "events": {"type": ["array", "null"], "items": _EVENT_PATTERN, "minItems": 1,
                       "maxItems": MAX_EVENTS},
            "enabled": {"type": ["boolean", "null"]},
            "hex_signature_header": {"type": ["string", "null"],
                                     "pattern": "^[A-Za-z0-9-]{1,64}$",
                                     "description": "null removes it"},
            "timeout_s": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 120},
            "rotate_secret": {"type": ["boolean", "null"],
                              "description": "true: generate a new whsec_ secret (answered "
                              "once, in this response)"},
            "secret": {"type": ["string", "null"],
                       "description": "rotate to this whsec_<base64 of 16 to 128 bytes> "
                       "secret (not with rotate_secret)"},
            "previous_secret_valid_s": {
                "type": ["number", "null"], "minimum": 0, "maximum": MAX_OVERLAP_S,
                "description": "with a new secret: how long the previous one keeps signing "
                f"too (default {DEFAULT_OVERLAP_S}, i.e. 24 h; 0: stop at once)"},
        },
    },
    "Delivery": {"type": "object", "properties": {
        "outbox_id": {"type": "integer"}, "webhook_id": {"type": "string"},
        "event_type": {"type": "string"}, "device_id": NULLABLE_STR,
        "state": {"type": "string", "enum": list(DELIVERY_STATES)},
        "attempts": {"type": "integer"},
        "last_error": {"type": ["string", "null"], "description": "admin keys: the error "
                       "in full; other keys: its class only (HTTP 503, timeout, connection "
                       "refused, connection failed, name not resolved, TLS error, protocol "
                       "error, refused target, request failed, delivery failed)"},
        "created_at": {"type": "string"}, "next_attempt_at": NULLABLE_STR,
        "delivered_at": NULLABLE_STR, "latency_ms": {"type": ["number", "null"]}}},
    "ReplayBody": {"type": "object", "additionalProperties": False, "properties": {
        "outbox_ids": {"type": ["array", "null"], "minItems": 1, "maxItems": MAX_REPLAY_IDS,
                       "items": {"type": "integer", "minimum": 1}}}},
}

_WID = param("id", "path", "webhook endpoint id (wh_… from the API, cfg_… from the config)",
             {"type": "string"}, required=True)

PATHS: dict[str, Any] = {
    "/v1/webhooks": {
        "get": {
            "summary": "webhook endpoints of the config and of the API (admin)",
            "description": "Role: admin. Never shows a secret.",
            "responses": {"200": {"description": "{\"webhooks\": [WebhookEndpoint]}",
                                  "content": {"application/json": {"schema": {
                                      "type": "object", "properties": {"webhooks": {
                                          "type": "array", "items": {
                                              "$ref": "#/components/schemas/WebhookEndpoint"}}}}}}},
                          **AUTH_ERRORS},
        },
        "post": {
            "summary": "create a webhook endpoint (admin)",
            "description": "Role: admin. Without a secret one is generated; the answer holds "
            "the secret, the only time it is shown. The endpoint hears events committed from "
            "now on. 409 if an endpoint already delivers to this url.",
            "requestBody": json_body("WebhookBody"),
            "responses": {"201": ok("created, with its secret", "WebhookCreated"),
                          **BODY_ERRORS, **AUTH_ERRORS, "409": ERR},
        },
    },
    "/v1/webhooks/{id}": {"patch": {
        "summary": "change an API-created webhook endpoint (admin)",
        "description": "Role: admin. Only the fields given change. A disabled endpoint keeps "
        "its place: enabled again, it hears what was committed meanwhile. rotate_secret: true "
        "(or a given secret) rotates the secret: the answer holds the new one, the only time "
        "it is shown; for previous_secret_valid_s (default 24 h) every delivery carries two "
        "signatures, webhook-signature: v1,<new> v1,<previous>, so receivers switch without a "
        "gap; then only the new one. A hex_signature_header is signed with the new secret "
        "only. A config endpoint answers 409 (its secret is in the config file).",
        "parameters": [_WID],
        "requestBody": json_body("WebhookPatch"),
        "responses": {"200": ok("the endpoint (with its new secret after a rotation)",
                                "WebhookUpdated"), **BODY_ERRORS,
                      **AUTH_ERRORS, "404": ERR, "409": ERR},
    }, "delete": {
        "summary": "delete an API-created webhook endpoint and its queue (admin)",
        "description": "Role: admin. An endpoint of the config file answers 409: it is "
        "changed in that file.",
        "parameters": [_WID],
        "responses": {"204": {"description": "deleted"}, **AUTH_ERRORS, "404": ERR,
                      "409": ERR},
    }},
    "/v1/webhooks/{id}/deliveries": {"get": {
        "summary": "an endpoint's deliveries, newest first (viewer)",
        "description": "Role: viewer. Dead ones gave up after 24 hours of retries; replay them "
        "with POST /v1/webhooks/{id}/replay.",
        "parameters": [_WID,
                       param("state", "query", "only deliveries in this state",
                             {"type": "string", "enum": list(DELIVERY_STATES)}),
                       param("limit", "query", "at most this many",
                             {"type": "integer", "minimum": 1, "maximum": MAX_DELIVERIES,
                              "default": DEFAULT_DELIVERIES})],
        "responses": {"200": {"description": "{\"deliveries\": [Delivery]}", "content": {
            "application/json": {"schema": {"type": "object", "properties": {"deliveries": {
                "type": "array", "items": {"$ref": "#/components/schemas/Delivery"}}}}}}},
            "400": ERR, **AUTH_ERRORS, "404": ERR},
    }},
    "/v1/webhooks/{id}/replay": {"post": {
        "summary": "deliver dead events again (admin)",
        "description": "Role: admin. Without a body (or without outbox_ids) every dead "
        "delivery of the endpoint; with outbox_ids only those (ids that are not dead are "
        "skipped). They keep their webhook-id, so receivers still deduplicate.",
        "parameters": [_WID],
        "requestBody": json_body("ReplayBody", required=False),
        "responses": {"200": {"description": "{\"replayed\": n}", "content": {
            "application/json": {"schema": {"type": "object", "required": ["replayed"],
                                            "properties": {"replayed": {"type": "integer"}}}}}},
            **BODY_ERRORS, **AUTH_ERRORS, "404": ERR},
    }},
}
