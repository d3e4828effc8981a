"""What every route of the HTTP API shares: errors, the store and clock, roles, JSON bodies.

Route modules (``app``, ``webhook_routes``, ``alert_routes``) import from here,
never from each other, so each answers one question.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from fleettui.domain import DeviceState
from fleettui.store import Store

Clock = Callable[[], datetime]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

STORE_KEY: web.AppKey[Store] = web.AppKey("store", Store)
CLOCK_KEY: web.AppKey[Clock] = web.AppKey("clock", Callable)  # type: ignore[arg-type]
#: called after the API changed the fleet in the store (the engine's reconcile_soon)
FLEET_HOOK_KEY: web.AppKey[Callable[[], None]] = web.AppKey(
    "fleet_hook", Callable)  # type: ignore[arg-type]

MAX_BODY = 64 * 1024
#: seconds a request body may take to arrive (see :func:`read_body`)
BODY_TIMEOUT_KEY: web.AppKey[float] = web.AppKey("body_timeout", float)
DEFAULT_BODY_TIMEOUT_S = 30.0
ROLE_RANK = {"viewer": 0, "operator": 1, "admin": 2}
#: the request's key id (set by the auth middleware), to say who did something
KEY_ID: web.RequestKey[int] = web.RequestKey("api_key_id", int)
#: the request's key's role (set by the auth middleware), for what a route shows
KEY_ROLE: web.RequestKey[str] = web.RequestKey("api_key_role", str)
#: [security] allow_private_webhook_targets of the config this API serves under
ALLOW_PRIVATE_KEY: web.AppKey[bool] = web.AppKey("allow_private_webhook_targets", bool)


class ApiError(Exception):
    """An error answer: HTTP status, machine code and a message for people."""

    def __init__(self, status: int, code: str, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        #: close the connection after answering (the request's body is not trusted)
        self.close = close


def requires(role: str) -> Callable[[H], H]:
    """Mark a route handler as needing ``role`` (else GET needs viewer, others operator)."""
    assert role in ROLE_RANK

    def mark(handler: H) -> H:
        handler.required_role = role  # type: ignore[attr-defined]
        return handler

    return mark


def required_role(request: web.Request) -> str:
    """The role the matched route needs."""
    marked = getattr(request.match_info.handler, "required_role", None)
    if marked is not None:
        return str(marked)
    return "viewer" if request.method in ("GET", "HEAD") else "operator"


def iso(dt: datetime | None) -> str | None:
    """An aware datetime as ISO 8601 UTC with a Z, to the second (None stays None)."""
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if dt else None


def device_record(d: DeviceState) -> dict[str, Any]:
    """A device in the article's shape (plus fleettui's health fields)."""
    return {
        "id": d.id,
        "serial_number": d.serial,
        "site": d.site_id,
        "name": d.name or None,
        "status": d.status.value,
        "reason": d.status_reason or None,
        "since": iso(d.status_since),
        "last_seen": iso(d.last_seen),
        "last_punch_at": iso(d.last_punch_at),
        "model": d.model,
        "firmware": d.firmware,
        "records": d.records,
        "records_capacity": d.records_cap,
        "clock_drift_s": round(d.clock_drift_s, 1) if d.clock_drift_s is not None else None,
        "enabled": d.enabled,
        "origin": d.origin,
        "transport": d.transport,
    }


def fleet_changed(request: web.Request) -> None:
    """Tell the poller of this process, if any, that devices changed in the store."""
    hook = request.app.get(FLEET_HOOK_KEY)
    if hook is not None:
        hook()


def store_of(request: web.Request) -> Store:
    """The store this app serves."""
    return request.app[STORE_KEY]


def role_of(request: web.Request) -> str:
    """The role of the request's API key (viewer when unknown)."""
    return str(request.get(KEY_ROLE, "viewer"))


def now_of(request: web.Request) -> datetime:
    """The app's clock, now (aware, UTC)."""
    return request.app[CLOCK_KEY]()


def who(request: web.Request) -> str:
    """Who does this, as the store records it: the API key's id (never the key)."""
    key_id = request.get(KEY_ID)
    return f"api key {key_id}" if key_id is not None else "api"


#: what each JSON type of a field is called in an error message
EXPECTED = {str: "a string", dict: "an object", int: "an integer", list: "an array",
             bool: "true or false", float: "a number"}


def json_type_ok(value: Any, kind: type) -> bool:
    """Whether a JSON value is of ``kind`` (bool is not int; float is any finite number)."""
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, kind)


class _OutOfRange:
    """A JSON number parsed as a marker: too large for a 64-bit integer, or NaN/Infinity."""

    __slots__ = ()


_OUT_OF_RANGE = _OutOfRange()
#: every integer the API takes fits SQLite's INTEGER (and Python converts it quickly)
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def _parse_int(text: str) -> int | _OutOfRange:
    # a 5,000-digit literal would raise ValueError (Python's int-string limit) mid-parse
    if len(text.lstrip("-")) > 19:
        return _OUT_OF_RANGE
    value = int(text)
    return value if INT_MIN <= value <= INT_MAX else _OUT_OF_RANGE


