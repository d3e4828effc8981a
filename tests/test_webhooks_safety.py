"""Webhooks are no way into the network and leave no secret in a log.

Real HTTP on loopback only (receivers on 127.0.0.1, real dispatcher, real
httpx); refused targets are refused before any connection is attempted, so
no packet ever leaves for 169.254.x, 10.x or a public address; names are
resolved by an injected resolver, never by DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpcore
import pytest
from aiohttp import web
from rich.console import Console

from fleettui.config import parse_config
from fleettui.domain import Punch, TzFlag
from fleettui.engine.transport import GuardedBackend, RefusedTarget
from fleettui.engine.webhooks import WebhookDispatcher
from fleettui.headless import JsonFormatter, run_headless
from fleettui.store import Store, open_store
from fleettui.tui.deadletters import dead_table
from tests import test_http_api
from tests.test_engine import Clock
from tests.test_http_api import Api, _err, serving
from tests.test_http_webhooks import _punch
from tests.test_webhooks import (  # noqa: F401 (fixtures)
    SECRET,
    Receiver,
    _endpoint,
    _punches,
    receiver,
    store,
)

api = test_http_api.api  # the fixture: a server over a filled store

TOKEN = "SECRET" + os.urandom(8).hex()


def _everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record as caplog shows it, as the headless JSON lines show it,
    and its raw arguments (a URL passed as an argument counts even if unformatted)."""
    as_json = JsonFormatter()
    parts = [caplog.text]
    for record in caplog.records:
        parts += [record.getMessage(), as_json.format(record), repr(record.args)]
    return "\n".join(parts)


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Wait (bounded) until ``condition()`` is true, looking every 20 ms."""
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not {what} within {timeout_s} s") from None


# --- no secrets in logs ------------------------------------------------------------


async def test_a_token_in_a_receiver_url_is_in_no_log_line_nor_event(
    store: Store, receiver: Receiver, caplog: pytest.LogCaptureFixture,  # noqa: F811
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{receiver.url}?token={TOKEN}"
    clock = Clock(datetime.now(UTC))
    await _punches(store, per_device=3)
    dispatcher = WebhookDispatcher(store, [_endpoint(url)], clock=clock, allow_private_targets=True)
    await dispatcher.run_once()
    assert len(receiver.got) == 9  # delivered, with the token, to the receiver
    receiver.always_fail = True
    await _punches(store, per_device=1, hour=9)
    await dispatcher.run_once()  # HTTP 503
    await receiver.go_down()
    for _ in range(30):  # connection refused, hour after hour, until they die
        clock.now += timedelta(hours=1)
        await dispatcher.run_once()
    assert (await store.webhook_stats(url)).dead == 3
    await store.create_webhook_endpoint(
        "wh_tokened", url=f"https://hooks.example/x?token={TOKEN}", events=["*"],
        secret=SECRET, enabled=True, hex_signature_header=None, timeout_s=5.0, now=clock.now)
    await dispatcher.close()

    assert TOKEN not in _everything_logged(caplog)
    events = await store.events_after(0)
    assert {"webhook.dead", "webhook.created"} <= {e.kind for e in events}
    assert not [e.message for e in events if TOKEN in e.message]


async def test_headless_logs_no_token_of_a_receiver_url(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture,  # noqa: F811
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{receiver.url}?token={TOKEN}"
    config = parse_config("\n".join([
        "[[sites]]", 'id = "s"', 'name = "S"', 'timezone = "UTC"', "",
        # listed, never polled: the test writes its punches into the store itself
        "[[devices]]", 'id = "d1"', 'serial = "S1"', 'site = "s"', 'host = "127.20.221.1"',
        "enabled = false", "",
        "[security]", "allow_private_webhook_targets = true", "",  # a loopback receiver
        "[[webhooks]]", f'url = "{url}"', f'secret = "{SECRET}"', "",
    ]))
    db = tmp_path / "fleet.db"
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(run_headless(config, db, stop=stop))
    await _until(lambda: any("polling" in r.getMessage() for r in caplog.records), "started")
    writer = await open_store(db)
    start = datetime(2026, 3, 2, 8, 0)
    await writer.insert_punches("d1", [
        Punch("d1", str(1000 + n), start + timedelta(minutes=n), "UTC",
              (start + timedelta(minutes=n)).replace(tzinfo=UTC), TzFlag.OK, 0, 1, "sync",
              datetime.now(UTC))
        for n in range(5)])
    await writer.close()
    await _until(lambda: len(receiver.got) >= 5, "delivered")
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0
    assert TOKEN not in _everything_logged(caplog)


# --- a deleted endpoint hears nothing more -----------------------------------------


@dataclass
class HookedReceiver:
    """A receiver on 127.0.0.1 that runs ``on_receive(n)`` inside its n-th request,
    before answering it: what happens there happens while that delivery is in flight."""

    url: str = ""
    got: list[bytes] = field(default_factory=list)
    on_receive: Callable[[int], Awaitable[None]] | None = None
    #: the Host headers seen
    hosts: set[str] = field(default_factory=set)
    #: answer with ``Connection: close``: the next delivery opens a new connection
    close_connections: bool = False

    async def handle(self, request: web.Request) -> web.Response:
        """Take one delivery."""
        self.got.append(await request.read())
        self.hosts.add(request.headers.get("Host", ""))
        if self.on_receive is not None:
            await self.on_receive(len(self.got))
        headers = {"Connection": "close"} if self.close_connections else {}
        return web.Response(status=204, headers=headers)


@pytest.fixture
async def hooked() -> AsyncIterator[HookedReceiver]:
    rec = HookedReceiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)  # any other path is a 404
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield rec
    await runner.cleanup()


async def test_an_endpoint_deleted_while_its_lane_delivers_hears_nothing_more(
    api: Api, hooked: HookedReceiver
) -> None:
    made = await api.post("/v1/webhooks", role="admin",
                          json={"url": hooked.url, "events": ["punch.created"]})
    assert made.status_code == 201, made.text
    endpoint_id = made.json()["id"]
    # one device: its events go one after the other, so none is in flight but the 10th
    for n in range(60):
        await _punch(api, "ln1", str(8000 + n), n)
    deleted = asyncio.Event()

    async def delete_during_the_tenth(n: int) -> None:
        if n == 10:
            r = await api.client.delete(f"/v1/webhooks/{endpoint_id}", headers=api.auth("admin"))
            assert r.status_code == 204
            deleted.set()

    hooked.on_receive = delete_during_the_tenth
    dispatcher = WebhookDispatcher(api.store, [], allow_private_targets=True)
    task = asyncio.get_running_loop().create_task(dispatcher.run_forever(idle_s=0.05))
    try:
        await _until(deleted.is_set, "deleted")
        for n in range(5):  # committed after the delete
            await _punch(api, "ln1", str(9000 + n), 100 + n)
        dispatcher.kick()
        seen = dispatcher.ticks
        await _until(lambda: dispatcher.ticks >= seen + 5, "five more dispatcher rounds")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await dispatcher.close()
    assert len(hooked.got) == 10  # the one in flight at the delete, and nothing after
    # and nothing was queued for it again (its history from the first event)
    assert asdict(await api.store.webhook_stats(endpoint_id)) == {
        "pending": 0, "delivered": 0, "dead": 0, "avg_latency_ms": None}


# --- webhooks are no way into the network ------------------------------------------

#: the brief's probe: each was answered 201 Created before
PROBED = ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[::ffff:169.254.169.254]/",
          "http://0x7f000001/", "http://[fe80::1]/", "http://metadata.google.internal/"]
ALWAYS_REFUSED = ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/",
                  "http://[fe80::1]/", "http://metadata.google.internal/", "http://metadata/",
                  "http://[fd00:ec2::254]/", "http://0xa9fea9fe/"]


class LoopbackOnly(httpcore.AsyncNetworkBackend):
    """A tripwire under the guard: records every connection asked of it, and opens
    only those to loopback (anything else would be a packet leaving the machine)."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self.inner = inner
        self.asked: list[str] = []

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        """Connect if ``host`` is a loopback address; refuse (and remember) otherwise."""
        self.asked.append(host)
        if not ipaddress.ip_address(host).is_loopback:
            raise httpcore.ConnectError(f"tripwire: the guard let {host} through")
        return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)

    async def sleep(self, seconds: float) -> None:
        """httpcore's retry pause."""
        await self.inner.sleep(seconds)


