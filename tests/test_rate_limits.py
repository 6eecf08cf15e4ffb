"""Rate limits on a real PostgreSQL: one token bucket per task shared by every worker (so three
worker processes together stay under one limit), limited jobs that never hold back the other tasks'
jobs of their queue, limits changed live, the code's limits declared at each worker start, the
setting that turns enforcement off, and the migration that adds the table.

The measured bound: a bucket holds at most ``capacity`` tokens and gains ``rate`` a second, and
each claimed job took one, counted at a time no earlier than its claim statement began (the
``started_at`` its results row keeps: CLAIM_RATE_LIMITED counts at greatest(refilled_at, now())).
So the N jobs whose claims began between t0 and t1 number at most ``capacity + rate * (t1 - t0)``,
whatever the number of workers.
"""

from __future__ import annotations

import psycopg
import pytest

from sqlq import App
from sqlq import migrate as sqlq_migrate
from sqlq.errors import ConfigurationError
from sqlq.rate_limits import capacity, rate_limits, set_rate_limit
from sqlq.worker.worker import Worker
from tests.apps.harness import WorkerProcess, job_row, scalar, wait_for
from tests.test_schema_migrations import _schema_diff

# (a float's rounding in the bucket's arithmetic, and no more)
EPSILON = 1e-6


def _finished(conn: psycopg.Connection, schema: str, task: str) -> int:
    return scalar(conn, "SELECT count(*) FROM {s}.results WHERE task = %s AND state = 'SUCCESS'", task,
                  schema=schema)


def _span(conn: psycopg.Connection, schema: str, task: str) -> float:
    """Seconds between the first and the last claim of ``task``'s jobs (their results' started_at)."""
    return float(scalar(conn, "SELECT extract(epoch FROM max(started_at) - min(started_at)) FROM {s}.results "
                              "WHERE task = %s", task, schema=schema))


def _waiting(conn: psycopg.Connection, schema: str, task: str) -> int:
    return scalar(conn, "SELECT count(*) FROM {s}.jobs WHERE task = %s AND state = 'available'", task,
                  schema=schema)


# --- across workers -----------------------------------------------------------------------------

def test_three_worker_processes_run_at_most_the_limit_together(schema, raw_conn, tmp_path):
    """60 jobs of a '10/s' task, three worker processes (one of each pool): together they start at
    most capacity + 10 * span jobs (a per-worker bucket, as Celery's, would run ~3 times that)."""
    from tests.apps import rated

    rated.app.close()
    rated.app.migrate()
    try:
        rated.app.tasks[rated.limited.name].delay_many([(i,) for i in range(60)])
        workers = [WorkerProcess(tmp_path / f"{pool}.log", app_path="tests.apps.rated:app", pool=pool)
                   for pool in ("threads", "prefork", "solo")]
        try:
            wait_for(lambda: _finished(raw_conn, schema, rated.limited.name) == 60, timeout=60,
                     message=lambda: f"60 results, {_finished(raw_conn, schema, rated.limited.name)} so far; "
                                     + " | ".join(w.output()[-300:] for w in workers))
        finally:
            for w in workers:
                w.stop()
    finally:
        rated.app.close()
    rate, burst = 10.0, capacity(10.0)
    span = _span(raw_conn, schema, rated.limited.name)
    assert 60 <= burst + rate * span + EPSILON, f"60 jobs claimed within {span:.2f}s: over 10/s"
    # and not starved either: the bucket's rate is what they got, give or take the polls
    assert span < (60 - burst) / rate + 5, f"60 jobs took {span:.2f}s"
    runners = scalar(raw_conn, "SELECT count(DISTINCT worker_id) FROM {s}.results", schema=schema)
    assert runners >= 2, "the jobs were not shared between the worker processes"


# --- one worker ---------------------------------------------------------------------------------

def test_an_unlimited_task_is_not_held_back_by_a_limited_one_queued_before_it(app, run_worker, raw_conn, schema):
    @app.task
    def slow(i):
        return i

    @app.task
    def fast(i):
        return i

    slow.rate_limit = "1/m"  # one token: one job, then one a minute
    for i in range(5):
        slow.delay(i)
    fast_results = [fast.delay(i) for i in range(5)]
    with run_worker(app, pool="threads", concurrency=2):
        assert [r.get(timeout=30) for r in fast_results] == list(range(5))
        wait_for(lambda: _finished(raw_conn, schema, slow.name) == 1)
        assert _waiting(raw_conn, schema, slow.name) == 4
    (limit,) = rate_limits(app)
    assert (limit.task, limit.rate, limit.capacity) == (slow.name, 1 / 60, 1.0)
    assert limit.tokens < 1


