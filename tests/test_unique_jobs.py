"""Unique jobs on a real PostgreSQL: a key held by a waiting or running job (the unique partial index
jobs_unique), skip/error/replace, the unique_for window, task-level unique_on, the caller's
transaction, bulk and async sends, eager mode.

Every count is of this test's own schema.
"""

from __future__ import annotations

import asyncio
import threading

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from sqlq import App
from sqlq.config import sqlalchemy_url
from sqlq.errors import ConfigurationError, DuplicateJobError, TaskDefinitionError
from sqlq.unique import key_hash
from tests.apps.harness import result_row, scalar, wait_for, wait_result

PRODUCERS = 50


def _keyed_jobs(conn: psycopg.Connection, schema: str, key: str) -> list[tuple]:
    return conn.execute(f'SELECT id::text, state, args::text, run_at FROM "{schema}".jobs WHERE unique_hash = %s',
                        [key_hash(key)]).fetchall()


@pytest.fixture
def tasks(app: App):
    @app.task(name="t.touch")
    def touch(item, version=0):
        return [item, version]

    @app.task(name="t.by_args", unique_on=("args",))
    def by_args(x, y=0):
        return x + y

    @app.task(name="t.by_name", unique_on=("doc",), on_conflict="replace")
    def by_name(doc, text=""):
        return text

    @app.task(name="t.sleepy")
    def sleepy(seconds, label=""):
        import time

        time.sleep(seconds)
        return label

    return type("Tasks", (), {"touch": touch, "by_args": by_args, "by_name": by_name, "sleepy": sleepy})


