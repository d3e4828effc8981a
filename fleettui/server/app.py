"""The HTTP API (aiohttp): the article's REST shapes over fleettui's store.

The server is a view over the store: it reads what the engine recorded and
queues commands through :func:`fleettui.engine.enqueue.enqueue`; the poller
that owns the database runs them. It never talks to a device.

Every route but ``/healthz`` and ``/v1/openapi.json`` needs
``Authorization: Bearer <key>`` (keys from ``store.create_api_key``). Roles:
viewer reads, operator also posts commands, admin may do everything. Errors
are always JSON ``{"error": {"code": "...", "message": "..."}}``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from fleettui.commands import COMMANDS, CommandError
from fleettui.config import SITE_ID_PATTERN
from fleettui.domain import CommandRequest, DeviceState, DeviceStatus, Site
from fleettui.engine.enqueue import enqueue
from fleettui.report import alert_record, punch_record, request_record
from fleettui.server import alert_routes, device_routes, push_routes, webhook_routes
from fleettui.server.base import (
    ALLOW_PRIVATE_KEY,
    AUTH_ERRORS,
    BODY_ERRORS,
    BODY_TIMEOUT_KEY,
    CLOCK_KEY,
    DEFAULT_BODY_TIMEOUT_S,
    ERR,
    FLEET_HOOK_KEY,
    KEY_ID,
    KEY_ROLE,
    MAX_BODY,
    NULLABLE_STR,
    ROLE_RANK,
    STORE_KEY,
    ApiError,
    Clock,
    Handler,
    device_record,
    fleet_changed,
    iso,
    json_body,
    json_object,
    now_of,
    ok,
    param,
    parse_time,
    required,
    required_role,
    requires,
    small_int,
    store_of,
)
from fleettui.server.key_use import KeyUseNotes
from fleettui.server.protocol import KEEPALIVE_TIMEOUT_S, ApiRunner, handler_options
from fleettui.store import FleetConflict, IdempotencyConflict, Store

log = logging.getLogger(__name__)

DEFAULT_PUNCH_LIMIT = 1000
MAX_PUNCH_LIMIT = 10_000
#: when each API key's use was last written (see fleettui.server.key_use)
KEY_USE_KEY: web.AppKey[KeyUseNotes] = web.AppKey("key_use", KeyUseNotes)
#: routes anyone may read (health probe, API description)
PUBLIC_PATHS = frozenset({"/healthz", "/v1/openapi.json"})
COMMAND_FIELDS: dict[str, type] = {"command": str, "params": dict, "idempotency_key": str}
SITE_FIELDS: dict[str, type] = {"id": str, "name": str, "location": dict, "devices": list}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _error(status: int, code: str, message: str, *, close: bool = False) -> web.Response:
    resp = web.json_response({"error": {"code": code, "message": message}}, status=status)
    if close:
        resp.force_close()
    return resp


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as a JSON body; nothing a client sends can cause a 500."""
    try:
        return await handler(request)
    except ApiError as e:
        if e.close:
            log.warning("%s %s: %s", request.method, request.path, e.message)
        return _error(e.status, e.code, e.message, close=e.close)
    except ConnectionResetError:  # the client went away mid-request: nobody to answer
        log.info("client closed the connection during %s %s", request.method, request.path)
        return _error(400, "incomplete", "the connection closed before the request was whole",
                      close=True)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "too_large", f"request body larger than {MAX_BODY} bytes")
    except web.HTTPException as e:
        if e.status >= 400:
            return _error(e.status, _HTTP_CODES.get(e.status, "http_error"), e.reason)
        raise
    except Exception:  # a bug: logged (with no request headers), answered in JSON
        log.exception("internal error on %s %s", request.method, request.path)
        return _error(500, "internal", "internal server error")


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer keys: 401 for a missing, unknown or revoked key, 403 for a role too low."""
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(401, "unauthorized", "missing bearer token (Authorization: Bearer <key>)")
    if not (key.isascii() and key.isprintable()):
        # keys are printable ASCII; other bytes (read as surrogates) cannot even be hashed
        raise ApiError(401, "unauthorized", "unknown or revoked API key")
    store = request.app[STORE_KEY]
    now = request.app[CLOCK_KEY]()
    found = await store.api_key_role(key, now, record_use=False)
    if found is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key")
    if request.app[KEY_USE_KEY].due(found.id, now):  # at most once a minute per key
        await store.record_api_key_use(found.id, now)
    request[KEY_ID] = found.id
    role = found.role
    request[KEY_ROLE] = role
    needed = required_role(request)
    if ROLE_RANK.get(role, -1) < ROLE_RANK[needed]:
        raise ApiError(403, "forbidden", f"this needs the {needed} role; the key is {role}")
    return await handler(request)


@web.middleware
async def _query(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A query parameter the document does not list for the route is a 400, not ignored."""
    resource = request.match_info.route.resource
    op = OPENAPI["paths"].get(resource.canonical if resource else "", {}).get(
        request.method.lower())
    if op is not None:
        allowed = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        unknown = sorted(set(request.query) - allowed)
        if unknown:
            listed = ", ".join(repr(u[:40]) for u in unknown[:5])
            raise ApiError(400, "invalid_parameter", f"unknown parameter(s): {listed}")
    return await handler(request)


