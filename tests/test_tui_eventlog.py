"""The event log's model: time order, routine syncs folded per minute and site, filters by
kind and by device or site, bounded (pure logic; the app's log is checked in test_tui)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fleettui.domain import Event, EventKind
from fleettui.tui.eventlog import EventLog, Kinds

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
SITES = {"dev_factory_c_01": "factory-c", "dev_factory_c_02": "factory-c",
         "dev_depot_01": "depot"}


class Ids:
    """Event ids in commit order."""

    def __init__(self) -> None:
        self.n = 0

    def event(self, kind: EventKind, message: str, seconds: float, device: str | None = None,
              **data: Any) -> Event:
        self.n += 1
        return Event(self.n, T0 + timedelta(seconds=seconds), kind, message, device_id=device,
                     data=data)


def _texts(log: EventLog) -> list[str]:
    return [line.plain for line in log.lines()]


def test_lines_are_in_time_order_whatever_the_commit_order() -> None:
    ids, log = Ids(), EventLog()
    log.add([ids.event(EventKind.DEVICE_ONLINE, "b back", 20, "dev_depot_01"),
             ids.event(EventKind.DEVICE_OFFLINE, "a down", 5, "dev_factory_c_01")],
            SITES.get)
    log.add([ids.event(EventKind.COMMAND_DONE, "restart done", 12)], SITES.get)
    assert [t.split(" ", 1)[0] for t in _texts(log)] == ["09:00:05", "09:00:12", "09:00:20"]
    # ids are never cut: the whole message is in the line
    assert _texts(log)[0].endswith("a down")


def test_routine_syncs_fold_into_one_line_per_minute_and_site_until_unfolded() -> None:
    ids, log = Ids(), EventLog()
    syncs = [ids.event(EventKind.SYNC, f"{d}: 2 new punch(es)", s, d, new=2)
             for s in (1, 2, 3, 61) for d in ("dev_factory_c_01", "dev_factory_c_02")]
    syncs.append(ids.event(EventKind.PUNCH, "live punch", 4, "dev_depot_01"))
    down = ids.event(EventKind.DEVICE_OFFLINE, "dev_depot_01 offline", 30, "dev_depot_01")
    log.add([*syncs, down], SITES.get)
    assert _texts(log) == [
        "09:00:00 sync      12 punches from 2 devices at factory-c",
        "09:00:00 punch     1 punch from 1 device at depot",
        "09:00:30 offline   dev_depot_01 offline",
        "09:01:00 sync      4 punches from 2 devices at factory-c",
    ]
    log.unfolded = True
    texts = _texts(log)
    assert len(texts) == 10 and texts[0].endswith("dev_factory_c_01: 2 new punch(es)")
    assert "syncs one by one" in log.title()


def test_the_filters_keep_one_kind_and_one_device_or_site() -> None:
    ids, log = Ids(), EventLog()
    log.add([ids.event(EventKind.DEVICE_OFFLINE, "c1 down", 1, "dev_factory_c_01"),
             ids.event(EventKind.COMMAND_QUEUED, "restart c2", 2, "dev_factory_c_02"),
             ids.event(EventKind.ALERT_OPENED, "depot down", 3, "dev_depot_01"),
             ids.event(EventKind.SYNC, "c2 synced", 4, "dev_factory_c_02", new=1)], SITES.get)
    log.kinds = Kinds.PROBLEMS
    assert [t.rsplit("  ", 1)[-1].strip() for t in _texts(log)] == ["c1 down", "depot down"]
    log.kinds = Kinds.ALL
    log.scope = ("site", "factory-c")
    assert len(_texts(log)) == 3
    log.scope = ("device", "dev_factory_c_02")
    assert [t.split(None, 2)[1] for t in _texts(log)] == ["sync", "queued"]
    assert log.title() == "Events · device dev_factory_c_02 · syncs folded"
    assert [k.next() for k in Kinds] == [Kinds.PROBLEMS, Kinds.COMMANDS, Kinds.SYNCS, Kinds.ALL]


def test_the_log_keeps_a_bounded_number_of_lines() -> None:
    ids, log = Ids(), EventLog(kept=50)
    log.add([ids.event(EventKind.DEVICE_OFFLINE, f"down {i}", i, "dev_depot_01")
             for i in range(300)], SITES.get)
    texts = _texts(log)
    assert len(texts) == 50 and texts[-1].endswith("down 299") and texts[0].endswith("down 250")
    assert len(log.lines(last=10)) == 10


async def test_the_painter_appends_what_follows_and_redraws_what_changed() -> None:
    """Drawn into a real RichLog (a small Textual app under Pilot): events arriving at the
    end are written on their own; a fold that grew, or a filter, draws the log anew."""
    from textual.app import App, ComposeResult
    from textual.widgets import RichLog

    from fleettui.tui.log_view import LogPainter

    class Log(App[None]):
        def compose(self) -> ComposeResult:
            yield RichLog(id="log", wrap=True, min_width=20)

    ids, model = Ids(), EventLog()
    painter = LogPainter(model, shown=10)
    writes: list[int] = []
    app = Log()
    async with app.run_test(size=(100, 20)) as pilot:
        log = app.query_one(RichLog)
        real_write, real_clear = log.write, log.clear

        def counting_write(*args: Any, **kw: Any) -> Any:
            writes.append(1)
            return real_write(*args, **kw)

        clears: list[int] = []

        def counting_clear() -> Any:
            clears.append(1)
            return real_clear()

        log.write = counting_write  # type: ignore[method-assign]
        log.clear = counting_clear  # type: ignore[method-assign]
        model.add([ids.event(EventKind.DEVICE_OFFLINE, f"down {i}", i, "dev_depot_01")
                   for i in range(8)], SITES.get)
        painter.draw(log)
        assert (len(writes), len(clears)) == (8, 1)
        model.add([ids.event(EventKind.DEVICE_ONLINE, f"up {i}", 20 + i, "dev_depot_01")
                   for i in range(3)], SITES.get)
        painter.draw(log)  # three lines follow: only they are written
        assert (len(writes), len(clears)) == (11, 1)
        model.add([ids.event(EventKind.DEVICE_OFFLINE, "late", 3.5, "dev_depot_01")],
                  SITES.get)
        painter.draw(log)  # a line in between: drawn anew (the newest 10)
        assert (len(writes), len(clears)) == (21, 2)
        painter.draw(log, again=True)
        assert len(clears) == 3
        await pilot.pause()
        assert [s.text.rstrip() for s in log.lines][-1].endswith("up 2")
        assert log.border_title == "Events · syncs folded"


async def test_a_log_scrolled_up_stays_put_while_lines_arrive_and_redraws() -> None:
    """An operator reading older lines is not thrown to the end by new ones (appended or
    drawn anew); back at the end, the log follows again."""
    from textual.app import App, ComposeResult
    from textual.widgets import RichLog

    from fleettui.tui.log_view import LogPainter

    class Log(App[None]):
        def compose(self) -> ComposeResult:
            yield RichLog(id="log", wrap=True, min_width=20)

    ids, model = Ids(), EventLog()
    painter = LogPainter(model, shown=40)
    app = Log()
    async with app.run_test(size=(60, 10)) as pilot:
        log = app.query_one(RichLog)
        model.add([ids.event(EventKind.DEVICE_OFFLINE, f"down {i}", i, "dev_depot_01")
                   for i in range(30)], SITES.get)
        painter.draw(log)
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y > 0  # at the end
        log.scroll_to(y=5, animate=False, immediate=True)
        model.add([ids.event(EventKind.DEVICE_ONLINE, "up", 40, "dev_depot_01")], SITES.get)
        painter.draw(log)  # appended
        await pilot.pause()
        assert log.scroll_y == 5
        painter.draw(log, again=True)  # drawn anew
        await pilot.pause()
        assert log.scroll_y == 5
        log.scroll_end(animate=False, immediate=True)
        await pilot.pause()
        model.add([ids.event(EventKind.DEVICE_ONLINE, "up again", 41, "dev_depot_01")],
                  SITES.get)
        painter.draw(log)
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y
        assert [s.text.rstrip() for s in log.lines][-1].endswith("up again")
