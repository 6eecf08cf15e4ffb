"""Exactly-once effects. A transactional task's writes and its SUCCESS commit in
one transaction; a failure, or losing the job to a rescue meanwhile, rolls the writes back."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import text

from sqlq import signals
from tests.apps.harness import job_row, result_row, scalar, wait_for


@pytest.fixture
def ledger(raw_conn, schema) -> str:
    """A table of the application's own, in the same database as the queue."""
    raw_conn.execute(f'CREATE TABLE "{schema}".ledger (job_id uuid PRIMARY KEY, note text NOT NULL)')
    return f'"{schema}".ledger'


def _notes(conn: psycopg.Connection, ledger: str) -> list[tuple]:
    return conn.execute(f"SELECT job_id::text, note FROM {ledger} ORDER BY note").fetchall()


def test_writes_and_success_commit_together(app, run_worker, raw_conn, schema, ledger):
    @app.task(bind=True, transactional=True)
    def pay(self, note):
        self.connection.execute(text(f"INSERT INTO {ledger} (job_id, note) VALUES (:id, :note)"),
                                {"id": self.request.id, "note": note})
        return note.upper()

    result = pay.delay("paid")
    with run_worker(app):
        assert result.get(timeout=30) == "PAID"
    assert _notes(raw_conn, ledger) == [(result.id, "paid")]
    # one transaction wrote both rows: the same transaction id stamped them
    ledger_xid = raw_conn.execute(f"SELECT xmin::text FROM {ledger}").fetchone()[0]
    result_xid = scalar(raw_conn, "SELECT xmin::text FROM {s}.results WHERE id = %s", result.id, schema=schema)
    assert ledger_xid == result_xid
    assert result_row(raw_conn, schema, result.id)["attempts"] == 1


def test_session_writes_commit_with_the_outcome(app, run_worker, raw_conn, schema, ledger):
    @app.task(bind=True, transactional=True)
    def pay_with_session(self, note):
        self.connection.execute(text(f"INSERT INTO {ledger} (job_id, note) VALUES (:id, :note)"),
                                {"id": self.request.id, "note": note})
        self.session.execute(text(f"UPDATE {ledger} SET note = note || ' (via session)' WHERE job_id = :id"),
                             {"id": self.request.id})
        return "ok"

    result = pay_with_session.delay("paid")
    with run_worker(app):
        assert result.get(timeout=30) == "ok"
    assert _notes(raw_conn, ledger) == [(result.id, "paid (via session)")]


def test_a_failing_task_leaves_no_writes(app, run_worker, raw_conn, schema, ledger):
    @app.task(bind=True, transactional=True)
    def pay_then_fail(self):
        self.connection.execute(text(f"INSERT INTO {ledger} (job_id, note) VALUES (:id, 'half done')"),
                                {"id": self.request.id})
        raise RuntimeError("card declined")

    @app.task(bind=True, transactional=True)
    def unserializable(self):
        self.connection.execute(text(f"INSERT INTO {ledger} (job_id, note) VALUES (:id, 'bad return')"),
                                {"id": self.request.id})
        return object()

    failed = pay_then_fail.delay()
    bad_value = unserializable.delay()
    with run_worker(app):
        with pytest.raises(RuntimeError, match="card declined"):
            failed.get(timeout=30)
        with pytest.raises(Exception, match="cannot be serialized"):
            bad_value.get(timeout=30)
    assert _notes(raw_conn, ledger) == []
    assert result_row(raw_conn, schema, failed.id)["state"] == "FAILURE"


def test_writes_roll_back_when_the_job_was_taken_away(app, run_worker, raw_conn, schema, ledger, database_url):
    thief = str(uuid.uuid4())
    succeeded = []

    @app.task(bind=True, transactional=True)
    def pay_late(self):
        self.connection.execute(text(f"INSERT INTO {ledger} (job_id, note) VALUES (:id, 'paid twice?')"),
                                {"id": self.request.id})
        # meanwhile the job is rescued and handed to another worker (here: faked on its own connection)
        with psycopg.connect(database_url, autocommit=True) as other:
            other.execute(f'UPDATE "{schema}".jobs SET worker_id = %s WHERE id = %s', (thief, self.request.id))
        return "paid"

    def on_success(sender, **kwargs):
        succeeded.append(sender.name)

    signals.task_success.connect(on_success)
    try:
        result = pay_late.delay()
        with run_worker(app) as worker:
            wait_for(lambda: worker.processed == 1, message="the worker to finish the task")
    finally:
        signals.task_success.disconnect(on_success)
    assert _notes(raw_conn, ledger) == []
    assert result_row(raw_conn, schema, result.id) is None  # the outcome belongs to the new owner
    row = job_row(raw_conn, schema, result.id)
    assert row["state"] == "running" and str(row["worker_id"]) == thief
    assert succeeded == []  # nothing succeeded as far as this worker's hooks are concerned