# --- helpers ------------------------------------------------------------


def site_record(s: Site, devices: list[DeviceState]) -> dict[str, Any]:
    """A site with its device counts."""
    mine = [d for d in devices if d.site_id == s.id]
    return {
        "id": s.id,
        "name": s.name,
        "timezone": s.timezone,
        "address": s.address,
        "online_count": sum(d.status is DeviceStatus.ONLINE for d in mine),
        "total_count": len(mine),
    }


def command_answer(r: CommandRequest) -> dict[str, Any]:
    """A command request as the command routes answer it: the article's ``status`` and
    ``queued`` on top.

    ``queued`` is true on every answer that carries a request: the request was
    accepted into the command queue (a repeat of an idempotency key names the
    request accepted the first time, queued once). An error answer has no
    ``queued``, so the article's ``cmd.json().get("queued", False)`` reads false
    for it. ``status`` says where the request stands now.
    """
    s = r.summary()
    if s["queued"] + s["sent"]:
        status = "queued"
    elif s["failed"] or s["expired"]:
        status = "failed"
    else:
        status = "done"
    return {**request_record(r), "status": status, "queued": True}


async def _submit(request: web.Request, target: str) -> web.Response:
    body = await json_object(request, COMMAND_FIELDS)
    if body.get("command") is None:
        raise ApiError(400, "missing_field", "command: required")
    try:
        req, created = await enqueue(
            store_of(request),
            target,
            body["command"],
            body.get("params"),
            now=now_of(request),
            source="api",
            idempotency_key=body.get("idempotency_key"),
        )
    except IdempotencyConflict:
        raise ApiError(
            409, "idempotency_conflict",
            "idempotency_key was already used for a different command or target",
        ) from None
    except CommandError as e:
        raise ApiError(400, "invalid_command", str(e)) from None
    return web.json_response(command_answer(req), status=202 if created else 200)


def _parse_since(text: str) -> datetime:
    return parse_time("since", text)


def encode_cursor(p_utc: datetime, p_id: int) -> str:
    """An opaque cursor for the punch after (utc time, id)."""
    raw = f"{p_utc.astimezone(UTC).isoformat()}|{p_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, int]:
    """(utc time, id) of the last punch a page gave; 400 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        when, _, pid = raw.partition("|")
        dt = datetime.fromisoformat(when)
        if dt.tzinfo is None:
            raise ValueError(when)
        return dt.astimezone(UTC), int(pid)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "invalid_parameter", "cursor: not a cursor this API gave") from None


# --- routes -------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the server answers."""
    return web.json_response({"status": "ok"})


async def list_devices(request: web.Request) -> web.Response:
    """Every device, filtered by ``?site=`` and ``?status=``."""
    site = request.query.get("site")
    status = request.query.get("status")
    if status is not None and status not in {s.value for s in DeviceStatus}:
        raise ApiError(400, "invalid_parameter",
                       f"status: expected one of {', '.join(s.value for s in DeviceStatus)}")
    devices = await store_of(request).devices(site or None)
    if status is not None:
        devices = [d for d in devices if d.status.value == status]
    return web.json_response({"devices": [device_record(d) for d in devices]})


