"""Tick arithmetic of periodic tasks: crontab/interval parsing, DST rules, catch-up policies.

Expected times are written out in UTC on purpose: the point is which real instants fire.
2026 transitions used throughout:
  America/New_York  spring 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z), fall 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z)
  Europe/London     spring 2026-03-29 01:00 GMT -> 02:00 BST (01:00Z), fall 2026-10-25 02:00 BST -> 01:00 GMT (01:00Z)
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlq.errors import ScheduleError
from sqlq.periodic.timing import (
    Schedule,
    crontab,
    due_ticks,
    every,
    next_fire,
    parse_schedule,
    prev_fire,
    resolve_timezone,
)

NY = "America/New_York"
LONDON = "Europe/London"


def Z(*args: int) -> datetime:  # noqa: N802 - reads like the ISO 'Z' suffix
    return datetime(*args, tzinfo=UTC)


def ticks_between(schedule: Schedule, start: datetime, end: datetime, tz: str = "UTC") -> list[datetime]:
    """Every tick in [start, end), by chaining next_fire."""
    out = []
    tick = next_fire(schedule, start - timedelta(microseconds=1), tz)
    while tick < end:
        out.append(tick)
        tick = next_fire(schedule, tick, tz)
    return out


def local_day(schedule: Schedule, tz: str, day: date) -> list[datetime]:
    """The ticks whose instant falls on local calendar date ``day`` in ``tz``."""
    zone = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).astimezone(UTC)
    return ticks_between(schedule, start, end, tz)


def steps(ticks: list[datetime]) -> set[timedelta]:
    return {b - a for a, b in zip(ticks, ticks[1:], strict=False)}


# ----------------------------------------------------------------------------------------------
# DST: fixed-hour daily jobs run exactly once on transition days
# ----------------------------------------------------------------------------------------------


def test_ny_spring_forward_daily_0230_runs_once_at_0300_edt():
    job = crontab(hour=2, minute=30)
    ticks = ticks_between(job, Z(2026, 3, 7), Z(2026, 3, 10), NY)
    assert ticks == [
        Z(2026, 3, 7, 7, 30),  # 02:30 EST
        Z(2026, 3, 8, 7, 0),  # 02:30 does not exist: first instant after the gap, 03:00 EDT
        Z(2026, 3, 9, 6, 30),  # 02:30 EDT
    ]
    assert ticks[1].astimezone(ZoneInfo(NY)).strftime("%H:%M %Z") == "03:00 EDT"
    assert len(local_day(job, NY, date(2026, 3, 8))) == 1


def test_london_spring_forward_daily_0130_runs_once_at_0200_bst():
    job = crontab.from_string("30 1 * * *")
    ticks = ticks_between(job, Z(2026, 3, 28), Z(2026, 3, 31), LONDON)
    assert ticks == [
        Z(2026, 3, 28, 1, 30),  # 01:30 GMT
        Z(2026, 3, 29, 1, 0),  # 01:30 does not exist: 02:00 BST
        Z(2026, 3, 30, 0, 30),  # 01:30 BST
    ]
    assert len(local_day(job, LONDON, date(2026, 3, 29))) == 1


@pytest.mark.parametrize(
    ("tz", "day", "expected"),
    [
        (NY, date(2026, 11, 1), Z(2026, 11, 1, 5, 30)),  # 01:30 EDT, not again at 01:30 EST (06:30Z)
        (LONDON, date(2026, 10, 25), Z(2026, 10, 25, 0, 30)),  # 01:30 BST, not again at 01:30 GMT (01:30Z)
    ],
)
def test_fall_back_daily_0130_runs_once_at_first_occurrence(tz, day, expected):
    job = crontab(minute=30, hour=1)
    assert local_day(job, tz, day) == [expected]
    # and the day after is back to normal
    assert next_fire(job, expected, tz) == expected + timedelta(hours=25)


def test_fixed_hour_job_with_several_skipped_times_collapses_to_one_run():
    # 02:00, 02:15, 02:30, 02:45 are all skipped in New York: one run at 03:00 EDT.
    assert local_day(crontab(minute="*/15", hour=2), NY, date(2026, 3, 8)) == [Z(2026, 3, 8, 7, 0)]
    # The skipped 02:00/02:30 runs coincide with the real 03:00: still one run each instant.
    assert local_day(crontab.from_string("0,30 2,3 * * *"), NY, date(2026, 3, 8)) == [
        Z(2026, 3, 8, 7, 0),
        Z(2026, 3, 8, 7, 30),
    ]


def test_fixed_hour_job_over_repeated_hour_runs_first_occurrence_only():
    ticks = local_day(crontab(minute="*", hour=1), NY, date(2026, 11, 1))
    assert len(ticks) == 60
    assert ticks[0] == Z(2026, 11, 1, 5, 0) and ticks[-1] == Z(2026, 11, 1, 5, 59)  # all EDT


# ----------------------------------------------------------------------------------------------
# DST: hour-wildcard jobs follow the real clock
# ----------------------------------------------------------------------------------------------


def test_hourly_new_york_spring_forward_has_23_ticks():
    ticks = local_day(crontab.from_string("0 * * * *"), NY, date(2026, 3, 8))
    assert len(ticks) == 23
    assert ticks[:4] == [Z(2026, 3, 8, 5), Z(2026, 3, 8, 6), Z(2026, 3, 8, 7), Z(2026, 3, 8, 8)]  # 00, 01 EST; 03, 04 EDT
    assert ticks[-1] == Z(2026, 3, 9, 3)  # 23:00 EDT
    assert steps(ticks) == {timedelta(hours=1)}
    local_hours = [t.astimezone(ZoneInfo(NY)).hour for t in ticks]
    assert 2 not in local_hours


def test_hourly_new_york_fall_back_has_25_ticks_with_0100_twice():
    ticks = local_day(crontab.from_string("0 * * * *"), NY, date(2026, 11, 1))
    assert len(ticks) == 25
    assert ticks[0] == Z(2026, 11, 1, 4) and ticks[-1] == Z(2026, 11, 2, 4)
    assert Z(2026, 11, 1, 5) in ticks and Z(2026, 11, 1, 6) in ticks  # 01:00 EDT and 01:00 EST
    assert steps(ticks) == {timedelta(hours=1)}
    labels = [t.astimezone(ZoneInfo(NY)).strftime("%H:%M %Z") for t in ticks[:4]]
    assert labels == ["00:00 EDT", "01:00 EDT", "01:00 EST", "02:00 EST"]


def test_hourly_london_transitions():
    hourly = crontab.from_string("0 * * * *")
    spring = local_day(hourly, LONDON, date(2026, 3, 29))
    assert len(spring) == 23
    assert spring[:3] == [Z(2026, 3, 29, 0), Z(2026, 3, 29, 1), Z(2026, 3, 29, 2)]  # 00:00 GMT, 02:00 BST, 03:00 BST
    fall = local_day(hourly, LONDON, date(2026, 10, 25))
    assert len(fall) == 25
    assert fall[:4] == [Z(2026, 10, 24, 23), Z(2026, 10, 25, 0), Z(2026, 10, 25, 1), Z(2026, 10, 25, 2)]
    assert steps(spring) == steps(fall) == {timedelta(hours=1)}


@pytest.mark.parametrize(
    ("tz", "day", "count"),
    [
        (NY, date(2026, 3, 8), 92),
        (NY, date(2026, 11, 1), 100),
        (NY, date(2026, 6, 1), 96),
        (LONDON, date(2026, 3, 29), 92),
        (LONDON, date(2026, 10, 25), 100),
        (LONDON, date(2026, 6, 1), 96),
    ],
)
def test_every_15_minutes_over_the_day(tz, day, count):
    ticks = local_day(crontab(minute="*/15"), tz, day)
    assert len(ticks) == count
    assert steps(ticks) == {timedelta(minutes=15)}


def test_hour_step_is_a_wildcard_job():
    every_two_hours = crontab(minute=0, hour="*/2")
    spring = local_day(every_two_hours, NY, date(2026, 3, 8))
    assert len(spring) == 11  # 02:00 is skipped and not replaced
    assert Z(2026, 3, 8, 7) not in spring
    assert len(local_day(every_two_hours, NY, date(2026, 11, 1))) == 12  # 01:00 does not match
    assert len(local_day(every_two_hours, NY, date(2026, 6, 1))) == 12


def test_utc_has_no_dst_surprises():
    assert len(local_day(crontab.from_string("0 * * * *"), "UTC", date(2026, 3, 29))) == 24


def test_prev_fire_around_transitions():
    hourly = crontab.from_string("0 * * * *")
    assert prev_fire(hourly, Z(2026, 11, 1, 6, 30), NY) == Z(2026, 11, 1, 6)  # 01:00 EST
    assert prev_fire(hourly, Z(2026, 11, 1, 6), NY) == Z(2026, 11, 1, 6)  # at-or-before includes it
    daily = crontab(hour=2, minute=30)
    assert prev_fire(daily, Z(2026, 3, 8, 12), NY) == Z(2026, 3, 8, 7)
    assert prev_fire(daily, Z(2026, 3, 8, 6, 59), NY) == Z(2026, 3, 7, 7, 30)


def test_next_fire_accepts_any_aware_datetime_and_returns_utc():
    after = datetime(2026, 3, 8, 1, 0, tzinfo=ZoneInfo(NY))  # 06:00Z
    tick = next_fire(crontab(minute=0), after, ZoneInfo(NY))
    assert tick == Z(2026, 3, 8, 7) and tick.tzinfo is UTC


def test_next_fire_is_strictly_after():
    job = crontab(minute=0)
    assert next_fire(job, Z(2026, 5, 1, 10), "UTC") == Z(2026, 5, 1, 11)
    assert next_fire(job, Z(2026, 5, 1, 10) - timedelta(microseconds=1), "UTC") == Z(2026, 5, 1, 10)


def test_naive_datetimes_are_rejected():
    with pytest.raises(ValueError, match="naive"):
        next_fire(crontab(), datetime(2026, 1, 1), "UTC")
    with pytest.raises(ValueError, match="naive"):
        due_ticks(every(60), Z(2026, 1, 1), datetime(2026, 1, 2))


# ----------------------------------------------------------------------------------------------
# Day fields
# ----------------------------------------------------------------------------------------------


def test_celery_day_of_week_numbering_and_names():
    monday = crontab(hour=7, minute=30, day_of_week=1)
    assert monday.expression == "30 7 * * 1"
    assert next_fire(monday, Z(2026, 1, 1), "UTC") == Z(2026, 1, 5, 7, 30)  # 2026-01-05 is a Monday
    for sunday in (0, 7, "sun", "SUN"):
        assert next_fire(crontab(minute=0, hour=0, day_of_week=sunday), Z(2026, 1, 1), "UTC") == Z(2026, 1, 4)
    weekdays = ticks_between(crontab(minute=0, hour=9, day_of_week="mon-fri"), Z(2026, 1, 1), Z(2026, 1, 15))
    assert [t.day for t in weekdays] == [1, 2, 5, 6, 7, 8, 9, 12, 13, 14]


def test_day_of_month_and_day_of_week_are_ored_like_cron():
    ticks = ticks_between(crontab.from_string("0 0 1 * mon"), Z(2026, 6, 1), Z(2026, 7, 2))
    assert [t.day for t in ticks] == [1, 8, 15, 22, 29, 1]  # June 1 is a Monday; July 1 is a Wednesday


def test_last_day_nth_and_last_weekday():
    last = ticks_between(crontab(minute=0, hour=0, day_of_month="L"), Z(2026, 1, 1), Z(2026, 5, 1))
    assert [(t.month, t.day) for t in last] == [(1, 31), (2, 28), (3, 31), (4, 30)]
    second_friday = ticks_between(crontab.from_string("0 0 * * fri#2"), Z(2026, 1, 1), Z(2026, 4, 1))
    assert [(t.month, t.day) for t in second_friday] == [(1, 9), (2, 13), (3, 13)]
    last_friday = ticks_between(crontab.from_string("0 0 * * L5"), Z(2026, 1, 1), Z(2026, 4, 1))
    assert [(t.month, t.day) for t in last_friday] == [(1, 30), (2, 27), (3, 27)]


def test_rare_dates_are_found_far_ahead():
    leap_day = crontab(minute=0, hour=0, day_of_month=29, month_of_year=2)
    assert next_fire(leap_day, Z(2026, 1, 1)) == Z(2028, 2, 29)
    assert prev_fire(leap_day, Z(2026, 1, 1)) == Z(2024, 2, 29)
    # The 5th Monday of February needs a leap year whose February starts on a Monday.
    assert next_fire(crontab.from_string("0 0 * 2 1#5"), Z(2026, 1, 1)) == Z(2044, 2, 29)


# ----------------------------------------------------------------------------------------------
# crontab construction and validation
# ----------------------------------------------------------------------------------------------


def test_crontab_expression_from_celery_fields():
    assert crontab().expression == "* * * * *"
    assert crontab(minute="*/15").expression == "*/15 * * * *"
    assert crontab(minute=[30, 0], hour=range(9, 12)).expression == "0,30 9,10,11 * * *"
    job = crontab(minute=5, hour=4, day_of_week="sat", day_of_month="1-7", month_of_year="*/3")
    assert job.expression == "5 4 1-7 */3 sat"
    assert (job.minute, job.hour, job.day_of_month, job.month_of_year, job.day_of_week) == (
        "5", "4", "1-7", "*/3", "sat"
    )


def test_from_string_normalises_and_supports_aliases():
    assert crontab.from_string("  */5   * * * * ").expression == "*/5 * * * *"
    assert crontab.from_string("@daily").expression == "0 0 * * *"
    assert crontab.from_string("@HOURLY").expression == "0 * * * *"
    assert crontab.from_string("@yearly") == crontab(minute=0, hour=0, day_of_month=1, month_of_year=1)
    assert crontab.from_string("0 0 ? * *") == crontab(minute=0, hour=0)
    assert crontab(minute="*/30") == crontab.from_string("0,30 * * * *")
    assert eval(repr(crontab(minute="*/5"))) == crontab(minute="*/5")  # noqa: S307 - repr round trip
    assert str(crontab(minute=1)) == "1 * * * *"


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("61 * * * *", "minute field '61'"),
        ("0 24 * * *", "hour field '24'"),
        ("0 0 0 * *", "day_of_month field '0'"),
        ("0 0 * 13 *", "month_of_year field '13'"),
        ("0 0 * * 8", "day_of_week field '8'"),
        ("*/0 * * * *", "minute field '*/0'"),
        ("bogus", "expected 5 fields, got 1"),
        ("", "expected 5 fields, got 0"),
        ("* * * *", "expected 5 fields, got 4"),
        ("0 * * * * *", "seconds or year field"),
        ("0 0 * * * 2026 1", "seconds or year field"),
        ("x * * * *", "minute field 'x'"),
        ("H * * * *", "minute field 'H'"),
        ("0 0 15W * *", "'W'"),
        ("0 0 30 2 *", "no calendar date ever matches"),
        ("0 0 31 4,6,9,11 *", "no calendar date ever matches"),
        ("@reboot", "unknown alias"),
    ],
)
def test_invalid_cron_strings_name_the_expression_and_show_a_valid_one(expression, fragment):
    with pytest.raises(ScheduleError) as info:
        crontab.from_string(expression)
    message = str(info.value)
    assert repr(expression) in message
    assert fragment in message
    assert "'*/15 * * * *'" in message  # what a valid one looks like


@pytest.mark.parametrize(
    "kwargs",
    [
        {"minute": 61},
        {"hour": "25"},
        {"minute": "1 2"},
        {"minute": ""},
        {"hour": True},
        {"minute": []},
        {"minute": ["a"]},
        {"day_of_week": "funday"},
        {"minute": 1.5},
    ],
)
def test_invalid_crontab_fields(kwargs):
    with pytest.raises(ScheduleError):
        crontab(**kwargs)


def test_crontab_error_names_the_field():
    with pytest.raises(ScheduleError, match=r"'61 \* \* \* \*'.*minute field '61'.*0-59"):
        crontab(minute=61)
    with pytest.raises(ScheduleError, match="from_string|cron expression must be a string"):
        crontab.from_string(5)  # type: ignore[arg-type]


def test_six_field_strings_are_not_silently_accepted_by_the_constructor():
    # A space inside one field would shift every later field; it is refused.
    with pytest.raises(ScheduleError, match="without spaces"):
        crontab(minute="0 0")


# ----------------------------------------------------------------------------------------------
# Intervals
# ----------------------------------------------------------------------------------------------


def test_interval_default_anchor_is_the_epoch():
    five = every(timedelta(minutes=5))
    assert five.anchor == Z(1970, 1, 1)
    assert next_fire(five, Z(2026, 5, 1, 10, 2, 17)) == Z(2026, 5, 1, 10, 5)
    assert next_fire(five, Z(2026, 5, 1, 10, 5)) == Z(2026, 5, 1, 10, 10)
    assert prev_fire(five, Z(2026, 5, 1, 10, 7)) == Z(2026, 5, 1, 10, 5)
    assert every(300) == five and every(300.0) == five


def test_interval_is_anchored_and_does_not_drift():
    anchor = Z(2026, 1, 1, 9, 0, 7)
    job = every(timedelta(minutes=10), anchor=anchor)
    assert next_fire(job, Z(2025, 1, 1)) == anchor  # before the anchor: the anchor is the first tick
    assert prev_fire(job, anchor - timedelta(seconds=1)) is None
    # Beat wakes up late every time; ticks stay on anchor + k * 10 min.
    tick = anchor
    for k in range(1, 200):
        late = tick + timedelta(seconds=37 + k % 50)
        tick = next_fire(job, late)
        assert tick == anchor + k * timedelta(minutes=10)


def test_float_intervals_are_exact_to_the_microsecond():
    job = every(0.1, anchor=Z(2026, 1, 1))
    ticks = ticks_between(job, Z(2026, 1, 1), Z(2026, 1, 1, 0, 0, 10))
    assert len(ticks) == 100
    assert ticks[-1] == Z(2026, 1, 1, 0, 0, 9, 900000)


def test_interval_ignores_time_zone_and_dst():
    hourly = every(3600)
    start, end = Z(2026, 11, 1, 4), Z(2026, 11, 2, 5)
    assert ticks_between(hourly, start, end, NY) == ticks_between(hourly, start, end, "UTC")
    assert len(ticks_between(hourly, start, end, NY)) == 25


def test_anchor_in_another_zone_is_converted_to_utc():
    job = every(timedelta(days=1), anchor=datetime(2026, 3, 7, 9, tzinfo=ZoneInfo(NY)))
    assert job.anchor == Z(2026, 3, 7, 14)
    # 24 real hours later, which is 10:00 EDT on the wall clock: use a crontab to follow the wall clock.
    assert next_fire(job, job.anchor, NY) == Z(2026, 3, 8, 14)


@pytest.mark.parametrize(
    "bad", [0, -1, -0.5, timedelta(0), timedelta(seconds=-5), 1e-9, math.nan, math.inf, True, "60", None]
)
def test_invalid_intervals(bad):
    with pytest.raises(ScheduleError):
        every(bad)


def test_naive_anchor_is_rejected():
    with pytest.raises(ScheduleError, match="timezone-aware"):
        every(60, anchor=datetime(2026, 1, 1))


# ----------------------------------------------------------------------------------------------
# parse_schedule / resolve_timezone
# ----------------------------------------------------------------------------------------------


def test_parse_schedule_accepts_every_supported_shape():
    job = crontab(minute="*/5")
    assert parse_schedule(job) is job
    assert parse_schedule("*/5 * * * *") == job
    assert parse_schedule("@hourly") == crontab(minute=0)
    assert parse_schedule(timedelta(seconds=30)) == every(30)
    assert parse_schedule(30) == every(30)
    assert parse_schedule(2.5) == every(timedelta(seconds=2.5))
    iv = every(10, anchor=Z(2026, 1, 1))
    assert parse_schedule(iv) is iv


@pytest.mark.parametrize("bad", [None, True, [1, 2], {"minute": 5}, b"* * * * *", Z(2026, 1, 1)])
def test_parse_schedule_rejects_other_types(bad):
    with pytest.raises(ScheduleError, match="crontab.*cron string.*timedelta.*seconds"):
        parse_schedule(bad)


def test_parse_schedule_explains_numbers_in_strings_and_bad_values():
    with pytest.raises(ScheduleError, match="number in a string"):
        parse_schedule("300")
    with pytest.raises(ScheduleError, match="'61 \\* \\* \\* \\*'"):
        parse_schedule("61 * * * *")
    with pytest.raises(ScheduleError, match="positive"):
        parse_schedule(0)


def test_resolve_timezone():
    assert resolve_timezone("Europe/London") == ZoneInfo("Europe/London")
    assert resolve_timezone("UTC") == ZoneInfo("UTC")


@pytest.mark.parametrize("name", ["Europe/Londn", "Mars/Olympus_Mons", "", "../etc/passwd", "/etc/localtime", "Europe"])
def test_unknown_time_zone(name):
    with pytest.raises(ScheduleError) as info:
        resolve_timezone(name)
    message = str(info.value)
    assert repr(name) in message
    assert "'Europe/London'" in message


def test_unknown_time_zone_suggests_close_names():
    with pytest.raises(ScheduleError, match="Did you mean 'Europe/London'"):
        resolve_timezone("Europe/Londn")


def test_unknown_time_zone_through_next_fire():
    with pytest.raises(ScheduleError, match="Unknown time zone 'Nowhere/City'"):
        next_fire(crontab(), Z(2026, 1, 1), "Nowhere/City")


def test_non_schedules_are_a_type_error():
    with pytest.raises(TypeError, match="parse_schedule"):
        next_fire("* * * * *", Z(2026, 1, 1))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Catch-up after downtime
# ----------------------------------------------------------------------------------------------


def test_new_schedule_is_not_due():
    assert due_ticks(crontab(), None, Z(2026, 5, 1, 12)) == []
    assert due_ticks(every(60), None, Z(2026, 5, 1, 12), policy="backfill") == []


def test_latest_returns_only_the_newest_missed_tick():
    job = crontab(minute="*/15")
    assert due_ticks(job, Z(2026, 5, 1, 8), Z(2026, 5, 1, 12, 7)) == [Z(2026, 5, 1, 12)]
    # A year of downtime on a per-minute job: still one tick, computed without walking the year.
    assert due_ticks(crontab(), Z(2025, 5, 1), Z(2026, 5, 1, 12, 7, 30)) == [Z(2026, 5, 1, 12, 7)]


def test_nothing_due_before_the_next_tick():
    job = crontab(minute="*/15")
    assert due_ticks(job, Z(2026, 5, 1, 12), Z(2026, 5, 1, 12, 14, 59)) == []
    assert due_ticks(job, Z(2026, 5, 1, 12), Z(2026, 5, 1, 12, 14, 59), policy="backfill") == []


def test_tick_exactly_at_now_is_due_and_last_fire_is_not_repeated():
    job = crontab(minute="*/15")
    assert due_ticks(job, Z(2026, 5, 1, 12), Z(2026, 5, 1, 12, 15)) == [Z(2026, 5, 1, 12, 15)]
    assert due_ticks(job, Z(2026, 5, 1, 12, 15), Z(2026, 5, 1, 12, 15)) == []
    assert due_ticks(job, Z(2026, 5, 1, 13), Z(2026, 5, 1, 12)) == []  # clock went backwards


def test_backfill_returns_every_missed_tick_in_order():
    job = crontab(minute="*/15")
    assert due_ticks(job, Z(2026, 5, 1, 11), Z(2026, 5, 1, 12, 7), policy="backfill") == [
        Z(2026, 5, 1, 11, 15),
        Z(2026, 5, 1, 11, 30),
        Z(2026, 5, 1, 11, 45),
        Z(2026, 5, 1, 12),
    ]


def test_backfill_pages_oldest_first_so_nothing_is_skipped():
    job = every(60, anchor=Z(2026, 1, 1))
    last, now, seen = Z(2026, 1, 1), Z(2026, 1, 1, 4, 10, 30), []
    while batch := due_ticks(job, last, now, policy="backfill", limit=100):
        assert len(batch) <= 100
        seen += batch
        last = batch[-1]
    assert len(seen) == 250
    assert seen == [Z(2026, 1, 1) + timedelta(minutes=k) for k in range(1, 251)]


def test_backfill_across_fall_back_uses_real_hours():
    hourly = crontab(minute=0)
    assert due_ticks(hourly, Z(2026, 11, 1, 4), Z(2026, 11, 1, 8), NY, policy="backfill") == [
        Z(2026, 11, 1, 5),  # 01:00 EDT
        Z(2026, 11, 1, 6),  # 01:00 EST
        Z(2026, 11, 1, 7),
        Z(2026, 11, 1, 8),
    ]
    daily = crontab(minute=30, hour=1)
    assert due_ticks(daily, Z(2026, 10, 31, 12), Z(2026, 11, 1, 12), NY, policy="backfill") == [Z(2026, 11, 1, 5, 30)]


def test_latest_for_intervals():
    job = every(timedelta(minutes=10))
    assert due_ticks(job, Z(2026, 5, 1, 8), Z(2026, 5, 1, 12, 7)) == [Z(2026, 5, 1, 12)]


@pytest.mark.parametrize(("kwargs", "match"), [({"policy": "all"}, "policy"), ({"limit": 0}, "limit"), ({"limit": True}, "limit")])
def test_bad_catch_up_arguments(kwargs, match):
    with pytest.raises(ScheduleError, match=match):
        due_ticks(crontab(), Z(2026, 1, 1), Z(2026, 1, 2), **kwargs)


# ----------------------------------------------------------------------------------------------
# Properties: an independent brute-force oracle, minute by minute in real time
# ----------------------------------------------------------------------------------------------

# (text, values) pairs so the oracle never parses cron itself.
MINUTES = [("*", set(range(60))), ("*/15", {0, 15, 30, 45}), ("0", {0}), ("30", {30}), ("0,45", {0, 45}), ("59", {59})]
HOURS = [
    ("*", set(range(24))),
    ("*/2", set(range(0, 24, 2))),
    ("0", {0}),
    ("1", {1}),
    ("2", {2}),
    ("1,2", {1, 2}),
    ("1-3", {1, 2, 3}),
    ("23", {23}),
    ("0-23", set(range(24))),  # every hour, but written out: a fixed-hour job
]
# (day_of_month text, values or None for '*', day_of_week text, cron weekdays or None)
DAYS = [
    ("*", None, "*", None),
    ("*", None, "1-5", {1, 2, 3, 4, 5}),
    ("*", None, "0", {0}),
    ("1,15", {1, 15}, "*", None),
    ("1,5,25", {1, 5, 25}, "0", {0}),  # both restricted: OR
]
# Zones with assorted transitions: 1 h at 02:00 (NY), 01:00 (London), midnight (Santiago, Havana),
# 30 minutes (Lord Howe), 2 hours (Troll), and none.
ZONES = ["America/New_York", "Europe/London", "America/Santiago", "America/Havana", "Australia/Lord_Howe",
         "Antarctica/Troll", "Asia/Kolkata", "UTC"]
TRANSITIONS = [Z(2026, 3, 8, 7), Z(2026, 11, 1, 6), Z(2026, 3, 29, 1), Z(2026, 10, 25, 1), Z(2026, 4, 5, 3),
               Z(2026, 9, 6, 4), Z(2026, 3, 8, 5), Z(2026, 11, 1, 5), Z(2026, 4, 4, 15), Z(2026, 10, 3, 15, 30)]


def _date_ok(day: date, dom: set[int] | None, dow: set[int] | None) -> bool:
    weekday = (day.weekday() + 1) % 7
    dom_ok = dom is None or day.day in dom
    dow_ok = dow is None or weekday in dow
    return (dom_ok or dow_ok) if (dom is not None and dow is not None) else (dom_ok and dow_ok)


def _wall_ok(wall: datetime, minutes: set[int], hours: set[int], dom, dow) -> bool:
    return wall.minute in minutes and wall.hour in hours and _date_ok(wall.date(), dom, dow)


def oracle(minutes, hours, dom, dow, wildcard: bool, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Ticks in (start, end] found by walking real time minute by minute (transitions are on whole minutes)."""
    out = []
    u = start.replace(second=0, microsecond=0)
    prev_wall = (u - timedelta(minutes=1)).astimezone(tz).replace(tzinfo=None, fold=0)
    while u <= end:
        local = u.astimezone(tz)
        wall = local.replace(tzinfo=None, fold=0)
        fire = False
        if _wall_ok(wall, minutes, hours, dom, dow):
            fire = wildcard or local.fold == 0  # fixed-hour jobs: first occurrence only
        expected = prev_wall + timedelta(minutes=1)
        if not wildcard and wall > expected:  # the clock jumped: skipped times run now
            skipped = expected
            while skipped < wall:
                fire = fire or _wall_ok(skipped, minutes, hours, dom, dow)
                skipped += timedelta(minutes=1)
        if fire and u > start:
            out.append(u)
        prev_wall = wall
        u += timedelta(minutes=1)
    return out


