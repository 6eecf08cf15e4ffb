"""Heartbeats, rescue of a dead worker's jobs, the stale-worker guard, prefork
children dying mid-task, and poison jobs. (The multi-process crash drain is in
test_worker_crash_drain.py.)"""

from __future__ import annotations

import os
import signal

import pytest

from sqlq import WorkerLostError
from sqlq.store import Outcome, RetryRequest
from tests.apps.harness import (
    claim_as_dead_worker,
    create_runs_table,
    job_row,
    result_row,
    runs_of,
    scalar,
    wait_for,
)


@pytest.fixture
def fast_rescue(monkeypatch):
    """A worker is presumed dead 2 s after its last heartbeat; maintenance runs twice a second."""
    monkeypatch.setenv("SQLQ_WORKER_LOST_TIMEOUT", "2")
    monkeypatch.setenv("SQLQ_WORKER_MAINTENANCE_INTERVAL", "0.5")
    monkeypatch.setenv("SQLQ_WORKER_HEARTBEAT_INTERVAL", "0.3")


def test_heartbeat_row_while_running_gone_after_stop(app, run_worker, raw_conn, schema, monkeypatch):
    monkeypatch.setenv("SQLQ_WORKER_HEARTBEAT_INTERVAL", "0.1")
    query = "SELECT heartbeat_at FROM {s}.workers WHERE id = %s"
    with run_worker(app, pool="threads", concurrency=3, queues=["a", "b"]) as worker:
        first = wait_for(lambda: scalar(raw_conn, query, worker.id, schema=schema), message="the worker row")
        row = raw_conn.execute(f'SELECT hostname, pid, queues, concurrency, pool FROM "{schema}".workers').fetchone()
        assert row == (worker.hostname, os.getpid(), ["a", "b"], 3, "threads")
        wait_for(lambda: scalar(raw_conn, query, worker.id, schema=schema) > first, message="a heartbeat")
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.workers", schema=schema) == 0


def test_dead_workers_jobs_are_rescued_and_its_late_writes_ignored(app, run_worker, raw_conn, schema,
                                                                    fast_rescue):
    @app.task
    def late_ack():
        return "ran again"

    @app.task(acks_late=False)
    def early_ack():
        return "must not run twice"

    again = late_ack.delay()
    lost = early_ack.delay()
    dead = claim_as_dead_worker(app, again, lost)

    # a worker on another queue still does the cluster-wide rescue, but cannot run the job
    with run_worker(app, queues=["elsewhere"]):
        wait_for(lambda: job_row(raw_conn, schema, again.id)["state"] == "available", timeout=30,
                 message="the acks_late job to be handed back")
        with pytest.raises(WorkerLostError, match="acks_late is off"):
            lost.get(timeout=30)
    row = job_row(raw_conn, schema, again.id)
    assert row["worker_id"] is None and row["attempt"] == 1
    assert row["last_error"].startswith("sqlq.errors.WorkerLostError: ")
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.workers WHERE id = %s", dead, schema=schema) == 0
    assert result_row(raw_conn, schema, lost.id)["attempts"] == 1

    # the presumed-dead worker wakes up and reports: nothing it says counts any more
    with app.connection() as conn:
        assert app.store.finish(conn, dead, [Outcome(id=again.id, attempt=1, state="SUCCESS")]) == 0
        assert app.store.retry(conn, dead, [RetryRequest(id=again.id, attempt=1, delay=0, error=None)]) == 0
        assert app.store.finish(conn, dead, [Outcome(id=lost.id, attempt=1, state="SUCCESS")]) == 0
    assert result_row(raw_conn, schema, lost.id)["state"] == "FAILURE"

    with run_worker(app):
        assert again.get(timeout=30) == "ran again"
    row = result_row(raw_conn, schema, again.id)
    assert row["attempts"] == 2 and row["state"] == "SUCCESS"


def test_stale_finish_after_a_rescue_and_rerun_is_ignored(app, run_worker, raw_conn, schema, fast_rescue):
    @app.task
    def work():
        return work.request.attempt

    result = work.delay()
    dead = claim_as_dead_worker(app, result)
    with run_worker(app) as worker:
        assert result.get(timeout=30) == 2
    with app.connection() as conn:
        assert app.store.finish(conn, dead, [Outcome(id=result.id, attempt=1, state="FAILURE",
                                                     exc_type="Stale", exc_message="late")]) == 0
    row = result_row(raw_conn, schema, result.id)
    assert row["state"] == "SUCCESS" and str(row["worker_id"]) == worker.id


def test_prefork_child_killed_mid_task_is_noticed_at_once(basic_app, run_worker, raw_conn, schema, monkeypatch):
    from tests.apps import basic

    # only the parent noticing the dead child can hand the job back before this timeout
    monkeypatch.setenv("SQLQ_WORKER_LOST_TIMEOUT", "600")
    create_runs_table(raw_conn, schema)
    result = basic.slow_first_attempt.delay(120)
    with run_worker(basic_app, pool="prefork", concurrency=1):
        child = wait_for(lambda: scalar(raw_conn, "SELECT pid FROM {s}.runs WHERE job_id = %s", result.id,
                                        schema=schema), timeout=60, message="the task to start")
        os.kill(child, signal.SIGKILL)
        assert result.get(timeout=60) == 2
    assert runs_of(raw_conn, schema, result.id) == 2
    assert scalar(raw_conn, "SELECT count(DISTINCT pid) FROM {s}.runs", schema=schema) == 2