async def _device_or_404(request: web.Request) -> DeviceState:
    device_id = request.match_info["id"]
    d = await store_of(request).device(device_id, removed=False)
    if d is None:
        raise ApiError(404, "not_found", f"no device {device_id!r}")
    return d


async def get_device(request: web.Request) -> web.Response:
    """One device."""
    return web.json_response(device_record(await _device_or_404(request)))


async def post_device_command(request: web.Request) -> web.Response:
    """Queue a command for one device (202; 200 when the idempotency key repeats it)."""
    d = await _device_or_404(request)
    return await _submit(request, d.id)


async def get_command(request: web.Request) -> web.Response:
    """A command request with its commands."""
    text = request.match_info["id"]
    r = await store_of(request).command_request(int(text)) if small_int(text) else None
    if r is None:
        raise ApiError(404, "not_found", f"no command request {text!r}")
    return web.json_response(command_answer(r))


async def list_sites(request: web.Request) -> web.Response:
    """Every site with its online and total device counts."""
    store = store_of(request)
    devices = await store.devices()
    return web.json_response({"sites": [site_record(s, devices) for s in await store.sites()]})


async def _site_or_404(request: web.Request) -> Site:
    site_id = request.match_info["id"]
    for s in await store_of(request).sites():
        if s.id == site_id:
            return s
    raise ApiError(404, "not_found", f"no site {site_id!r}")


async def get_site(request: web.Request) -> web.Response:
    """One site, with its devices."""
    s = await _site_or_404(request)
    devices = await store_of(request).devices(s.id)
    return web.json_response(
        {**site_record(s, devices), "devices": [device_record(d) for d in devices]}
    )


