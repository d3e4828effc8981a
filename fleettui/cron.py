"""Crontab lines as operators write them, turned into APScheduler triggers."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def crontab_trigger(expr: str, zone: ZoneInfo | str) -> CronTrigger:
    """A CronTrigger from a standard crontab line, weekdays numbered as cron does.

    APScheduler 3's own ``from_crontab`` counts weekdays from 0 = Monday (its
    documented historical mistake); crontab, and operators, count 0 = Sunday.
    Raises ValueError for a line that is not five valid fields.
    """
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields, got {len(fields)}")
    minute, hour, day, month, weekday = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                       day_of_week=_weekdays(weekday), timezone=zone)


def _weekdays(field: str) -> str:
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        rng, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"weekday step must be at least 1 in {field!r}")
        if rng == "*":
            lo, hi = 0, 6
        else:
            a, _, b = rng.partition("-")
            lo = _day_number(a)
            hi = _day_number(b) if b else (6 if step_text else lo)
        if hi < lo:
            raise ValueError(f"weekday range {rng!r} runs backwards")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_DAY_NAMES[d] for d in sorted(days))


def _day_number(text: str) -> int:
    t = text.strip().lower()
    if t[:3] in _DAY_NAMES:
        return _DAY_NAMES.index(t[:3])
    if not t.isdigit() or not 0 <= int(t) <= 7:
        raise ValueError(f"weekday {text!r}: expected 0-7 (0 and 7 are Sunday) or a day name")
    return int(t)
