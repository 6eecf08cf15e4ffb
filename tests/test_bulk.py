"""Bulk enqueue: many calls, one write — COPY for jobs due now, one INSERT … unnest otherwise."""

from __future__ import annotations

import psycopg
import pytest

from sqlq import App
from sqlq.errors import SerializationError


@pytest.fixture
def add(app: App):
    @app.task(name="bulk.add")
    def add(x, y):
        return x + y

    return add


def _rows(raw_conn: psycopg.Connection, schema: str) -> list[tuple]:
    return raw_conn.execute(
        f'SELECT state, queue, args->>0, enqueued_at, run_at, enqueued_at = run_at FROM "{schema}".jobs ORDER BY seq'
    ).fetchall()


def test_many_jobs_due_now_are_written_together_and_run(app: App, add, raw_conn, schema: str, run_worker):
    results = add.delay_many((i, 1) for i in range(300))
    rows = _rows(raw_conn, schema)
    assert len(rows) == 300 and len({r[3] for r in rows}) == 1  # one write, one database timestamp
    assert {r[0] for r in rows} == {"available"} and all(r[5] for r in rows)
    assert [int(r[2]) for r in rows] == list(range(300))  # FIFO order is the call order
    with run_worker(app, pool="threads", concurrency=2):
        assert [r.get(timeout=60) for r in results[-3:]] == [298, 299, 300]


def test_bulk_in_a_rolled_back_transaction_never_existed(app: App, add, raw_conn, schema: str, database_url: str):
    with psycopg.connect(database_url) as conn:
        add.delay_many([(i, i) for i in range(100)], connection=conn)
        assert conn.execute(f'SELECT count(*) FROM "{schema}".jobs').fetchone()[0] == 100
        conn.rollback()
    assert _rows(raw_conn, schema) == []


def test_bulk_wakes_each_queue_once_at_commit(app: App, add, schema: str, database_url: str):
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(app.store.listen_jobs)
        add.delay_many([(i, i) for i in range(100)], queue="bulk_a")
        add.delay_many([(i, i) for i in range(100)], queue="bulk_b")
        seen = [n.payload for n in listener.notifies(timeout=2.0)]
    assert sorted(seen) == ["bulk_a", "bulk_b"]


def test_bulk_with_a_countdown_waits_as_scheduled(app: App, add, raw_conn, schema: str):
    add.delay_many([(i, i) for i in range(100)], countdown=60)
    states = raw_conn.execute(
        f"SELECT DISTINCT state, run_at - enqueued_at = interval '60 seconds' FROM \"{schema}\".jobs").fetchall()
    assert states == [("scheduled", True)]


def test_a_bad_argument_anywhere_in_the_batch_inserts_nothing(app: App, add, raw_conn, schema: str):
    calls = [(i, i) for i in range(99)] + [(object(), 1)]
    with pytest.raises(SerializationError, match="positional argument 0"):
        add.delay_many(calls)
    assert _rows(raw_conn, schema) == []


def test_a_badly_shaped_call_in_a_streamed_batch_is_named_and_inserts_nothing(app: App, add, raw_conn,
                                                                              schema: str):
    calls = [((i, i), {}) for i in range(199)] + [((1, 1), ["not", "a", "dict"])]
    with pytest.raises(SerializationError, match="kwargs must be a dict, not list"):
        add.apply_many(calls)
    assert _rows(raw_conn, schema) == []
    add.apply_many(calls[:-1])  # the pooled connection is fine afterwards
    assert len(_rows(raw_conn, schema)) == 199


def test_router_functions_route_each_call_of_a_batch(app: App, add, raw_conn, schema: str):
    def by_parity(name, args, kwargs, options, task=None, **kw):
        return {"queue": "even" if args[0] % 2 == 0 else "odd"}

    app.conf.task_routes = [by_parity]
    add.delay_many((i, 0) for i in range(100))
    counts = dict(raw_conn.execute(f'SELECT queue, count(*) FROM "{schema}".jobs GROUP BY queue').fetchall())
    assert counts == {"even": 50, "odd": 50}
