"""Workers and beats ride out what production databases do: restarts, outages, terminated
backends, a server that is not up yet. These tests break a private cluster of their own
(tests/cluster.py), never the shared server.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sqlq import App
from sqlq.periodic.beat import Beat
from tests.apps.harness import (
    WorkerProcess,
    create_runs_table,
    result_row,
    runs_of,
    scalar,
    wait_for,
)
from tests.cluster import PrivateCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    with PrivateCluster() as private:
        yield private


@pytest.fixture
def live(cluster: PrivateCluster) -> PrivateCluster:
    """The cluster, running (a test before may have left it stopped)."""
    if not cluster.running():
        cluster.start()
    cluster.wait_ready()
    return cluster


@pytest.fixture
def outage_app(live: PrivateCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("SQLQ_DATABASE_URL", live.url)
    monkeypatch.setenv("SQLQ_SCHEMA", schema)
    app = App("outages", database_url=live.url, schema=schema, worker_poll_interval=0.2)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    app.migrate()
    yield app
    app.close()


def _records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and text in r.getMessage()]


def _result(app: App, job_id: str, timeout: float = 60) -> dict:
    def fetch() -> dict | None:
        with psycopg.connect(app.database_url, autocommit=True) as conn:
            return result_row(conn, app.conf.schema, job_id)

    return wait_for(fetch, timeout, message=f"a result for {job_id}")


def test_idle_worker_survives_a_restart_and_an_outage(outage_app, live, run_worker, caplog):
    """A 5-second outage and a restart: the worker stays up, says once that the database is gone
    and once that it is back, and runs the next job."""
    add = outage_app.tasks["tests.test_database_outages.add"]
    with caplog.at_level(logging.DEBUG, logger="sqlq"), run_worker(outage_app, pool="threads") as worker:
        assert add.delay(1, 2).get(timeout=30) == 3
        live.stop()
        # long enough for every thread to fail and back off several times
        stopped = threading.Event()
        stopped.wait(5)
        live.start()
        assert add.delay(2, 3).get(timeout=60) == 5
        wait_for(lambda: not worker.outage.down, message="the worker to see the database back")
        live.restart()
        assert add.delay(3, 4).get(timeout=60) == 7
        thread = [t for t in threading.enumerate() if t.name == "test-worker"]
        assert thread and thread[0].is_alive()
    mine = f"worker {worker.hostname}:"
    lost = [r for r in _records(caplog, logging.WARNING, "lost the database") if r.getMessage().startswith(mine)]
    back = [r for r in _records(caplog, logging.INFO, "database is back") if r.getMessage().startswith(mine)]
    # two outages: a line when each starts and one when it ends, not one per try (at most one
    # more each should the server flap while it comes back)
    assert 2 <= len(lost) <= 4, [r.getMessage() for r in lost]
    assert len(back) == len(lost)


def test_outcomes_finished_during_an_outage_are_recorded_after_it(outage_app, live, run_worker):
    """Jobs that were running when the database went away finish, wait in memory and are recorded
    once it is back: nothing is lost, nothing runs twice."""

    @outage_app.task
    def slow(n: int) -> int:
        threading.Event().wait(1.5)
        return n

    with run_worker(outage_app, pool="threads", concurrency=4, prefetch_multiplier=1) as worker:
        results = [slow.delay(i) for i in range(4)]
        with psycopg.connect(live.url, autocommit=True) as conn:
            wait_for(lambda: scalar(conn, "SELECT count(*) FROM {s}.jobs WHERE state = 'running'",
                                    schema=outage_app.conf.schema) == 4, message="4 running jobs")
        live.stop()
        # the jobs finish while the server is down: their outcomes wait in memory, unrecorded
        wait_for(lambda: len(worker._done) == 4 and worker.outage.down, 60,
                 message=lambda: f"4 outcomes waiting in memory (have {len(worker._done)})")
        live.start()
        assert [r.get(timeout=60) for r in results] == [0, 1, 2, 3]
    rows = [_result(outage_app, r.id) for r in results]
    assert {row["attempts"] for row in rows} == {1}


def test_worker_start_waits_for_the_server(live, outage_app, run_worker, caplog):
    """A worker started while PostgreSQL is down waits for it (docker compose order does not
    matter) and serves once it is up."""
    add = outage_app.tasks["tests.test_database_outages.add"]
    outage_app.close()
    live.stop()
    with caplog.at_level(logging.WARNING, logger="sqlq"):
        with run_worker(outage_app, pool="threads") as worker:
            wait_for(lambda: _records(caplog, logging.WARNING, "waiting for the database"),
                     message="the worker to say it waits")
            assert worker.processed == 0
            live.start()
            assert add.delay(5, 6).get(timeout=60) == 11


def test_worker_start_waits_for_migrations(live, monkeypatch, run_worker, caplog):
    """A worker started before `sqlq migrate` has run waits for the schema, then serves."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("SQLQ_SCHEMA", schema)
    app = App("outages-migrate", database_url=live.url, schema=schema, worker_poll_interval=0.2)

    @app.task
    def mul(x: int, y: int) -> int:
        return x * y

    try:
        with caplog.at_level(logging.WARNING, logger="sqlq"), run_worker(app, pool="threads"):
            wait_for(lambda: _records(caplog, logging.WARNING, "sqlq migrate"), message="the worker to wait")
            app.migrate()
            assert mul.delay(6, 7).get(timeout=60) == 42
    finally:
        app.close()