def test_a_limited_task_with_tokens_is_not_starved_by_a_backlog_of_other_jobs(app, run_worker, raw_conn, schema):
    """Each claim round offers the limited tasks their tokens first: jobs of a limited task queued
    behind 300 others run long before the backlog is through."""
    @app.task
    def bulk(i):
        return i

    @app.task
    def paced(i):
        return i

    paced.rate_limit = "100/s"
    bulk.delay_many([(i,) for i in range(300)])
    results = [paced.delay(i) for i in range(3)]
    with run_worker(app, pool="solo", prefetch_multiplier=4):
        assert [r.get(timeout=30) for r in results] == [0, 1, 2]
        wait_for(lambda: _finished(raw_conn, schema, bulk.name) == 300)
    bulk_after = scalar(raw_conn, "SELECT count(*) FROM {s}.results WHERE task = %s AND started_at > "
                                  "(SELECT max(started_at) FROM {s}.results WHERE task = %s)",
                        bulk.name, paced.name, schema=schema)
    assert bulk_after > 250, f"only {bulk_after} of the 300 earlier jobs started after the limited ones"


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_a_bucket_with_tokens_to_spare_runs_jobs_at_once(app, run_worker, raw_conn, schema, pool):
    """A fresh bucket is full: with '100/s', 50 jobs start without waiting for any refill."""
    @app.task
    def burst(i):
        return i

    burst.rate_limit = "100/s"
    results = [burst.delay(i) for i in range(50)]
    with run_worker(app, pool=pool, concurrency=2):
        assert [r.get(timeout=30) for r in results] == list(range(50))
    assert _span(raw_conn, schema, burst.name) < 0.5 + 50 / 100


def test_a_burst_worker_waits_out_the_limit_and_then_exits(app, raw_conn, schema):
    """`worker --burst` runs every due job, rate-limited ones included (claimed as their tokens
    come), and exits only when none is left."""
    @app.task
    def paced(i):
        return i

    paced.rate_limit = "20/s"
    for i in range(30):
        paced.delay(i)
    assert Worker(app, pool="solo", burst=True).run() == 0
    assert _finished(raw_conn, schema, paced.name) == 30
    assert 30 <= capacity(20.0) + 20.0 * _span(raw_conn, schema, paced.name) + EPSILON


def test_an_idle_worker_starts_a_limited_job_at_once(app, run_worker, raw_conn, schema):
    """Woken by NOTIFY as for any job, not at the next poll: a look for the task's jobs that was put
    off (rate_limits.IDLE_RECHECK) wakes the consumer when it is due."""
    @app.task
    def prompt(i):
        return i

    prompt.rate_limit = "100/s"
    with run_worker(app, pool="threads", concurrency=1, poll_interval=2.0) as worker:
        wait_for(lambda: worker._limited == (prompt.name,) and _registered(raw_conn, schema))
        for i in range(5):
            assert prompt.delay(i).get(timeout=30) == i
    waits = [row[0] for row in raw_conn.execute(
        f'SELECT extract(epoch FROM started_at - enqueued_at) FROM "{schema}".results').fetchall()]
    assert len(waits) == 5 and max(waits) < 1.0, waits


def test_a_limit_set_live_applies_without_a_restart(app, run_worker, raw_conn, schema):
    @app.task
    def mail(i):
        return i

    with run_worker(app, pool="threads", concurrency=2) as worker:
        wait_for(lambda: worker.pool.running() is not None and _registered(raw_conn, schema))
        assert worker._limited == ()  # no limit: plain claims
        assert set_rate_limit(app, mail.name, "1/m") == 1 / 60
        wait_for(lambda: worker._limited == (mail.name,), timeout=10, message="the worker to read the new limit")
        results = [mail.delay(i) for i in range(3)]
        wait_for(lambda: _finished(raw_conn, schema, mail.name) == 1)
        assert _waiting(raw_conn, schema, mail.name) == 2  # the bucket's one token was spent
        assert set_rate_limit(app, mail.name, None) is None  # removed: the rest run at once
        assert sorted(r.get(timeout=30) for r in results) == [0, 1, 2]
        assert rate_limits(app) == []


def test_raising_a_limit_live_lets_the_waiting_jobs_run(app, run_worker, raw_conn, schema):
    @app.task
    def report(i):
        return i

    report.rate_limit = "1/h"
    results = [report.delay(i) for i in range(10)]
    with run_worker(app, pool="threads", concurrency=2):
        wait_for(lambda: _finished(raw_conn, schema, report.name) == 1)
        set_rate_limit(app, report.name, "1000/s")
        assert sorted(r.get(timeout=30) for r in results) == list(range(10))
    assert [(r.task, r.rate) for r in rate_limits(app)] == [(report.name, 1000.0)]