@st.composite
def cron_cases(draw):
    minute = draw(st.sampled_from(MINUTES))
    hour = draw(st.sampled_from(HOURS))
    days = draw(st.sampled_from(DAYS))
    zone = draw(st.sampled_from(ZONES))
    centre = draw(st.sampled_from(TRANSITIONS))
    start = centre + timedelta(seconds=draw(st.integers(-30 * 3600, 6 * 3600)))
    return minute, hour, days, zone, start


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cron_cases())
def test_crontab_ticks_match_the_brute_force_oracle(case):
    (m_text, minutes), (h_text, hours), (dom_text, dom, dow_text, dow), zone, start = case
    job = crontab.from_string(f"{m_text} {h_text} {dom_text} * {dow_text}")
    tz = ZoneInfo(zone)
    end = start + timedelta(hours=40)
    got = []
    tick = next_fire(job, start, tz)
    while tick <= end:
        got.append(tick)
        tick = next_fire(job, tick, tz)
    assert got == oracle(minutes, hours, dom, dow, h_text.startswith("*"), tz, start, end)
    # prev_fire is the exact inverse
    for earlier, later in zip(got, got[1:], strict=False):
        assert prev_fire(job, later, tz) == later
        assert prev_fire(job, later - timedelta(microseconds=1), tz) == earlier


