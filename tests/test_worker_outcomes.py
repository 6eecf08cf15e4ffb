"""What a finished job leaves in ``results`` — value, failure details, times,
attempts, worker id — and jobs that cannot run (expired, unknown task, bad payload)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from psycopg import sql

from sqlq.errors import NotRegistered, SerializationError, TaskError, TaskExpiredError
from tests.apps.harness import result_row, scalar, wait_result


class CustomError(Exception):
    """Importable, so the caller gets the task's own exception type back."""


def test_success_records_value_times_attempts_and_worker(app, run_worker, raw_conn, schema):
    @app.task
    def mul(x, y):
        return {"product": x * y}

    result = mul.delay(6, 7)
    with run_worker(app) as worker:
        assert result.get(timeout=30) == {"product": 42}
    row = result_row(raw_conn, schema, result.id)
    assert row["state"] == "SUCCESS"
    assert row["result"] == {"product": 42}
    assert row["task"] == mul.name and row["args"] == [6, 7]
    assert row["attempts"] == 1 and row["retries"] == 0
    assert str(row["worker_id"]) == worker.id
    assert row["enqueued_at"] <= row["started_at"] <= row["finished_at"]
    assert row["exc_type"] is None and row["traceback"] is None
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs", schema=schema) == 0  # left the hot table


def test_ignore_result_keeps_the_row_without_the_value(app, run_worker, raw_conn, schema):
    @app.task(ignore_result=True)
    def quiet():
        return "not stored"

    result = quiet.delay()
    with run_worker(app):
        assert result.get(timeout=30) is None
    row = result_row(raw_conn, schema, result.id)
    assert row["state"] == "SUCCESS" and row["result"] is None and row["result_payload"] is None


def test_failure_records_type_message_and_traceback(app, run_worker, raw_conn, schema):
    @app.task
    def explode(reason):
        raise CustomError(f"exploded: {reason}")

    result = explode.delay("on purpose")
    with run_worker(app):
        with pytest.raises(CustomError, match="exploded: on purpose"):
            result.get(timeout=30)
    row = result_row(raw_conn, schema, result.id)
    assert row["state"] == "FAILURE"
    assert row["exc_type"] == f"{__name__}.CustomError"
    assert row["exc_message"] == "exploded: on purpose"
    assert "in explode" in row["traceback"] and 'raise CustomError(f"exploded: {reason}")' in row["traceback"]
    assert row["attempts"] == 1 and row["started_at"] <= row["finished_at"]
    assert result.traceback == row["traceback"]


def test_unserializable_return_value_is_a_clear_failure(app, run_worker, raw_conn, schema):
    @app.task
    def gives_object():
        return object()

    result = gives_object.delay()
    with run_worker(app):
        with pytest.raises(SerializationError, match="cannot be serialized with json.*return plain data"):
            result.get(timeout=30)


def test_expired_job_is_recorded_expired_and_never_runs(app, run_worker, raw_conn, schema):
    ran = []

    @app.task
    def perishable():
        ran.append(1)

    gone = perishable.apply_async(expires=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    fresh = perishable.apply_async(expires=3600)
    with run_worker(app, pool="solo"):
        assert fresh.get(timeout=30) is None
        with pytest.raises(TaskExpiredError):
            gone.get(timeout=30)
    assert ran == [1]  # only the fresh one
    row = result_row(raw_conn, schema, gone.id)
    assert row["state"] == "EXPIRED" and "was not run" in row["exc_message"]


def _raw_job(conn, schema: str, task: str, args: str, content_type: str = "application/json",
             payload: bytes | None = None) -> str:
    """A job written by something other than sqlq (another client, a hand-written INSERT)."""
    job_id = str(uuid.uuid4())
    conn.execute(
        sql.SQL("INSERT INTO {}.jobs (id, task, queue, state, args, kwargs, content_type, payload) "
                "VALUES (%s, %s, 'default', 'available', %s::jsonb, '{{}}'::jsonb, %s, %s)")
        .format(sql.Identifier(schema)),
        (job_id, task, args, content_type, payload))
    return job_id


def test_jobs_that_cannot_run_fail_clearly_and_the_worker_keeps_going(app, run_worker, raw_conn, schema):
    @app.task
    def echo(x):
        return x

    unknown = app.send_task("nobody.defines.this", args=[1])
    object_args = _raw_job(raw_conn, schema, echo.name, '{"x": 1}')
    pickled = _raw_job(raw_conn, schema, echo.name, "null", "application/x-python-serialize", b"\x80garbage")
    after = echo.delay("still alive")
    with run_worker(app, pool="solo"):
        assert after.get(timeout=30) == "still alive"
        with pytest.raises(NotRegistered, match="'nobody.defines.this' is not registered"):
            unknown.get(timeout=30)
        rows = {job: wait_result(raw_conn, schema, job) for job in (object_args, pickled)}

    assert rows[object_args]["state"] == "FAILURE"
    assert rows[object_args]["exc_type"] == "sqlq.errors.SerializationError"
    assert "args must be a JSON array" in rows[object_args]["exc_message"]
    assert rows[pickled]["state"] == "FAILURE"
    assert "not in accept_content" in rows[pickled]["exc_message"]
    assert isinstance(app.AsyncResult(object_args).result, SerializationError | TaskError)


def test_unserializable_return_value_is_a_logged_and_signalled_failure(app, run_worker, caplog):
    import threading as _threading

    from sqlq import signals

    seen = []

    @app.task(name="outcomes.returns_object")
    def returns_object():
        return _threading.Lock()

    def on_failure(sender=None, exception=None, **kwargs):
        seen.append(type(exception).__name__)

    signals.task_failure.connect(on_failure)
    try:
        result = returns_object.delay()
        with caplog.at_level("ERROR", logger="sqlq"), run_worker(app, pool="threads"):
            exc = result.get(timeout=30, propagate=False)
        assert result.state == "FAILURE"
        assert "cannot be serialized with json" in str(exc)
        assert seen == ["SerializationError"]
        assert any("returns_object" in r.getMessage() and "raised unexpected" in r.getMessage() for r in caplog.records)
    finally:
        signals.task_failure.disconnect(on_failure)