def _registered(conn: psycopg.Connection, schema: str) -> bool:
    return bool(scalar(conn, "SELECT count(*) FROM {s}.workers", schema=schema))


def test_a_worker_start_declares_the_codes_limits(app, run_worker, raw_conn, schema):
    """Code is the source at each deploy: a started worker makes the table say what its tasks
    declare, over a value set live, and removes the row of a task its code declares unlimited."""
    @app.task
    def coded(i):
        return i

    @app.task
    def uncoded(i):
        return i

    coded.rate_limit = "5/s"
    set_rate_limit(app, coded.name, "1/h")
    set_rate_limit(app, uncoded.name, "1/h")
    set_rate_limit(app, "other.app.task", "2/s")  # a task this app does not register: left alone
    with run_worker(app, pool="threads", concurrency=1) as worker:
        wait_for(lambda: worker._limited == (coded.name,), message="the worker's start-up")
    assert {r.task: (r.rate, r.capacity) for r in rate_limits(app)} == {coded.name: (5.0, 5.0),
                                                                        "other.app.task": (2.0, 2.0)}


def test_task_default_rate_limit_limits_every_task_without_its_own(app, run_worker):
    @app.task
    def a(i):
        return i

    @app.task
    def b(i):
        return i

    b.rate_limit = "7/m"
    app.conf.task_default_rate_limit = "3/s"
    with run_worker(app, pool="threads", concurrency=1) as worker:
        wait_for(lambda: len(worker._limited) == 2, message="the worker's start-up")
    assert {r.task: r.rate for r in rate_limits(app)} == {a.name: 3.0, b.name: 7 / 60}


def test_worker_disable_rate_limits_ignores_the_limits_in_that_worker(app, run_worker, raw_conn, schema):
    """Celery's setting: that worker neither declares nor enforces limits (other workers still do)."""
    @app.task
    def capped(i):
        return i

    set_rate_limit(app, capped.name, "1/h")
    capped.rate_limit = "2/h"
    app.conf.worker_disable_rate_limits = True
    results = [capped.delay(i) for i in range(5)]
    with run_worker(app, pool="threads", concurrency=2):
        assert sorted(r.get(timeout=30) for r in results) == list(range(5))
    (limit,) = rate_limits(app)
    assert limit.rate == 1 / 3600 and limit.tokens == pytest.approx(1.0)  # not declared, no token taken


# --- bad input ----------------------------------------------------------------------------------

def test_bad_rates_are_refused_at_set_time_and_at_worker_start(app):
    @app.task
    def t(i):
        return i

    with pytest.raises(ConfigurationError, match=r"'ten/s' is not a rate; write a number of tasks per second"):
        set_rate_limit(app, t.name, "ten/s")
    t.rate_limit = "10/x"
    with pytest.raises(ConfigurationError, match=rf"rate_limit of task '{t.name}'='10/x' is not a rate"):
        Worker(app, pool="threads", concurrency=1)
    t.rate_limit = None
    app.conf.task_default_rate_limit = -5
    with pytest.raises(ConfigurationError, match=r"task_default_rate_limit=-5 is not a rate"):
        Worker(app, pool="threads", concurrency=1)
    assert rate_limits(app) == []


def test_a_row_written_by_hand_with_an_impossible_rate_is_refused(app, raw_conn, schema):
    with pytest.raises(psycopg.errors.CheckViolation):
        raw_conn.execute(f'INSERT INTO "{schema}".rate_limits (task, rate, capacity, tokens) VALUES (%s, 0, 1, 1)',
                         ("t",))


# --- the store ----------------------------------------------------------------------------------

def test_a_claim_takes_whole_tokens_and_says_when_the_next_one_comes(app, raw_conn, schema):
    @app.task
    def job(i):
        return i

    ids = [job.apply_async((i,), priority=i % 2).id for i in range(6)]
    store = app.store
    with app.connection() as conn:
        store.register_worker(conn, id="00000000-0000-0000-0000-000000000001", hostname="h", pid=1,
                              queues=["default"], concurrency=1, pool="threads")
        store.rate_limits_set(conn, job.name, 3.0)  # capacity 3, full
        first = store.claim_rate_limited(conn, "00000000-0000-0000-0000-000000000001", "default", job.name, 100)
        assert [j.id for j in first.jobs] == [ids[1], ids[3], ids[5]]  # priority first, then FIFO
        assert first.retry_in is not None and 0 < first.retry_in <= 1 / 3
        second = store.claim_rate_limited(conn, "00000000-0000-0000-0000-000000000001", "default", job.name, 100)
        assert second.jobs == [] or len(second.jobs) == 1  # (a third of a second may have passed)
        assert store.rate_limits(conn)[0].tokens < 1
        # the limit removed meanwhile: no row, no limit
        store.rate_limits_set(conn, job.name, None)
        rest = store.claim_rate_limited(conn, "00000000-0000-0000-0000-000000000001", "default", job.name, 100)
        assert len(first.jobs) + len(second.jobs) + len(rest.jobs) == 6 and rest.retry_in is None
        # the unlimited claim leaves the limited tasks' jobs alone
        other = job.delay(99).id
        assert store.claim_unlimited(conn, "00000000-0000-0000-0000-000000000001", "default", 10, [job.name]) == []
        assert job_row(raw_conn, schema, other)["state"] == "available"


