"""AsyncResult states, values, errors, waiting (LISTEN/NOTIFY), forget and revoke."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import uuid

import psycopg
import pytest

from sqlq import App, TaskError
from sqlq.errors import Retry, TaskExpiredError, TaskRevokedError
from sqlq.errors import TimeoutError as SqlqTimeoutError
from sqlq.result import AsyncResult
from sqlq.store import Outcome
from tests.apps.harness import await_for, wait_for

TIMEOUT = 60


class PaymentDeclinedError(Exception):
    """Importable from the reader's process, so get() re-raises this very type."""


class NeedsTwoArgsError(Exception):
    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")


def _wait_for_state(result, state: str) -> None:
    wait_for(lambda: result.state == state, TIMEOUT, 0.05,
             message=lambda: f"{result.id} to reach {state} (last: {result.state})")


@pytest.fixture
def tasks(app: App):
    class Tasks:
        gate = threading.Event()
        calls: list = []

        @app.task
        def add(x, y):
            return x + y

        @app.task
        def fail(message="boom"):
            raise ValueError(message)

        @app.task
        def decline():
            raise PaymentDeclinedError("card 4242 declined")

        @app.task
        def needs_two():
            raise NeedsTwoArgsError(402, "payment required")

        @app.task
        def gated():
            Tasks.gate.wait(TIMEOUT)
            return "opened"

        @app.task(bind=True)
        def retry_later(self):
            raise self.retry(countdown=3600)

        @app.task
        def record(x):
            Tasks.calls.append(x)
            return x

    yield Tasks
    Tasks.gate.set()  # never leave a worker thread blocked


def _finish_by_hand(app: App, conn: psycopg.Connection, job_id: str, **outcome) -> None:
    """Record an outcome the way a worker does: claim the job, then FINISH it."""
    worker_id = str(uuid.uuid4())
    app.store.register_worker(conn, id=worker_id, hostname="test", pid=0, queues=["default"],
                              concurrency=1, pool="solo")
    (job,) = app.store.claim(conn, worker_id, "default", 1)
    assert job.id == job_id
    assert app.store.finish(conn, worker_id, [Outcome(id=job.id, attempt=job.attempt, **outcome)]) == 1


# --- states -------------------------------------------------------------------------------------

def test_unknown_and_waiting_jobs_are_pending(app: App, tasks):
    for result in (app.AsyncResult(str(uuid.uuid4())), tasks.add.delay(1, 2)):
        assert result.state == result.status == "PENDING"
        assert not result.ready() and not result.successful() and not result.failed()
        assert result.result is None and result.traceback is None and result.date_done is None


def test_success(app: App, tasks, run_worker, raw_conn):
    result = tasks.add.delay(2, 3)
    with run_worker(app) as worker:
        assert result.get(timeout=TIMEOUT) == 5
    assert result.state == "SUCCESS" and result.ready() and result.successful() and not result.failed()
    assert result.result == 5 and result.traceback is None
    assert isinstance(result.date_done, dt.datetime) and result.date_done.tzinfo is not None
    schema = app.conf.schema
    assert raw_conn.execute(f'SELECT count(*) FROM "{schema}".jobs').fetchone()[0] == 0
    row = raw_conn.execute(
        f"""SELECT task, queue, state, args, kwargs, result, attempts, worker_id::text,
                   enqueued_at <= started_at AND started_at <= finished_at, finished_at
            FROM "{schema}".results WHERE id = %s""", (result.id,)).fetchone()
    assert row[:9] == (tasks.add.name, "default", "SUCCESS", [2, 3], {}, 5, 1, worker.id, True)
    assert row[9] == result.date_done


def test_failure_reraises_the_original_type(app: App, tasks, run_worker):
    result = tasks.fail.delay("bad input")
    with run_worker(app):
        with pytest.raises(ValueError, match="bad input") as excinfo:
            result.get(timeout=TIMEOUT)
    assert "ValueError: bad input" in excinfo.value.remote_traceback
    assert result.state == "FAILURE" and result.failed() and result.ready() and not result.successful()
    assert isinstance(result.result, ValueError)
    assert "Traceback" in result.traceback and "raise ValueError(message)" in result.traceback
    returned = result.get(timeout=TIMEOUT, propagate=False)
    assert isinstance(returned, ValueError) and str(returned) == "bad input"


def test_failure_with_an_importable_custom_exception(app: App, tasks, run_worker):
    result = tasks.decline.delay()
    with run_worker(app):
        with pytest.raises(PaymentDeclinedError, match="card 4242 declined"):
            result.get(timeout=TIMEOUT)


def test_failure_whose_type_cannot_be_rebuilt_is_a_task_error(app: App, tasks, run_worker):
    result = tasks.needs_two.delay()
    with run_worker(app):
        with pytest.raises(TaskError) as excinfo:
            result.get(timeout=TIMEOUT)
    assert excinfo.value.exc_type == f"{__name__}.NeedsTwoArgsError"
    assert excinfo.value.exc_message == "402: payment required"


