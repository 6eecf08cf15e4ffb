"""Config schedules belong to the app that declared them: two apps' beats sharing one schema never
remove each other's schedules, and a beat says at WARNING what it leaves alone or takes over."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import psycopg
import pytest

from sqlq import App
from sqlq.periodic import add_schedule, sync_config

TASK = "tests.report"


@pytest.fixture
def two_apps(schema: str, database_url: str) -> Iterator[tuple[App, App]]:
    first = App("billing", database_url=database_url, schema=schema)
    second = App("mailer", database_url=database_url, schema=schema)
    first.migrate()
    for app in (first, second):
        app.task(name=TASK)(lambda: None)
    yield first, second
    first.close()
    second.close()


def _sync(app: App) -> list[str]:
    with app.connection() as conn:
        return sync_config(app, conn).removed


def _owners(conn: psycopg.Connection, schema: str) -> dict[str, str | None]:
    return dict(conn.execute(f'SELECT name, owner FROM "{schema}".schedules ORDER BY name').fetchall())


def test_a_second_apps_beat_keeps_the_first_apps_schedules(two_apps, raw_conn, schema, caplog):
    billing, mailer = two_apps
    billing.conf.beat_schedule = {"invoices": {"task": TASK, "schedule": 60}}
    mailer.conf.beat_schedule = {"digest": {"task": TASK, "schedule": 300}}
    assert _sync(billing) == []
    with caplog.at_level(logging.WARNING, logger="sqlq"):
        assert _sync(mailer) == []
    assert _owners(raw_conn, schema) == {"invoices": "billing", "digest": "mailer"}
    assert "left schedule(s) of app 'billing' alone: invoices" in caplog.text


def test_a_beat_removes_only_its_own_stale_schedules(two_apps, raw_conn, schema):
    billing, mailer = two_apps
    billing.conf.beat_schedule = {"invoices": {"task": TASK, "schedule": 60},
                                  "reminders": {"task": TASK, "schedule": 60}}
    mailer.conf.beat_schedule = {"digest": {"task": TASK, "schedule": 300}}
    _sync(billing)
    _sync(mailer)
    billing.conf.beat_schedule = {"invoices": {"task": TASK, "schedule": 60}}
    assert _sync(billing) == ["reminders"]
    assert _owners(raw_conn, schema) == {"invoices": "billing", "digest": "mailer"}


def test_a_schedule_both_apps_declare_is_taken_over_with_a_warning(two_apps, raw_conn, schema, caplog):
    billing, mailer = two_apps
    billing.conf.beat_schedule = {"cleanup": {"task": TASK, "schedule": 60}}
    mailer.conf.beat_schedule = {"cleanup": {"task": TASK, "schedule": 120}}
    _sync(billing)
    with caplog.at_level(logging.WARNING, logger="sqlq"):
        _sync(mailer)
    assert _owners(raw_conn, schema) == {"cleanup": "mailer"}
    assert "schedule 'cleanup' was declared by 'billing' and is now mailer's" in caplog.text


def test_beat_schedule_owner_setting_names_the_owner(two_apps, raw_conn, schema):
    billing, _ = two_apps
    billing.conf.beat_schedule_owner = "billing-eu"
    billing.conf.beat_schedule = {"invoices": {"task": TASK, "schedule": 60}}
    _sync(billing)
    assert _owners(raw_conn, schema) == {"invoices": "billing-eu"}


def test_schedules_without_an_owner_are_left_in_place_and_named(two_apps, raw_conn, schema, caplog):
    """Rows written before owners existed (owner NULL) are no one's to delete: a beat leaves them and
    says how to remove them; hand-added schedules are never touched either."""
    billing, _ = two_apps
    billing.conf.beat_schedule = {"old": {"task": TASK, "schedule": 60}}
    _sync(billing)
    raw_conn.execute(f'UPDATE "{schema}".schedules SET owner = NULL')
    add_schedule(billing, "manual", TASK, 30)
    billing.conf.beat_schedule = {}
    with caplog.at_level(logging.WARNING, logger="sqlq"):
        assert _sync(billing) == []
    assert _owners(raw_conn, schema) == {"old": None, "manual": None}
    assert "left schedule(s) without an owner alone: old" in caplog.text
    assert "sqlq schedule remove" in caplog.text
