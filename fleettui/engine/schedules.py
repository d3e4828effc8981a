"""Commands on a timetable: cron lines from the config, in each target site's time zone.

A schedule queues its command through the same queue as the palette and the
CLI. Its idempotency key is the schedule's name and the local minute it
fired for, so a cron time that happens twice (the repeated hour when clocks
go back, or a catch-up after a restart) queues the command once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from fleettui.config import Config, ScheduleConfig
from fleettui.cron import crontab_trigger
from fleettui.domain import CommandRequest, EventKind
from fleettui.engine.enqueue import enqueue, read_employees
from fleettui.store import Store


def schedule_site(config: Config, schedule: ScheduleConfig) -> str:
    """The site a schedule is for: its target, or its target device's site."""
    try:
        return config.site(schedule.target).id
    except KeyError:
        return config.device(schedule.target).site


def schedule_zone(config: Config, schedule: ScheduleConfig) -> ZoneInfo:
    """The time zone a schedule's cron line is read in: its target site's."""
    return ZoneInfo(config.site(schedule_site(config, schedule)).timezone)


def trigger_for(config: Config, schedule: ScheduleConfig) -> CronTrigger:
    """The APScheduler trigger of a schedule, in its site's zone."""
    return crontab_trigger(schedule.cron, schedule_zone(config, schedule))





def next_runs(
    config: Config, schedule: ScheduleConfig, after: datetime, count: int = 3
) -> list[datetime]:
    """The next ``count`` times a schedule queues its command (aware, in the site's zone).

    A local time that occurs twice when clocks go back runs once (the first).
    """
    trigger = trigger_for(config, schedule)
    zone = schedule_zone(config, schedule)
    out: list[datetime] = []
    seen: set[str] = set()
    previous: datetime | None = None
    now = after
    while len(out) < count:
        nxt = trigger.get_next_fire_time(previous, now)
        if nxt is None:
            break
        local = _local_minute(nxt, zone)
        if local not in seen:
            seen.add(local)
            out.append(nxt)
        previous = now = nxt
    return out


def _local_minute(at: datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


async def fire(
    store: Store, config: Config, schedule: ScheduleConfig, now: datetime
) -> CommandRequest | None:
    """Queue a schedule's command for the local minute ``now`` falls in.

    Returns the request (the existing one if this minute already fired), or
    None when an employees file is missing or invalid (an event says why).
    """
    zone = schedule_zone(config, schedule)
    key = f"schedule:{schedule.name}:{_local_minute(now, zone)}"
    params = dict(schedule.params)
    if schedule.employees_file is not None:
        path = Path(schedule.employees_file).expanduser()
        if not path.is_absolute() and config.source is not None:
            path = config.source.parent / path
        try:
            params["employees"] = read_employees(path)
        except ValueError as e:
            await store.add_event(
                EventKind.SCHEDULE_SKIPPED, f"schedule {schedule.name}: {e}", at=now,
                data={"schedule": schedule.name},
            )
            return None
    if schedule.command == "sync_employees":
        params["remove_missing"] = schedule.remove_missing
    request, _created = await enqueue(
        store, schedule.target, schedule.command, params, now=now, source="schedule",
        idempotency_key=key, ttl=timedelta(hours=24),
    )
    return request