def _parse_float(text: str) -> float | _OutOfRange:
    value = float(text)
    return value if math.isfinite(value) else _OUT_OF_RANGE


def _parse_constant(text: str) -> _OutOfRange:
    return _OUT_OF_RANGE  # NaN, Infinity, -Infinity: Python reads them, JSON has no such thing


def _has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (a "\\ud800" escape): no UTF-8 for it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_values(body: Any) -> None:
    """400 naming the place of a number out of range or a string that is not Unicode."""
    stack: list[tuple[Any, str]] = [(body, "body")]
    while stack:
        value, where = stack.pop()
        if value is _OUT_OF_RANGE:
            raise ApiError(400, "invalid_field",
                           f"{where}: number out of range (64-bit integers, finite numbers)")
        if isinstance(value, str):
            if _has_surrogate(value):
                raise ApiError(400, "invalid_field",
                               f"{where}: not valid Unicode (a lone surrogate)")
        elif isinstance(value, dict):
            for k, v in value.items():
                if _has_surrogate(k):
                    raise ApiError(400, "invalid_field",
                                   f"{where}: a field name is not valid Unicode "
                                   "(a lone surrogate)")
                stack.append((v, k[:40] if where == "body" else f"{where}.{k[:40]}"))
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, or a 400: numbers in range, strings valid Unicode."""
    try:
        body = json.loads(raw, parse_int=_parse_int, parse_float=_parse_float,
                          parse_constant=_parse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ApiError(400, "bad_json", f"body is not valid JSON: {e}") from None
    _check_values(body)
    return body


async def read_body(request: web.Request) -> bytes:
    """The request's body, whole: 400 if it cannot be decoded, 408 if it is not sent in time.

    A client that sends a head announcing a body and then stalls (or sends a
    chunk aiohttp's parser refuses after the head) would hold the handler
    forever; the app's body timeout bounds it and the connection is closed.
    """
    timeout = request.app.get(BODY_TIMEOUT_KEY, DEFAULT_BODY_TIMEOUT_S)
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise ApiError(408, "timeout",
                       f"the request body was not received within {timeout:g} s",
                       close=True) from None
    except web.RequestPayloadError:
        # the parser's text may quote the body: a message of our own instead
        raise ApiError(400, "bad_body",
                       "the body could not be read (bad chunked framing or "
                       "Content-Encoding)", close=True) from None


async def json_object(request: web.Request, fields: dict[str, type], *,
                      optional_body: bool = False) -> dict[str, Any]:
    """The body as a JSON object with only ``fields``, each of its type (or null).

    ``float`` means any finite number. With ``optional_body`` an empty body
    reads as ``{}``.
    """
    raw = await read_body(request)
    if not raw.strip():
        if optional_body:
            return {}
        raise ApiError(400, "bad_json", "a JSON body is required")
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "body must be a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise ApiError(400, "unknown_field", f"unknown field(s): {', '.join(unknown)}")
    for name, kind in fields.items():
        value = body.get(name)
        if value is not None and not json_type_ok(value, kind):
            raise ApiError(400, "invalid_field", f"{name}: expected {EXPECTED[kind]}")
    return body


def required(body: dict[str, Any], name: str) -> Any:
    """``body[name]``, or a 400 naming the missing field."""
    if body.get(name) is None:
        raise ApiError(400, "missing_field", f"{name}: required")
    return body[name]


def parse_time(name: str, text: str) -> datetime:
    """An ISO 8601 time (UTC if it has no offset), or a 400 naming ``name``."""
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "+"))
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ApiError(400, "invalid_parameter" if name == "since" else "invalid_field",
                       f"{name}: expected an ISO 8601 time, got {text[:64]!r}") from None


def small_int(text: str) -> bool:
    """Whether ``text`` is a plain non-negative integer SQLite can hold."""
    return text.isascii() and text.isdigit() and len(text) <= 18


# --- OpenAPI fragments shared by the route modules ------------------------------------------


def param(name: str, where: str, desc: str, schema: dict[str, Any],
          required: bool = False) -> dict[str, Any]:
    """An OpenAPI parameter."""
    return {"name": name, "in": where, "description": desc, "required": required,
            "schema": schema}


def ok(desc: str, ref: str | None = None) -> dict[str, Any]:
    """An OpenAPI response, with a JSON body of component ``ref`` if given."""
    body: dict[str, Any] = {"description": desc}
    if ref:
        body["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}
    return body


def json_body(ref: str, required: bool = True) -> dict[str, Any]:
    """An OpenAPI request body of component ``ref``."""
    return {"required": required,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


ERR = {"description": "error", "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
AUTH_ERRORS = {"401": ERR, "403": ERR}
BODY_ERRORS = {"400": ERR, "413": ERR}
NULLABLE_STR = {"type": ["string", "null"]}
