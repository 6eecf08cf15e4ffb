"""When do the ticks of a periodic task fall? The pure time logic behind ``sqlq beat``.

Nothing here touches the database: ``sqlq beat`` stores schedules and their last fire time,
and asks this module which ticks are due. Keeping the arithmetic pure makes the hard part
(time zones, daylight saving, downtime) testable to the minute without a server.

Schedules
=========

``crontab(minute='*', hour='*', day_of_week='*', day_of_month='*', month_of_year='*')``
    Celery's signature, so ``crontab(minute='*/15')`` and ``crontab(hour=7, minute=30,
    day_of_week=1)`` carry over. Each field takes an int, a string (``'*/15'``, ``'0,30'``,
    ``'9-17'``, ``'mon-fri'``, ``'Sunday'``, ``'fri-mon'``: read by Celery's ``crontab_parser``
    rules) or an iterable of ints. Celery's day rule: when both day fields are restricted, a date
    must match **both** (``day_of_week='monday', day_of_month='1-7'`` is the first Monday).
``crontab.from_string('*/5 * * * *')``
    A standard 5-field cron line: ``minute hour day-of-month month day-of-week``. Accepted:
    numbers, ``*``, ranges, lists, steps, month/day names, ``?`` (= ``*`` in the day fields),
    ``L`` in day-of-month (last day of the month), ``fri#2`` (second Friday) and ``L5`` (last
    Friday) in day-of-week, and the aliases ``@hourly @daily @midnight @weekly @monthly
    @yearly @annually``. Not accepted: a seconds or year field (6/7 fields), ``W``, Jenkins'
    ``H``, ``@reboot``. ``crontab.expression`` is always the 5-field form.

    Day matching is standard cron, not Celery's: when *both* day-of-month and day-of-week are
    restricted, a date matches if *either* matches (``0 0 1 * mon`` = the 1st and every
    Monday); the keyword form requires both.
``solar(event, lat, lon)``
    Celery's solar events (sunrise, sunset, solar_noon, dawn_*/dusk_* astronomical, nautical,
    civil) at a place, computed with ephem (the ``solar`` extra) as Celery does; ticks are UTC
    instants to the second, and a day on which the event does not happen has none.
``stored_text(schedule)`` / ``from_stored_text(text)``
    How a crontab or solar schedule is kept in a schedule row's ``cron`` column: the cron line,
    ``days=and <cron line>`` for Celery's day rule, ``solar EVENT LAT LON``.
``every(interval, *, anchor=None)``
    A fixed interval (``timedelta`` or seconds, int/float, > 0) in *real* time. Ticks fall
    at ``anchor + k * interval`` for k = 0, 1, 2, ..., so they never drift however late beat
    runs. ``anchor`` (an aware datetime) is the first tick; it defaults to the Unix epoch, so
    ``every(3600)`` fires on the hour (UTC) and ``every(60)`` on the minute. The time zone
    does not matter: 24 hours is 24 real hours even across a DST change (use a crontab to
    follow the wall clock).
``parse_schedule(value)``
    Turns what a user wrote (crontab, every, timedelta, seconds, cron string) into a Schedule.

Functions
=========

All instants in and out are timezone-aware; results are in UTC. ``tz`` is an IANA name or a
``tzinfo`` and defaults to UTC; it only affects crontabs.

``next_fire(schedule, after, tz)``
    The first tick strictly after ``after``.
``prev_fire(schedule, at_or_before, tz)``
    The last tick at or before the given instant (None if there is none).
``due_ticks(schedule, last_fire, now, tz, *, policy='latest', limit=100)``
    The ticks in ``(last_fire, now]`` that should be sent now:

    * ``policy='latest'`` (default): at most one, the most recent missed tick. After an
      outage the task runs once, not once per missed tick.
    * ``policy='backfill'``: every missed tick, oldest first, at most ``limit`` of them. The
      *oldest* ones are returned so that nothing is skipped: record the last returned tick as
      ``last_fire`` and the next call returns the following batch.
    * ``last_fire=None`` (a schedule that never fired) returns nothing: a new schedule's first
      tick is ``next_fire(schedule, now)``, never one that passed before it existed.
``resolve_timezone(name)``
    ``ZoneInfo(name)`` with a ScheduleError that names the zone and suggests a valid one.

Daylight saving time (crontab only)
===================================

A crontab is evaluated on the wall clock of its time zone (a solar schedule is not: its events
are instants). On each matching local date it
names some wall-clock times; a time that occurs exactly once fires at that instant. Around
DST changes, the *hour field* decides:

* **Fixed-hour jobs** (the hour field names hours: ``30 2 * * *``, ``0 9-17 * * 1-5``) run
  each matching wall time **once per day**:

  - a time skipped by spring-forward runs at **the first instant after the gap**, i.e. when
    the clock jumps (America/New_York 2026-03-08: 02:30 runs at 03:00 EDT = 07:00 UTC;
    Europe/London 2026-03-29: 01:30 runs at 02:00 BST = 01:00 UTC). Several skipped times
    collapse into that single run.
  - a time repeated by fall-back runs on its **first occurrence** only (New York
    2026-11-01: 01:30 runs at 01:30 EDT = 05:30 UTC, not again at 01:30 EST).

* **Hour-wildcard jobs** (the hour field starts with ``*``: ``0 * * * *``, ``*/15 * * * *``,
  ``0 */2 * * *``) run at **every real instant the clock shows a matching time**: a skipped
  time does not run, a repeated time runs on both occurrences. So ``0 * * * *`` runs 23
  times on a spring-forward day and 25 times on a fall-back day (01:00 EDT and 01:00 EST),
  always one real hour apart; ``*/15 * * * *`` runs 92 / 100 times, always 15 real minutes
  apart.

Why: a job pinned to an hour ("the 02:30 backup") must neither be lost nor doubled, while a
job on ``*`` hours promises a rhythm, which only the real clock keeps. This is close to Vixie
cron/cronie, which decides on minute-or-hour; sqlq looks at the hour field only. croniter is
used here only to parse and validate: on its own it runs a daily 01:30 job twice on a
fall-back day.
"""

