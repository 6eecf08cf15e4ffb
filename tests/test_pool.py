"""The hot path's connection pool (sqlq/db.py) and the prepared fast path of a plain ``delay()``
(sqlq/store/fast.py): connections are reused, a broken one is dropped, a full pool says so, and a
statement the server forgot is prepared again instead of failing the call."""

from __future__ import annotations

import datetime as dt
import threading

import psycopg
import pytest

from sqlq import App
from sqlq.db import ConnectionPool
from sqlq.errors import DatabaseUnavailableError, DuplicateJobError
from sqlq.store import fast as store_module


@pytest.fixture
def add(app: App):
    @app.task(name="pool.add")
    def add(x, y=0):
        return x + y

    return add


def _backend_pid(app: App) -> int:
    with app.connection() as conn:
        return conn.info.backend_pid


def _jobs(raw_conn: psycopg.Connection, schema: str) -> int:
    return raw_conn.execute(f'SELECT count(*) FROM "{schema}".jobs').fetchone()[0]


def test_one_thread_reuses_one_connection(app: App, add):
    pid = _backend_pid(app)
    for i in range(20):
        add.delay(i)
    assert _backend_pid(app) == pid


def test_a_killed_connection_costs_the_caller_nothing_and_is_dropped(app: App, add, raw_conn, schema: str):
    """A pooled connection whose backend was terminated is replaced (at check-out, or by the
    enqueue's retry if the check-out came first): the next delay() succeeds, once."""
    add.delay(0)
    pid = _backend_pid(app)
    raw_conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    add.delay(1)
    add.delay(2)
    assert _backend_pid(app) != pid
    assert _jobs(raw_conn, schema) == 3


def test_a_forgotten_prepared_statement_is_prepared_again(app: App, add, raw_conn, schema: str):
    add.delay(0)
    with app.connection() as conn:
        conn.execute("DEALLOCATE ALL")  # what DISCARD ALL or a transaction-mode bouncer would do
    add.delay(1)
    add.delay(2)
    assert _jobs(raw_conn, schema) == 3


def test_errors_on_the_fast_path_are_the_usual_ones(app: App, add, raw_conn, schema: str):
    add.apply_async((1,), task_id="3f0c9a56-1111-4c4c-8888-000000000001")
    with pytest.raises(DuplicateJobError, match="already waiting or running"):
        add.apply_async((1,), task_id="3f0c9a56-1111-4c4c-8888-000000000001")
    add.delay(2)  # the connection is still good, and still on the prepared fast path
    assert _jobs(raw_conn, schema) == 2
    with app.connection() as conn:
        assert app.store._fast["ENQUEUE_NOW"].name in store_module._PREPARED.get(conn, ())


def test_a_full_pool_waits_then_says_what_to_do(database_url: str):
    pool = ConnectionPool(database_url, size=1, max_overflow=0, timeout=0.2)
    try:
        with pool.connection():
            with pytest.raises(DatabaseUnavailableError, match="all 1 pooled connections .* stayed in use"):
                with pool.connection():
                    pass
        got = threading.Event()

        def borrow():
            with pool.connection():
                got.set()

        with pool.connection():
            waiter = threading.Thread(target=borrow)
            waiter.start()
            assert not got.wait(0.05)  # waits for the one connection...
        waiter.join(5)
        assert got.is_set()  # ...and gets it when it comes back
    finally:
        pool.dispose()


def test_a_connection_left_in_a_transaction_is_not_reused_dirty(database_url: str):
    pool = ConnectionPool(database_url, size=1, max_overflow=0)
    try:
        with pool.connection() as conn:
            conn.execute("BEGIN")
            conn.execute("CREATE TEMP TABLE pool_probe (x int)")
        with pool.connection() as conn:
            assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert conn.execute("SELECT to_regclass('pool_probe')").fetchone()[0] is None
    finally:
        pool.dispose()


def test_dispose_closes_idle_connections_and_those_still_out(database_url: str):
    pool = ConnectionPool(database_url, size=2)
    with pool.connection() as out:
        with pool.connection() as idle:
            pass
        pool.dispose()
        assert idle.closed and not out.closed
    assert out.closed
    with pool.connection() as fresh:
        assert fresh is not out and fresh.execute("SELECT 1").fetchone() == (1,)
    pool.dispose()


def test_scheduled_and_expiring_jobs_take_the_fast_path_too(app: App, add, raw_conn, schema: str):
    """ENQUEUE (countdown, eta, expires) is prepared like ENQUEUE_NOW: the times come out the same,
    computed by the database from the text parameters."""
    eta = dt.datetime(2040, 1, 2, 3, 4, 5, 678_000, tzinfo=dt.UTC)
    later = add.apply_async((1,), countdown=30, expires=90)
    at_eta = add.apply_async((2,), eta=eta, priority=7)
    rows = {row[0]: row[1:] for row in raw_conn.execute(
        f'SELECT id::text, state, run_at - enqueued_at, expires_at - enqueued_at, run_at, priority '
        f'FROM "{schema}".jobs').fetchall()}
    assert rows[later.id][:3] == ("scheduled", dt.timedelta(seconds=30), dt.timedelta(seconds=90))
    assert rows[at_eta.id][0] == "scheduled" and rows[at_eta.id][3:] == (eta, 7)
    with app.connection() as conn:
        assert app.store._fast["ENQUEUE"].name in store_module._PREPARED.get(conn, ())