class Names:
    """A resolver the test controls: no DNS is ever asked."""

    def __init__(self, **names: list[str]) -> None:
        self.names = {k.replace("_", "."): v for k, v in names.items()}
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        """The addresses the test gave ``host`` (a resolution failure if none)."""
        self.asked.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.names[host])


def _tripwired(dispatcher: WebhookDispatcher) -> LoopbackOnly:
    wire = LoopbackOnly(dispatcher.guard.inner)
    dispatcher.guard.inner = wire
    return wire


async def test_the_api_refuses_internal_targets_before_anything_is_stored(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path / "strict.db", allow_private_webhook_targets=False) as strict:
        for url in [*PROBED, *ALWAYS_REFUSED, "http://127.1:8080/x", "http://2130706433/",
                    "http://0177.0.0.1/", "http://localhost:9/", "http://100.64.0.1/",
                    "http://[::1]/"]:
            r = await strict.post("/v1/webhooks", role="admin", json={"url": url + "?t=SECRET"})
            if url == "http://0177.0.0.1/":  # httpx itself calls it no valid URL
                assert r.status_code == 400, r.text
                continue
            message = _err(r, 400, "refused_target")
            assert message.startswith("url: refused target: ") and "SECRET" not in message
            if url in ALWAYS_REFUSED:
                assert "always refused" in message, message
            else:
                assert "[security]" in message and "allow_private_webhook_targets" in message
        assert (await strict.get("/v1/webhooks", role="admin")).json()["webhooks"] == []
        made = await strict.post("/v1/webhooks", role="admin",
                                 json={"url": "https://payroll.example.com/hook"})
        assert made.status_code == 201, made.text
        patched = await strict.client.patch(
            f"/v1/webhooks/{made.json()['id']}", headers=strict.auth("admin"),
            json={"url": "http://10.0.0.1/"})
        _err(patched, 400, "refused_target")
        listed = (await strict.get("/v1/webhooks", role="admin")).json()["webhooks"]
        assert [h["url"] for h in listed] == ["https://payroll.example.com/hook"]
    async with serving(tmp_path / "lan.db") as lan:  # allow_private_webhook_targets = true
        for url in ALWAYS_REFUSED:
            _err(await lan.post("/v1/webhooks", role="admin", json={"url": url}), 400,
                 "refused_target")
        for url in ["http://10.0.0.1/", "http://0x7f000001:9/", "http://localhost:9/"]:
            r = await lan.post("/v1/webhooks", role="admin", json={"url": url})
            assert r.status_code == 201, r.text