from __future__ import annotations

import calendar
import contextlib
import difflib
import math
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterError, croniter

from ..errors import ScheduleError

__all__ = [
    "Schedule",
    "crontab",
    "every",
    "solar",
    "stored_text",
    "from_stored_text",
    "parse_schedule",
    "resolve_timezone",
    "next_fire",
    "prev_fire",
    "due_ticks",
    "CatchUpPolicy",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

CatchUpPolicy = Literal["latest", "backfill"]

# The Gregorian calendar (dates *and* weekdays) repeats every 400 years, so a day pattern that
# matches nothing within 400 years matches nothing ever.
_CYCLE_MONTHS = 400 * 12

_VALID_EXAMPLE = (
    "A valid expression has 5 space-separated fields 'minute hour day-of-month month day-of-week', "
    "e.g. '*/15 * * * *' (every 15 minutes) or '30 7 * * 1' (Mondays at 07:30)."
)

# (crontab keyword, what it accepts) in cron-line order.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day_of_month", "1-31 or L for the last day"),
    ("month_of_year", "1-12 or jan-dec"),
    ("day_of_week", "0-7 (0 and 7 are Sunday) or sun-sat, fri#2 for the 2nd Friday, L5 for the last Friday"),
)

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


# --------------------------------------------------------------------------------------------
# Schedule types
# --------------------------------------------------------------------------------------------


class Schedule:
    """Base of the schedule types, so beat and user code can type-check with one name."""

    __slots__ = ()