def test_failure_of_a_type_not_importable_here(app: App, tasks, raw_conn):
    result = tasks.add.delay(1, 2)
    _finish_by_hand(app, raw_conn, result.id, state="FAILURE", exc_type="nonexistent.module.Boom",
                    exc_message="it went boom", traceback="Traceback (most recent call last):\n  ...\nBoom")
    with pytest.raises(TaskError, match="nonexistent.module.Boom: it went boom") as excinfo:
        result.get(timeout=TIMEOUT)
    err = excinfo.value
    assert (err.exc_type, err.exc_message) == ("nonexistent.module.Boom", "it went boom")
    assert err.remote_traceback.endswith("Boom")
    assert isinstance(result.get(timeout=TIMEOUT, propagate=False), TaskError)


def test_started_while_running(app: App, tasks, run_worker):
    result = tasks.gated.delay()
    with run_worker(app):
        _wait_for_state(result, "STARTED")
        assert not result.ready()
        assert result.revoke() is False  # only jobs that have not started can be revoked
        tasks.gate.set()
        assert result.get(timeout=TIMEOUT) == "opened"


def test_retry_state(app: App, tasks, run_worker):
    result = tasks.retry_later.delay()
    with run_worker(app):
        _wait_for_state(result, "RETRY")
    assert result.retries == 1 and not result.ready()
    assert isinstance(result.result, Retry)  # Celery's RETRY result: what the last attempt raised


def test_expired(app: App, tasks, run_worker):
    result = tasks.record.apply_async((1,), expires=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    with run_worker(app):
        with pytest.raises(TaskExpiredError, match=result.id):
            result.get(timeout=TIMEOUT)
    assert result.state == "EXPIRED" and result.ready() and not result.successful() and not result.failed()
    assert tasks.calls == []


# --- waiting ------------------------------------------------------------------------------------

def _get_in_thread(result, timeout: float) -> tuple[threading.Thread, dict]:
    """get() with polling switched off (interval > timeout): only a NOTIFY can end it early."""
    out: dict = {}

    def wait() -> None:
        start = time.monotonic()
        try:
            out["value"] = result.get(timeout=timeout, interval=10 * timeout)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            out["error"] = exc
        out["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    waiter = result.app.result_waiter()
    wait_for(lambda: result.id in waiter._wakers, TIMEOUT,
             message="get() to register for its job's wake-up")  # get() is now waiting for its job
    return thread, out


def test_get_is_woken_by_a_workers_finish(app: App, tasks, run_worker):
    result = tasks.gated.delay()
    with run_worker(app):
        thread, out = _get_in_thread(result, timeout=TIMEOUT)
        tasks.gate.set()
        thread.join(TIMEOUT * 2)
    assert out.get("value") == "opened", out
    assert out["elapsed"] < TIMEOUT  # it never ran into its deadline: the NOTIFY woke it


def test_get_is_woken_by_a_finish_recorded_elsewhere(app: App, tasks, raw_conn):
    result = tasks.add.delay(1, 2)
    thread, out = _get_in_thread(result, timeout=TIMEOUT)
    _finish_by_hand(app, raw_conn, result.id, state="SUCCESS", result="3")
    thread.join(TIMEOUT * 2)
    assert out.get("value") == 3, out
    assert out["elapsed"] < TIMEOUT


def test_get_times_out_naming_the_task(app: App, tasks):
    result = tasks.add.delay(1, 2)
    with pytest.raises(SqlqTimeoutError) as excinfo:
        result.get(timeout=0.3)
    assert isinstance(excinfo.value, TimeoutError)  # also the builtin, for generic handlers
    message = str(excinfo.value)
    assert result.id in message and tasks.add.name in message and "PENDING" in message


async def test_aget_is_woken_by_the_finish(app: App, tasks, run_worker):
    """aget() LISTENs before its first read, so a finish is either seen by that read or notified;
    with polling switched off, returning before the deadline proves the wake-up."""
    result = await tasks.gated.adelay()
    with run_worker(app):
        asyncio.get_running_loop().call_later(0.2, tasks.gate.set)
        start = time.monotonic()
        assert await result.aget(timeout=TIMEOUT, interval=10 * TIMEOUT) == "opened"
        assert time.monotonic() - start < TIMEOUT


async def test_aget_returns_the_value(app: App, tasks, run_worker):
    result = await tasks.add.adelay(20, 22)
    with run_worker(app):
        assert await result.aget(timeout=TIMEOUT) == 42
    failing = await tasks.fail.adelay("async boom")
    with run_worker(app):
        with pytest.raises(ValueError, match="async boom"):
            await failing.aget(timeout=TIMEOUT)
        assert isinstance(await failing.aget(timeout=TIMEOUT, propagate=False), ValueError)


async def test_many_concurrent_agets_share_a_few_connections(app: App, tasks, run_worker, raw_conn, monkeypatch):
    """Each aget() used to LISTEN on a connection of its own: a few hundred concurrent awaits could
    exhaust max_connections. They now share the app's LISTEN connection and its bounded async pool."""
    # this test's own connections only, by their application_name: the server is shared
    name = app.conf.schema
    sep = "&" if "?" in app.database_url else "?"
    app.set_database_url(f"{app.database_url}{sep}application_name={name}")
    results = [await tasks.add.adelay(i, 1) for i in range(60)]
    backends = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{name}'"
    before = raw_conn.execute(backends).fetchone()[0]
    read: set[str] = set()
    state_read = AsyncResult._arow

    async def counted(result: AsyncResult) -> tuple | None:
        row = await state_read(result)
        read.add(result.id)
        return row

    monkeypatch.setattr(AsyncResult, "_arow", counted)
    waits = [asyncio.create_task(r.aget(timeout=TIMEOUT)) for r in results]
    # every aget is registered and has read PENDING at least once
    await await_for(lambda: len(read) == len(results), TIMEOUT, message=lambda: f"60 agets to read (read: {len(read)})")
    assert not any(w.done() for w in waits)
    # How many the pool opens depends on how fast the server answers (a busy machine overlaps more
    # reads); what holds is its bound, plus the one shared LISTEN connection, far below one per aget.
    bound = app._async_pool().limit + 1
    assert bound < len(results)
    assert raw_conn.execute(backends).fetchone()[0] - before <= bound
    with run_worker(app, pool="threads", concurrency=2):
        assert await asyncio.gather(*waits) == [i + 1 for i in range(60)]


async def test_aget_times_out_without_blocking_the_loop(app: App, tasks):
    result = await tasks.add.adelay(1, 2)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    background = asyncio.create_task(ticker())
    try:
        with pytest.raises(SqlqTimeoutError, match=result.id):
            await result.aget(timeout=0.5)
    finally:
        background.cancel()
    assert ticks > 0


# --- acting on results --------------------------------------------------------------------------

def test_forget(app: App, tasks, run_worker, raw_conn):
    result = tasks.add.delay(2, 2)
    with run_worker(app):
        assert result.get(timeout=TIMEOUT) == 4
    result.forget()
    assert result.state == "PENDING" and result.result is None
    count = raw_conn.execute(f'SELECT count(*) FROM "{app.conf.schema}".results WHERE id = %s',
                             (result.id,)).fetchone()[0]
    assert count == 0


def test_revoke_a_waiting_job(app: App, tasks, run_worker):
    revoked = tasks.record.delay("never")
    scheduled = tasks.record.apply_async(("never either",), countdown=3600)
    assert revoked.revoke() is True and scheduled.revoke() is True
    assert revoked.revoke() is False  # already final
    for result in (revoked, scheduled):
        assert result.state == "REVOKED" and result.ready() and not result.failed()
        assert isinstance(result.result, TaskRevokedError)
        with pytest.raises(TaskRevokedError):
            result.get(timeout=TIMEOUT)
    later = tasks.record.delay("ran")
    with run_worker(app):
        assert later.get(timeout=TIMEOUT) == "ran"
    assert tasks.calls == ["ran"]
    assert revoked.state == "REVOKED"


@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "in-transaction"])
@pytest.mark.parametrize("outcome", [{"state": "SUCCESS", "result": '{"run": 2}'},
                                     {"state": "FAILURE", "exc_type": "ValueError", "exc_message": "run 2"}],
                         ids=["FINISH_OK", "FINISH"])
