"""Periodic tasks stored in tables, fired by beat exactly once per tick.

Every test drives beat with an injected clock (``Beat(app, clock=...)`` or ``run_once(now)``), so
hours and days of schedule pass in milliseconds; what is checked is which jobs (and tick rows) the
database ends up with. 2026 transitions used:
  America/New_York  spring 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z), fall 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z)
  Europe/London     spring 2026-03-29 01:00 GMT -> 02:00 BST (01:00Z), fall 2026-10-25 02:00 BST -> 01:00 GMT (01:00Z)
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import psycopg
import pytest

from sqlq import App, crontab, every
from sqlq.errors import ConfigurationError, ScheduleError
from sqlq.periodic import (
    add_schedule,
    get_schedule,
    list_schedules,
    pause_schedule,
    remove_schedule,
    resume_schedule,
    run_now,
)
from sqlq.periodic.beat import Beat, Fired

TASK = "tests.report"  # the `app` fixture registers no task, so beat sends by name


def Z(*args: int) -> datetime:  # noqa: N802 - reads like the ISO 'Z' suffix
    return datetime(*args, tzinfo=UTC)


class FakeTime:
    """The injected clock: the beat's sleep moves it forward; reaching ``end`` stops the beat."""

    def __init__(self, start: datetime, end: datetime):
        self.now = start
        self.end = end
        self.beat: Beat | None = None

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        target = self.now + timedelta(seconds=seconds)
        if target >= self.end:
            self.beat.stop()
        else:
            self.now = target


def run_beat(app: App, start: datetime, end: datetime, **options) -> Beat:
    """Run the real loop (sync, passes, sleeps) on fake time from ``start`` until ``end``."""
    app.conf.beat_interval = 7 * 86400.0  # sleep straight to the next due tick
    fake = FakeTime(start, end)
    beat = Beat(app, clock=fake, sleep=fake.sleep, **options)
    fake.beat = beat
    assert beat.run() == 0
    return beat


def sent(conn: psycopg.Connection, schema: str, name: str) -> list[datetime]:
    """The ticks of ``name`` that got a job, oldest first; each tick row still kept points at its job."""
    by_tick = dict(conn.execute(
        f"SELECT (headers->>'periodic_tick')::timestamptz, id::text FROM \"{schema}\".jobs "
        f"WHERE headers->>'periodic_task_name' = %s", (name,)).fetchall())
    rows = conn.execute(f'SELECT tick, job_id::text FROM "{schema}".schedule_ticks WHERE schedule = %s',
                        (name,)).fetchall()
    assert all(by_tick.get(tick) == job for tick, job in rows), "a tick row without its job"
    count = conn.execute(f"SELECT count(*) FROM \"{schema}\".jobs WHERE headers->>'periodic_task_name' = %s",
                         (name,)).fetchone()[0]
    assert count == len(by_tick), "two jobs for one tick"
    return sorted(by_tick)


def jobs(conn: psycopg.Connection, schema: str, task: str = TASK) -> list[tuple]:
    return conn.execute(f'SELECT id::text, queue, priority, headers, args, kwargs FROM "{schema}".jobs '
                        f"WHERE task = %s ORDER BY seq", (task,)).fetchall()


def local_midnight(zone: str, day: date) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(zone)).astimezone(UTC)


# --- daylight saving time, through the beat loop ----------------------------------------------------

DST_DAYS = [
    # zone, local date, hourly ticks, sub-hour cron, its ticks, fixed-hour cron, its single tick
    ("America/New_York", date(2026, 3, 8), 23, "*/15 * * * *", 92, "30 2 * * *", Z(2026, 3, 8, 7, 0)),
    ("America/New_York", date(2026, 11, 1), 25, "*/15 * * * *", 100, "30 1 * * *", Z(2026, 11, 1, 5, 30)),
    ("Europe/London", date(2026, 3, 29), 23, "*/30 * * * *", 46, "30 1 * * *", Z(2026, 3, 29, 1, 0)),
    ("Europe/London", date(2026, 10, 25), 25, "*/30 * * * *", 50, "30 1 * * *", Z(2026, 10, 25, 0, 30)),
]


@pytest.mark.parametrize(("zone", "day", "hourly", "often", "often_count", "fixed", "fixed_tick"), DST_DAYS,
                         ids=[f"{z}-{d}" for z, d, *_ in DST_DAYS])
