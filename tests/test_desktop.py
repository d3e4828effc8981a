"""Desktop notifications degrade quietly where there is no desktop.

A desktop's D-Bus cannot exist on this machine, so the notification backend
is replaced by a recording function (the one thing mocked here).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from fleettui.engine.alerts import Notification
from fleettui.engine.desktop import DesktopSink

N = Notification("opened", None, "[warning] device d1 is offline", datetime(2026, 3, 2, tzinfo=UTC))


def test_a_desktop_session_gets_the_notification() -> None:
    shown: list[tuple[str, str]] = []
    sink = DesktopSink(lambda t, m: shown.append((t, m)),
                       environ={"DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus"},
                       spawn=lambda f: f())
    sink(N)
    assert shown == [("fleettui · opened", "[warning] device d1 is offline")]


def test_over_ssh_without_a_bus_nothing_is_tried(caplog: pytest.LogCaptureFixture) -> None:
    called: list[str] = []
    with caplog.at_level(logging.INFO):
        sink = DesktopSink(lambda t, m: called.append(m), environ={}, spawn=lambda f: f())
        sink(N)
        sink(N)
    assert called == []
    assert sum("toasts only" in r.message for r in caplog.records) == 1


def test_a_failing_backend_is_reported_once_then_left_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    def broken(title: str, message: str) -> None:
        nonlocal calls
        calls += 1
        raise NotImplementedError("No usable implementation found!")

    with caplog.at_level(logging.WARNING):
        sink = DesktopSink(broken, environ={"DBUS_SESSION_BUS_ADDRESS": "x"},
                           spawn=lambda f: f())
        for _ in range(5):
            sink(N)
    assert calls == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "NotImplementedError" in warnings[0].message
    assert not any(r.exc_info for r in caplog.records)  # no traceback
