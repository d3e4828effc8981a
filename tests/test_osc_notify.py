"""Terminal notifications (OSC 777 / OSC 9): what reaches the terminal, and nothing more.

The end-to-end proof on a real pty is in test_tui_hangup.py; here the app runs
under Pilot and what it hands Textual's driver is recorded, and alert texts
that try to smuggle escape sequences are shown to come out inert.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleettui.config import parse_config
from fleettui.engine.alerts import Notification, RateLimitedSink
from fleettui.tui.app import FleetApp
from fleettui.tui.notify import OscSink, clean, osc_kind, osc_sequence
from tests.conftest import Emulated, device_config, sample_users
from tests.test_engine import fleet_toml
from tests.test_tui import wait_for

AT = datetime(2026, 3, 2, tzinfo=UTC)
EVIL = "dev\x1b]777;notify;pwned;gotcha\x07\x1b[2J\x9b31m;rm -rf\x1b\\ /\r\nend"


def test_the_two_flavours() -> None:
    assert osc_sequence("777", "fleettui opened", "device d1 is offline") == (
        "\x1b]777;notify;fleettui opened;device d1 is offline\x1b\\")
    assert osc_sequence("9", "fleettui opened", "device d1 is offline") == (
        "\x1b]9;fleettui opened: device d1 is offline\x1b\\")
    with pytest.raises(ValueError):
        osc_sequence("99", "t", "b")


@pytest.mark.parametrize("kind", ["777", "9"])
def test_alert_text_cannot_inject_escape_sequences(kind: str) -> None:
    seq = osc_sequence(kind, EVIL, EVIL)
    inner = seq[len(f"\x1b]{kind};"):-2]
    assert seq.endswith("\x1b\\")
    # one ESC opens, one closes; no BEL, no C0/C1 control in between
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", inner), repr(inner)
    # the separators are ours alone: "notify;title;body" for 777, none for 9
    assert inner.count(";") == (2 if kind == "777" else 0)
    assert "rm -rf" in inner and "end" in inner  # the words survive, inert


def test_inside_tmux_the_sequence_is_wrapped_for_passthrough() -> None:
    written: list[str] = []
    OscSink(written.append, "9", tmux=True)(Notification("opened", None, "d1 offline", AT))
    assert written == ["\x1bPtmux;\x1b\x1b]9;fleettui opened: d1 offline\x1b\x1b\\\x1b\\"]


def test_clean_limits_and_collapses() -> None:
    assert clean("a;;b\n\tc") == "a b c"
    assert len(clean("x" * 1000)) == 200


def test_osc_setting_values() -> None:
    assert [osc_kind(v) for v in (None, "", "off", "0", "1", "on", "777", "9")] == [
        None, None, None, None, "777", "777", "777", "9"]
    with pytest.raises(ValueError):
        osc_kind("loud")


def test_the_sink_writes_one_sequence_per_notification() -> None:
    written: list[str] = []
    sink = OscSink(written.append, "777")
    sink(Notification("opened", None, "[warning] device d1 is offline", AT))
    assert written == ["\x1b]777;notify;fleettui opened;[warning] device d1 is offline\x1b\\"]
    assert sink.sent == 1


async def test_an_alert_reaches_the_terminal_driver_rate_limited(
    emulate: Callable[..., Emulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TMUX", raising=False)  # the plain sequence, even if run inside tmux
    cfgs = [device_config("dev_osc_01"), device_config("dev_osc_02")]
    em = emulate(cfgs, users={c.id: sample_users(2) for c in cfgs})
    em.emu.run(em.fleet.set_faults(cfgs[1].id, {"offline": True}))
    config = parse_config(fleet_toml(cfgs) + "\n[alerts]\nconfirm_after_s = 0\nsink_max = 1\n",
                          tmp_path / "fleet.toml")
    app = FleetApp(config=config, db_path=tmp_path / "fleet.db", osc_notify="777",
                   refresh_s=0.2)
    written: list[str] = []
    async with app.run_test(size=(100, 30)) as pilot:
        assert app._driver is not None
        real = app._driver.write

        def record(data: str) -> None:
            written.append(data)
            real(data)

        app._driver.write = record  # type: ignore[method-assign]
        await wait_for(pilot, lambda: any("\x1b]777;notify;" in w for w in written), 30)
        seq = next(w for w in written if "\x1b]777;" in w)
        assert seq.startswith("\x1b]777;notify;fleettui opened;") and "dev_osc_02" in seq
        assert seq.endswith("\x1b\\")
        # the engine wraps this sink in the same rate limiter as the toasts and the log
        assert app.engine is not None
        limited = [s for s in app.engine.alerts.sinks if isinstance(s, RateLimitedSink)]
        assert any(s.sink is app.osc for s in limited)
        assert next(s for s in limited if s.sink is app.osc).limit == 1