def test_dst_days_fire_the_expected_ticks(app, raw_conn, zone, day, hourly, often, often_count, fixed, fixed_tick):
    app.conf.timezone = zone  # the app default covers 'hourly' and 'often'
    app.conf.beat_schedule = {
        "hourly": {"task": TASK, "schedule": crontab(minute=0)},
        "often": {"task": TASK, "schedule": often},
        "fixed": {"task": TASK, "schedule": crontab.from_string(fixed), "timezone": zone},
    }
    start = local_midnight(zone, day)
    run_beat(app, start - timedelta(seconds=1), local_midnight(zone, day + timedelta(days=1)))

    schema = app.conf.schema
    hours, frequent = sent(raw_conn, schema, "hourly"), sent(raw_conn, schema, "often")
    assert len(hours) == hourly
    assert len(frequent) == often_count
    assert sent(raw_conn, schema, "fixed") == [fixed_tick]
    # wildcard-hour crontabs keep their rhythm in real time across the change
    assert hours[0] == frequent[0] == start
    assert {b - a for a, b in pairwise(hours)} == {timedelta(hours=1)}
    # the local day has `hourly` real hours
    assert {b - a for a, b in pairwise(frequent)} == {timedelta(hours=hourly) / often_count}
    assert len(jobs(raw_conn, schema)) == hourly + often_count + 1


def test_fixed_hour_job_runs_once_a_day_around_both_new_york_transitions(app, raw_conn):
    app.conf.beat_schedule = {"backup": {"task": TASK, "schedule": "30 1 * * *", "timezone": "America/New_York"},
                              "late": {"task": TASK, "schedule": "30 2 * * *", "timezone": "America/New_York"}}
    run_beat(app, Z(2026, 3, 7), Z(2026, 3, 10))
    assert sent(raw_conn, app.conf.schema, "late") == [Z(2026, 3, 7, 7, 30), Z(2026, 3, 8, 7, 0), Z(2026, 3, 9, 6, 30)]
    run_beat(app, Z(2026, 10, 31), Z(2026, 11, 3))
    assert sent(raw_conn, app.conf.schema, "backup")[-3:] == [Z(2026, 10, 31, 5, 30), Z(2026, 11, 1, 5, 30),
                                                             Z(2026, 11, 2, 6, 30)]


def test_interval_schedule_counts_real_time_across_dst(app, raw_conn):
    """every(3600) ignores the wall clock: a 25-hour local day gets 25 ticks, one hour apart."""
    app.conf.timezone = "Europe/London"
    app.conf.beat_schedule = {"hourly": {"task": TASK, "schedule": timedelta(hours=1)}}
    day = date(2026, 10, 25)
    run_beat(app, local_midnight("Europe/London", day) - timedelta(seconds=1),
             local_midnight("Europe/London", day + timedelta(days=1)))
    ticks = sent(raw_conn, app.conf.schema, "hourly")
    assert len(ticks) == 25
    assert ticks[0] == Z(2026, 10, 24, 23, 0)


# --- catch-up after downtime ----------------------------------------------------------------------

T0 = Z(2026, 5, 1, 12, 0, 1)


def _quarter_hour(app: App, **entry) -> None:
    app.conf.beat_schedule = {"q": {"task": TASK, "schedule": crontab(minute="*/15"), **entry}}


def test_latest_policy_sends_only_the_newest_missed_tick(app, raw_conn):
    _quarter_hour(app)
    Beat(app).sync_config(T0)
    # every beat was down for three hours; a freshly started beat sends one run, not twelve
    fired = Beat(app).run_once(T0 + timedelta(hours=3, minutes=5))
    assert [(f.schedule, f.tick) for f in fired] == [("q", Z(2026, 5, 1, 15, 0))]
    assert Beat(app).run_once(T0 + timedelta(hours=3, minutes=6)) == []
    assert [f.tick for f in Beat(app).run_once(Z(2026, 5, 1, 15, 15))] == [Z(2026, 5, 1, 15, 15)]
    assert len(jobs(raw_conn, app.conf.schema)) == 2
    row = get_schedule(app, "q")
    assert (row.last_fire_at, row.next_fire_at, row.total_run_count) == (Z(2026, 5, 1, 15, 15), Z(2026, 5, 1, 15, 30), 2)