async def test_a_name_rebound_to_a_refused_address_is_refused_when_delivering(
    store: Store, hooked: HookedReceiver,  # noqa: F811
) -> None:
    port = int(hooked.url.rsplit(":", 1)[1].split("/")[0])
    names = Names(hooks_test=["127.0.0.1"])
    url = f"http://hooks.test:{port}/hook"
    clock = Clock(datetime.now(UTC))
    dispatcher = WebhookDispatcher(store, [_endpoint(url)], clock=clock,
                                   allow_private_targets=True, resolver=names)
    wire = _tripwired(dispatcher)
    hooked.close_connections = True  # every delivery opens (and checks) a new connection
    await _punches(store, per_device=1)
    assert await dispatcher.run_once() == 3
    assert len(hooked.got) == 3 and hooked.hosts == {f"hooks.test:{port}"}  # Host: the name
    assert set(wire.asked) == {"127.0.0.1"}  # the checked address, not the name again

    for rebound in (["169.254.169.254"], ["127.0.0.1", "169.254.169.254"],
                    ["::ffff:169.254.169.254"], ["fe80::1"]):
        names.names["hooks.test"] = rebound
        await _punches(store, per_device=1, hour=9 + len(rebound))
        clock.now += timedelta(minutes=11)
        await dispatcher.run_once()
        assert len(hooked.got) == 3
        pending = [d for d in await store.webhook_deliveries(url, "pending") if d.attempts]
        assert pending and all(d.last_error.startswith("refused target: hooks.test (resolved"
                                                          " to ") for d in pending)
        assert "always refused" in pending[0].last_error
    assert set(wire.asked) == {"127.0.0.1"}  # nothing else was ever connected to

    for _ in range(30):  # retried like any failure, then dead
        clock.now += timedelta(hours=1)
        await dispatcher.run_once()
    dead = await store.webhook_deliveries(url, "dead")
    assert dead and all(d.last_error.startswith("refused target") for d in dead)
    names.names["hooks.test"] = ["127.0.0.1"]  # the name is fixed: a replay goes through
    await store.webhook_replay(url, clock.now)
    for _ in range(5):
        await dispatcher.run_once()
    assert len(hooked.got) == 3 + len(dead)
    await dispatcher.close()