def test_a_reused_task_id_replaces_the_earlier_result(app: App, tasks, raw_conn, in_transaction, outcome):
    """FINISH inserts plain rows; a results row left by an earlier job with the same id makes it fail
    (writing nothing) and the ON CONFLICT variant records the outcome, on an autocommit connection
    (the worker's) as in a transaction (a transactional task's, which goes straight to it)."""
    schema = app.conf.schema
    task_id = str(uuid.uuid4())
    first = tasks.add.apply_async((1, 1), task_id=task_id)
    _finish_by_hand(app, raw_conn, first.id, state="SUCCESS", result='{"run": 1}')
    again = tasks.add.apply_async((2, 2), task_id=task_id)
    worker_id = str(uuid.uuid4())
    with psycopg.connect(raw_conn.info.dsn, autocommit=not in_transaction) as conn:
        app.store.register_worker(conn, id=worker_id, hostname="test", pid=0, queues=["default"],
                                  concurrency=1, pool="solo")
        (job,) = app.store.claim(conn, worker_id, "default", 1)
        assert job.id == again.id == task_id and job.attempt == 1
        assert app.store.finish(conn, worker_id, [Outcome(id=job.id, attempt=job.attempt, **outcome)]) == 1
        assert app.store.finish(conn, worker_id, [Outcome(id=job.id, attempt=job.attempt, **outcome)]) == 0
        if in_transaction:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS  # never aborted
            conn.commit()
    row = raw_conn.execute(f'SELECT state, result::text, exc_message, worker_id::text '
                           f'FROM "{schema}".results WHERE id = %s', (task_id,)).fetchone()
    assert row == (outcome["state"], outcome.get("result") and '{"run": 2}', outcome.get("exc_message"), worker_id)
    assert raw_conn.execute(f'SELECT count(*) FROM "{schema}".jobs').fetchone()[0] == 0
