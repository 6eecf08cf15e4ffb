"""Errors a user can walk into after the first day: reused task ids, a schema left behind."""

from __future__ import annotations

import psycopg
import pytest

from sqlq import App
from sqlq.errors import DuplicateJobError, SchemaNotMigratedError
from sqlq.worker.worker import Worker
from tests.apps.harness import await_for


def test_reusing_the_id_of_a_waiting_job_is_a_clear_error(app: App, raw_conn: psycopg.Connection, schema: str):
    @app.task(name="guards.noop")
    def noop():
        return None

    first = noop.apply_async(task_id="0f0f0f0f-0000-4000-8000-000000000001")
    with pytest.raises(DuplicateJobError, match="already waiting or running"):
        noop.apply_async(task_id=first.id)
    # inside the caller's transaction the error is the same, and nothing extra was written
    with psycopg.connect(raw_conn.info.dsn) as conn, pytest.raises(DuplicateJobError):
        noop.apply_async(task_id=first.id, connection=conn)
    assert raw_conn.execute(f'SELECT count(*) FROM "{schema}".jobs').fetchone()[0] == 1


def test_worker_refuses_to_start_on_a_schema_behind_this_version(schema: str, database_url: str):
    app = App("guards", database_url=database_url, schema=schema)
    try:
        app.migrate("0001")
        with pytest.raises(SchemaNotMigratedError, match="run `sqlq migrate`"):
            Worker(app, pool="threads", concurrency=1, burst=True).run()
        app.migrate()
        assert Worker(app, pool="threads", concurrency=1, burst=True).run() == 0
    finally:
        app.close()


async def test_close_releases_async_connections(app: App, raw_conn: psycopg.Connection):
    """asyncio apps enqueue on a pooled connection; App.close() must really close it."""
    @app.task(name="guards.anoop")
    def anoop():
        return None

    await anoop.adelay()
    async with app._async_pool().connection() as conn:  # the idle pooled connection adelay used
        backend = conn.info.backend_pid
    alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
    assert raw_conn.execute(alive, (backend,)).fetchone()[0] == 1
    app.close()
    # the server notices the closed socket at once; allow it a moment
    await await_for(lambda: raw_conn.execute(alive, (backend,)).fetchone()[0] == 0, 2.5, 0.05,
                    message=f"backend {backend} to go away")
    assert raw_conn.execute(alive, (backend,)).fetchone()[0] == 0


def test_a_worker_presumed_dead_claims_nothing_until_it_registers_again(app: App, raw_conn: psycopg.Connection):
    """Its jobs were rescued; claiming more before its heartbeat re-registers it could run them twice."""
    @app.task(name="guards.job")
    def job():
        return None

    job.delay()
    worker_id = "00000000-0000-4000-8000-0000000000aa"
    assert app.store.claim(raw_conn, worker_id, "default", 10) == []
    app.store.register_worker(raw_conn, id=worker_id, hostname="test", pid=0, queues=["default"],
                              concurrency=1, pool="solo")
    assert len(app.store.claim(raw_conn, worker_id, "default", 10)) == 1


def test_heartbeat_is_kept_well_inside_the_lost_timeout(app: App, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SQLQ_WORKER_LOST_TIMEOUT", "3")
    worker = Worker(app, pool="threads", concurrency=1)
    assert worker.heartbeat_interval <= 1.0  # default 5 s would get a live worker declared dead


def test_worker_refuses_to_start_on_an_empty_schema(schema: str, database_url: str):
    app = App("guards", database_url=database_url, schema=schema)
    try:
        with pytest.raises(SchemaNotMigratedError, match="revision none"):
            Worker(app, pool="threads", concurrency=1, burst=True).run()
    finally:
        app.close()


def test_worker_survives_losing_its_claiming_connection(app: App, run_worker, raw_conn: psycopg.Connection):
    """A database restart or a killed backend must not end the worker: it reconnects and goes on."""
    @app.task(name="guards.echo")
    def echo(x):
        return x

    with run_worker(app, pool="threads", concurrency=1):
        assert echo.delay(1).get(timeout=30) == 1
        # this worker's claiming backend only (its CLAIM names this test's schema): the server is
        # shared, and other suites' workers run the same statement on their own schemas
        killed = raw_conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%%WITH picked AS%%' "
            "AND query LIKE %s", (f'%"{app.conf.schema}".%',)
        ).fetchone()[0]
        assert killed >= 1
        assert echo.delay(2).get(timeout=60) == 2
