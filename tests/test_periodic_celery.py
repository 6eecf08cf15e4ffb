"""Celery's periodic-tasks guide on sqlq: ``app.add_periodic_task``, the crontab day rule and solar
schedules, stored in the schedules table and sent by a real beat (on an injected clock)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from click.testing import CliRunner

from sqlq import App, crontab
from sqlq.cli import main
from sqlq.errors import ScheduleError
from sqlq.periodic import add_schedule, get_schedule, list_schedules
from sqlq.periodic.beat import Beat
from sqlq.periodic.timing import next_fire, solar

LONDON = (51.5074, -0.1278)


def Z(*args: int) -> datetime:  # noqa: N802 - reads like the ISO 'Z' suffix
    return datetime(*args, tzinfo=UTC)


def jobs_of(conn: psycopg.Connection, schema: str, name: str) -> list[dict]:
    """The jobs beat sent for schedule ``name``, by tick."""
    rows = conn.execute(
        f"SELECT (headers->>'periodic_tick')::timestamptz, task, queue, priority, args::text, kwargs::text "
        f"FROM \"{schema}\".jobs WHERE headers->>'periodic_task_name' = %s ORDER BY 1", (name,)).fetchall()
    return [{"tick": r[0], "task": r[1], "queue": r[2], "priority": r[3], "args": json.loads(r[4]),
             "kwargs": json.loads(r[5])} for r in rows]


def test_add_periodic_task_entries_are_stored_and_sent_by_beat(app: App, raw_conn, schema):
    @app.task(name="proj.tasks.add")
    def add(x, y):
        return x + y

    # a signature is a mapping with Celery's keys (sqlq.canvas.Signature is a dict subclass)
    sig = {"task": "proj.tasks.add", "args": [2], "kwargs": {}, "options": {"queue": "low"}, "immutable": False}
    default_name = app.add_periodic_task(timedelta(minutes=10), sig, args=(1,), priority=5)
    assert default_name == "proj.tasks.add(1, 2)"  # Celery's key: the call, extra args prepended
    named = app.add_periodic_task(30.0, add, "pulse", args=(3, 4), expires=25)
    assert named == "pulse"
    first_monday = crontab(minute=0, hour=9, day_of_week="monday", day_of_month="1-7")
    app.add_periodic_task(first_monday, add, "first-monday", kwargs={"x": 1, "y": 1})
    assert set(app.conf.beat_schedule) == {"proj.tasks.add(1, 2)", "pulse", "first-monday"}

    start = Z(2026, 6, 1)  # a Monday
    beat = Beat(app, clock=lambda: start)
    report = beat.sync_config(now=start)
    assert sorted(report.synced) == ["first-monday", "proj.tasks.add(1, 2)", "pulse"] and not report.errors
    rows = {r.name: r for r in list_schedules(app)}
    assert rows["first-monday"].cron == "days=and 0 9 1-7 * 1"
    assert rows["first-monday"].next_fire_at == Z(2026, 6, 1, 9)
    assert rows["pulse"].interval_seconds == 30.0 and rows["pulse"].options == {"expires": 25}
    assert rows["proj.tasks.add(1, 2)"].options == {"queue": "low", "priority": 5}

    beat.run_once(now=Z(2026, 6, 1, 9, 0, 30))
    [ten] = jobs_of(raw_conn, schema, "proj.tasks.add(1, 2)")
    assert (ten["queue"], ten["priority"], ten["args"]) == ("low", 5, [1, 2])
    [monday] = jobs_of(raw_conn, schema, "first-monday")
    assert monday["tick"] == Z(2026, 6, 1, 9) and monday["kwargs"] == {"x": 1, "y": 1}
    assert get_schedule(app, "first-monday").next_fire_at == Z(2026, 7, 6, 9)  # not Tuesday the 2nd


def test_first_monday_fires_on_first_mondays_only_and_a_cron_string_on_either(app: App, raw_conn, schema):
    app.conf.beat_catchup = "backfill"
    app.add_periodic_task(crontab(minute=0, hour=9, day_of_week=1, day_of_month="1-7"), "tests.report",
                          "celery-rule")
    app.conf.beat_schedule = {**app.conf.beat_schedule,
                              "cron-rule": {"task": "tests.report", "schedule": "0 9 1-7 * 1"}}
    beat = Beat(app)
    beat.sync_config(now=Z(2026, 5, 31))
    beat.run_once(now=Z(2026, 7, 31))
    assert [j["tick"].date().isoformat() for j in jobs_of(raw_conn, schema, "celery-rule")] == [
        "2026-06-01", "2026-07-06"]
    cron_days = [j["tick"].day for j in jobs_of(raw_conn, schema, "cron-rule") if j["tick"].month == 6]
    assert cron_days == [1, 2, 3, 4, 5, 6, 7, 8, 15, 22, 29]


def test_bad_entries_fail_in_add_periodic_task(app: App):
    with pytest.raises(ScheduleError, match="unknown option"):
        app.add_periodic_task(10, "tests.report", link="tests.other")
    with pytest.raises(ScheduleError, match="names no task"):
        app.add_periodic_task(10, {"args": []})
    with pytest.raises(ScheduleError, match="JSON"):
        app.add_periodic_task(10, "tests.report", args=(object(),))
    with pytest.raises(ScheduleError, match="expected a signature"):
        app.add_periodic_task(10, 42)
    assert not app.conf.beat_schedule  # nothing half-added


def test_an_unnamed_task_added_twice_replaces_the_first_and_says_so(app: App, caplog):
    app.add_periodic_task(10, "tests.report", args=(1,))
    app.add_periodic_task(20, "tests.report", args=(1,))
    assert app.conf.beat_schedule["tests.report(1)"]["schedule"] == 20
    assert any("replaces an earlier unnamed one" in r.getMessage() for r in caplog.records)


def test_solar_schedule_survives_a_beat_restart(app: App, raw_conn, schema, database_url):
    sunrise = solar("sunrise", *LONDON)
    add_schedule(app, "sunrise", "tests.report", sunrise, now=Z(2026, 6, 1))
    row = get_schedule(app, "sunrise")
    assert row.cron == "solar sunrise 51.5074 -0.1278"
    expected = next_fire(sunrise, Z(2026, 6, 1))
    assert row.next_fire_at == expected and abs(expected - Z(2026, 6, 1, 3, 49)) < timedelta(minutes=1)

    # another process: a new app on the same schema, knowing nothing of the schedule but its row
    restarted = App("tests", database_url=database_url, schema=schema)
    try:
        beat = Beat(restarted)
        beat.sync_config(now=Z(2026, 6, 1, 1))
        assert beat.run_once(now=expected - timedelta(seconds=1)) == []
        [fired] = beat.run_once(now=expected + timedelta(seconds=5))
        assert fired.tick == expected
        after = get_schedule(restarted, "sunrise")
        assert after.next_fire_at == next_fire(sunrise, expected) and after.last_error is None
    finally:
        restarted.close()
    assert [j["tick"] for j in jobs_of(raw_conn, schema, "sunrise")] == [expected]


def test_solar_and_celery_crontab_in_sqlq_schedule_list(basic_app, monkeypatch):
    monkeypatch.setattr(basic_app.conf, "beat_schedule", {})  # (the module's app outlives this test)
    add_schedule(basic_app, "dusk", "tests.apps.basic.add", solar("dusk_civil", 48.8566, 2.3522), args=[1, 2])
    basic_app.add_periodic_task(crontab(minute=0, hour=9, day_of_week="mon", day_of_month="1-7"),
                                "tests.apps.basic.add", "first-monday", args=(1, 1))
    Beat(basic_app).sync_config()
    result = CliRunner().invoke(main, ["-A", "tests.apps.basic", "schedule", "list"])
    assert result.exit_code == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line and not line.startswith(" ")}
    assert "solar dusk_civil at 48.8566, 2.3522" in lines["dusk"] and " on " in lines["dusk"]
    assert "cron '0 9 1-7 * mon' (day of month and day of week)" in lines["first-monday"]
    assert "!" not in result.stdout  # no schedule in error


def test_celery_guide_setup_periodic_tasks(schema, database_url, raw_conn):
    """The periodic-tasks guide's own example, with only the import changed (needs the "app" part of
    issue #12: app.on_after_configure and app.finalize(), which Beat calls)."""
    app = App("proj", database_url=database_url, schema=schema)
    app.migrate()
    try:
        @app.on_after_configure.connect
        def setup_periodic_tasks(sender, **kwargs):
            # Calls test('hello') every 10 seconds.
            sender.add_periodic_task(10.0, test.s("hello"), name="add every 10")
            # Calls test('world') every 30 seconds
            sender.add_periodic_task(30.0, test.s("world"), expires=10)
            # Executes every Monday morning at 7:30 a.m.
            sender.add_periodic_task(crontab(hour=7, minute=30, day_of_week=1), test.s("Happy Mondays!"))

        @app.task
        def test(arg):
            print(arg)

        beat = Beat(app)  # finalizes the app: on_after_configure runs setup_periodic_tasks
        beat.sync_config(now=Z(2026, 6, 1))
        rows = {r.name: r for r in list_schedules(app)}
        world, mondays = f"{test.name}('world')", f"{test.name}('Happy Mondays!')"
        assert set(rows) == {"add every 10", world, mondays}
        assert rows["add every 10"].args == ["hello"] and rows[world].options == {"expires": 10}
        assert rows[mondays].cron == "30 7 * * 1" and rows[mondays].next_fire_at == Z(2026, 6, 1, 7, 30)
    finally:
        app.close()
