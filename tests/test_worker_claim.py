"""Batched claims in priority-then-FIFO order, only due jobs, NOTIFY wake-ups
and a LISTEN connection that comes back after it is killed."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from sqlq.notify import Listener
from sqlq.store import Outcome
from sqlq.store.fast import FastStatement
from sqlq.worker.worker import Worker
from tests.apps.harness import job_row, scalar, wait_for, wait_result

#: Far longer than any wait below: a job that runs in time was woken by NOTIFY, not by the poll.
SLOW_POLL = 120.0


def test_one_statement_claims_many_highest_priority_first_then_fifo(app, run_worker, raw_conn, schema):
    ran = []

    @app.task
    def note(label):
        ran.append(label)

    priorities = [0, 5, 0, 9, 5, 0, -1, 9]
    results = [note.apply_async((f"p{p}#{i}",), priority=p) for i, p in enumerate(priorities)]
    with run_worker(app, pool="solo", prefetch_multiplier=20):
        for r in results:
            r.get(timeout=30)
    expected = [f"p{p}#{i}" for i, p in sorted(enumerate(priorities), key=lambda e: (-e[1], e[0]))]
    assert ran == expected
    # claimed together: one statement, so one transaction timestamp for every job it took
    started = scalar(raw_conn, "SELECT count(DISTINCT started_at) FROM {s}.results", schema=schema)
    assert started == 1


def test_countdown_job_waits_in_the_table_not_in_the_worker(app, run_worker, raw_conn, schema):
    @app.task
    def later():
        return "ran"

    with run_worker(app) as worker:
        result = later.apply_async(countdown=2)
        due_at = scalar(raw_conn, "SELECT run_at FROM {s}.jobs WHERE id = %s", result.id, schema=schema)
        while scalar(raw_conn, "SELECT now() < %s", due_at):
            row = job_row(raw_conn, schema, result.id)
            if row is None:
                break  # finished: the assertions below say whether it was too early
            assert row["state"] == "scheduled" and row["worker_id"] is None, row
            assert worker._in_flight == 0  # nothing claimed: nothing held in memory either
        assert result.get(timeout=30) == "ran"
    row = wait_result(raw_conn, schema, result.id)
    assert row["started_at"] >= due_at


def _listen_backends(conn: psycopg.Connection, schema: str) -> list[int]:
    query = f'LISTEN "{schema}.jobs"'
    return [r[0] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE query = %s AND datname = current_database()", (query,))]


def _idle_worker(app, run_worker, notified: list):
    """A worker that polls so rarely that only a notification can wake it in time."""
    handle = run_worker(app)
    worker: Worker = handle.worker
    worker.poll_interval = SLOW_POLL
    original = worker._on_notify

    def spy(channel: str, payload: str) -> None:
        notified.append(payload)
        original(channel, payload)

    worker._on_notify = spy
    return handle


@pytest.fixture
def ping(app):
    @app.task
    def ping(x):
        return x

    return ping


def test_notify_wakes_an_idle_worker(app, run_worker, raw_conn, schema, ping):
    notified: list[str] = []
    with _idle_worker(app, run_worker, notified):
        wait_for(lambda: _listen_backends(raw_conn, schema), message="the worker to LISTEN")
        assert ping.delay(1).get(timeout=30) == 1  # the worker has claimed once and is now idle
        notified.clear()
        assert ping.delay(2).get(timeout=SLOW_POLL / 4) == 2
        assert "default" in notified


def test_lost_listen_connection_reconnects(app, run_worker, raw_conn, schema, ping):
    notified: list[str] = []
    with _idle_worker(app, run_worker, notified):
        [old] = wait_for(lambda: _listen_backends(raw_conn, schema), message="the worker to LISTEN")
        assert raw_conn.execute("SELECT pg_terminate_backend(%s)", (old,)).fetchone()[0]
        [new] = wait_for(lambda: [p for p in _listen_backends(raw_conn, schema) if p != old],
                         message="the listener to reconnect")
        assert new != old
        notified.clear()
        assert ping.delay(3).get(timeout=SLOW_POLL / 4) == 3
        assert "default" in notified


def test_a_listener_stops_at_once_and_hands_on_every_notification(database_url, raw_conn):
    """stop() wakes the listening thread through its socket pair instead of waiting out a timeout:
    a worker's exit and App.close() do not pay a polling interval."""
    received: list[str] = []
    listener = Listener(database_url, ["LISTEN sqlq_test_listener"],
                        lambda channel, payload: received.append(payload))
    listener.idle_check = 3600.0  # only the wake-up can end the wait within stop()'s join
    listener.start()
    try:
        for i in range(50):
            raw_conn.execute("SELECT pg_notify('sqlq_test_listener', %s)", (str(i),))
        wait_for(lambda: len(received) == 50, message="50 notifications")
        assert received == [str(i) for i in range(50)]
    finally:
        listener.stop()
    assert not listener._thread.is_alive()
    listener.stop()  # a second stop is harmless