def test_backfill_policy_sends_every_missed_tick_once(app, raw_conn):
    app.conf.beat_catchup = "backfill"
    _quarter_hour(app)
    Beat(app).sync_config(T0)
    fired = Beat(app).run_once(T0 + timedelta(hours=3, minutes=5))
    expected = [Z(2026, 5, 1, 12, 15) + k * timedelta(minutes=15) for k in range(12)]
    assert [f.tick for f in fired] == expected
    assert Beat(app).run_once(T0 + timedelta(hours=3, minutes=10)) == []
    assert sent(raw_conn, app.conf.schema, "q") == expected
    assert len(jobs(raw_conn, app.conf.schema)) == 12


def test_backfill_limit_sends_the_newest_ticks_and_says_so(app, raw_conn, caplog):
    app.conf.beat_catchup = "backfill"
    app.conf.beat_backfill_limit = 5
    _quarter_hour(app)
    Beat(app).sync_config(T0)
    with caplog.at_level(logging.WARNING, logger="sqlq.beat"):
        fired = Beat(app).run_once(T0 + timedelta(hours=3, minutes=5))
    assert [f.tick for f in fired] == [Z(2026, 5, 1, 14, 0) + k * timedelta(minutes=15) for k in range(5)]
    assert "'q'" in caplog.text and "beat_backfill_limit" in caplog.text
    assert len(jobs(raw_conn, app.conf.schema)) == 5


def test_a_new_schedule_never_sends_a_tick_from_before_it_existed(app, raw_conn):
    app.conf.beat_catchup = "backfill"
    _quarter_hour(app)
    beat = Beat(app)
    beat.sync_config(Z(2026, 5, 1, 12, 14, 59))
    assert beat.run_once(Z(2026, 5, 1, 12, 14, 59)) == []
    assert [f.tick for f in beat.run_once(Z(2026, 5, 1, 12, 15))] == [Z(2026, 5, 1, 12, 15)]


def test_invalid_catchup_settings_fail_at_start(app):
    app.conf.beat_catchup = "all"
    with pytest.raises(ConfigurationError, match="beat_catchup"):
        Beat(app)
    app.conf.beat_catchup = "backfill"
    app.conf.beat_backfill_limit = 0
    with pytest.raises(ConfigurationError, match="beat_backfill_limit"):
        Beat(app)


# --- exactly once, whatever the beats do ------------------------------------------------------------

def test_a_second_beat_skips_what_the_first_sent(app, raw_conn):
    _quarter_hour(app)
    Beat(app, name="a").sync_config(T0)
    now = Z(2026, 5, 1, 12, 15, 0, 500)
    assert len(Beat(app, name="a").run_once(now)) == 1
    assert Beat(app, name="b").run_once(now) == []
    assert len(jobs(raw_conn, app.conf.schema)) == 1


def test_racing_beats_send_each_tick_exactly_once(app, raw_conn):
    """Four beats (own connections, own threads) run every pass at the same instant, 40 times."""
    app.conf.beat_catchup = "backfill"
    anchor = Z(2026, 5, 1, 12, 0)
    app.conf.beat_schedule = {"fast": {"task": TASK, "schedule": every(1, anchor=anchor)},
                              "slow": {"task": TASK, "schedule": every(4, anchor=anchor)}}
    Beat(app).sync_config(anchor - timedelta(seconds=1))
    beats = [Beat(app, name=f"beat-{i}") for i in range(4)]
    steps = [anchor + timedelta(seconds=k) for k in range(40)]
    barrier = threading.Barrier(len(beats))
    fired: list[list[Fired]] = [[] for _ in beats]
    errors: list[BaseException] = []

    def drive(i: int) -> None:
        try:
            for now in steps:
                barrier.wait(timeout=30)
                fired[i].extend(beats[i].run_once(now))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(len(beats))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    everything = [f for per_beat in fired for f in per_beat]
    assert sorted(f.tick for f in everything if f.schedule == "fast") == steps
    assert sorted(f.tick for f in everything if f.schedule == "slow") == steps[::4]
    assert len(jobs(raw_conn, app.conf.schema)) == 50
    assert sent(raw_conn, app.conf.schema, "fast") == steps