async def site_health(request: web.Request) -> web.Response:
    """The article's site health: counts, 24 h uptime, webhook latency, today's punches."""
    store = store_of(request)
    s = await _site_or_404(request)
    now = now_of(request)
    devices = await store.devices(s.id)
    uptimes = [u for d in devices
               if (u := await store.uptime(d.id, timedelta(hours=24), now)) is not None]
    try:
        tz: Any = ZoneInfo(s.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = UTC
    local_midnight = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    today = await store.punches(since=local_midnight.astimezone(UTC), site_id=s.id)
    last = max((d.last_punch_at for d in devices if d.last_punch_at), default=None)
    latency = (await store.webhook_stats()).avg_latency_ms
    return web.json_response(
        {
            "id": s.id,
            "name": s.name,
            "online_count": sum(d.status is DeviceStatus.ONLINE for d in devices),
            "total_count": len(devices),
            "uptime_percentage": round(100 * sum(uptimes) / len(uptimes), 2) if uptimes else None,
            "avg_webhook_latency_ms": round(latency, 1) if latency is not None else None,
            "punches_today": len(today),
            "last_punch_at": iso(last),
        }
    )


def slugify(name: str) -> str:
    """A site id from a site name: lowercase ASCII letters and digits joined by '-'."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:64].strip("-")


@requires("admin")
async def create_site(request: web.Request) -> web.Response:
    """Add a site to the store (the article's name, location {address, timezone}, devices).

    The site is the store's own: listed, silenced and reported like any other, and
    kept across restarts and config syncs. ``devices`` may hold device ids (the
    article's shape: devices registered over the API, moved into the new site) and
    device objects (new devices registered at the site, as POST /v1/devices takes
    them). All of it happens, or none of it. A device the config file places stays
    there (409): its site is changed in the file.
    """
    body = await json_object(request, SITE_FIELDS)
    name = required(body, "name").strip()
    if not 0 < len(name) <= 120:
        raise ApiError(400, "invalid_field", "name: expected 1 to 120 characters")
    location = required(body, "location")
    unknown = sorted(set(location) - {"address", "timezone"})
    if unknown:
        raise ApiError(400, "unknown_field",
                       f"unknown field(s): {', '.join('location.' + u for u in unknown)}")
    tz = location.get("timezone")
    if not isinstance(tz, str):
        raise ApiError(400, "missing_field" if tz is None else "invalid_field",
                       "location.timezone: expected an IANA time zone name")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ApiError(400, "invalid_field",
                       f"location.timezone: {tz[:64]!r} is not an IANA time zone name "
                       "(such as Europe/Paris)") from None
    address = location.get("address")
    if address is None:
        address = ""
    if not isinstance(address, str) or len(address) > 500:
        raise ApiError(400, "invalid_field", "location.address: expected a string (500 max)")
    site_id = body.get("id")
    if site_id is None:
        site_id = slugify(name)
        if not site_id:
            raise ApiError(400, "invalid_field",
                           "name: no id can be made from it; give an id")
    if not re.fullmatch(SITE_ID_PATTERN, site_id):
        raise ApiError(400, "invalid_field",
                       "id: expected 1 to 64 lowercase letters, digits, '-' or '_'")
    new, move, places = device_routes.site_devices(body.get("devices") or [], site_id)
    site = Site(site_id, name, tz, address)
    try:
        devices = await store_of(request).register_devices(new, now_of(request), site=site,
                                                           move=move)
    except FleetConflict as e:
        if e.index is None:
            raise ApiError(409, "duplicate", f"id {site_id!r} is already taken") from None
        e.index = places[e.index]
        raise device_routes.conflict_error(e) from None
    if devices:
        fleet_changed(request)
    return web.json_response(
        {**site_record(site, devices), "devices": [device_record(d) for d in devices]},
        status=201)




async def post_site_command(request: web.Request) -> web.Response:
    """Queue one command for every enabled device of a site: one request, N commands."""
    s = await _site_or_404(request)
    if await store_of(request).device(s.id) is not None:
        raise ApiError(409, "ambiguous_target", f"{s.id!r} names both a site and a device")
    return await _submit(request, s.id)


async def list_punches(request: web.Request) -> web.Response:
    """Punches in UTC order, ``?since=``, ``?site=``, ``?limit=``, ``?cursor=`` pagination.

    The cursor is the (UTC time, id) of a page's last punch, so a page never
    repeats or skips a punch stored before the walk began, even when ids do
    not follow time order. A punch stored later with an earlier UTC time (a
    device syncing after an outage) is behind the cursor: an incremental
    consumer should re-read with ``since`` a margin back, or use the webhooks.
    """
    q = request.query
    unknown = sorted(set(q) - {"since", "site", "limit", "cursor"})
    if unknown:
        raise ApiError(400, "invalid_parameter", f"unknown parameter(s): {', '.join(unknown)}")
    limit = DEFAULT_PUNCH_LIMIT
    if "limit" in q:
        text = q["limit"]
        if not small_int(text) or not 1 <= int(text) <= MAX_PUNCH_LIMIT:
            raise ApiError(400, "invalid_parameter",
                           f"limit: expected an integer from 1 to {MAX_PUNCH_LIMIT}")
        limit = int(text)
    since = _parse_since(q["since"]) if "since" in q else None
    after = decode_cursor(q["cursor"]) if "cursor" in q else None
    if after is not None and (since is None or after[0] > since):
        since = after[0]
    site = q.get("site") or None
    store = store_of(request)
    # punches sharing the cursor's UTC time come again from ``since``: skip those already
    # given (up to and including the cursor's id), fetching more if many share that time
    fetch = limit + 1 + 32
    while True:
        rows = await store.punches(since=since, site_id=site, limit=fetch)
        kept = [p for p in rows
                if after is None or (p.utc_time, p.id or 0) > after]
        if len(kept) > limit or len(rows) < fetch:
            break
        fetch *= 2
    page = kept[:limit]
    more = len(kept) > limit
    next_cursor = encode_cursor(page[-1].utc_time, page[-1].id or 0) if more and page else None
    return web.json_response(
        {"punches": [punch_record(p) for p in page], "next_cursor": next_cursor}
    )


async def list_alerts(request: web.Request) -> web.Response:
    """Alerts, newest first: open ones, or every one with ``?state=all``."""
    state = request.query.get("state", "open")
    if state not in ("open", "all"):
        raise ApiError(400, "invalid_parameter", "state: expected open or all")
    store = store_of(request)
    alerts = await store.alerts(open_only=state == "open")
    silences = await store.active_silences(now_of(request))
    return web.json_response({"alerts": [alert_record(a, silences) for a in alerts]})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition (version 0.0.4)."""
    store = store_of(request)
    devices = await store.devices()
    counts = {s.value: 0 for s in DeviceStatus}
    for d in devices:
        counts[d.status.value] += 1
    stats = await store.webhook_stats()
    lines = [
        "# HELP fleettui_devices Devices by status.",
        "# TYPE fleettui_devices gauge",
        *(f'fleettui_devices{{status="{k}"}} {v}' for k, v in counts.items()),
        "# HELP fleettui_punches_total Punches stored.",
        "# TYPE fleettui_punches_total counter",
        f"fleettui_punches_total {await store.punch_count()}",
        "# HELP fleettui_webhook_deliveries Webhook deliveries by state.",
        "# TYPE fleettui_webhook_deliveries gauge",
        *(f'fleettui_webhook_deliveries{{state="{k}"}} {getattr(stats, k)}'
          for k in ("pending", "delivered", "dead")),
    ]
    if stats.avg_latency_ms is not None:
        lines += [
            "# HELP fleettui_webhook_latency_ms_avg Mean latency of delivered webhooks (ms).",
            "# TYPE fleettui_webhook_latency_ms_avg gauge",
            f"fleettui_webhook_latency_ms_avg {float(stats.avg_latency_ms):.3f}",
        ]
    return web.Response(body=("\n".join(lines) + "\n").encode(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this API."""
    return web.json_response(OPENAPI)


# --- OpenAPI ------------------------------------------------------------


_ID = param("id", "path", "identifier", {"type": "string"}, required=True)
_COMMAND_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CommandBody"}}},
}
_COMMAND_RESPONSES = {
    "202": ok("accepted into the command queue (\"queued\": true)", "CommandRequest"),
    "200": ok("the idempotency key repeats this same request: the existing one",
               "CommandRequest"),
    "400": ERR, **AUTH_ERRORS, "404": ERR,
    "409": ERR, "413": ERR,
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "fleettui HTTP API",
        "version": "1",
        "description": "A view over fleettui's store: devices, sites, punches, commands, "
        "alerts, silences, webhook endpoints. Each operation's description names the role "
        "it needs (GET: viewer, unless said; POST and DELETE: operator, unless said). "
        "Errors are {\"error\": {\"code\", \"message\"}}. Bodies are limited to "
        f"{MAX_BODY} bytes.",
    },
    "servers": [{"url": "http://127.0.0.1:8470"}],
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "an API key (fleettui api-key create --role ROLE); "
                       "roles: viewer (read), operator (also commands, silences, "
                       "acknowledgements), admin (also sites and webhooks). A missing or wrong "
                       "key is 401, a role too low 403."},
        },
        "schemas": {
            "Error": {
                "type": "object", "required": ["error"],
                "properties": {"error": {"type": "object", "required": ["code", "message"],
                                         "properties": {"code": {"type": "string"},
                                                        "message": {"type": "string"}}}},
            },
            "Device": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"}, "serial_number": {"type": "string"},
                    "site": {"type": "string"}, "name": NULLABLE_STR,
                    "status": {"type": "string", "enum": [s.value for s in DeviceStatus]},
                    "reason": NULLABLE_STR, "since": NULLABLE_STR,
                    "last_seen": NULLABLE_STR, "last_punch_at": NULLABLE_STR,
                    "model": NULLABLE_STR, "firmware": NULLABLE_STR,
                    "records": {"type": ["integer", "null"]},
                    "records_capacity": {"type": ["integer", "null"]},
                    "clock_drift_s": {"type": ["number", "null"]},
                    "enabled": {"type": "boolean"},
                    "transport": {"type": "string", "enum": ["tcp", "udp", "push"]},
                    "origin": {"type": "string", "enum": ["config", "api"],
                               "description": "declared in the config file, or registered "
                               "over the API"},
                },
            },
            "Site": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"},
                    "timezone": {"type": "string"}, "address": {"type": "string"},
                    "online_count": {"type": "integer"}, "total_count": {"type": "integer"},
                },
            },
            "SiteDetail": {
                "allOf": [{"$ref": "#/components/schemas/Site"}, {
                    "type": "object",
                    "properties": {"devices": {
                        "type": "array", "items": {"$ref": "#/components/schemas/Device"}}},
                }],
            },
            "SiteHealth": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"},
                    "online_count": {"type": "integer"}, "total_count": {"type": "integer"},
                    "uptime_percentage": {"type": ["number", "null"],
                                          "description": "24 h mean of its devices"},
                    "avg_webhook_latency_ms": {
                        "type": ["number", "null"],
                        "description": "mean over every delivered webhook (all endpoints)"},
                    "punches_today": {"type": "integer",
                                      "description": "since midnight, site-local time"},
                    "last_punch_at": NULLABLE_STR,
                },
            },
            "CommandBody": {
                "type": "object", "additionalProperties": False, "required": ["command"],
                "examples": [{"command": "restart", "idempotency_key": "restart-2026-03-28"}],
                "properties": {
                    "command": {"type": "string", "enum": sorted(COMMANDS)},
                    "params": {"type": ["object", "null"]},
                    "idempotency_key": {"type": ["string", "null"], "minLength": 1,
                                        "maxLength": 200},
                },
            },
            "CommandRequest": {
                "type": "object", "required": ["id", "status", "queued"],
                "properties": {
                    "id": {"type": "integer"}, "command": {"type": "string"},
                    "status": {"type": "string", "enum": ["queued", "done", "failed"],
                               "description": "queued: some of its commands have not run "
                               "yet; done: every one succeeded; failed: one failed or "
                               "expired"},
                    "queued": {"type": "boolean", "const": True,
                               "description": "the request was accepted into the command "
                               "queue (also when an idempotency key repeats it: it is queued "
                               "once). An error answer has no such field"},
                    "target": {"type": "string"},
                    "target_kind": {"type": "string", "enum": ["device", "site", "devices"],
                                    "description": "devices: a chosen set (the control "
                                    "room's bulk action)"},
                    "idempotency_key": NULLABLE_STR, "created_at": {"type": "string"},
                    "summary": {"type": "object",
                                "additionalProperties": {"type": "integer"}},
                    "commands": {"type": "array", "items": {"type": "object"}},
                },
            },
            "SiteBody": {
                "type": "object", "additionalProperties": False,
                "examples": [{"name": "Casablanca Plant 2",
                              "location": {"address": "12 Bd Zerktouni, Casablanca",
                                           "timezone": "Africa/Casablanca"},
                              "devices": []}],
                "required": ["name", "location"],
                "properties": {
                    "id": {"type": ["string", "null"], "pattern": SITE_ID_PATTERN,
                           "description": "default: made from the name (lowercase, '-')"},
                    "name": {"type": "string", "minLength": 1, "maxLength": 120},
                    "location": {
                        "type": "object", "additionalProperties": False,
                        "required": ["timezone"],
                        "properties": {
                            "address": {"type": ["string", "null"], "maxLength": 500},
                            "timezone": {"type": "string",
                                         "description": "IANA name, such as Europe/Paris"},
                        },
                    },
                    "devices": {"type": ["array", "null"], "maxItems": 500,
                                "description": "ids of devices registered over the API (moved "
                                "here), or new devices (DeviceBody, without site)",
                                "items": {"oneOf": [
                                    {"type": "string"},
                                    {"$ref": "#/components/schemas/SiteDeviceBody"}]}},
                },
            },
            "Punch": {"type": "object", "properties": {
                "id": {"type": "integer"}, "device_id": {"type": "string"},
                "user_id": {"type": "string"}, "local_time": {"type": "string"},
                "timezone": {"type": "string"}, "utc_time": {"type": "string"},
                "utc_time_corrected": {"type": "string"}, "tz_flag": {"type": "string"},
                "state": {"type": "integer"}, "verify": {"type": "integer"},
                "clock_drift_s": {"type": ["number", "null"]}, "source": {"type": "string"},
                "received_at": {"type": "string"}}},
        },
    },
    "paths": {
        "/healthz": {"get": {"summary": "liveness", "security": [],
                             "responses": {"200": {"description": "ok"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (text)",
                             "responses": {"200": {"description": "text/plain exposition"},
                                           **AUTH_ERRORS}}},
        "/v1/openapi.json": {"get": {"summary": "this document", "security": [],
                                     "responses": {"200": {"description": "OpenAPI 3.1"}}}},
        "/v1/devices": {"get": {
            "summary": "list devices",
            "parameters": [
                param("site", "query", "only this site's devices", {"type": "string"}),
                param("status", "query", "only devices in this status",
                       {"type": "string", "enum": [s.value for s in DeviceStatus]}),
            ],
            "responses": {"200": {"description": "{\"devices\": [Device]}", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "devices": {"type": "array",
                                "items": {"$ref": "#/components/schemas/Device"}}}}}}},
                "400": ERR, **AUTH_ERRORS},
        }},
        "/v1/devices/{id}": {"get": {
            "summary": "one device", "parameters": [_ID],
            "responses": {"200": ok("the device", "Device"), **AUTH_ERRORS, "404": ERR},
        }},
        "/v1/devices/{id}/commands": {"post": {
            "summary": "queue a command for a device (operator)", "parameters": [_ID],
            "requestBody": _COMMAND_BODY, "responses": _COMMAND_RESPONSES,
        }},
        "/v1/commands/{id}": {"get": {
            "summary": "a command request with its commands",
            "parameters": [param("id", "path", "request id", {"type": "integer"}, True)],
            "responses": {"200": ok("the request", "CommandRequest"), **AUTH_ERRORS,
                          "404": ERR},
        }},
        "/v1/sites": {"get": {
            "summary": "list sites with device counts",
            "responses": {"200": {"description": "{\"sites\": [Site]}", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "sites": {"type": "array",
                              "items": {"$ref": "#/components/schemas/Site"}}}}}}},
                **AUTH_ERRORS},
        }, "post": {
            "summary": "create a site (admin)",
            "description": "Role: admin. The article's shape. The site is stored: listed, "
            "silenced and reported like any other, kept across restarts. `devices` holds ids "
            "of devices registered over the API (moved into the site) and new devices to "
            "register there (polled at once). All or nothing. 409 when the id (given, or "
            "made from the name) is taken by a site or a device, when a device's id, serial "
            "or address is taken, or when a listed device is declared in the config file "
            "(its site is changed there).",
            "requestBody": json_body("SiteBody"),
            "responses": {"201": ok("the site", "SiteDetail"), **BODY_ERRORS, **AUTH_ERRORS,
                          "409": ERR},
        }},
        "/v1/sites/{id}": {"get": {
            "summary": "one site with its devices (in \"devices\")", "parameters": [_ID],
            "responses": {"200": ok("the site", "SiteDetail"), **AUTH_ERRORS,
                          "404": ERR},
        }},
        "/v1/sites/{id}/health": {"get": {
            "summary": "a site's health", "parameters": [_ID],
            "responses": {"200": ok("health", "SiteHealth"), **AUTH_ERRORS, "404": ERR},
        }},
        "/v1/sites/{id}/commands": {"post": {
            "summary": "queue a command for every enabled device of a site (operator)",
            "parameters": [_ID], "requestBody": _COMMAND_BODY,
            "responses": _COMMAND_RESPONSES,
        }},
        "/v1/punches": {"get": {
            "summary": "punches in UTC order, cursor-paginated",
            "parameters": [
                param("since", "query", "ISO 8601 time (UTC if no offset)",
                       {"type": "string", "format": "date-time"}),
                param("site", "query", "only this site's punches", {"type": "string"}),
                param("limit", "query", "page size",
                       {"type": "integer", "minimum": 1, "maximum": MAX_PUNCH_LIMIT,
                        "default": DEFAULT_PUNCH_LIMIT}),
                param("cursor", "query", "next_cursor of the previous page (opaque)",
                       {"type": "string"}),
            ],
            "responses": {"200": {"description": "{\"punches\": [Punch], \"next_cursor\"}",
                                  "content": {"application/json": {"schema": {
                                      "type": "object", "properties": {
                                          "punches": {"type": "array", "items": {
                                              "$ref": "#/components/schemas/Punch"}},
                                          "next_cursor": NULLABLE_STR}}}}},
                          "400": ERR, **AUTH_ERRORS},
        }},
        "/v1/alerts": {"get": {
            "summary": "alerts, newest first",
            "parameters": [param("state", "query", "open (default) or all",
                                  {"type": "string", "enum": ["open", "all"]})],
            "responses": {"200": {"description": "{\"alerts\": [Alert]}", "content": {
                "application/json": {"schema": {"type": "object", "properties": {"alerts": {
                    "type": "array", "items": {"$ref": "#/components/schemas/Alert"}}}}}}},
                "400": ERR, **AUTH_ERRORS},
        }},
        **webhook_routes.PATHS,
        **alert_routes.PATHS,
        **push_routes.PATHS,
    },
}
OPENAPI["components"]["schemas"].update({**webhook_routes.SCHEMAS, **alert_routes.SCHEMAS,
                                         **device_routes.SCHEMAS, **push_routes.SCHEMAS})
for _path, _ops in device_routes.PATHS.items():
    OPENAPI["paths"].setdefault(_path, {}).update(_ops)


# --- app ----------------------------------------------------------------


def make_app(store: Store, *, clock: Clock = _utc_now,
             on_fleet_change: Callable[[], None] | None = None,
             body_timeout: float = DEFAULT_BODY_TIMEOUT_S,
             allow_private_webhook_targets: bool = False) -> web.Application:
    """The API over ``store``; ``clock`` gives the aware UTC now (injected by tests).

    ``on_fleet_change`` is called after a device is registered, changed or
    removed (the embedded engine's ``reconcile_soon``: it polls the change at once).
    A request body not received within ``body_timeout`` seconds is answered 408.
    ``allow_private_webhook_targets`` is the config's ``[security]`` setting: which
    webhook URLs ``POST``/``PATCH /v1/webhooks`` accept (fleettui/egress.py).
    """
    app = web.Application(middlewares=[_errors, _auth, _query], client_max_size=MAX_BODY)
    app[STORE_KEY] = store
    app[CLOCK_KEY] = clock
    app[BODY_TIMEOUT_KEY] = body_timeout
    app[KEY_USE_KEY] = KeyUseNotes()
    app[ALLOW_PRIVATE_KEY] = allow_private_webhook_targets
    if on_fleet_change is not None:
        app[FLEET_HOOK_KEY] = on_fleet_change
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_get("/v1/devices", list_devices)
    app.router.add_get("/v1/devices/{id}", get_device)
    app.router.add_post("/v1/devices/{id}/commands", post_device_command)
    app.router.add_get("/v1/commands/{id}", get_command)
    app.router.add_get("/v1/sites", list_sites)
    app.router.add_get("/v1/sites/{id}", get_site)
    app.router.add_get("/v1/sites/{id}/health", site_health)
    app.router.add_post("/v1/sites/{id}/commands", post_site_command)
    app.router.add_get("/v1/punches", list_punches)
    app.router.add_post("/v1/sites", create_site)
    app.router.add_get("/v1/alerts", list_alerts)
    webhook_routes.add_routes(app)
    alert_routes.add_routes(app)
    device_routes.add_routes(app)
    push_routes.add_routes(app)
    return app


async def start_server(
    store: Store, host: str = "127.0.0.1", port: int = 8470, *, clock: Clock = _utc_now,
    on_fleet_change: Callable[[], None] | None = None,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT_S,
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S,
    allow_private_webhook_targets: bool = False,
) -> web.AppRunner:
    """Serve the API in the running event loop; ``await runner.cleanup()`` stops it.

    The bound port (useful with ``port=0``) is ``runner.addresses[0][1]``. A
    connection idle, or without a whole request head, ``keepalive_timeout``
    seconds after it opened or was last answered is closed; a body not received
    within ``body_timeout`` seconds is answered 408. Requests aiohttp's parser
    refuses are answered in the API's JSON error shape too
    (:mod:`fleettui.server.protocol`).
    """
    app = make_app(store, clock=clock, on_fleet_change=on_fleet_change,
                   body_timeout=body_timeout,
                   allow_private_webhook_targets=allow_private_webhook_targets)
    runner = ApiRunner(app, **handler_options(keepalive_timeout))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
