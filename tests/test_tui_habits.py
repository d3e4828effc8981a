"""Operator habits of the control room: help screen, CLI flags, the HTTP API in the TUI.

Driven by Textual's Pilot against the emulated 5-device fleet of test_tui.py
(real sockets, a real store, a real engine); the API is called over real HTTP.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from fleettui.cli import build_parser
from fleettui.config import parse_config
from fleettui.emulator.device import Profile
from fleettui.engine.engine import Engine
from fleettui.store import Store, open_store
from fleettui.tui.app import FleetApp
from fleettui.tui.help import HelpScreen
from fleettui.tui.palette import palette_actions
from tests.conftest import Emulated, device_config, sample_users
from tests.test_tui import LAYOUT, OFFLINE, _header, two_site_toml, wait_for
from tests.test_tui import app as app  # the shared fixture


def _help_text(app: FleetApp) -> str:
    """The help screen's content as plain text (rendered wide, so nothing wraps)."""
    from rich.console import Console
    from textual.widgets import Static

    console = Console(width=200, file=io.StringIO(), color_system=None)
    with console.capture() as capture:
        console.print(app.screen.query_one("#help-text", Static).content)
    return capture.get()


async def test_help_lists_every_binding_and_palette_action(app: FleetApp) -> None:
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: all(d in app.rows for d in LAYOUT))
        for opener, closer in (("question_mark", "escape"), ("f1", "q"),
                               ("question_mark", "question_mark")):
            await pilot.press(opener)
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
            text = _help_text(app)
            for b in FleetApp.BINDINGS:
                assert b.description in text  # type: ignore[union-attr]
            for key in ("Ctrl+P", "Ctrl+Q", "/", "?"):
                assert key in text
            for action, _what in palette_actions():
                assert action in text
            # labels drawn as they are, not read as markup; every mark explained
            for label in ("[poller]", "[viewer]", "[poller 12/40 sites]", "↯ flapping",
                          "◷ clock", "▮ buffer", "⟳ no sync", "Tab"):
                assert label in text
            await pilot.press(closer)
            await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen))
        # "q" on the help screen closed it; the app is still running
        assert app.is_running


async def test_every_palette_item_is_described_in_the_help(app: FleetApp) -> None:
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: all(d in app.rows for d in LAYOUT))
        prefixes = [a.split("<")[0] for a, _ in palette_actions()]
        for text, _cb, _help in app.palette_items():
            assert any(text.startswith(p) for p in prefixes), text


async def test_useful_bindings_show_in_the_footer(app: FleetApp) -> None:
    from textual.widgets._footer import FooterKey

    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "tree")
        wanted = {"Quit", "Filter", "Problems only", "Help", "palette"}
        await wait_for(pilot, lambda: wanted <= {k.description for k in app.query(FooterKey)})


def test_cli_flags_for_the_control_room() -> None:
    parser = build_parser()
    top = parser.parse_args(["--no-mouse", "--http", "127.0.0.1:8470", "--osc-notify"])
    assert (top.command, top.tui_no_mouse, top.tui_http, top.tui_osc_notify) == (
        None, True, ("127.0.0.1", 8470), "777")
    run = parser.parse_args(["run", "--no-mouse", "--osc-notify", "9", "--http", "[::1]:1"])
    assert (run.headless, run.no_mouse, run.osc_notify, run.http) == (
        False, True, "9", ("[::1]", 1))
    demo = parser.parse_args(["demo", "--no-mouse", "--http", "127.0.0.1:0"])
    assert (demo.no_mouse, demo.http, demo.osc_notify) == (True, ("127.0.0.1", 0), None)
    plain = parser.parse_args([])
    assert (plain.tui_no_mouse, plain.tui_http, plain.tui_osc_notify) == (False, None, None)


def test_run_without_headless_opens_the_control_room(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`fleettui run` goes to the same place as `fleettui`, with the flags passed on."""
    from fleettui import cli
    from fleettui.tui import run as tui_run

    cfg = tmp_path / "fleet.toml"
    cfg.write_text('[[sites]]\nid = "s"\nname = "S"\ntimezone = "UTC"\n')
    calls: list[tuple[Path, dict[str, object]]] = []
    # the real app needs a terminal; what reaches run_tui is what matters here
    monkeypatch.setattr(tui_run, "run_tui",
                        lambda config, db, **kw: calls.append((db, kw)) or 0)
    db = tmp_path / "f.db"
    assert cli.main(["run", "--config", str(cfg), "--db", str(db), "--no-mouse",
                     "--osc-notify", "--http", "127.0.0.1:0"]) == 0
    assert calls == [(db, {"mouse": False, "http": ("127.0.0.1", 0), "osc_notify": "777"})]
    monkeypatch.setenv("FLEETTUI_OSC_NOTIFY", "9")
    assert cli.main(["--config", str(cfg), "--db", str(db)]) == 0
    assert calls[-1] == (db, {"mouse": True, "http": None, "osc_notify": "9"})
    monkeypatch.setenv("FLEETTUI_OSC_NOTIFY", "loud")
    assert cli.main(["--config", str(cfg), "--db", str(db)]) == 2
    assert len(calls) == 2


async def _api_app(
    emulate: Callable[..., Emulated], tmp_path: Path, http: tuple[str, int]
) -> tuple[FleetApp, Store]:
    configs = [device_config(d, profile=Profile(reboot_s=0.3)) for d in LAYOUT]
    em = emulate(configs, users={c.id: sample_users(3) for c in configs})
    em.emu.run(em.fleet.set_faults(OFFLINE, {"offline": True}))
    config = parse_config(two_site_toml(configs), tmp_path / "fleet.toml")
    store = await open_store(tmp_path / "fleet.db")
    return FleetApp(store, Engine(config, store), refresh_s=0.2, http=http), store


async def test_the_tui_serves_the_http_api(
    emulate: Callable[..., Emulated], tmp_path: Path
) -> None:
    app, store = await _api_app(emulate, tmp_path, ("127.0.0.1", 0))
    try:
        _id, key = await store.create_api_key("viewer", "test", app.now())
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: bool(app.api_address))
            await wait_for(pilot, lambda: app.api_address in _header(app))
            async with aiohttp.ClientSession(app.api_address) as http:
                async with http.get("/healthz") as r:
                    assert r.status == 200
                async with http.get("/v1/devices") as r:
                    assert r.status == 401
                await wait_for(pilot, lambda: len(app.rows) == len(LAYOUT))
                async with http.get("/v1/devices",
                                    headers={"Authorization": f"Bearer {key}"}) as r:
                    assert r.status == 200
                    body = await r.json()
                assert {d["id"] for d in body["devices"]} == set(LAYOUT)
            address = app.api_address
        # the server stops with the app
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession(address) as http, http.get("/healthz"):
                pass
    finally:
        await store.close()


async def test_an_api_port_in_use_is_a_toast_not_a_crash(
    emulate: Callable[..., Emulated], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app, store = await _api_app(emulate, tmp_path, ("127.0.0.1", port))
        try:
            with caplog.at_level(logging.ERROR, logger="fleettui.tui"):
                async with app.run_test(size=(120, 40)) as pilot:
                    await wait_for(pilot, lambda: any(
                        "cannot serve the HTTP API" in str(n.message)
                        for n in app._notifications))
                    await wait_for(pilot, lambda: len(app.rows) == len(LAYOUT))
                    assert app.api is None and "API" not in _header(app)
                    assert app.is_running
            assert any(f"127.0.0.1:{port}" in r.getMessage() for r in caplog.records)
        finally:
            await store.close()
        await asyncio.sleep(0)