def test_the_tick_row_stops_a_resend_even_if_the_cursor_goes_back(app, raw_conn, caplog):
    _quarter_hour(app)
    beat = Beat(app)
    beat.sync_config(T0)
    now = Z(2026, 5, 1, 12, 20)
    assert [f.tick for f in beat.run_once(now)] == [Z(2026, 5, 1, 12, 15)]
    # a stale cursor (say, a bug or a hand edit) proposes the same tick again
    raw_conn.execute(f'UPDATE "{app.conf.schema}".schedules SET next_fire_at = %s', (Z(2026, 5, 1, 12, 15),))
    with caplog.at_level(logging.WARNING, logger="sqlq.beat"):
        assert beat.run_once(now) == []
    assert "already been sent" in caplog.text
    assert len(jobs(raw_conn, app.conf.schema)) == 1
    assert get_schedule(app, "q").next_fire_at == Z(2026, 5, 1, 12, 30)


def test_jobs_go_through_the_app_with_options_and_schedule_headers(app, raw_conn):
    app.conf.beat_schedule = {"q": {"task": TASK, "schedule": 60, "args": [1, "two"], "kwargs": {"x": 3},
                                    "options": {"queue": "low", "priority": 7, "headers": {"who": "me"}}}}
    beat = Beat(app)
    beat.sync_config(T0)
    [fired] = beat.run_once(Z(2026, 5, 1, 12, 1))
    [(job_id, queue, priority, headers, args, kwargs)] = jobs(raw_conn, app.conf.schema)
    assert (job_id, queue, priority, args, kwargs) == (fired.job_id, "low", 7, [1, "two"], {"x": 3})
    assert headers == {"who": "me", "periodic_task_name": "q", "periodic_tick": "2026-05-01T12:01:00+00:00"}