def test_poison_job_fails_after_max_lost_attempts_and_the_worker_goes_on(basic_app, run_worker, raw_conn,
                                                                           schema, monkeypatch):
    from tests.apps import basic

    monkeypatch.setenv("SQLQ_WORKER_LOST_TIMEOUT", "600")
    poison = basic.suicide.delay()
    once = basic.suicide_acks_early.delay()
    with run_worker(basic_app, pool="prefork", concurrency=1):
        with pytest.raises(WorkerLostError, match="3 times in a row"):
            poison.get(timeout=90)
        with pytest.raises(WorkerLostError, match="acks_late is off"):
            once.get(timeout=60)
        assert basic.add.delay(1, 1).get(timeout=60) == 2
    assert result_row(raw_conn, schema, poison.id)["attempts"] == basic_app.conf.worker_lost_max_attempts == 3
    assert result_row(raw_conn, schema, once.id)["attempts"] == 1


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_a_worker_presumed_dead_leaves_its_prefetched_jobs_to_the_queue(basic_app, run_worker, raw_conn, schema,
                                                                          monkeypatch, pool):
    """A live worker whose row was taken for dead (its jobs rescued) must not also run the jobs it
    had prefetched: another worker may run them already. It re-registers and goes on; each job runs
    once, except those it started before it found out (at its next heartbeat: one or two here)."""
    from tests.apps import basic

    monkeypatch.setenv("SQLQ_WORKER_LOST_TIMEOUT", "600")
    monkeypatch.setenv("SQLQ_WORKER_HEARTBEAT_INTERVAL", "0.2")
    create_runs_table(raw_conn, schema)
    results = [basic.recorded.delay(0.3) for _ in range(12)]
    with run_worker(basic_app, pool=pool, concurrency=1, prefetch_multiplier=12) as worker:
        held = "SELECT count(*) FROM {s}.jobs WHERE worker_id = %s"
        wait_for(lambda: scalar(raw_conn, held, worker.id, schema=schema) >= 10, message="the worker's prefetch")
        # what RESCUE does to a worker presumed dead: its row goes, its jobs are handed back (in one
        # transaction: a heartbeat in between would find the row gone and hand them back itself)
        with basic_app.connection() as conn, conn.transaction():
            conn.execute(f'DELETE FROM "{schema}".workers WHERE id = %s', (worker.id,))
            requeued, _ = basic_app.store.rescue(conn, 600.0, 3)
        assert requeued >= 8
        for result in results:
            assert result.get(timeout=60) in (1, 2)
    runs = raw_conn.execute(f'SELECT job_id, count(*) FROM "{schema}".runs GROUP BY job_id').fetchall()
    assert len(runs) == 12
    assert sum(n - 1 for _, n in runs) <= 2, runs  # not the ten or so it held unstarted


def test_a_worker_whose_session_was_ended_takes_its_liveness_lock_back(app, run_worker, raw_conn, schema,
                                                                         monkeypatch, caplog):
    """pg_terminate_backend on a worker's housekeeping session frees its liveness lock, and the other
    workers take a lock free for a second for a dead worker: the worker sees its session gone from
    the socket, without waiting for a statement to fail, makes it again and takes the lock back, so
    it is not presumed dead (its jobs are not rescued from under it)."""
    import logging

    monkeypatch.setenv("SQLQ_WORKER_LOST_TIMEOUT", "600")  # only the lock can give it away
    holder = ("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
              "AND objid = %s::int4::oid")
    with caplog.at_level(logging.WARNING, logger="sqlq"), run_worker(app) as a, run_worker(app) as b:
        old = wait_for(lambda: scalar(raw_conn, holder, a.lock_key), message="a's liveness lock")
        wait_for(lambda: scalar(raw_conn, holder, b.lock_key), message="b's liveness lock")
        assert raw_conn.execute("SELECT pg_terminate_backend(%s)", (old,)).fetchone()[0]
        new = wait_for(lambda: scalar(raw_conn, holder, a.lock_key) not in (None, old), message="a's lock again")
        assert new
        seen = scalar(raw_conn, "SELECT heartbeat_at FROM {s}.workers WHERE id = %s", a.id, schema=schema)
        # a beats again later: by then b has looked at the locks several times (every second or so)
        wait_for(lambda: (scalar(raw_conn, "SELECT heartbeat_at FROM {s}.workers WHERE id = %s", a.id,
                                 schema=schema) or seen) > seen, timeout=60, message="a's next heartbeat")
        assert scalar(raw_conn, "SELECT count(*) FROM {s}.dead_workers WHERE id = %s", a.id, schema=schema) == 0
    assert not [r for r in caplog.records if "presumed dead" in r.getMessage() or "rescued jobs" in r.getMessage()]