@settings(max_examples=100, deadline=None)
@given(cron_cases(), st.integers(1, 30))
def test_next_fire_is_strictly_increasing_and_ticks_match_fields_in_local_time(case, count):
    (m_text, minutes), (h_text, hours), (dom_text, dom, dow_text, dow), zone, start = case
    job = crontab.from_string(f"{m_text} {h_text} {dom_text} * {dow_text}")
    tz = ZoneInfo(zone)
    after = start
    for _ in range(count):
        tick = next_fire(job, after, tz)
        assert tick > after
        assert tick.tzinfo is UTC and tick.second == 0 and tick.microsecond == 0
        wall = tick.astimezone(tz).replace(tzinfo=None, fold=0)
        if not _wall_ok(wall, minutes, hours, dom, dow):
            # Only a fixed-hour job whose time was skipped may fire off-pattern, and only at a gap end.
            before = (tick - timedelta(seconds=1)).astimezone(tz)
            assert not h_text.startswith("*")
            assert tick.astimezone(tz).utcoffset() > before.utcoffset()
            gap_start = before.replace(tzinfo=None) + timedelta(seconds=1)
            skipped = [gap_start + timedelta(minutes=i) for i in range(int((wall - gap_start) / timedelta(minutes=1)))]
            assert any(_wall_ok(w, minutes, hours, dom, dow) for w in skipped)
        after = tick


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 10**6),
    st.integers(-(10**9), 10**9),
    st.integers(-(10**9), 10**9),
)
def test_interval_ticks_are_anchor_plus_multiples(interval_ms, anchor_s, after_s):
    interval = timedelta(milliseconds=interval_ms)
    anchor = Z(2000, 1, 1) + timedelta(seconds=anchor_s)
    job = every(interval, anchor=anchor)
    after = Z(2000, 1, 1) + timedelta(seconds=after_s, microseconds=after_s % 997)
    tick = next_fire(job, after)
    assert tick > after
    assert (tick - anchor) % interval == timedelta(0) and tick >= anchor
    assert tick == anchor or tick - interval <= after
    assert prev_fire(job, tick) == tick
