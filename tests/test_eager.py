"""Eager mode next to a real database: an eager call writes no job and no result, even on an app
whose schema is migrated; a transactional task gets a real connection whose writes commit when
it succeeds and roll back when it fails; eager and worker runs of the same task agree."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from sqlq.eager import apply
from tests.apps.harness import scalar


class Refused(Exception):
    pass


@pytest.fixture
def ledger(raw_conn, schema) -> str:
    raw_conn.execute(f'CREATE TABLE "{schema}".ledger (job_id text PRIMARY KEY, note text NOT NULL)')
    return f'"{schema}".ledger'


def _rows(raw_conn, schema):
    return (scalar(raw_conn, "SELECT count(*) FROM {s}.jobs", schema=schema),
            scalar(raw_conn, "SELECT count(*) FROM {s}.results", schema=schema))


def test_an_eager_call_writes_no_job_and_no_result(app, raw_conn, schema):
    @app.task(bind=True, max_retries=2)
    def flaky(self, x):
        if self.request.retries < 2:
            raise self.retry(countdown=30)
        return x

    @app.task
    def broken():
        raise Refused("no")

    assert apply(flaky, (1,)).get() == 1
    assert apply(broken).failed()
    assert _rows(raw_conn, schema) == (0, 0)


def test_a_transactional_task_commits_its_writes_when_it_succeeds(app, raw_conn, schema, ledger):
    @app.task(bind=True, transactional=True)
    def pay(self, note):
        self.connection.execute(text(f"INSERT INTO {ledger} (job_id, note) VALUES (:id, :note)"),
                                {"id": self.request.id, "note": note})
        self.session.execute(text(f"UPDATE {ledger} SET note = note || '!' WHERE job_id = :id"),
                             {"id": self.request.id})
        return note.upper()

    result = apply(pay, ("paid",), task_id="pay-1")
    assert result.get() == "PAID"
    assert raw_conn.execute(f"SELECT job_id, note FROM {ledger}").fetchall() == [("pay-1", "paid!")]
    assert _rows(raw_conn, schema) == (0, 0)  # the outcome is not recorded: there is no job


def test_a_transactional_task_that_fails_leaves_no_writes(app, raw_conn, ledger):
    @app.task(bind=True, transactional=True)
    def pay(self, note):
        self.connection.execute(text(f"INSERT INTO {ledger} (job_id, note) VALUES (:id, :note)"),
                                {"id": self.request.id, "note": note})
        raise Refused("card declined")

    result = apply(pay, ("paid",))
    assert result.failed() and isinstance(result.result, Refused)
    assert raw_conn.execute(f"SELECT count(*) FROM {ledger}").fetchone()[0] == 0


def test_eager_and_worker_runs_of_a_task_agree(app, run_worker):
    @app.task(bind=True)
    def describe(self, when, pair, *, tags):
        return {"when": when, "pair": pair, "tags": sorted(tags), "retries": self.request.retries}

    when = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    call = ((when, (1, 2)), {"tags": {"b", "a"}})
    eager_value = apply(describe, *call).get()
    sent = describe.apply_async(*call)
    with run_worker(app):
        assert sent.get(timeout=30) == eager_value == {"when": when, "pair": [1, 2], "tags": ["a", "b"],
                                                       "retries": 0}