@dataclass(frozen=True)
class _CronSpec:
    """A parsed, hashable crontab: hashable so per-day tick lists can be cached."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int] | None  # None: every day of the month
    last_day: bool  # 'L' in day-of-month
    months: frozenset[int] | None  # None: every month
    weekdays: frozenset[int] | None  # cron numbering, 0 = Sunday; None: every weekday
    nth: tuple[tuple[int, frozenset[int]], ...]  # weekday -> occurrences (1..5, -1 = last)
    hour_wildcard: bool  # the hour field starts with '*': see the DST rule in the module docstring
    days_and: bool = False  # both day fields restricted and both must match (Celery's keyword form)


class crontab(Schedule):  # noqa: N801 - Celery's name, kept so user code carries over
    """A cron schedule, built Celery-style from fields or from a 5-field cron string.

    Validated at construction so that a typo fails when the schedule is defined (at import
    or at ``sqlq beat`` start), not silently at the first tick that never comes.
    """

    __slots__ = ("_expression", "_spec")

    def __init__(
        self,
        minute: str | int | Iterable[int] = "*",
        hour: str | int | Iterable[int] = "*",
        day_of_week: str | int | Iterable[int] = "*",
        day_of_month: str | int | Iterable[int] = "*",
        month_of_year: str | int | Iterable[int] = "*",
    ) -> None:
        given = {
            "minute": minute,
            "hour": hour,
            "day_of_month": day_of_month,
            "month_of_year": month_of_year,
            "day_of_week": day_of_week,
        }
        texts = [_celery_field(name, given[name]) for name, _ in _FIELDS]
        expression = " ".join(texts)
        self._expression = expression
        self._spec = _parse_cron(expression, texts, celery_days=True)

    @classmethod
    def from_string(cls, expression: str) -> crontab:
        """Build from a cron line such as ``'*/5 * * * *'`` or ``'@daily'``."""
        if not isinstance(expression, str):
            raise ScheduleError(
                f"A cron expression must be a string, got {type(expression).__name__} {expression!r}. "
                + _VALID_EXAMPLE
            )
        text = " ".join(expression.split())
        if text.lower() in _ALIASES:
            text = _ALIASES[text.lower()]
        elif text.startswith("@"):
            raise ScheduleError(
                f"Invalid cron expression {expression!r}: unknown alias; use one of "
                f"{', '.join(sorted(_ALIASES))} or a 5-field expression. " + _VALID_EXAMPLE
            )
        fields = text.split(" ") if text else []
        if len(fields) != 5:
            hint = ""
            if len(fields) in (6, 7):
                hint = (
                    " sqlq does not support a seconds or year field; "
                    "use every(seconds) for sub-minute intervals."
                )
            raise ScheduleError(
                f"Invalid cron expression {expression!r}: expected 5 fields, got {len(fields)}.{hint} "
                + _VALID_EXAMPLE
            )
        schedule = cls.__new__(cls)
        schedule._expression = text
        schedule._spec = _parse_cron(text, fields)
        return schedule

    @property
    def days_and(self) -> bool:
        """True when both day fields are restricted and a date must match both (Celery's rule,
        from the keyword form); False when either field alone suffices (standard cron, from
        :meth:`from_string`) or when at most one day field is restricted (the rules agree)."""
        return self._spec.days_and

    @property
    def expression(self) -> str:
        """The 5-field cron line (``minute hour day-of-month month day-of-week``)."""
        return self._expression

    def _field(self, index: int) -> str:
        return self._expression.split(" ")[index]

    @property
    def minute(self) -> str:
        return self._field(0)

    @property
    def hour(self) -> str:
        return self._field(1)

    @property
    def day_of_month(self) -> str:
        return self._field(2)

    @property
    def month_of_year(self) -> str:
        return self._field(3)

    @property
    def day_of_week(self) -> str:
        return self._field(4)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, crontab) and other._spec == self._spec

    def __hash__(self) -> int:
        return hash(self._spec)

    def __repr__(self) -> str:
        if self._spec.days_and:
            return (f"crontab(minute={self.minute!r}, hour={self.hour!r}, day_of_week={self.day_of_week!r}, "
                    f"day_of_month={self.day_of_month!r}, month_of_year={self.month_of_year!r})")
        return f"crontab.from_string({self._expression!r})"

    def __str__(self) -> str:
        return self._expression


class every(Schedule):  # noqa: N801 - reads as a phrase: every(timedelta(minutes=5))
    """A fixed real-time interval, anchored so that ticks never drift.

    Ticks are ``anchor + k * interval`` (k >= 0): computed from the anchor rather than from
    when the previous run happened, so a slow beat loop or a restart cannot shift them.
    """

    __slots__ = ("_interval", "_anchor")

    def __init__(self, interval: timedelta | float | int, *, anchor: datetime | None = None) -> None:
        self._interval = _to_interval(interval)
        if anchor is None:
            self._anchor = EPOCH
        else:
            if not isinstance(anchor, datetime) or anchor.utcoffset() is None:
                raise ScheduleError(
                    f"every(anchor={anchor!r}) must be a timezone-aware datetime, "
                    "e.g. datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)."
                )
            self._anchor = anchor.astimezone(UTC)

    @property
    def interval(self) -> timedelta:
        return self._interval

    @property
    def seconds(self) -> float:
        """The interval in seconds (what beat can store in a numeric column)."""
        return self._interval.total_seconds()

    @property
    def anchor(self) -> datetime:
        """The first tick (UTC); every later tick is a whole number of intervals after it."""
        return self._anchor

    def __eq__(self, other: object) -> bool:
        return isinstance(other, every) and (other._interval, other._anchor) == (self._interval, self._anchor)

    def __hash__(self) -> int:
        return hash((self._interval, self._anchor))

    def __repr__(self) -> str:
        anchor = "" if self._anchor == EPOCH else f", anchor={self._anchor!r}"
        return f"every({self._interval!r}{anchor})"


#: Celery's solar events: (ephem Observer method, horizon, whether the sun's centre, not its upper
#: limb, crosses it). Sunrise and sunset at -0:34 on the upper limb with no refraction model
#: (pressure 0) are the usual almanac definition; dawn and dusk at -6, -12, -18 degrees.
_SOLAR_EVENTS: dict[str, tuple[str, str, bool]] = {
    "dawn_astronomical": ("rising", "-18", True),
    "dawn_nautical": ("rising", "-12", True),
    "dawn_civil": ("rising", "-6", True),
    "sunrise": ("rising", "-0:34", False),
    "solar_noon": ("transit", "0", False),
    "sunset": ("setting", "-0:34", False),
    "dusk_civil": ("setting", "-6", True),
    "dusk_nautical": ("setting", "-12", True),
    "dusk_astronomical": ("setting", "-18", True),
}
#: Two occurrences of one solar event are about a day apart: closer than this, they are one event
#: found from two days (see _solar_day).
_SOLAR_SAME_EVENT = timedelta(hours=6)
#: How far to look for a solar event that does not happen for a while (polar night or day lasts
#: under six months; twilights at high latitudes can be missing for most of a year).
_SOLAR_HORIZON_DAYS = 400


class solar(Schedule):  # noqa: N801 - Celery's name, kept so user code carries over
    """A solar event at a place, as Celery's ``solar(event, lat, lon)``: sunrise, sunset,
    dawn_astronomical/nautical/civil, dusk_astronomical/nautical/civil, solar_noon.

    Ticks are the instants of the event (UTC, to the second), computed with ephem (the
    ``sqlq-pg[solar]`` extra) exactly as Celery computes them, so the time zone does not apply.
    Where the event does not happen on a day (no sunrise in a polar night) that day has no tick.
    """

    __slots__ = ("_event", "_lat", "_lon")

    def __init__(self, event: str, lat: float, lon: float) -> None:
        if event not in _SOLAR_EVENTS:
            close = difflib.get_close_matches(str(event), _SOLAR_EVENTS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ScheduleError(f"solar({event!r}, ...): unknown event; use one of "
                                f"{', '.join(sorted(_SOLAR_EVENTS))}.{hint}")
        self._event = event
        self._lat = _coordinate("lat", lat, 90)
        self._lon = _coordinate("lon", lon, 180)
        _ephem()  # fail where the schedule is defined, not at its first tick

    @property
    def event(self) -> str:
        return self._event

    @property
    def lat(self) -> float:
        return self._lat

    @property
    def lon(self) -> float:
        return self._lon

    def __eq__(self, other: object) -> bool:
        return isinstance(other, solar) and (other._event, other._lat, other._lon) == (self._event, self._lat, self._lon)

    def __hash__(self) -> int:
        return hash((self._event, self._lat, self._lon))

    def __repr__(self) -> str:
        return f"solar({self._event!r}, {self._lat!r}, {self._lon!r})"


def _coordinate(name: str, value: object, limit: int) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScheduleError(f"solar({name}={value!r}): expected a number of degrees, e.g. solar('sunrise', 51.5, -0.12).")
    if not -limit <= value <= limit:
        raise ScheduleError(f"solar({name}={value!r}): {name} must be from -{limit} to {limit} degrees.")
    return float(value)


def _ephem() -> Any:
    """The ephem module, or a ScheduleError saying which extra installs it."""
    try:
        import ephem
    except ImportError:
        raise ScheduleError(
            "solar schedules need the ephem library: pip install 'sqlq-pg[solar]' (or pip install ephem) "
            "where the schedule is defined and where sqlq beat runs."
        ) from None
    return ephem


@lru_cache(maxsize=4096)
def _solar_found(schedule: solar, day: date) -> tuple[datetime, ...]:
    """The event's instants found by searching forward from ``day``'s 00:00 UTC, that fall on
    that UTC date, to the second. Always searched from the same start, so the same instant comes
    out each time (ephem's answer moves by milliseconds with the start of the search)."""
    ephem = _ephem()
    method, horizon, use_center = _SOLAR_EVENTS[schedule.event]
    observer = ephem.Observer()
    observer.lat, observer.lon = str(schedule.lat), str(schedule.lon)
    observer.elev, observer.pressure, observer.horizon = 0, 0, horizon
    sun = ephem.Sun()
    start = datetime(day.year, day.month, day.day)
    end = start + timedelta(days=1)
    found: list[datetime] = []
    while True:
        try:
            if method == "transit":
                when = observer.next_transit(sun, start=start)
            else:
                when = getattr(observer, f"next_{method}")(sun, start=start, use_center=use_center)
        except ephem.CircumpolarError:  # the sun does not cross that horizon then
            break
        instant = when.datetime()
        tick = (instant + timedelta(microseconds=500_000)).replace(microsecond=0)
        if tick >= end or instant <= start:
            break
        found.append(tick.replace(tzinfo=UTC))
        start = instant + timedelta(minutes=1)
    return tuple(found)


@lru_cache(maxsize=4096)
def _solar_day(schedule: solar, day: date) -> tuple[datetime, ...]:
    """The ticks of ``day`` (UTC). An event a few milliseconds from midnight can be found from
    both days; it belongs to the earlier one."""
    ticks = _solar_found(schedule, day)
    before = _solar_found(schedule, _safe_shift(day, -1))
    if ticks and before and ticks[0] - before[-1] < _SOLAR_SAME_EVENT:
        ticks = ticks[1:]
    return ticks


def _solar_next(schedule: solar, after: datetime) -> datetime:
    day = after.date()
    for _ in range(_SOLAR_HORIZON_DAYS):
        found = _first_after(_solar_day(schedule, day), after)
        if found is not None:
            return found
        day = _safe_shift(day, 1)
    raise ScheduleError(f"{schedule!r}: the event does not happen within {_SOLAR_HORIZON_DAYS} days after "
                        f"{after.isoformat()} at that place.")


def _solar_prev(schedule: solar, at_or_before: datetime) -> datetime | None:
    day = at_or_before.date()
    for _ in range(_SOLAR_HORIZON_DAYS):
        found = _last_at_or_before(_solar_day(schedule, day), at_or_before)
        if found is not None:
            return found
        day = _safe_shift(day, -1)
    return None


#: Prefixes of the stored text (schedules.cron) of schedules that are not standard cron lines.
_STORED_DAYS_AND = "days=and "
_STORED_SOLAR = "solar "


def stored_text(schedule: crontab | solar) -> str:
    """The text a schedule row keeps for a crontab or solar schedule (``schedules.cron``):
    a cron line; a cron line after ``days=and`` for a crontab that needs both day fields to match
    (Celery's keyword form); ``solar EVENT LAT LON``. :func:`from_stored_text` reads it back."""
    if isinstance(schedule, solar):
        return f"{_STORED_SOLAR}{schedule.event} {schedule.lat!r} {schedule.lon!r}"
    return f"{_STORED_DAYS_AND}{schedule.expression}" if schedule.days_and else schedule.expression


def from_stored_text(text: str) -> crontab | solar:
    """The schedule :func:`stored_text` wrote (a plain cron line is read as standard cron)."""
    if text.startswith(_STORED_SOLAR):
        parts = text[len(_STORED_SOLAR):].split()
        try:
            event, lat, lon = parts[0], float(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            raise ScheduleError(f"invalid stored solar schedule {text!r}: expected 'solar EVENT LAT LON', "
                                f"e.g. 'solar sunrise 51.5 -0.12'") from None
        if len(parts) != 3:
            raise ScheduleError(f"invalid stored solar schedule {text!r}: expected 'solar EVENT LAT LON'")
        return solar(event, lat, lon)
    if text.startswith(_STORED_DAYS_AND):
        fields = text[len(_STORED_DAYS_AND):].split()
        if len(fields) != 5:
            raise ScheduleError(f"invalid stored crontab {text!r}: expected 'days=and' and 5 cron fields")
        minute, hour, day_of_month, month_of_year, day_of_week = fields
        return crontab(minute=minute, hour=hour, day_of_week=day_of_week, day_of_month=day_of_month,
                       month_of_year=month_of_year)
    return crontab.from_string(text)


def _to_interval(value: object) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, timedelta | int | float):
        raise ScheduleError(
            f"An interval must be a datetime.timedelta or a number of seconds, got "
            f"{type(value).__name__} {value!r}; e.g. every(timedelta(minutes=5)) or every(300)."
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ScheduleError(f"An interval must be a finite number of seconds, got {value!r}; e.g. every(300).")
    try:
        interval = value if isinstance(value, timedelta) else timedelta(seconds=value)
    except OverflowError:
        raise ScheduleError(f"The interval {value!r} seconds is too large; use a crontab for rare jobs.") from None
    if interval <= timedelta(0):
        raise ScheduleError(
            f"An interval must be positive, got {value!r} ({interval}); "
            "e.g. every(timedelta(minutes=5)) or every(300). Intervals shorter than a microsecond round to 0."
        )
    return interval


def parse_schedule(value: object) -> Schedule:
    """Turn a user-supplied schedule into a Schedule.

    Accepts a crontab or every (returned as is), a ``timedelta`` or a number of seconds (an
    ``every``), or a cron string (a ``crontab``), so beat and task decorators can take
    whatever reads most naturally.
    """
    if isinstance(value, Schedule):
        return value
    if isinstance(value, str):
        stripped = value.strip()
        try:
            float(stripped)
        except ValueError:
            return crontab.from_string(value)
        raise ScheduleError(
            f"The schedule {value!r} is a number in a string, not a cron expression: pass "
            f"{stripped} (a number) for an interval in seconds, or a cron string. " + _VALID_EXAMPLE
        )
    if isinstance(value, timedelta | int | float) and not isinstance(value, bool):
        return every(value)
    raise ScheduleError(
        f"Cannot use {type(value).__name__} {value!r} as a schedule: pass a crontab(...), a cron "
        "string like '*/5 * * * *', a datetime.timedelta, or a number of seconds."
    )


def resolve_timezone(name: str) -> ZoneInfo:
    """Return the IANA time zone ``name``, or a ScheduleError that says how to fix it."""
    if not isinstance(name, str) or not name.strip():
        raise ScheduleError(
            f"A time zone must be an IANA name such as 'Europe/London', 'America/New_York' or 'UTC', got {name!r}."
        )
    with contextlib.suppress(ZoneInfoNotFoundError, ValueError, OSError):  # unknown: explain below
        return ZoneInfo(name)
    try:
        close = difflib.get_close_matches(name, available_timezones(), n=3)
    except Exception:  # pragma: no cover - a broken tz database must not hide the real error
        close = []
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ScheduleError(
        f"Unknown time zone {name!r}: use an IANA name such as 'Europe/London', 'America/New_York' "
        f"or 'UTC'.{hint} If the name is right, this system may lack time zone data: pip install tzdata."
    )


# --------------------------------------------------------------------------------------------
# Parsing crontabs (the one place croniter is used)
# --------------------------------------------------------------------------------------------


_DAY_NAMES = {name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_MONTH_NAMES = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}

#: crontab() keyword -> (smallest, largest value, names, what it takes), as Celery's crontab_parser
#: reads them; day_of_week also takes 7 for Sunday, as cron does.
_CELERY_RANGES: dict[str, tuple[int, int, dict[str, int] | None, str]] = {
    "minute": (0, 59, None, "0-59"),
    "hour": (0, 23, None, "0-23"),
    "day_of_month": (1, 31, None, "1-31"),
    "month_of_year": (1, 12, _MONTH_NAMES, "1-12 or jan-dec (january-december)"),
    "day_of_week": (0, 7, _DAY_NAMES, "0-6 with 0 = Sunday (7 is Sunday too) or sun-sat (sunday-saturday)"),
}
_CELERY_PART = re.compile(r"(?:(\*)|(\w+?)(?:-(\w+))?)(?:/(\w*))?")


def _celery_field(name: str, value: object) -> str:
    """Render one crontab() keyword argument as a cron field, read the way Celery reads it.

    A string is expanded by Celery's rules (``'sunday'``, ``'Mon'``, ``'mon-fri'``, a wrapping
    range ``'fri-mon'``, ``'*/2'``, ``'1-31/7'``); the text is kept when croniter reads it as the
    same values (so ``expression`` shows what was written), else written out as numbers. A
    string Celery refuses but cron accepts (``'L'``, ``'fri#2'``, ``'5/15'``) is kept as cron
    reads it."""
    if isinstance(value, bool):
        raise ScheduleError(f"Invalid crontab({name}={value!r}): expected an int, a string like '*/15' or a list of ints.")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text.split()) != 1:
            raise ScheduleError(
                f"Invalid crontab({name}={value!r}): a field must be one non-empty token without spaces, "
                f"such as '*', '5', '0,30', '9-17' or '*/15'."
            )
        index = [field for field, _ in _FIELDS].index(name)
        cron_reads = _cron_values(index, text)
        try:
            values = _celery_values(name, text)
        except ScheduleError:
            if cron_reads is not False:
                return text  # cron's own forms (L, fri#2, 5/15)
            raise
        return text if cron_reads == values else _compress(values)
    if isinstance(value, Iterable):
        items = list(value)
        if not items or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            raise ScheduleError(f"Invalid crontab({name}={value!r}): an iterable field must hold at least one int.")
        return ",".join(str(i) for i in sorted(set(items)))
    raise ScheduleError(f"Invalid crontab({name}={value!r}): expected an int, a string like '*/15' or a list of ints.")


def _celery_values(name: str, text: str) -> set[int]:
    """The values a crontab() string names by Celery's ``crontab_parser`` rules; ScheduleError
    naming the field otherwise."""
    low, high, names, takes = _CELERY_RANGES[name]
    weekday = name == "day_of_week"
    top = 6 if weekday else high  # where '*' and a wrapping range end (7 is only another Sunday)

    def fail(problem: str) -> ScheduleError:
        return ScheduleError(
            f"Invalid crontab({name}={text!r}): {problem}. {name} takes {takes}, '*', ranges like "
            f"{'mon-fri' if weekday else '1-5'}, lists like 1,3 and steps like */2."
        )

    def number(token: str) -> int:
        if token.isdigit():
            n = int(token)
        elif names is not None and token.isalpha() and token[:3].lower() in names:
            n = names[token[:3].lower()]  # Celery's rule: the first three letters name the day/month
        else:
            what = "a number or a name" if names is not None else "a number"
            raise fail(f"{token!r} is not {what}")
        if not low <= n <= high:
            raise fail(f"{n} is out of range")
        return n

    values: set[int] = set()
    for part in text.split(","):
        match = _CELERY_PART.fullmatch(part)
        if not part or match is None:
            raise fail(f"{part!r} is not a number, name, range, list or step" if part else "an empty list item")
        star, first, last, step = match.groups()
        if star:
            run = list(range(low, top + 1))
        elif last is None:
            if step is not None:
                raise fail(f"{part!r}: a step goes with '*' or a range, as in */2 or 1-31/2")
            run = [number(first)]
        else:
            a, b = number(first), number(last)
            run = list(range(a, b + 1)) if a <= b else list(range(a, top + 1)) + list(range(low, b + 1))
        if step is not None:
            if not step.isdigit() or int(step) == 0:
                raise fail(f"{part!r}: a step must be a positive whole number")
            run = run[::int(step)]
        values.update(run)
    return {v % 7 for v in values} if weekday else values


def _cron_values(index: int, text: str) -> set[int] | bool:
    """The values croniter reads in cron field ``index``: False when it refuses the text, True
    when it accepts a form that is not a plain set of values (L, #)."""
    probe = ["*"] * 5
    probe[index] = text
    if index == 2 and "w" in text.lower():
        return False  # 'W' (nearest weekday): refused by _parse_cron
    try:
        expanded, nth = _expand(" ".join(probe))
    except (CroniterError, ValueError, TypeError, KeyError, IndexError):
        return False
    field = expanded[index]
    if nth or any(v == "l" for v in field):
        return True
    name = _FIELDS[index][0]
    low, high, _, _ = _CELERY_RANGES[name]
    if field == ["*"]:
        return set(range(low, (6 if index == 4 else high) + 1))
    return {int(v) % 7 for v in field} if index == 4 else {int(v) for v in field}


def _compress(values: set[int]) -> str:
    """``{1, 2, 3, 5}`` -> ``'1-3,5'``: values as a cron list, runs of three or more as ranges."""
    ordered = sorted(values)
    parts: list[str] = []
    start = 0
    while start < len(ordered):
        end = start
        while end + 1 < len(ordered) and ordered[end + 1] == ordered[end] + 1:
            end += 1
        if end - start >= 2:
            parts.append(f"{ordered[start]}-{ordered[end]}")
        else:
            parts.extend(str(v) for v in ordered[start:end + 1])
        start = end + 1
    return ",".join(parts)


def _expand(expression: str) -> tuple[list[list[int | Literal["*", "l"]]], dict[int, set[int | Literal["l"]]]]:
    expanded, nth = croniter.expand(expression)
    return expanded, nth


def _describe(croniter_message: str) -> str:
    """A short reason in our words: croniter's messages quote its own probe expression."""
    text = croniter_message.lower()
    if "out of range" in text:
        return "out of range"
    if "step" in text:
        return "invalid step"
    if "mixing" in text:
        return "plain weekdays cannot be mixed with the # and L forms"
    if "hash" in text:
        return "Jenkins-style H is not supported"
    if "negative" in text:
        return "negative numbers are not allowed"
    return "not a number, name, range, list or step"


def _parse_cron(expression: str, fields: list[str], *, celery_days: bool = False) -> _CronSpec:
    """Validate each field on its own (to name the bad one), then the whole line.

    ``celery_days``: the keyword form, where a date must match both day fields (Celery's rule)."""
    for index, (name, accepts) in enumerate(_FIELDS):
        probe = ["*"] * 5
        probe[index] = fields[index]
        problem = None
        if index == 2 and "w" in fields[index].lower():
            problem = "'W' (nearest weekday) is not supported"
        else:
            try:
                _expand(" ".join(probe))
            except (CroniterError, ValueError, TypeError, KeyError, IndexError) as exc:
                problem = _describe(str(exc))
        if problem is not None:
            raise ScheduleError(
                f"Invalid cron expression {expression!r}: the {name} field {fields[index]!r} is not valid "
                f"({problem}). {name} takes {accepts}, '*', ranges like 1-5, lists like 1,3 and steps "
                f"like */2. " + _VALID_EXAMPLE
            )
    try:
        expanded, nth = _expand(expression)
    except (CroniterError, ValueError, TypeError, KeyError, IndexError) as exc:  # pragma: no cover - fields passed
        raise ScheduleError(f"Invalid cron expression {expression!r}: {exc}. " + _VALID_EXAMPLE) from None

    def full_or(values: list[int | Literal["*", "l"]], full: range) -> tuple[int, ...]:
        return tuple(full) if values == ["*"] else tuple(sorted({int(v) for v in values}))

    dom = expanded[2]
    days = None if dom == ["*"] else frozenset(int(v) for v in dom if v != "l")
    weekdays = None if expanded[4] == ["*"] else frozenset(int(v) % 7 for v in expanded[4])
    spec = _CronSpec(
        minutes=full_or(expanded[0], range(60)),
        hours=full_or(expanded[1], range(24)),
        days=days,
        last_day="l" in dom,
        months=None if expanded[3] == ["*"] else frozenset(int(v) for v in expanded[3]),
        weekdays=weekdays,
        nth=tuple(
            sorted((int(d) % 7, frozenset(-1 if n == "l" else int(n) for n in ns)) for d, ns in nth.items())
        ),
        hour_wildcard=fields[1].startswith("*"),
        days_and=celery_days and dom != ["*"] and weekdays is not None,
    )
    if _first_matching_date(spec, date(2000, 1, 1)) is None:
        raise ScheduleError(
            f"Invalid cron expression {expression!r}: no calendar date ever matches its day and month "
            f"fields (e.g. day 30 of February). " + _VALID_EXAMPLE
        )
    return spec


# --------------------------------------------------------------------------------------------
# Which local dates match
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _month_days(spec: _CronSpec, year: int, month: int) -> tuple[int, ...]:
    """Days of ``year-month`` matching the day-of-month/day-of-week fields (standard cron OR rule)."""
    if spec.months is not None and month not in spec.months:
        return ()
    first_weekday, ndays = calendar.monthrange(year, month)  # Monday = 0
    nth = dict(spec.nth)
    out = []
    for day in range(1, ndays + 1):
        dom_ok = spec.days is None or day in spec.days or (spec.last_day and day == ndays)
        weekday = (first_weekday + day) % 7  # cron numbering: Sunday = 0
        dow_ok = spec.weekdays is None
        if spec.weekdays is not None and weekday in spec.weekdays:  # (= not dow_ok)
            wanted = nth.get(weekday)
            dow_ok = wanted is None or ((day - 1) // 7 + 1) in wanted or (-1 in wanted and day + 7 > ndays)
        restricted_dom = spec.days is not None
        if restricted_dom and spec.weekdays is not None and not spec.days_and:
            ok = dom_ok or dow_ok
        else:
            ok = dom_ok and dow_ok
        if ok:
            out.append(day)
    return tuple(out)


def _iter_dates(spec: _CronSpec, start: date, forward: bool) -> Iterator[date]:
    """Matching dates from ``start`` (inclusive), in order, for one 400-year cycle at most."""
    year, month = start.year, start.month
    for _ in range(_CYCLE_MONTHS + 1):
        days = _month_days(spec, year, month)
        for day in days if forward else reversed(days):
            if (day >= start.day if forward else day <= start.day) or (year, month) != (start.year, start.month):
                yield date(year, month, day)
        month += 1 if forward else -1
        if month == 13:
            year, month = year + 1, 1
        elif month == 0:
            year, month = year - 1, 12
        if not 1 <= year <= 9999:
            return


def _first_matching_date(spec: _CronSpec, start: date) -> date | None:
    return next(_iter_dates(spec, start, forward=True), None)


# --------------------------------------------------------------------------------------------
# Wall-clock times -> instants (the DST rule)
# --------------------------------------------------------------------------------------------


def _gap_end(tz: tzinfo, before: datetime, after: datetime) -> datetime:
    """The instant a spring-forward gap ends (the clock jumps), found by bisection to the second.

    ``before`` has the old UTC offset, ``after`` the new one. zoneinfo exposes no public list
    of transitions, and a bisection over at most a few hours of seconds is ~14 steps.
    """
    old = before.astimezone(tz).utcoffset()
    lo, hi = math.floor(before.timestamp()), math.ceil(after.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == old:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def _instants(wall: datetime, tz: tzinfo, hour_wildcard: bool) -> tuple[datetime, ...]:
    """The instants (UTC) at which the naive local ``wall`` time fires, per the module's DST rule."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:  # the usual case: the wall time exists exactly once
        return (first,)
    if first < second:  # repeated by fall-back (PEP 495: fold=0 is the earlier occurrence)
        return (first, second) if hour_wildcard else (first,)
    # Skipped by spring-forward: fold=0 maps past the gap, fold=1 before it.
    return () if hour_wildcard else (_gap_end(tz, second, first),)


@lru_cache(maxsize=512)  # up to 1,440 instants each (a per-minute job): bounded on purpose
def _day_ticks(spec: _CronSpec, tz: tzinfo, day: date) -> tuple[datetime, ...]:
    """All ticks (sorted UTC instants) that belong to local date ``day``; cached per day."""
    if day.day not in _month_days(spec, day.year, day.month):
        return ()
    ticks: set[datetime] = set()
    for hour in spec.hours:
        for minute in spec.minutes:
            wall = datetime(day.year, day.month, day.day, hour, minute)
            ticks.update(_instants(wall, tz, spec.hour_wildcard))
    return tuple(sorted(ticks))


def _safe_shift(day: date, days: int) -> date:
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return day


def _first_after(ticks: tuple[datetime, ...], after: datetime) -> datetime | None:
    index = bisect_right(ticks, after)
    return ticks[index] if index < len(ticks) else None


def _last_at_or_before(ticks: tuple[datetime, ...], limit: datetime) -> datetime | None:
    index = bisect_right(ticks, limit)
    return ticks[index - 1] if index else None


def _cron_next(spec: _CronSpec, after: datetime, tz: tzinfo) -> datetime | None:
    # A tick of local date D falls on local date D or D+1 (a gap end after midnight), so start
    # one day early; and a fall-back across midnight can put a tick of D after one of D+1, so
    # once a date yields a tick, also look at the next date.
    start = _safe_shift(after.astimezone(tz).date(), -1)
    for day in _iter_dates(spec, start, forward=True):
        found = _first_after(_day_ticks(spec, tz, day), after)
        if found is not None:
            nxt = _safe_shift(day, 1)
            other = _first_after(_day_ticks(spec, tz, nxt), after) if nxt != day else None
            return found if other is None else min(found, other)
    return None


def _cron_prev(spec: _CronSpec, at_or_before: datetime, tz: tzinfo) -> datetime | None:
    start = _safe_shift(at_or_before.astimezone(tz).date(), 1)
    for day in _iter_dates(spec, start, forward=False):
        found = _last_at_or_before(_day_ticks(spec, tz, day), at_or_before)
        if found is not None:
            prv = _safe_shift(day, -1)
            other = _last_at_or_before(_day_ticks(spec, tz, prv), at_or_before) if prv != day else None
            return found if other is None else max(found, other)
    return None


# --------------------------------------------------------------------------------------------
# Public time functions
# --------------------------------------------------------------------------------------------


def _aware_utc(value: object, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__} {value!r}")
    if value.utcoffset() is None:
        raise ValueError(
            f"{name}={value!r} is naive; pass a timezone-aware datetime, e.g. datetime.now(timezone.utc)"
        )
    return value.astimezone(UTC)


def _tzinfo(tz: str | tzinfo | None) -> tzinfo:
    if tz is None:
        return UTC
    if isinstance(tz, tzinfo):
        return tz
    return resolve_timezone(tz)


def _check_schedule(schedule: object) -> Schedule:
    if not isinstance(schedule, Schedule):
        raise TypeError(
            f"expected a crontab, solar or every schedule, got {type(schedule).__name__} {schedule!r}; "
            "use parse_schedule() to convert strings, numbers and timedeltas"
        )
    return schedule


def next_fire(schedule: Schedule, after: datetime, tz: str | tzinfo | None = "UTC") -> datetime:
    """The first tick strictly after ``after`` (aware), in UTC.

    Strictly after, so that feeding a tick back in yields the following one and a tick is
    never sent twice. ``tz`` only matters for a crontab (see the module's DST rule).
    """
    schedule = _check_schedule(schedule)
    after_utc = _aware_utc(after, "after")
    if isinstance(schedule, every):
        if after_utc < schedule.anchor:
            return schedule.anchor
        k = (after_utc - schedule.anchor) // schedule.interval + 1
        try:
            return schedule.anchor + k * schedule.interval
        except OverflowError:
            raise ScheduleError(f"{schedule!r} has no tick after {after_utc.isoformat()} before year 9999.") from None
    if isinstance(schedule, solar):
        return _solar_next(schedule, after_utc)
    assert isinstance(schedule, crontab)
    tick = _cron_next(schedule._spec, after_utc, _tzinfo(tz))
    if tick is None:
        raise ScheduleError(f"{schedule!r} has no tick after {after_utc.isoformat()} before year 9999.")
    return tick


def prev_fire(schedule: Schedule, at_or_before: datetime, tz: str | tzinfo | None = "UTC") -> datetime | None:
    """The last tick at or before ``at_or_before`` (aware), in UTC; None if there is none.

    Lets ``due_ticks(policy='latest')`` jump straight to the newest missed tick instead of
    walking through every tick of a long outage.
    """
    schedule = _check_schedule(schedule)
    limit = _aware_utc(at_or_before, "at_or_before")
    if isinstance(schedule, every):
        if limit < schedule.anchor:
            return None
        return schedule.anchor + ((limit - schedule.anchor) // schedule.interval) * schedule.interval
    if isinstance(schedule, solar):
        return _solar_prev(schedule, limit)
    assert isinstance(schedule, crontab)
    return _cron_prev(schedule._spec, limit, _tzinfo(tz))


def due_ticks(
    schedule: Schedule,
    last_fire: datetime | None,
    now: datetime,
    tz: str | tzinfo | None = "UTC",
    *,
    policy: CatchUpPolicy = "latest",
    limit: int = 100,
) -> list[datetime]:
    """The ticks in ``(last_fire, now]`` that beat should send now, oldest first, in UTC.

    ``'latest'`` returns at most the newest missed tick, so a long outage causes one run, not
    a storm. ``'backfill'`` returns every missed tick, but only the oldest ``limit`` per call:
    store the last one as ``last_fire`` and call again to page through the rest without ever
    skipping a tick. A schedule with ``last_fire=None`` has never fired and is not due: its
    first tick is ``next_fire(schedule, now)``.
    """
    schedule = _check_schedule(schedule)
    if policy not in ("latest", "backfill"):
        raise ScheduleError(f"Unknown catch-up policy {policy!r}: use 'latest' or 'backfill'.")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ScheduleError(f"The backfill limit must be a positive int, got {limit!r}.")
    now_utc = _aware_utc(now, "now")
    if last_fire is None:
        return []
    last_utc = _aware_utc(last_fire, "last_fire")
    if last_utc >= now_utc:
        return []
    zone = _tzinfo(tz)
    if policy == "latest":
        tick = prev_fire(schedule, now_utc, zone)
        return [tick] if tick is not None and tick > last_utc else []
    ticks: list[datetime] = []
    tick = last_utc
    while len(ticks) < limit:
        try:
            tick = next_fire(schedule, tick, zone)
        except ScheduleError:  # no further tick before year 9999
            break
        if tick > now_utc:
            break
        ticks.append(tick)
    return ticks
