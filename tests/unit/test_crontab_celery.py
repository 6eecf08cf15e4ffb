"""Celery's crontab keyword form (its spellings and its day rule), solar schedules, and how both
are stored in a schedule row. Pure logic: no server.

Dates used: 2026-06-01 and 2026-09-07 are Mondays; 2026-01-04 is a Sunday.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sqlq.errors import ScheduleError
from sqlq.periodic.definitions import Definition, describe
from sqlq.periodic.timing import (
    crontab,
    due_ticks,
    every,
    from_stored_text,
    next_fire,
    parse_schedule,
    prev_fire,
    solar,
    stored_text,
)


def Z(*args: int) -> datetime:  # noqa: N802 - reads like the ISO 'Z' suffix
    return datetime(*args, tzinfo=UTC)


def ticks(schedule, start: datetime, end: datetime, tz: str = "UTC") -> list[datetime]:
    out, tick = [], next_fire(schedule, start - timedelta(microseconds=1), tz)
    while tick < end:
        out.append(tick)
        tick = next_fire(schedule, tick, tz)
    return out


# --- the day rule ----------------------------------------------------------------------------------

def test_keyword_form_needs_both_day_fields_first_monday_of_the_month():
    first_monday = crontab(minute=0, hour=9, day_of_week="monday", day_of_month="1-7")
    assert first_monday.days_and
    found = ticks(first_monday, Z(2026, 1, 1), Z(2027, 1, 1))
    assert [(t.month, t.day) for t in found] == [(1, 5), (2, 2), (3, 2), (4, 6), (5, 4), (6, 1), (7, 6), (8, 3),
                                                 (9, 7), (10, 5), (11, 2), (12, 7)]
    assert all(t.weekday() == 0 and t.day <= 7 and (t.hour, t.minute) == (9, 0) for t in found)


def test_cron_string_keeps_standard_crons_or_rule():
    either = crontab.from_string("0 9 1-7 * 1")
    assert not either.days_and
    june = ticks(either, Z(2026, 6, 1), Z(2026, 7, 1))
    assert [t.day for t in june] == [1, 2, 3, 4, 5, 6, 7, 8, 15, 22, 29]  # days 1-7, and every Monday


def test_one_restricted_day_field_reads_the_same_under_both_rules():
    assert crontab(minute=0, hour=0, day_of_week="mon") == crontab.from_string("0 0 * * mon")
    assert not crontab(minute=0, hour=0, day_of_month=1).days_and


def test_prev_fire_and_due_ticks_follow_the_and_rule():
    first_monday = crontab(minute=0, hour=9, day_of_week=1, day_of_month="1-7")
    assert prev_fire(first_monday, Z(2026, 6, 30)) == Z(2026, 6, 1, 9)
    assert due_ticks(first_monday, Z(2026, 5, 1), Z(2026, 7, 1), policy="backfill") == [Z(2026, 5, 4, 9),
                                                                                         Z(2026, 6, 1, 9)]


# --- Celery's spellings ------------------------------------------------------------------------------

@pytest.mark.parametrize("sunday", [0, 7, "0", "7", "sun", "SUN", "Sun", "sunday", "Sunday", "SUNDAY"])
def test_every_spelling_of_sunday(sunday):
    assert next_fire(crontab(minute=0, hour=0, day_of_week=sunday), Z(2026, 1, 1)) == Z(2026, 1, 4)


@pytest.mark.parametrize(("day_of_week", "weekdays"), [
    ("mon-fri", {0, 1, 2, 3, 4}),
    ("monday-friday", {0, 1, 2, 3, 4}),
    ("mon,wed", {0, 2}),
    ("Tuesday,thurs", {1, 3}),
    ("*/2", {6, 1, 3, 5}),  # Celery's 0,2,4,6: Sunday, Tuesday, Thursday, Saturday
    ("1-5/2", {0, 2, 4}),
    ("fri-mon", {4, 5, 6, 0}),  # a range that wraps past Saturday, as Celery reads it
    ("sat-sun", {5, 6}),
    ("0-7", set(range(7))),
    ({1, 3}, {0, 2}),
    (range(1, 3), {0, 1}),
])
def test_day_of_week_forms(day_of_week, weekdays):
    found = ticks(crontab(minute=0, hour=12, day_of_week=day_of_week), Z(2026, 6, 1), Z(2026, 6, 15))
    assert {t.weekday() for t in found} == weekdays  # (Python's weekday(): Monday = 0)


def test_month_names_and_other_fields_in_celerys_forms():
    quarterly = crontab(minute=0, hour=0, day_of_month=1, month_of_year="jan,april,jul-october/3")
    assert [t.month for t in ticks(quarterly, Z(2026, 1, 1), Z(2027, 1, 1))] == [1, 4, 7, 10]
    assert crontab(minute="*/15").expression == "*/15 * * * *"
    assert crontab(minute={0, 30}, hour="9-17/4").expression == "0,30 9-17/4 * * *"
    assert crontab(day_of_week="sunday", day_of_month="*/10").expression == "* * */10 * 0"
    assert crontab(day_of_week="fri-mon").expression == "* * * * fri-mon"


def test_written_text_is_kept_when_cron_reads_it_the_same():
    assert crontab(day_of_week="mon-fri").day_of_week == "mon-fri"
    assert crontab(day_of_week="Monday,Wednesday").day_of_week == "1,3"  # cron has no full names


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"day_of_week": "funday"}, "day_of_week='funday'"),
    ({"day_of_week": "8"}, "day_of_week='8'"),
    ({"day_of_week": "mon,,tue"}, "an empty list item"),
    ({"hour": "25"}, "25 is out of range"),
    ({"minute": "*/0"}, "a step must be a positive whole number"),
    ({"day_of_month": "0"}, "day_of_month='0'"),
    ({"month_of_year": "13"}, "month_of_year='13'"),
    ({"month_of_year": "smarch"}, "month_of_year='smarch'"),
    ({"minute": "mon"}, "minute='mon'"),
])
def test_bad_fields_name_the_field_and_what_it_takes(kwargs, fragment):
    with pytest.raises(ScheduleError) as info:
        crontab(**kwargs)
    message = str(info.value)
    assert fragment in message
    name = next(iter(kwargs))
    assert f"{name} takes" in message


def test_impossible_date_under_the_and_rule_is_refused():
    with pytest.raises(ScheduleError, match="no calendar date ever matches"):
        crontab(day_of_month=30, month_of_year=2)


# --- storage ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", [
    crontab(minute=0, hour=9, day_of_week="monday", day_of_month="1-7"),
    crontab(minute="*/5"),
    crontab.from_string("0 9 1-7 * 1"),
    crontab(day_of_month="L", day_of_week="fri"),
])
def test_crontabs_survive_the_schedule_row(schedule):
    text = stored_text(schedule)
    assert from_stored_text(text) == schedule
    assert from_stored_text(text).days_and == schedule.days_and
    assert text.startswith("days=and ") == schedule.days_and


def test_definition_keeps_the_day_rule_and_describes_it():
    first_monday = crontab(minute=0, hour=9, day_of_week="monday", day_of_month="1-7")
    definition = Definition.from_entry("m", {"task": "proj.t", "schedule": first_monday}, "UTC")
    assert definition.cron == "days=and 0 9 1-7 * 1"
    assert definition.compile()[0] == first_monday
    assert describe(definition) == "cron '0 9 1-7 * 1' (day of month and day of week)"
    plain = Definition.from_entry("p", {"task": "proj.t", "schedule": "0 9 1-7 * 1"}, "UTC")
    assert plain.compile()[0] == crontab.from_string("0 9 1-7 * 1") and describe(plain) == "cron '0 9 1-7 * 1'"
    assert eval(repr(first_monday)) == first_monday  # noqa: S307 - repr round trip


# --- solar ------------------------------------------------------------------------------------------

LONDON = (51.5074, -0.1278)


@pytest.mark.parametrize(("event", "expected"), [
    # Almanac times for London on 2026-06-01 (UTC), to the minute
    ("sunrise", Z(2026, 6, 1, 3, 49)),
    ("sunset", Z(2026, 6, 1, 20, 8)),
    ("solar_noon", Z(2026, 6, 1, 11, 58)),
    ("dawn_civil", Z(2026, 6, 1, 3, 3)),
    ("dusk_civil", Z(2026, 6, 1, 20, 54)),
])
def test_solar_events_in_london(event, expected):
    tick = next_fire(solar(event, *LONDON), Z(2026, 6, 1))
    assert abs(tick - expected) <= timedelta(minutes=1), tick
    assert tick.microsecond == 0 and tick.tzinfo is not None


def test_solar_ticks_are_stable_strictly_after_and_at_or_before():
    sunrise = solar("sunrise", *LONDON)
    first = next_fire(sunrise, Z(2026, 6, 1))
    assert next_fire(sunrise, first - timedelta(microseconds=1)) == first  # the same instant each time
    assert next_fire(sunrise, first - timedelta(hours=3)) == first
    second = next_fire(sunrise, first)
    assert timedelta(hours=23, minutes=58) < second - first < timedelta(hours=24)
    assert prev_fire(sunrise, first) == first
    assert prev_fire(sunrise, first - timedelta(seconds=1)) < first - timedelta(hours=23)
    week = ticks(sunrise, Z(2026, 6, 1), Z(2026, 6, 8))
    assert len(week) == 7 and len({t.date() for t in week}) == 7
    assert due_ticks(sunrise, first, second + timedelta(hours=1)) == [second]


def test_solar_skips_days_when_the_event_does_not_happen():
    # Longyearbyen (78.2 N): the midnight sun (no sunset) lasts from about April 20 to August 23.
    sunset = solar("sunset", 78.22, 15.65)
    after = next_fire(sunset, Z(2026, 6, 1))
    assert Z(2026, 8, 20) < after < Z(2026, 8, 28)
    # London has no astronomical dawn in June (the sun never goes 18 degrees below the horizon)
    dawn = next_fire(solar("dawn_astronomical", *LONDON), Z(2026, 6, 1))
    assert Z(2026, 7, 15) < dawn < Z(2026, 8, 1)


def test_solar_is_stored_as_text_and_read_back():
    sunset = solar("sunset", 48.8566, 2.3522)
    assert stored_text(sunset) == "solar sunset 48.8566 2.3522"
    assert from_stored_text(stored_text(sunset)) == sunset
    assert solar("sunset", 48, 2) == from_stored_text(stored_text(solar("sunset", 48, 2)))
    definition = Definition.from_entry("dusk", {"task": "proj.lights_on", "schedule": sunset}, "Europe/Paris")
    assert definition.cron == "solar sunset 48.8566 2.3522" and definition.compile()[0] == sunset
    assert describe(definition) == "solar sunset at 48.8566, 2.3522"
    assert parse_schedule(sunset) is sunset
    assert eval(repr(sunset)) == sunset  # noqa: S307 - repr round trip


@pytest.mark.parametrize(("args", "fragment"), [
    (("sunrize", 0, 0), "unknown event"),
    (("sunrise", 91, 0), "lat must be from -90 to 90"),
    (("sunrise", 0, -181), "lon must be from -180 to 180"),
    (("sunrise", "51.5", 0), "expected a number of degrees"),
    (("sunrise", float("nan"), 0), "expected a number of degrees"),
])
def test_bad_solar_arguments(args, fragment):
    with pytest.raises(ScheduleError, match=fragment):
        solar(*args)


def test_misspelt_event_suggests_the_right_one():
    with pytest.raises(ScheduleError, match="Did you mean 'sunrise'"):
        solar("sunrize", 0, 0)


def test_without_ephem_solar_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ephem", None)  # makes `import ephem` raise ImportError
    with pytest.raises(ScheduleError, match=r"pip install 'sqlq-pg\[solar\]'"):
        solar("sunrise", *LONDON)


def test_solar_and_every_still_differ_from_crontab():
    assert solar("sunrise", 0, 0) != crontab()
    assert every(60) != solar("sunrise", 0, 0)