def test_finishing_probes_the_primary_key_not_the_workers_running_jobs(app, raw_conn, schema):
    """FINISH finds its rows by id, whatever the statistics say. Joined on id alone, with the table
    last analyzed while every job waited (no running rows, as after a bulk enqueue), the planner
    scanned all of the worker's entries in jobs_running instead, dead ones included: a cost that grew
    with every job claimed since the last VACUUM, slowing long drains down."""
    noop = app.task(name="claim.noop")(lambda i: None)
    noop.delay_many(range(2000))
    raw_conn.execute(f'ANALYZE "{schema}".jobs')
    worker_id = str(uuid.uuid4())
    with app.connection() as conn:
        app.store.register_worker(conn, id=worker_id, hostname="test", pid=1, queues=["default"],
                                  concurrency=1, pool="solo")
        claimed = app.store.claim(conn, worker_id, "default", 1000)
    params = {"worker_id": worker_id, "ids": [j.id for j in claimed[:200]],
              "attempts": [j.attempt for j in claimed[:200]], "results": ["null"] * 200}
    plan = "\n".join(row[0] for row in raw_conn.execute(
        "EXPLAIN " + app.store.sql["FINISH_OK"], params).fetchall())
    assert "jobs_pkey" in plan and "jobs_running" not in plan, plan
    outcomes = [Outcome(id=j.id, attempt=j.attempt, state="SUCCESS", result="null") for j in claimed]
    with app.connection() as conn:
        assert app.store.finish(conn, worker_id, outcomes) == 1000
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.results WHERE state = 'SUCCESS'", schema=schema) == 1000


def test_claims_commit_without_waiting_for_the_flush_and_the_pool_gets_its_connection_back_as_it_was(app):
    """Claiming session (Store.CLAIM_SESSION_BEGIN): asynchronous commit and kept plans on the
    claiming connection only. Back in the pool, the connection is like any other: a task or producer
    reusing it must never get a delay() that is not durable."""
    worker = Worker(app, pool="solo", burst=True)

    def settings(conn):
        return conn.execute("SELECT current_setting('synchronous_commit'), current_setting('plan_cache_mode'), "
                            "current_setting('enable_seqscan'), current_setting('enable_sort')").fetchone()

    with app.connection() as conn:
        before = settings(conn)
        with worker._claiming(conn):
            assert before == ("on", "auto", "on", "on")
            assert settings(conn) == ("off", "force_generic_plan", "off", "off")
        assert settings(conn) == before
        with pytest.raises(RuntimeError), worker._claiming(conn):
            raise RuntimeError("the claim loop failed")
        assert settings(conn) == before
    with pytest.raises(psycopg.OperationalError), app.connection() as conn, worker._claiming(conn):
        conn.pgconn.finish()  # the connection breaks while claiming
        conn.execute("SELECT 1")
    with app.connection() as conn:  # the pool dropped it and hands out a working one
        assert settings(conn) == before


