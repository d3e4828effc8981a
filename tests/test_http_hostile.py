"""A hostile corpus against every route: whatever arrives, a 4xx JSON error, never a 500.

schemathesis (test_openapi_schemathesis.py) sends what the OpenAPI document
describes; this sends what it does not: bytes that are not UTF-8 in the
Authorization header, JSON numbers Python cannot convert or SQLite cannot
hold, lone surrogates in strings, and requests aiohttp's own parser refuses
(so they are written on raw sockets: HTTP clients refuse to send them). Every
answer must be a 4xx with the API's ``{"error": {"code", "message"}}``
document, quote none of the bytes sent, and leave no traceback in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fleettui.server import make_app, start_server
from fleettui.server.app import OPENAPI, PUBLIC_PATHS
from fleettui.store import Store, open_store
from tests.test_http_api import NOW, _fill

#: a marker in every attack's bytes: an answer or a log line quoting it echoes the attack
MARK = "q7Zx"
#: an id for each path parameter, so that a route's lookup succeeds and its body is read
PATH_IDS = {"/v1/devices/{id}": "tk1", "/v1/devices/{id}/commands": "tk1",
            "/v1/sites/{id}": "tokyo", "/v1/sites/{id}/health": "tokyo",
            "/v1/sites/{id}/commands": "tokyo", "/v1/commands/{id}": "1",
            "/v1/silences/{id}": "1", "/v1/alerts/{id}/ack": "1"}
#: a body timeout short enough for the stalled-body cases, long enough for any real body
BODY_TIMEOUT = 0.5


@dataclass
class Hostile:
    """A running server over a filled store, its port and an admin key."""

    port: int
    store: Store
    admin: str
    webhook_id: str

    async def send(self, data: bytes, *, then: bytes | None = None) -> bytes:
        """Write ``data`` (and ``then``, once the first part is out) on a new connection;
        everything the server answers until it closes (bounded)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(data)
            await writer.drain()
            if then is not None:
                writer.write(then)
                await writer.drain()
            return await asyncio.wait_for(reader.read(), timeout=20)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):  # the server closed first, with a reset
                await writer.wait_closed()


@pytest.fixture
async def hostile(tmp_path: Path) -> AsyncIterator[Hostile]:
    store = await open_store(tmp_path / "fleet.db")
    await _fill(store)
    admin = (await store.create_api_key("admin", "admin key", NOW))[1]
    endpoint = await store.create_webhook_endpoint(
        "wh_0123456789ab", url="http://127.0.0.1:9/hook", events=["*"],
        secret="whsec_" + "A" * 43 + "=", enabled=True, hex_signature_header=None,
        timeout_s=5.0, now=NOW)
    runner = await start_server(store, "127.0.0.1", 0, clock=lambda: NOW,
                                body_timeout=BODY_TIMEOUT)
    try:
        yield Hostile(runner.addresses[0][1], store, admin, endpoint.id)
    finally:
        await runner.cleanup()
        await store.close()


def routes(store: Store) -> list[tuple[str, str, str]]:
    """(method, canonical path, path with ids filled) of every route the app serves."""
    out = []
    for route in make_app(store).router.routes():
        if route.method == "HEAD":
            continue
        canonical = route.resource.canonical  # type: ignore[union-attr]
        ident = PATH_IDS.get(canonical, "wh_0123456789ab")
        out.append((route.method, canonical, canonical.replace("{id}", ident)))
    return out