def test_backoff_resets_after_each_round_of_terminated_backends(outage_app, live, run_worker):
    """Three rounds of terminated backends: after each, the worker's claim backoff is back at its
    first step as soon as it has claimed again (it does not keep growing from round to round)."""
    add = outage_app.tasks["tests.test_database_outages.add"]
    with run_worker(outage_app, pool="threads") as worker:
        for i in range(3):
            assert add.delay(i, i).get(timeout=30) == 2 * i
            assert live.terminate_backends() > 0
            assert add.delay(i, 1).get(timeout=30) == i + 1
            wait_for(lambda: not worker._claim_backoff.failing, message="the claim backoff to reset")


def test_beat_survives_an_outage(outage_app, live, caplog):
    """beat keeps its loop through a stop and a start of the server and goes on sending ticks."""
    outage_app.conf.beat_schedule = {"tick": {"task": "tests.test_database_outages.add", "schedule": 0.5,
                                              "args": [1, 1]}}
    beat = Beat(outage_app)
    thread = beat.start_thread()
    query = "SELECT count(*) FROM {s}.schedule_ticks"
    try:
        with psycopg.connect(live.url, autocommit=True) as conn:
            wait_for(lambda: scalar(conn, query, schema=outage_app.conf.schema) >= 2, message="ticks")
        live.stop()
        threading.Event().wait(3)
        assert thread.is_alive()
        live.start()
        live.wait_ready()
        with psycopg.connect(live.url, autocommit=True) as conn:
            before = scalar(conn, query, schema=outage_app.conf.schema)
            wait_for(lambda: scalar(conn, query, schema=outage_app.conf.schema) >= before + 2,
                     message="ticks after the outage")
    finally:
        beat.stop()
        thread.join(30)
    assert not thread.is_alive()


# --- transactional tasks whose connection breaks ---------------------------------------------------

def test_transactional_task_whose_connection_broke_runs_again(app, run_worker, raw_conn, schema):
    """The task's own backend is terminated mid-task: its writes roll back with the outcome, and
    the job runs again (an interrupted attempt), never FAILURE. Even without acks_late: the
    attempt did nothing."""
    raw_conn.execute(f'CREATE TABLE "{schema}".orders (job_id uuid PRIMARY KEY, attempt int)')

    @app.task(bind=True, transactional=True, acks_late=False)
    def place_order(self) -> str:
        from sqlalchemy import text

        self.connection.execute(text(f'INSERT INTO "{schema}".orders VALUES (:id, :a)'),
                                {"id": self.request.id, "a": self.request.attempt})
        if self.request.attempt == 1:
            self.connection.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return "placed"

    with run_worker(app, pool="threads"):
        result = place_order.delay()
        assert result.get(timeout=60) == "placed"
    row = result_row(raw_conn, schema, result.id)
    assert row["state"] == "SUCCESS" and row["attempts"] == 2
    assert raw_conn.execute(f'SELECT attempt FROM "{schema}".orders').fetchall() == [(2,)]


# --- rescue through the liveness lock ----------------------------------------------------------

def test_killed_workers_jobs_are_rescued_through_its_liveness_lock(basic_app, raw_conn, schema, tmp_path: Path,
                                                                   monkeypatch):
    """A SIGKILLed worker's session ends, which frees its liveness lock: another worker rescues
    its job without waiting for worker_lost_timeout (set to 10 minutes here, so the heartbeat
    cannot be what gave it away)."""
    monkeypatch.setenv("SQLQ_WORKER_LOST_TIMEOUT", "600")
    create_runs_table(raw_conn, schema)
    victim = WorkerProcess(tmp_path / "victim.log", pool="threads", concurrency=1)
    rescuer = None
    try:
        job = basic_app.tasks["tests.apps.basic.slow_first_attempt"].delay(120)
        wait_for(lambda: runs_of(raw_conn, schema, job.id) == 1, 60, message="the job to start")
        victim.kill()
        rescuer = WorkerProcess(tmp_path / "rescuer.log", pool="threads", concurrency=1)
        wait_for(lambda: runs_of(raw_conn, schema, job.id) == 2, 60, message="the job to run again")
        workers = scalar(raw_conn, "SELECT count(*) FROM {s}.workers", schema=schema)
        assert workers == 1  # the dead worker's row is gone
    finally:
        victim.stop()
        if rescuer is not None:
            rescuer.stop()


def test_jobs_of_a_claim_whose_reply_was_lost_are_handed_back(outage_app, live, run_worker, caplog):
    """A claim that committed but whose reply was lost with the connection leaves jobs that the rows
    give to a live worker which never received them: nobody would rescue them (the worker beats),
    so they would wait forever. After a failed claim the worker hands back what it does not hold,
    and runs it; the lost claim's attempt is not spent."""
    add = outage_app.tasks["tests.test_database_outages.add"]
    schema = outage_app.conf.schema
    with caplog.at_level(logging.WARNING, logger="sqlq"), run_worker(outage_app, pool="threads") as worker:
        assert add.delay(0, 0).get(timeout=30) == 0  # registered and claiming
        parked = [add.apply_async((i, i), queue="parked") for i in range(3)]
        with psycopg.connect(live.url, autocommit=True) as conn:
            # what the lost claim did, in one statement: the worker never sees them waiting
            conn.execute(f'UPDATE "{schema}".jobs SET queue = %s, state = %s, worker_id = %s, '
                         "attempt = attempt + 1, started_at = now() WHERE queue = 'parked'",
                         ("default", "running", worker.id))
        assert live.terminate_backends() > 0  # the consumer's next claim fails
        assert add.delay(5, 5).get(timeout=60) == 10
        assert [r.get(timeout=60) for r in parked] == [0, 2, 4]
    assert all(_result(outage_app, r.id)["attempts"] == 1 for r in parked)
    assert _records(caplog, logging.WARNING, "3 job(s) claimed by a statement whose reply was lost")