def test_the_next_claim_does_not_wait_for_the_previous_finish(app, run_worker, raw_conn, schema, monkeypatch):
    """Outcomes the finisher is recording hold no capacity: with a prefetch of one, the consumer
    claims and starts the next job while the previous job's FINISH is still in flight. (Counted as
    held until their FINISH returned, they made a worker at the default prefetch wait for each
    FINISH in turn: a third of the throughput.)"""
    started: list[int] = []

    @app.task(name="claim.record")
    def record(i):
        started.append(i)

    finishing = threading.Event()
    release = threading.Event()
    real_finish = app.store.finish

    def slow_finish(conn, worker_id, outcomes):
        finishing.set()
        assert release.wait(120), "never released"
        return real_finish(conn, worker_id, outcomes)

    monkeypatch.setattr(app.store, "finish", slow_finish)
    first = record.delay(1)
    with run_worker(app, pool="solo", concurrency=1, prefetch_multiplier=1):
        try:
            assert finishing.wait(30), "the first outcome never reached FINISH"
            second = record.delay(2)  # sent while the first one's FINISH is in flight
            wait_for(lambda: started == [1, 2], timeout=20, message="the second job to start meanwhile")
        finally:
            release.set()
        assert first.get(timeout=30) is None and second.get(timeout=30) is None


def test_a_claim_plan_made_on_an_empty_queue_still_walks_the_index_once_the_queue_fills(app, raw_conn, schema):
    """The claiming session keeps CLAIM's generic plan, made once: made while the table was empty
    (as when a worker starts before any job), it must not be a scan and sort of the whole table,
    which every later claim would then pay, however many jobs had arrived."""
    noop = app.task(name="claim.noop2")(lambda i: None)
    worker = Worker(app, pool="solo", burst=True)
    statement = FastStatement.of("CLAIM", app.store.sql["CLAIM"])
    assert statement.params == ("queue", "worker_id", "limit")
    args = f"('default', '{uuid.uuid4()}', 100)"
    raw_conn.execute(f'ANALYZE "{schema}".jobs')  # statistics of an empty table
    with app.connection() as conn, worker._claiming(conn):
        conn.execute(f"PREPARE claim_test AS {statement.text.decode()}")
        try:
            conn.execute(f"EXECUTE claim_test{args}")  # the plan is made now, on an empty table
            noop.delay_many(range(3000))
            plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN EXECUTE claim_test{args}").fetchall())
        finally:
            conn.execute("DEALLOCATE claim_test")
    assert "Index Scan using jobs_available" in plan and "Tid Scan" in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan, plan


def test_finish_and_housekeeping_are_never_prepared_so_their_plans_follow_the_table(app, raw_conn, schema):
    """A prepared statement gets a generic plan after five runs; made while the table held a few
    rows (a worker finishing a trickle of jobs, housekeeping an idle queue), that plan scans the
    whole table at every later run: 32 ms for a FINISH of ten outcomes, 96 ms for a PROMOTE, once
    200,000 jobs waited, against 1-2 ms planned per call."""
    noop = app.task(name="claim.noop3")(lambda i: None)
    worker_id = str(uuid.uuid4())
    raw_conn.execute(f'ANALYZE "{schema}".jobs')
    with app.connection() as conn:
        app.store.register_worker(conn, id=worker_id, hostname="test", pid=1, queues=["default"],
                                  concurrency=1, pool="solo")
        for _ in range(8):  # more than the five runs after which PostgreSQL may go generic
            noop.delay_many(range(3))
            jobs = app.store.claim(conn, worker_id, "default", 3)
            outcomes = [Outcome(id=j.id, attempt=j.attempt, state="SUCCESS", result="null") for j in jobs]
            assert app.store.finish(conn, worker_id, outcomes) == 3
            assert app.store.promote(conn) == 0 and app.store.next_scheduled_in(conn) is None
        prepared = [row[0] for row in conn.execute("SELECT statement FROM pg_prepared_statements")]
    assert not [s for s in prepared if "DELETE FROM" in s or "scheduled" in s], prepared
