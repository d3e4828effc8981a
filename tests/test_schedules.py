"""Scheduled commands: cron lines in each site's time zone, through the one queue.

Times are injected: the schedule's next runs are computed from a given
instant, and ``fire`` is called with the instant the scheduler would use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleettui.config import ConfigError, parse_config
from fleettui.domain import CommandState, DeviceState, Site
from fleettui.engine.schedules import fire, next_runs
from fleettui.store import Store, open_store

BASE = """
[[sites]]
id = "paris"
name = "Paris"
timezone = "Europe/Paris"

[[sites]]
id = "kolkata"
name = "Kolkata"
timezone = "Asia/Kolkata"

[[devices]]
id = "p1"
serial = "S1"
site = "paris"
host = "127.20.200.1"

[[devices]]
id = "p2"
serial = "S2"
site = "paris"
host = "127.20.200.2"

[[devices]]
id = "k1"
serial = "S3"
site = "kolkata"
host = "127.20.200.3"
"""


def _config(schedules: str, path: Path | None = None):  # type: ignore[no-untyped-def]
    return parse_config(BASE + schedules, path)


def _utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)  # type: ignore[misc]


def test_nightly_schedule_follows_the_site_clock_across_dst() -> None:
    cfg = _config('[[schedules]]\nname = "clock"\ncommand = "sync_time"\n'
                  'cron = "0 3 * * *"\ntarget = "paris"\n')
    runs = next_runs(cfg, cfg.schedules[0], _utc(2026, 3, 27, 12, 0), 3)
    # 03:00 in Paris: 02:00 UTC in winter, 01:00 UTC from the night clocks go forward
    assert [r.astimezone(UTC) for r in runs] == [
        _utc(2026, 3, 28, 2, 0), _utc(2026, 3, 29, 1, 0), _utc(2026, 3, 30, 1, 0)
    ]
    assert {r.astimezone(r.tzinfo).hour for r in runs} == {3}


def test_a_time_in_the_repeated_hour_runs_once_when_clocks_go_back() -> None:
    cfg = _config('[[schedules]]\nname = "clock"\ncommand = "sync_time"\n'
                  'cron = "30 2 * * *"\ntarget = "paris"\n')
    runs = next_runs(cfg, cfg.schedules[0], _utc(2026, 10, 24, 12, 0), 2)
    assert [r.astimezone(UTC) for r in runs] == [_utc(2026, 10, 25, 0, 30),
                                                 _utc(2026, 10, 26, 1, 30)]


@pytest.mark.parametrize(
    ("weekday", "expected"),
    [("0", "sun"), ("7", "sun"), ("1-5", "mon,tue,wed,thu,fri"), ("*/2", "sun,tue,thu,sat"),
     ("sat,sun", "sun,sat"), ("5-7", "sun,fri,sat")],
)
def test_crontab_weekdays_count_from_sunday(weekday: str, expected: str) -> None:
    from fleettui.cron import _weekdays

    assert _weekdays(weekday) == expected


def test_each_site_reads_its_cron_in_its_own_zone() -> None:
    cfg = _config('[[schedules]]\nname = "k"\ncommand = "restart"\n'
                  'cron = "0 3 * * 0"\ntarget = "k1"\n')
    (run,) = next_runs(cfg, cfg.schedules[0], _utc(2026, 3, 27, 12, 0), 1)
    assert run.astimezone(UTC) == _utc(2026, 3, 28, 21, 30)  # Sunday 03:00 IST


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(tmp_path / "fleet.db")
    await s.sync_fleet(
        [Site("paris", "Paris", "Europe/Paris"), Site("kolkata", "Kolkata", "Asia/Kolkata")],
        [DeviceState("p1", "S1", "paris", "127.20.200.1", 4370, "tcp"),
         DeviceState("p2", "S2", "paris", "127.20.200.2", 4370, "tcp"),
         DeviceState("k1", "S3", "kolkata", "127.20.200.3", 4370, "tcp")],
    )
    yield s
    await s.close()


async def test_firing_twice_for_one_local_minute_queues_once(store: Store) -> None:
    cfg = _config('[[schedules]]\nname = "clock"\ncommand = "sync_time"\n'
                  'cron = "30 2 * * *"\ntarget = "paris"\n')
    sc = cfg.schedules[0]
    # clocks go back in Paris: 02:30 happens at 00:30 and again at 01:30 UTC
    first = await fire(store, cfg, sc, _utc(2026, 10, 25, 0, 30, 0))
    second = await fire(store, cfg, sc, _utc(2026, 10, 25, 1, 30, 0))
    retry = await fire(store, cfg, sc, _utc(2026, 10, 25, 0, 30, 40))  # catch-up, same minute
    assert first is not None and second is not None and retry is not None
    assert retry.id == first.id
    assert second.id == first.id  # the repeated 02:30 is the same local minute: once
    assert first.idempotency_key == "schedule:clock:2026-10-25T02:30"
    later = await fire(store, cfg, sc, _utc(2026, 10, 26, 1, 30))
    assert later is not None and later.id != first.id  # the next night is another run
    assert [c.device_id for c in first.commands] == ["p1", "p2"]
    assert {c.state for c in first.commands} == {CommandState.QUEUED}


async def test_an_hr_file_is_read_when_the_schedule_fires(store: Store, tmp_path: Path) -> None:
    config_path = tmp_path / "fleet.toml"
    cfg = _config('[[schedules]]\nname = "hr"\ncommand = "sync_employees"\n'
                  'cron = "*/15 * * * *"\ntarget = "p1"\nemployees_file = "drop/staff.csv"\n'
                  'remove_missing = true\n', config_path)
    sc = cfg.schedules[0]
    missing = await fire(store, cfg, sc, _utc(2026, 3, 2, 8, 0))
    assert missing is None
    events = await store.events_after(0)
    assert events[-1].kind == "schedule.skipped" and "staff.csv" in events[-1].message
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "staff.csv").write_text("id,name,card\n501,Ines Sa,42\n")
    request = await fire(store, cfg, sc, _utc(2026, 3, 2, 8, 15))
    assert request is not None
    assert request.params["employees"] == [
        {"user_id": "501", "name": "Ines Sa", "card": 42, "privilege": 0, "password": ""}
    ]
    assert request.params["remove_missing"] is True


@pytest.mark.parametrize(
    ("schedule", "fragment"),
    [
        ('name = "a"\ncommand = "restart"\ncron = "61 * * * *"\ntarget = "paris"',
         "schedules[0].cron: expected a crontab line"),
        ('name = "a"\ncommand = "reboot"\ncron = "0 3 * * *"\ntarget = "paris"',
         "unknown command 'reboot'"),
        ('name = "a"\ncommand = "restart"\ncron = "0 3 * * *"\ntarget = "lyon"',
         "schedules[0].target: no site or device called 'lyon'"),
        ('name = "a"\ncommand = "unlock"\ncron = "0 3 * * *"\ntarget = "p1"\n'
         'params = { seconds = 500 }', "seconds"),
        ('name = "a"\ncommand = "sync_employees"\ncron = "0 3 * * *"\ntarget = "p1"',
         "needs employees_file"),
    ],
)
def test_bad_schedules_are_config_errors(schedule: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config("[[schedules]]\n" + schedule + "\n")
    assert fragment in str(info.value)