async def test_without_the_setting_loopback_is_refused_however_it_is_written(
    store: Store, hooked: HookedReceiver,  # noqa: F811
) -> None:
    port = int(hooked.url.rsplit(":", 1)[1].split("/")[0])
    names = Names(localhost=["127.0.0.1"], hooks_test=["127.0.0.1"],
                  mixed_test=["8.8.8.8", "10.1.2.3"])
    urls = [f"http://{host}:{port}/hook" for host in (
        "127.0.0.1", "0x7f000001", "2130706433", "127.1", "localhost", "hooks.test",
        "[::1]", "mixed.test")]
    endpoints = [_endpoint(u, events=["punch.*"]) for u in urls]
    dispatcher = WebhookDispatcher(store, endpoints, resolver=names)
    wire = _tripwired(dispatcher)
    await _punches(store, per_device=1)
    await dispatcher.run_once()
    assert hooked.got == [] and wire.asked == []  # refused before any connection
    for url in urls:
        errors = {d.last_error for d in await store.webhook_deliveries(url, "pending")}
        assert len(errors) == 1, (url, errors)
        (error,) = errors
        assert error.startswith("refused target: ") and "allow_private_webhook_targets" in error
    # names the rule can tell apart without resolving are never even resolved
    assert set(names.asked) == {"hooks.test", "mixed.test"}
    await dispatcher.close()


async def test_viewers_see_the_class_of_a_failure_admins_the_detail(
    api: Api, hooked: HookedReceiver,
) -> None:
    port = int(hooked.url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as s:  # a port with nobody listening: connection refused
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    names = Names(inside_test=["10.20.30.40"], hooks_test=["127.0.0.1"])
    made = {}
    for name, url in {"refused": f"http://127.0.0.1:{closed}/x",
                      "rebound": f"http://inside.test:{port}/hook",
                      "unknown": f"http://nowhere.test:{port}/hook",
                      "http500": f"http://hooks.test:{port}/fail"}.items():
        r = await api.post("/v1/webhooks", role="admin",
                           json={"url": url, "events": ["punch.created"]})
        assert r.status_code == 201, r.text
        made[name] = r.json()["id"]
    await _punch(api, "ln1", "7001", 1)
    dispatcher = WebhookDispatcher(api.store, [], resolver=names, allow_private_targets=True)
    wire = _tripwired(dispatcher)
    names.names["inside.test"] = ["169.254.10.10"]  # and a rebound name, link-local
    await dispatcher.run_once()
    await dispatcher.close()
    assert "10.20.30.40" not in wire.asked and "169.254.10.10" not in wire.asked
    expected = {"refused": "connection refused", "rebound": "refused target",
                "unknown": "name not resolved", "http500": "HTTP 404"}
    for name, endpoint_id in made.items():
        path = f"/v1/webhooks/{endpoint_id}/deliveries"
        for role in ("viewer", "operator"):
            (seen,) = (await api.get(path, role=role)).json()["deliveries"]
            assert seen["last_error"] == expected[name], (name, role, seen)
        (full,) = (await api.get(path, role="admin")).json()["deliveries"]
        assert full["last_error"].startswith(expected[name])
    (admin,) = (await api.get(f"/v1/webhooks/{made['rebound']}/deliveries",
                              role="admin")).json()["deliveries"]
    assert "169.254.10.10" in admin["last_error"]  # the admin's detail names the address
    # the control room of a viewer shows the class too; the poller's own, the detail
    rows = await api.store.webhook_deliveries(made["rebound"])
    shown = [replace(r, url=r.url or "", next_attempt_at=None) for r in rows]
    assert "169.254" not in _text(dead_table(shown, 1, detail=False))
    assert "169.254" in _text(dead_table(shown, 1, detail=True))


def _text(renderable: object) -> str:
    console = Console(width=300, record=True)
    console.print(renderable)
    return console.export_text()


async def test_the_guard_refuses_before_connecting() -> None:
    wire = LoopbackOnly(httpcore.AnyIOBackend())
    strict = GuardedBackend(False, Names(inside_test=["10.0.0.7"], none_test=[]), wire)
    for host in ("inside.test", "10.0.0.7", "0x0a000007", "localhost", "metadata"):
        with pytest.raises(RefusedTarget, match="refused target"):
            await strict.connect_tcp(host, 80, timeout=1)
    with pytest.raises(httpcore.ConnectError, match="no address"):
        await strict.connect_tcp("none.test", 80, timeout=1)
    with pytest.raises(httpcore.ConnectError, match="name resolution failed"):
        await strict.connect_tcp("nowhere.test", 80, timeout=1)
    with pytest.raises(RefusedTarget):
        await strict.connect_unix_socket("/run/docker.sock")
    assert wire.asked == []