def test_beat_survives_failing_passes(app, raw_conn, caplog):
    """The schedules table vanishes for a while (as if the database were unreachable): the loop
    logs, retries, and afterwards sends every tick it owes (backfill) exactly once."""
    app.conf.beat_catchup = "backfill"
    app.conf.beat_schedule = {"m": {"task": TASK, "schedule": 60}}
    schema = app.conf.schema
    fake = FakeTime(Z(2026, 5, 1, 12, 0, 30), Z(2026, 5, 1, 12, 10, 30))
    sleeps = 0

    def sleep(seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        if sleeps == 2:
            raw_conn.execute(f'ALTER TABLE "{schema}".schedules RENAME TO schedules_away')
        if fake.now >= Z(2026, 5, 1, 12, 5):
            raw_conn.execute(f'ALTER TABLE IF EXISTS "{schema}".schedules_away RENAME TO schedules')
        fake.sleep(seconds)

    app.conf.beat_interval = 3600.0
    beat = Beat(app, clock=fake, sleep=sleep)
    fake.beat = beat
    with caplog.at_level(logging.WARNING, logger="sqlq.beat"):
        beat.run()
    assert "pass failed" in caplog.text and "run `sqlq migrate`" in caplog.text
    assert sent(raw_conn, schema, "m") == [Z(2026, 5, 1, 12, k) for k in range(1, 11)]


# --- errors stay with their schedule ----------------------------------------------------------------

def test_invalid_cron_and_time_zone_are_recorded_and_the_rest_runs(app, raw_conn, caplog):
    app.conf.beat_schedule = {
        "bad-cron": {"task": TASK, "schedule": "61 * * * *"},
        "bad-zone": {"task": TASK, "schedule": crontab(minute=0), "timezone": "Europe/Londn"},
        "good": {"task": TASK, "schedule": crontab(minute=0)},
    }
    beat = Beat(app)
    with caplog.at_level(logging.ERROR, logger="sqlq.beat"):
        report = beat.sync_config(T0)
    assert sorted(report.errors) == ["bad-cron", "bad-zone"]
    assert "schedule 'bad-cron'" in caplog.text and "schedule 'bad-zone'" in caplog.text
    bad_cron, bad_zone = get_schedule(app, "bad-cron"), get_schedule(app, "bad-zone")
    assert "schedule 'bad-cron'" in bad_cron.last_error and "minute field '61'" in bad_cron.last_error
    assert "schedule 'bad-zone'" in bad_zone.last_error and "Did you mean 'Europe/London'" in bad_zone.last_error
    assert bad_cron.next_fire_at is None and bad_zone.next_fire_at is None
    assert [f.schedule for f in beat.run_once(Z(2026, 5, 1, 13, 0))] == ["good"]


def test_unknown_task_is_skipped_when_the_app_knows_its_tasks(basic_app, raw_conn, caplog):
    basic_app.conf.beat_schedule = {
        "typo": {"task": "tests.apps.basic.ad", "schedule": crontab(minute=0)},
        "ok": {"task": "tests.apps.basic.add", "schedule": crontab(minute=0), "args": [1, 2]},
    }
    beat = Beat(basic_app)
    beat.sync_config(T0)
    with caplog.at_level(logging.ERROR, logger="sqlq.beat"):
        fired = beat.run_once(Z(2026, 5, 1, 13, 0))
    assert [f.schedule for f in fired] == ["ok"]
    typo = get_schedule(basic_app, "typo")
    assert "schedule 'typo'" in typo.last_error and "'tests.apps.basic.ad' is not registered" in typo.last_error
    assert "schedule 'typo'" in caplog.text
    assert typo.next_fire_at == Z(2026, 5, 1, 14, 0)  # skipped, not retried in a tight loop
    assert get_schedule(basic_app, "ok").last_error is None
    assert jobs(raw_conn, basic_app.conf.schema, "tests.apps.basic.ad") == []


def test_a_failing_send_is_recorded_and_rolled_back_alone(app, raw_conn):
    app.conf.beat_schedule = {"bad": {"task": TASK, "schedule": 60, "options": {"priority": 10**6}},
                              "good": {"task": TASK, "schedule": 60}}
    beat = Beat(app)
    beat.sync_config(T0)
    assert [f.schedule for f in beat.run_once(Z(2026, 5, 1, 12, 1))] == ["good"]
    bad = get_schedule(app, "bad")
    assert "cannot send task 'tests.report'" in bad.last_error and "priority" in bad.last_error
    assert sent(raw_conn, app.conf.schema, "bad") == []  # no tick row without its job
    assert bad.next_fire_at == Z(2026, 5, 1, 12, 2)


def test_entries_that_cannot_be_stored_are_reported_and_skipped(app, caplog):
    app.conf.beat_schedule = {
        "no-task": {"schedule": 60},
        "celery-only-key": {"task": TASK, "schedule": 60, "relative": True},
        "not-json": {"task": TASK, "schedule": 60, "args": [object()]},
        "negative": {"task": TASK, "schedule": -5},
        "ok": {"task": TASK, "schedule": 60},
    }
    with caplog.at_level(logging.ERROR, logger="sqlq.beat"):
        report = Beat(app).sync_config(T0)
    assert report.synced == ["ok"]
    assert "'task' must be a task name" in report.errors["no-task"]
    assert "unknown key(s) 'relative'" in report.errors["celery-only-key"]
    assert "JSON-serializable" in report.errors["not-json"]
    assert "must be positive" in report.errors["negative"]
    assert [r.name for r in list_schedules(app)] == ["ok"]


def test_add_schedule_rejects_what_cannot_work_naming_the_schedule(basic_app):
    with pytest.raises(ScheduleError, match=r"schedule 'nightly'.*hour field '25'"):
        add_schedule(basic_app, "nightly", "tests.apps.basic.add", "0 25 * * *")
    with pytest.raises(ScheduleError, match=r"schedule 'nightly'.*Unknown time zone 'Mars/Olympus'"):
        add_schedule(basic_app, "nightly", "tests.apps.basic.add", "0 2 * * *", timezone="Mars/Olympus")
    with pytest.raises(ScheduleError, match=r"schedule 'nightly'.*'tests.apps.basic.nope' is not registered"):
        add_schedule(basic_app, "nightly", "tests.apps.basic.nope", "0 2 * * *")
    with pytest.raises(ScheduleError, match=r"schedule 'nightly'.*unknown option\(s\) 'link'"):
        add_schedule(basic_app, "nightly", "tests.apps.basic.add", "0 2 * * *", options={"link": "x"})
    assert list_schedules(basic_app) == []


# --- config sync and the operations behind `sqlq schedule` ------------------------------------------

def test_sync_owns_config_rows_only(app):
    add_schedule(app, "by-hand", TASK, 300, now=T0)
    app.conf.beat_schedule = {"a": {"task": TASK, "schedule": 60}, "b": {"task": TASK, "schedule": 120}}
    Beat(app).sync_config(T0)
    assert {(r.name, r.source) for r in list_schedules(app)} == {("a", "config"), ("b", "config"),
                                                                 ("by-hand", "manual")}
    app.conf.beat_schedule = {"a": {"task": TASK, "schedule": 60}}
    report = Beat(app).sync_config(T0)
    assert report.removed == ["b"]
    assert [r.name for r in list_schedules(app)] == ["a", "by-hand"]


def test_resync_keeps_cursor_and_pause_unless_the_timing_changes(app):
    app.conf.beat_schedule = {"a": {"task": TASK, "schedule": crontab(minute="*/15")}}
    beat = Beat(app)
    beat.sync_config(T0)
    beat.run_once(Z(2026, 5, 1, 12, 16))
    assert pause_schedule(app, "a") is True
    before = get_schedule(app, "a")
    assert before.next_fire_at == Z(2026, 5, 1, 12, 30)

    app.conf.beat_schedule = {"a": {"task": TASK, "schedule": crontab(minute="*/15"), "args": [1]}}
    Beat(app).sync_config(Z(2026, 5, 1, 13, 0))  # a restart hours later: same timing
    after = get_schedule(app, "a")
    assert (after.next_fire_at, after.enabled, after.args, after.total_run_count) == (before.next_fire_at, False, [1], 1)

    app.conf.beat_schedule = {"a": {"task": TASK, "schedule": crontab(minute="*/10")}}
    Beat(app).sync_config(Z(2026, 5, 1, 13, 0))
    assert get_schedule(app, "a").next_fire_at == Z(2026, 5, 1, 13, 10)


def test_pause_and_resume_skip_the_ticks_in_between(app, raw_conn):
    add_schedule(app, "m", TASK, crontab(minute="*"), now=T0)
    beat = Beat(app)
    assert len(beat.run_once(Z(2026, 5, 1, 12, 1))) == 1
    assert pause_schedule(app, "m") is True
    assert pause_schedule(app, "m") is False
    assert beat.run_once(Z(2026, 5, 1, 12, 30)) == []
    assert resume_schedule(app, "m", now=Z(2026, 5, 1, 12, 30, 30)) is True
    assert resume_schedule(app, "m") is False
    assert [f.tick for f in beat.run_once(Z(2026, 5, 1, 12, 31))] == [Z(2026, 5, 1, 12, 31)]
    assert len(jobs(raw_conn, app.conf.schema)) == 2


def test_run_now_sends_once_without_moving_the_schedule(app, raw_conn):
    add_schedule(app, "m", TASK, 3600, args=[5], now=T0)
    before = get_schedule(app, "m")
    result = run_now(app, "m")
    [(job_id, _queue, _prio, headers, args, _kwargs)] = jobs(raw_conn, app.conf.schema)
    assert (job_id, args, headers) == (result.id, [5], {"periodic_task_name": "m"})
    after = get_schedule(app, "m")
    assert (after.next_fire_at, after.total_run_count) == (before.next_fire_at, 0)


def test_add_replace_and_remove(app, raw_conn):
    row = add_schedule(app, "m", TASK, timedelta(minutes=5), timezone="Asia/Tokyo", now=T0)
    assert (row.source, row.interval_seconds, row.timezone, row.next_fire_at) == (
        "manual", 300.0, "Asia/Tokyo", Z(2026, 5, 1, 12, 5))
    with pytest.raises(ScheduleError, match="schedule 'm': already exists"):
        add_schedule(app, "m", TASK, 60)
    assert add_schedule(app, "m", TASK, 60, replace=True, now=T0).interval_seconds == 60.0
    Beat(app).run_once(Z(2026, 5, 1, 12, 1))
    assert remove_schedule(app, "m").name == "m"
    ticks_left = raw_conn.execute(f'SELECT count(*) FROM "{app.conf.schema}".schedule_ticks').fetchone()[0]
    assert ticks_left == 0  # the tick history goes with it
    with pytest.raises(ScheduleError, match="no schedule named 'm'"):
        remove_schedule(app, "m")
    for operation in (pause_schedule, resume_schedule, run_now, get_schedule):
        with pytest.raises(ScheduleError, match="no schedule named 'm'"):
            operation(app, "m")


def test_a_config_schedule_cannot_be_replaced_by_hand(app):
    app.conf.beat_schedule = {"a": {"task": TASK, "schedule": 60}}
    Beat(app).sync_config(T0)
    with pytest.raises(ScheduleError, match="schedule 'a': is defined in beat_schedule"):
        add_schedule(app, "a", TASK, 30, replace=True)
    assert get_schedule(app, "a").interval_seconds == 60.0