def test_fifty_producers_released_together_write_one_job(app, tasks, schema, database_url, raw_conn):
    barrier = threading.Barrier(PRODUCERS)
    ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def produce(number: int) -> None:
        try:
            # half on connections of their own (truly concurrent), half through sqlq's pool
            with psycopg.connect(database_url, autocommit=True) as own:
                barrier.wait(30)
                connection = own if number % 2 else None
                result = tasks.touch.apply_async(("x",), unique_key="race", connection=connection)
            with lock:
                ids.append(result.id)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(PRODUCERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(ids) == PRODUCERS
    rows = _keyed_jobs(raw_conn, schema, "race")
    assert len(rows) == 1
    assert set(ids) == {rows[0][0]}  # every producer got the one job's id
    assert scalar(raw_conn, 'SELECT count(*) FROM {s}.jobs', schema=schema) == 1


def test_skip_returns_the_waiting_job_and_error_raises(app, tasks, schema, raw_conn):
    first = tasks.touch.apply_async(("a",), unique_key="k1", countdown=60)
    again = tasks.touch.apply_async(("b",), unique_key="k1")
    assert again.id == first.id
    with pytest.raises(DuplicateJobError, match=rf"unique key 'k1' is held by job {first.id}.*nothing was written"):
        tasks.touch.apply_async(("c",), unique_key="k1", on_conflict="error")
    rows = _keyed_jobs(raw_conn, schema, "k1")
    assert [(r[0], r[2]) for r in rows] == [(first.id, '["a"]')]  # the first call's arguments, untouched
    other = tasks.touch.apply_async(("a",), unique_key="k2")
    assert other.id != first.id


def test_replace_pushes_the_eta_and_runs_once_after_the_last_change(app, tasks, schema, raw_conn, run_worker):
    first = tasks.touch.apply_async(("doc",), {"version": 1}, unique_key="doc", on_conflict="replace", countdown=30)
    (_, _, _, run_at_1), = _keyed_jobs(raw_conn, schema, "doc")
    second = tasks.touch.apply_async(("doc",), {"version": 2}, unique_key="doc", on_conflict="replace",
                                     countdown=60)
    assert second.id == first.id
    (_, state, args, run_at_2), = _keyed_jobs(raw_conn, schema, "doc")
    assert state == "scheduled" and run_at_2 > run_at_1
    assert scalar(raw_conn, 'SELECT kwargs::text FROM {s}.jobs WHERE id = %s', first.id,
                  schema=schema) == '{"version": 2}'
    with run_worker(app, concurrency=2):
        for version in range(3, 8):  # each change pushes the run a little later, the last one wins
            tasks.touch.apply_async(("doc",), {"version": version}, unique_key="doc", on_conflict="replace",
                                    countdown=2)
        row = wait_result(raw_conn, schema, first.id)
        assert row["state"] == "SUCCESS"
        assert first.get(timeout=30) == ["doc", 7]
    assert scalar(raw_conn, 'SELECT count(*) FROM {s}.results', schema=schema) == 1


def test_replace_leaves_a_running_job_alone(app, tasks, schema, raw_conn, run_worker):
    with run_worker(app, concurrency=1):
        running = tasks.sleepy.apply_async((3, "first"), unique_key="busy")
        wait_for(lambda: scalar(raw_conn, 'SELECT state FROM {s}.jobs WHERE id = %s', running.id,
                                schema=schema) == "running", message="the job running")
        again = tasks.sleepy.apply_async((0, "second"), unique_key="busy", on_conflict="replace")
        assert again.id == running.id
        assert running.get(timeout=30) == "first"
    assert scalar(raw_conn, 'SELECT count(*) FROM {s}.results', schema=schema) == 1


def test_the_key_frees_when_the_job_finishes(app, tasks, schema, raw_conn, run_worker):
    with run_worker(app):
        first = tasks.touch.apply_async(("f",), unique_key="free")
        assert first.get(timeout=30) == ["f", 0]
        second = tasks.touch.apply_async(("f",), unique_key="free")
        assert second.id != first.id
        assert second.get(timeout=30) == ["f", 0]


def test_unique_for_holds_the_key_after_the_job_finished(app, tasks, schema, raw_conn, run_worker):
    with run_worker(app):
        first = tasks.touch.apply_async(("w",), unique_key="window", unique_for=2)
        assert first.get(timeout=30) == ["w", 0]
        assert result_row(raw_conn, schema, first.id) is not None
        held = tasks.touch.apply_async(("w",), unique_key="window")  # finished, but inside its window
        assert held.id == first.id
        with pytest.raises(DuplicateJobError, match="unique_for window"):
            tasks.touch.apply_async(("w",), unique_key="window", on_conflict="error")
        assert _keyed_jobs(raw_conn, schema, "window") == []  # the held calls wrote nothing
        # once the window is over, the key is free again
        later = wait_for(lambda: (r := tasks.touch.apply_async(("w",), unique_key="window")).id != first.id and r,
                         timeout=30, interval=0.2, message="the window to end")
        assert later.get(timeout=30) == ["w", 0]


def test_a_window_and_a_waiting_job_both_hold_the_key(app, tasks, schema, raw_conn):
    first = tasks.touch.apply_async(("w",), unique_key="both", unique_for=0.2, countdown=60)
    # the window ended long before the job runs: the waiting job still holds the key
    wait_for(lambda: scalar(raw_conn, 'SELECT held_until < now() FROM {s}.unique_keys WHERE key = %s',
                            "both", schema=schema), message="the window to end")
    assert tasks.touch.apply_async(("w",), unique_key="both", unique_for=5).id == first.id
    assert len(_keyed_jobs(raw_conn, schema, "both")) == 1
    # maintenance deletes the windows that ended, and only those
    tasks.touch.apply_async(("w",), unique_key="long", unique_for=600)
    with app._connections.connection() as conn:
        assert app.store.unique_prune(conn) == 1
    assert scalar(raw_conn, 'SELECT array_agg(key) FROM {s}.unique_keys', schema=schema) == ["long"]


def test_task_level_unique_on_args(app, tasks, schema, raw_conn):
    a = tasks.by_args.apply_async((1, 2), countdown=60)
    assert tasks.by_args.delay(1, 2).id == a.id
    assert tasks.by_args.delay(1, 3).id != a.id
    assert tasks.by_args.apply_async((1, 2), unique_key="own").id != a.id  # unique_key= wins over unique_on
    # keyword-argument names find positional arguments too, and the task's on_conflict applies
    b = tasks.by_name.apply_async(("readme",), {"text": "v1"}, countdown=60)
    c = tasks.by_name.apply_async((), {"doc": "readme", "text": "v2"}, countdown=60)
    assert c.id == b.id
    assert scalar(raw_conn, 'SELECT kwargs::text FROM {s}.jobs WHERE id = %s', b.id,
                  schema=schema) == '{"doc": "readme", "text": "v2"}'


def test_signature_options_and_bulk_sends(app, tasks, schema, raw_conn):
    sig = tasks.touch.s("s").set(unique_key="sig", countdown=60)
    first = sig.apply_async()
    assert sig.apply_async().id == first.id
    # apply_many: each call's key from unique_on; repeated calls collapse onto one job
    results = tasks.by_args.apply_many([((n, 0), {}) for n in (1, 2, 1, 3, 2)] * 20, countdown=60)
    assert len({r.id for r in results}) == 3
    assert [r.id for r in results[:3]] == [results[0].id, results[1].id, results[0].id]
    assert scalar(raw_conn, 'SELECT count(*) FROM {s}.jobs WHERE task = %s', "t.by_args",
                  schema=schema) == 3
    with pytest.raises(DuplicateJobError):
        tasks.by_args.apply_many([((9, 9), {}), ((1, 0), {})], on_conflict="error")
    assert scalar(raw_conn, 'SELECT count(*) FROM {s}.jobs WHERE task = %s', "t.by_args",
                  schema=schema) == 3  # the batch wrote nothing, not even its new call
    # a group's members too: a member whose key is held is the holder
    from sqlq import group

    members = group(tasks.by_args.s(1, 0).set(countdown=60), tasks.by_args.s(5, 0).set(countdown=60)).apply_async()
    assert members.results[0].id == results[0].id and members.results[1].id not in {r.id for r in results}
    # a workflow's later steps are written by the database, which does not resolve keys
    with pytest.raises(ConfigurationError, match="workflow's later steps"):
        (tasks.touch.s("a") | tasks.touch.si("b").set(unique_key="step")).apply_async()


def test_keyed_enqueue_in_the_callers_transaction(app, tasks, schema, database_url, raw_conn):
    with psycopg.connect(database_url) as conn:  # not autocommit: the caller's transaction
        first = tasks.touch.apply_async(("t",), unique_key="tx", connection=conn)
        assert tasks.touch.apply_async(("t",), unique_key="tx", connection=conn).id == first.id
        assert _keyed_jobs(raw_conn, schema, "tx") == []  # not committed yet
        conn.rollback()
    assert _keyed_jobs(raw_conn, schema, "tx") == []
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with Session(engine) as session:
            kept = tasks.touch.apply_async(("t",), unique_key="tx", unique_for=30, connection=session)
            assert tasks.touch.apply_async(("t",), unique_key="tx", connection=session).id == kept.id
            session.commit()
    finally:
        engine.dispose()
    assert [r[0] for r in _keyed_jobs(raw_conn, schema, "tx")] == [kept.id]
    assert scalar(raw_conn, 'SELECT job_id::text FROM {s}.unique_keys WHERE key = %s', "tx",
                  schema=schema) == kept.id
    # a caller's error mode leaves their transaction usable
    with psycopg.connect(database_url) as conn:
        with pytest.raises(DuplicateJobError):
            tasks.touch.apply_async(("t",), unique_key="tx", on_conflict="error", connection=conn)
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_async_sends_honour_the_key(app, tasks, schema, raw_conn, database_url):
    async def send() -> tuple[str, str, str]:
        a = await tasks.touch.aapply_async(("z",), unique_key="async", countdown=60)
        b = await tasks.touch.aapply_async(("z",), unique_key="async")
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            c = await tasks.touch.aapply_async(("z",), unique_key="async", connection=conn)
            with pytest.raises(DuplicateJobError):
                await tasks.touch.aapply_async(("z",), unique_key="async", on_conflict="error", connection=conn)
        return a.id, b.id, c.id

    a, b, c = asyncio.run(send())
    assert a == b == c
    assert len(_keyed_jobs(raw_conn, schema, "async")) == 1


def test_bad_options_are_refused_before_anything_is_written(app, tasks, schema, raw_conn):
    for bad, message in (({"unique_key": ""}, "unique_key must be a non-empty string"),
                         ({"unique_key": "k", "unique_for": 0}, "unique_for must be a positive number"),
                         ({"unique_key": "k", "on_conflict": "merge"}, "on_conflict must be one of"),
                         ({"unique_for": 5}, "need a unique key"),
                         ({"unique_key": "x" * 1001}, "at most 1000")):
        with pytest.raises(ConfigurationError, match=message):
            tasks.touch.apply_async(("b",), **bad)
    assert scalar(raw_conn, 'SELECT count(*) FROM {s}.jobs', schema=schema) == 0
    with pytest.raises(TaskDefinitionError, match="unique_on must be a tuple"):
        app.task(name="t.bad", unique_on="args")(lambda: None)
    with pytest.raises(TaskDefinitionError, match="on_conflict must be one of"):
        app.task(name="t.bad2", unique_on=("args",), on_conflict="nope")(lambda: None)


def test_eager_mode_accepts_the_options_and_keeps_windows(schema, database_url):
    app = App("tests.eager", database_url=database_url, schema=schema, task_always_eager=True)
    try:
        runs: list[int] = []

        @app.task(name="e.count", unique_on=("args",))
        def count(n):
            runs.append(n)
            return n

        assert count.delay(1).get() == 1
        assert count.delay(1).get() == 1
        assert runs == [1, 1]  # no window: each eager call has finished before the next one
        first = count.apply_async((2,), unique_for=30)
        assert count.apply_async((2,), unique_for=30).id == first.id
        with pytest.raises(DuplicateJobError, match="unique_for window"):
            count.apply_async((2,), on_conflict="error")
        assert runs == [1, 1, 2]
        with pytest.raises(ConfigurationError, match="on_conflict must be one of"):
            count.apply_async((3,), on_conflict="bad")
    finally:
        app.close()


def test_beat_ticks_of_a_held_key_send_nothing_and_beat_goes_on(app, tasks, schema, raw_conn, caplog):
    from datetime import UTC, datetime, timedelta

    from sqlq import crontab
    from sqlq.periodic.beat import Beat

    start = datetime(2026, 5, 1, 12, 0, 1, tzinfo=UTC)
    app.conf.beat_schedule = {"u": {"task": "t.touch", "schedule": crontab(minute="*/15"), "args": ("b",),
                                    "options": {"unique_key": "beat", "on_conflict": "error", "countdown": 3600}}}
    Beat(app).sync_config(start)
    first = Beat(app).run_once(start + timedelta(minutes=16))
    with caplog.at_level("INFO", logger="sqlq"):
        second = Beat(app).run_once(start + timedelta(minutes=31))
    assert len(first) == len(second) == 1  # both ticks recorded, the second wrote no job
    assert [r[0] for r in _keyed_jobs(raw_conn, schema, "beat")] == [first[0].job_id]
    assert f"unique key 'beat' is held by job {first[0].job_id}" in caplog.text


def test_a_keyed_write_whose_connection_broke_is_made_again(app, tasks, schema, database_url, raw_conn):
    """The first attempt waits on the key (another transaction holds it) when its backend is
    terminated: the write runs again on a new connection, waits in turn, and gets the holder's job
    once that transaction commits."""
    with psycopg.connect(database_url) as holder:  # a transaction of its own holds the key
        held = tasks.touch.apply_async(("h",), unique_key="broken", connection=holder)
        got: list[str] = []
        sender = threading.Thread(target=lambda: got.append(tasks.touch.apply_async(("s",), unique_key="broken").id))
        sender.start()

        def waiting() -> list[int]:  # our own backend: its statement names this test's schema
            return [r[0] for r in raw_conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s "
                "AND pid <> pg_backend_pid()", [f'%"{schema}"."jobs"%'])]

        first = wait_for(waiting, message="the send waiting on the key")
        raw_conn.execute("SELECT pg_terminate_backend(%s)", [first[0]])
        wait_for(lambda: (pids := waiting()) and pids != first, message="the retry waiting on the key")
        holder.commit()
        sender.join(30)
    assert got == [held.id]
    assert [r[0] for r in _keyed_jobs(raw_conn, schema, "broken")] == [held.id]


def test_concurrent_batches_sharing_keys_write_each_key_once(app, tasks, schema, database_url, raw_conn):
    """Two batches of the same keys in opposite orders, each in its own open transaction: the second
    waits for the first (the rows go in by key hash), none deadlocks, every key has one job."""
    calls = [((n, 0), {}) for n in range(200)]
    barrier = threading.Barrier(2)
    out: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def send(number: int, batch: list) -> None:
        try:
            with psycopg.connect(database_url) as conn:
                barrier.wait(30)
                out[number] = [r.id for r in tasks.by_args.apply_many(batch, countdown=60, connection=conn)]
                conn.commit()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(0, calls)), threading.Thread(target=send, args=(1, calls[::-1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert out[0] == out[1][::-1]  # both got, call by call, the one job of each key
    assert scalar(raw_conn, 'SELECT count(*) FROM {s}.jobs', schema=schema) == 200