def _schema(ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    ref = ref_or_schema.get("$ref")
    return OPENAPI["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else ref_or_schema


def body_fields(method: str, canonical: str) -> list[str]:
    """The top-level fields of a route's JSON body, as its OpenAPI document lists them."""
    body = OPENAPI["paths"][canonical][method.lower()].get("requestBody")
    if body is None:
        return []
    schema = _schema(body["content"]["application/json"]["schema"])
    return sorted(schema.get("properties", {}))


def request(method: str, path: str, headers: list[bytes], body: bytes = b"") -> bytes:
    """A raw HTTP/1.1 request."""
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *headers]
    if body:
        head += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def problem(answer: bytes) -> str | None:
    """What is wrong with an answer that should be a 4xx JSON error quoting nothing sent."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return f"no complete answer: {answer[:120]!r}"
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.decode("latin-1").partition(":") for line in lines[1:])}
    if not 400 <= status < 500:
        return f"status {status}: {body[:120]!r}"
    if not headers.get("content-type", "").startswith("application/json"):
        return f"{headers.get('content-type')}: {body[:120]!r}"
    doc = json.loads(body)
    if (set(doc) != {"error"} or set(doc["error"]) != {"code", "message"}
            or not all(isinstance(v, str) for v in doc["error"].values())):
        return f"not the error shape: {body[:120]!r}"
    if MARK.encode() in answer or b"\xff" in answer or b"\\xff" in answer:
        return f"echoes what was sent: {body[:120]!r}"
    return None


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """Assert nothing was logged with a traceback, at ERROR, or quoting the attacks."""
    for record in caplog.records:
        where = f"{record.name}: {record.getMessage()[:200]}"
        assert record.exc_info is None and record.exc_text is None, where
        assert record.levelno < logging.ERROR, where
        assert MARK not in record.getMessage(), where


def malformed(path: str) -> dict[str, tuple[bytes, bytes | None]]:
    """Requests aiohttp's parser refuses, to ``path``: name -> (bytes, bytes sent after)."""
    host = b"Host: 127.0.0.1\r\n"
    return {
        "oversized header line": (b"GET " + path.encode() + b" HTTP/1.1\r\n" + host
                                  + b"X-Probe: " + MARK.encode() * 2500 + b"\r\n\r\n", None),
        "oversized request line": (b"GET " + path.encode() + b"?q=" + MARK.encode() * 2500
                                   + b" HTTP/1.1\r\n" + host + b"\r\n", None),
        "bad chunk size": (b"POST " + path.encode() + b" HTTP/1.1\r\n" + host
                           + b"Transfer-Encoding: chunked\r\n\r\n"
                           + MARK.encode() + b"\r\nabc\r\n0\r\n\r\n", None),
        "bad chunk size after the head": (
            b"POST " + path.encode() + b" HTTP/1.1\r\n" + host
            + b"Transfer-Encoding: chunked\r\n\r\n", MARK.encode() + b"\r\nabc\r\n0\r\n\r\n"),
        "Content-Length with Transfer-Encoding": (
            b"POST " + path.encode() + b" HTTP/1.1\r\n" + host + b"Content-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\nX-Probe: " + MARK.encode()
            + b"\r\n\r\n5\r\nabcde\r\n0\r\n\r\n", None),
        "two Content-Lengths": (b"POST " + path.encode() + b" HTTP/1.1\r\n" + host
                                + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", None),
        "raw non-UTF-8 in the target": (b"GET " + path.encode() + b"/" + MARK.encode()
                                        + b"\xff HTTP/1.1\r\n" + host + b"\r\n", None),
        "method not a token": (b"G(" + MARK.encode() + b" " + path.encode()
                               + b" HTTP/1.1\r\n" + host + b"\r\n", None),
        "header without a colon": (b"GET " + path.encode() + b" HTTP/1.1\r\n" + host
                                   + MARK.encode() + b"\r\n\r\n", None),
        "NUL in a header value": (b"GET " + path.encode() + b" HTTP/1.1\r\n" + host
                                  + b"X-Probe: " + MARK.encode() + b"\x00\r\n\r\n", None),
        "not HTTP": (MARK.encode() * 3 + b"\r\n\r\n", None),
        "body shorter than its Content-Length": (
            b"POST " + path.encode() + b" HTTP/1.1\r\n" + host
            + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\"", None),
        "gzip that is not": (b"POST " + path.encode() + b" HTTP/1.1\r\n" + host
                             + b"Content-Encoding: gzip\r\nContent-Length: 4\r\n"
                             b"Connection: close\r\n\r\n" + MARK.encode(), None),
    }


def bad_keys(admin: str) -> dict[str, bytes]:
    """Authorization headers that are no key: not UTF-8, a live key with a byte added."""
    return {
        "Bearer not UTF-8": b"Authorization: Bearer \xff" + MARK.encode(),
        "live key and a byte": b"Authorization: Bearer " + admin.encode() + b"\xff",
        "Bearer Latin-1": b"Authorization: Bearer ftk_" + MARK.encode() + b"\xe9",
    }


def bad_bodies(fields: list[str]) -> dict[str, bytes]:
    """JSON bodies Python reads but cannot convert, compare or store: one per field."""
    digits = b"9" * 5000
    out: dict[str, bytes] = {
        "5,000-digit integer at the top": digits,
        "a lone surrogate as a field name": b'{"\\ud800": 1}',
        "NaN": b'{"x": NaN}',
    }
    for f in fields:
        name = f.encode()
        out[f"{f}: 5,000-digit integer"] = b'{"' + name + b'": ' + digits + b"}"
        out[f"{f}: -2**63 - 1"] = b'{"' + name + b'": -9223372036854775809}'
        out[f"{f}: 2**64"] = b'{"' + name + b'": 18446744073709551616}'
        out[f"{f}: 1e400"] = b'{"' + name + b'": 1e400}'
        out[f"{f}: Infinity"] = b'{"' + name + b'": -Infinity}'
        out[f"{f}: lone surrogate"] = b'{"' + name + b'": "\\ud800' + MARK.encode() + b'"}'
        out[f"{f}: surrogate in an array"] = b'{"' + name + b'": ["\\udfff", 1]}'
        out[f"{f}: surrogate in an object"] = b'{"' + name + b'": {"a": "x\\udc00"}}'
        out[f"{f}: big integer in an array"] = b'{"' + name + b'": [' + digits + b"]}"
    return out


async def test_every_route_answers_hostile_requests_with_a_json_4xx(
    hostile: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    auth = f"Authorization: Bearer {hostile.admin}".encode()
    cases: list[tuple[str, bytes, bytes | None]] = []
    for method, canonical, path in routes(hostile.store):
        for name, (data, then) in malformed(path).items():
            cases.append((f"{method} {path}: {name}", data, then))
        if canonical not in PUBLIC_PATHS:
            for name, header in bad_keys(hostile.admin).items():
                cases.append((f"{method} {path}: {name}",
                              request(method, path, [header, b"Connection: close"]), None))
        for name, body in bad_bodies(body_fields(method, canonical)).items():
            if body_fields(method, canonical):
                cases.append((f"{method} {path}: {name}",
                              request(method, path, [auth, b"Connection: close"], body), None))
    assert len(cases) > 600
    limit = asyncio.Semaphore(32)

    async def one(case: str, data: bytes, then: bytes | None) -> tuple[str, bytes]:
        async with limit:
            return case, await hostile.send(data, then=then)

    answers = await asyncio.gather(*(one(*c) for c in cases))
    wrong = [f"{case}: {why}" for case, answer in answers if (why := problem(answer))]
    assert not wrong, f"{len(wrong)} of {len(cases)} answers wrong:\n" + "\n".join(wrong[:40])
    no_traceback(caplog)
    # and the server still serves
    ok = await hostile.send(request("GET", "/v1/sites", [auth, b"Connection: close"]))
    assert ok.startswith(b"HTTP/1.1 200")


async def test_the_known_500s_are_4xx_naming_the_problem(
    hostile: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    """The hostile probe's findings, one by one, with the message each now gets."""
    caplog.set_level(logging.INFO)
    auth = f"Authorization: Bearer {hostile.admin}".encode()

    async def answer(data: bytes) -> tuple[int, dict[str, Any]]:
        raw = await hostile.send(data)
        why = problem(raw)
        assert why is None, why
        head, _, body = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)["error"]

    status, err = await answer(request("GET", "/v1/devices",
                                       [b"Authorization: Bearer \xff", b"Connection: close"]))
    assert (status, err["code"]) == (401, "unauthorized")
    site = b'{"id": "s1", "name": "S", "location": {"timezone": "UTC"}, "devices": [%s]}'
    status, err = await answer(request("POST", "/v1/sites", [auth, b"Connection: close"],
                                       site % (b"9" * 5000)))
    assert (status, err["code"]) == (400, "invalid_field")
    assert err["message"].startswith("devices[0]: number out of range")
    status, err = await answer(request("POST", "/v1/sites", [auth, b"Connection: close"],
                                       b'{"id": "s1", "name": "\\ud800", '
                                       b'"location": {"timezone": "UTC"}}'))
    assert (status, err["message"]) == (400, "name: not valid Unicode (a lone surrogate)")
    status, err = await answer(request(
        "POST", "/v1/devices/tk1/commands", [auth, b"Connection: close"],
        b'{"command": "sync_employees", "params": {"employees": [{"user_id": "\\udfff"}]}}'))
    assert err["message"] == "params.employees[0].user_id: not valid Unicode (a lone surrogate)"
    status, err = await answer(request("PATCH", f"/v1/webhooks/{hostile.webhook_id}",
                                       [auth, b"Connection: close"],
                                       b'{"timeout_s": ' + b"9" * 400 + b"}"))
    assert err["message"].startswith("timeout_s: number out of range")
    status, err = await answer(b"GET /v1/devices HTTP/1.1\r\nHost: x\r\nX-A: "
                               + b"a" * 9000 + b"\r\n\r\n")
    assert (status, err["code"]) == (400, "too_large")
    status, err = await answer(b"POST /v1/sites HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert err["message"] == "Content-Length and Transfer-Encoding may not come together"
    no_traceback(caplog)
    refused = [r for r in caplog.records if r.name == "fleettui.server.protocol"]
    assert len(refused) == 2  # one line per refused request


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded: 10 s)."""
    return await asyncio.wait_for(reader.read(), timeout=10)


async def test_half_open_connections_are_closed_after_a_bounded_time(tmp_path: Path) -> None:
    """A connection that sends nothing, half a request head or half a body is closed by
    the server once its timeout passes (0.3 s here; 30 s by default), not held forever."""
    store = await open_store(tmp_path / "fleet.db")
    await _fill(store)
    key = (await store.create_api_key("admin", "admin key", NOW))[1]
    runner = await start_server(store, "127.0.0.1", 0, clock=lambda: NOW,
                                keepalive_timeout=0.3, body_timeout=0.3)
    port = runner.addresses[0][1]
    try:
        half_head = b"GET /v1/devices HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bea"
        for sent in (b"", half_head):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(sent)
            await writer.drain()
            assert await _closed_by_server(reader) == b""  # closed, nothing to answer
            writer.close()
        # a whole head, then half the body it announces: 408 in JSON, then closed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/sites HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                     + key.encode() + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 80\r\n\r\n{\"name\": ")
        await writer.drain()
        answer = await _closed_by_server(reader)
        assert problem(answer) is None, answer
        assert answer.startswith(b"HTTP/1.1 408") and b'"timeout"' in answer
        writer.close()
        # an idle keep-alive connection, after a whole answer, is closed too
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        answer = await _closed_by_server(reader)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status": "ok"}')
        writer.close()
    finally:
        await runner.cleanup()
        await store.close()


async def test_a_client_leaving_mid_body_is_one_log_line(
    hostile: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that closes its connection halfway through a body it announced: the
    handler's read fails; that is logged in one line, not as an internal error."""
    caplog.set_level(logging.INFO)
    _, writer = await asyncio.open_connection("127.0.0.1", hostile.port)
    writer.write(request("POST", "/v1/sites", [f"Authorization: Bearer {hostile.admin}"
                                                .encode()], b"{" * 100)[:-60])
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    def left() -> bool:
        return any("client closed the connection" in r.getMessage() for r in caplog.records)

    for _ in range(1000):  # bounded: 10 s
        if left():
            break
        await asyncio.sleep(0.01)
    assert left()
    no_traceback(caplog)
