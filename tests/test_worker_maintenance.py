"""Cluster-wide maintenance — rescue, promotion of due scheduled jobs, deletion
of expired results — done by one worker at a time (an advisory lock)."""

from __future__ import annotations

import psycopg
import pytest

from sqlq.worker.worker import Worker
from tests.apps.harness import claim_as_dead_worker, job_row, result_row, scalar, wait_for


@pytest.fixture
def echo(app):
    @app.task
    def echo(x):
        return x

    return echo


def test_maintenance_is_done_by_one_worker_at_a_time(app, raw_conn, schema, database_url, echo, monkeypatch):
    monkeypatch.setenv("SQLQ_WORKER_LOST_TIMEOUT", "2")
    result = echo.delay(1)
    dead = claim_as_dead_worker(app, result)
    raw_conn.execute(f"UPDATE \"{schema}\".workers SET heartbeat_at = now() - interval '1 hour' WHERE id = %s",
                     (dead,))
    worker = Worker(app, pool="threads", concurrency=1)  # not started: only its maintenance is used

    with psycopg.connect(database_url) as holder:  # another worker, in the middle of its own round
        assert app.store.try_xact_lock(holder, app.store.lock_key("maintenance"))
        with app.connection() as conn:
            worker._maintain(conn)
        assert job_row(raw_conn, schema, result.id)["worker_id"] is not None  # it kept its hands off
        holder.rollback()  # that round is over: the lock goes with its transaction

    with app.connection() as conn:
        worker._maintain(conn)
    row = job_row(raw_conn, schema, result.id)
    assert row["state"] == "available" and row["worker_id"] is None
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.workers", schema=schema) == 0


def test_any_worker_promotes_due_scheduled_jobs_of_every_queue(app, run_worker, raw_conn, schema, echo):
    due = echo.apply_async((1,), queue="nobody-consumes-this", countdown=3600)
    not_due = echo.apply_async((2,), queue="nobody-consumes-this", countdown=3600)
    raw_conn.execute(f"UPDATE \"{schema}\".jobs SET run_at = now() - interval '1 second' WHERE id = %s", (due.id,))
    with run_worker(app, queues=["elsewhere"]):
        wait_for(lambda: job_row(raw_conn, schema, due.id)["state"] == "available",
                 message="the due job to be promoted")
    assert job_row(raw_conn, schema, not_due.id)["state"] == "scheduled"
    assert job_row(raw_conn, schema, due.id)["worker_id"] is None


def test_results_older_than_result_expires_are_deleted(app, run_worker, raw_conn, schema, echo, monkeypatch):
    monkeypatch.setenv("SQLQ_RESULT_EXPIRES", "3600")
    monkeypatch.setenv("SQLQ_WORKER_MAINTENANCE_INTERVAL", "0.2")
    old, fresh = echo.delay("old"), echo.delay("fresh")
    with run_worker(app) as worker:
        assert old.get(timeout=30) == "old" and fresh.get(timeout=30) == "fresh"
        raw_conn.execute(f"UPDATE \"{schema}\".results SET finished_at = now() - interval '2 hours' WHERE id = %s",
                         (old.id,))
        wait_for(lambda: result_row(raw_conn, schema, old.id) is None, message="the old result to be deleted")
    assert result_row(raw_conn, schema, fresh.id)["state"] == "SUCCESS"
    assert worker.processed == 2