def test_concurrent_claims_never_spend_a_token_twice(app, raw_conn, schema):
    """Eight connections claiming one task's jobs as fast as they can, for a second: together they
    claim at most capacity + rate * (last claim - first claim), by the rows' own started_at."""
    import threading
    import time

    @app.task
    def contended(i):
        return i

    contended.delay_many([(i,) for i in range(400)])
    worker_id = "00000000-0000-0000-0000-000000000003"
    with app.connection() as conn:
        app.store.register_worker(conn, id=worker_id, hostname="h", pid=1, queues=["default"], concurrency=8,
                                  pool="threads")
        app.store.rate_limits_set(conn, contended.name, 20.0)
    claimed: list[int] = []
    errors: list[BaseException] = []
    deadline = time.monotonic() + 1.0

    def hammer() -> None:
        try:
            with psycopg.connect(app.database_url, autocommit=True) as conn:
                while time.monotonic() < deadline:
                    claimed.append(len(app.store.claim_rate_limited(conn, worker_id, "default", contended.name,
                                                                    50).jobs))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    total = sum(claimed)
    span = float(scalar(raw_conn, "SELECT coalesce(extract(epoch FROM max(started_at) - min(started_at)), 0) "
                                  "FROM {s}.jobs WHERE state = 'running'", schema=schema))
    assert total == scalar(raw_conn, "SELECT count(*) FROM {s}.jobs WHERE state = 'running'", schema=schema)
    assert capacity(20.0) <= total <= capacity(20.0) + 20.0 * span + EPSILON, (total, span, len(claimed))


def test_an_empty_claim_writes_nothing_to_the_bucket(app, raw_conn, schema):
    store = app.store
    with app.connection() as conn:
        store.register_worker(conn, id="00000000-0000-0000-0000-000000000002", hostname="h", pid=1,
                              queues=["default"], concurrency=1, pool="threads")
        store.rate_limits_set(conn, "t.idle", 5.0)
        before = scalar(raw_conn, "SELECT (tokens, refilled_at)::text FROM {s}.rate_limits", schema=schema)
        claim = store.claim_rate_limited(conn, "00000000-0000-0000-0000-000000000002", "default", "t.idle", 10)
        assert claim.jobs == [] and claim.retry_in is None
        assert scalar(raw_conn, "SELECT (tokens, refilled_at)::text FROM {s}.rate_limits", schema=schema) == before
        # re-declaring the same rate leaves the bucket as it is
        assert store.rate_limits_set(conn, "t.idle", 5.0).written == 0


# --- the migration ------------------------------------------------------------------------------

def test_the_migration_downgrades_and_upgrades(app: App, raw_conn: psycopg.Connection, schema: str):
    set_rate_limit(app, "t.kept", "1/s")
    sqlq_migrate.downgrade(app.engine, schema, "0004")
    assert scalar(raw_conn, "SELECT to_regclass(%s)::text", f'"{schema}".rate_limits') is None
    assert app.migration_status()[0] == "0004"
    app.migrate()
    assert app.migration_status()[0] == sqlq_migrate.HEAD_REVISION  # 0005 and whatever came after it
    assert scalar(raw_conn, "SELECT to_regclass(%s)::text", f'"{schema}".rate_limits') is not None
    assert _schema_diff(app) == []
    assert rate_limits(app) == []


# --- the command line ---------------------------------------------------------------------------

def test_sqlq_rate_limits_lists_the_limits_and_their_tokens(app):
    from click.testing import CliRunner

    from sqlq.cli import main

    runner = CliRunner()
    empty = runner.invoke(main, ["rate-limits"])
    assert empty.exit_code == 0, empty.output
    assert "no rate limits" in empty.output
    set_rate_limit(app, "proj.send_mail", "120/m")
    listed = runner.invoke(main, ["rate-limits"])
    assert listed.exit_code == 0, listed.output
    (line,) = [line for line in listed.output.splitlines() if line.startswith("proj.send_mail")]
    assert line.split() == ["proj.send_mail", "2", "120", "2", "2.00"]
