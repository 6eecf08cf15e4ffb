"""Celery's ``Ignore`` and ``Reject`` raised in a task, on a real PostgreSQL with real workers (a
worker thread, and a prefork worker process for the wire between parent and child).

Celery stores nothing for ``Ignore``; a sqlq job must end recorded, so it ends REVOKED with the
type ``Ignore``. ``Reject(requeue=False)`` is a FAILURE ``Reject`` with the reason and the
traceback; ``Reject(requeue=True)`` puts the job back at once, counted as a retry, and past the
task's ``max_retries`` it is that FAILURE.
"""

from __future__ import annotations

import psycopg
import pytest

import sqlq
import sqlq.errors
import sqlq.exceptions
from sqlq import App
from sqlq.errors import TaskRevokedError
from sqlq.exceptions import Ignore, Reject
from tests.apps.harness import WorkerProcess, result_row, wait_for, wait_result


def test_celery_exception_names_carry_over():
    assert sqlq.exceptions.Ignore is sqlq.errors.Ignore is sqlq.Ignore
    assert sqlq.exceptions.Reject is sqlq.errors.Reject is sqlq.Reject
    assert sqlq.exceptions.Retry is sqlq.errors.Retry
    assert issubclass(sqlq.exceptions.Retry, sqlq.exceptions.TaskPredicate)
    assert sqlq.exceptions.CeleryError is sqlq.errors.SqlqError
    assert sqlq.exceptions.OperationalError is sqlq.errors.DatabaseUnavailableError
    reject = Reject("bad input", requeue=True)
    assert (reject.reason, reject.requeue, str(reject)) == ("bad input", True, "bad input")
    assert str(Reject()) == "rejected"


def _recording_hooks(app: App, called: list[str]) -> type:
    """A base class whose on_failure and after_return say in ``called`` that they ran."""

    class Hooked(app.Task):
        def on_failure(self, exc, task_id, args, kwargs, einfo):
            called.append("on_failure")

        def after_return(self, status, retval, task_id, args, kwargs, einfo):
            called.append(f"after_return {status}")

    return Hooked


def test_ignore_ends_revoked_without_hooks(app: App, run_worker, raw_conn: psycopg.Connection, schema: str):
    called: list[str] = []
    Hooked = _recording_hooks(app, called)

    @app.task(base=Hooked, name="t.ignore")
    def ignore_me():
        raise Ignore()

    @app.task(base=Hooked, name="t.ok")
    def ok():
        return 1

    with run_worker(app):
        ignored = ignore_me.delay()
        row = wait_result(raw_conn, schema, ignored.id)
        assert ok.delay().get(timeout=30) == 1  # (its after_return: the hooks do run for other tasks)
    assert (row["state"], row["exc_type"]) == ("REVOKED", "sqlq.errors.Ignore")
    assert row["exc_message"] == "the task raised Ignore"
    assert ignored.state == "REVOKED"
    with pytest.raises(TaskRevokedError, match="ended without an outcome: the task raised Ignore"):
        ignored.get(timeout=5)
    assert called == ["after_return SUCCESS"]


def test_reject_without_requeue_is_a_failure_with_its_reason(app: App, run_worker, raw_conn, schema: str):
    @app.task(name="t.reject")
    def reject_me(reason):
        raise Reject(reason, requeue=False)

    with run_worker(app):
        result = reject_me.delay("malformed payload")
        row = wait_result(raw_conn, schema, result.id)
    assert (row["state"], row["exc_type"], row["exc_message"]) == ("FAILURE", "sqlq.errors.Reject", "malformed payload")
    assert "raise Reject(reason, requeue=False)" in row["traceback"]
    with pytest.raises(Reject) as raised:
        result.get(timeout=5)
    assert (raised.value.reason, raised.value.requeue) == ("malformed payload", False)


def test_reject_with_requeue_runs_again_and_is_bounded_by_max_retries(app: App, run_worker, raw_conn, schema: str):
    runs: list[int] = []

    @app.task(bind=True, name="t.requeue", max_retries=5)
    def requeue_once(self):
        runs.append(self.request.retries)
        if self.request.retries == 0:
            raise Reject("not yet", requeue=True)
        return "second time"

    @app.task(name="t.forever", max_retries=2)
    def requeue_forever():
        raise Reject("never", requeue=True)

    with run_worker(app):
        again = requeue_once.delay()
        assert again.get(timeout=30) == "second time"
        forever = requeue_forever.delay()
        row = wait_result(raw_conn, schema, forever.id)
    assert runs == [0, 1]
    assert (row["state"], row["exc_type"], row["retries"]) == ("FAILURE", "sqlq.errors.Reject", 2)


def test_ignore_and_reject_in_a_prefork_worker(ops_app: App, tmp_path, raw_conn, schema: str):
    from tests.apps import operations

    worker = WorkerProcess(tmp_path / "worker.log", app_path="tests.apps.operations:app", concurrency=1)
    try:
        ignored = operations.ignored.delay()
        rejected = operations.rejected.delay("bad")
        requeued = operations.requeued_once.delay()
        always = operations.always_requeued.delay()
        assert requeued.get(timeout=60) == 1
        rows = [wait_result(raw_conn, schema, r.id, timeout=60) for r in (ignored, rejected, always)]
    finally:
        worker.stop()
    assert [(r["state"], r["exc_type"]) for r in rows] == [
        ("REVOKED", "sqlq.errors.Ignore"), ("FAILURE", "sqlq.errors.Reject"), ("FAILURE", "sqlq.errors.Reject")]
    assert rows[0]["exc_message"] == "the task raised Ignore: nothing to do"
    assert rows[2]["retries"] == 1
    assert result_row(raw_conn, schema, requeued.id)["retries"] == 1
    wait_for(lambda: "rejected" in worker.output(), message="the worker's log line for a rejected task")


def test_eager_calls_end_as_a_worker_records_them(app: App):
    called: list[str] = []
    Hooked = _recording_hooks(app, called)

    @app.task(base=Hooked, name="e.ignore")
    def ignore_me():
        raise Ignore("skip")

    @app.task(base=Hooked, name="e.reject")
    def reject_me():
        raise Reject("bad", requeue=False)

    @app.task(base=Hooked, bind=True, name="e.requeue", max_retries=2)
    def requeue_me(self):
        if self.request.retries < 1:
            raise Reject("again", requeue=True)
        return self.request.retries

    @app.task(base=Hooked, name="e.forever", max_retries=2)
    def requeue_forever():
        raise Reject("never", requeue=True)

    ignored = ignore_me.apply()
    assert ignored.state == "REVOKED"
    with pytest.raises(TaskRevokedError, match="the task raised Ignore: skip"):
        ignored.get()
    rejected = reject_me.apply()
    assert rejected.state == "FAILURE" and isinstance(rejected.result, Reject)
    assert "raise Reject" in rejected.traceback
    assert requeue_me.apply().get() == 1
    forever = requeue_forever.apply()
    assert (forever.state, forever.retries) == ("FAILURE", 2)
    assert called == ["after_return SUCCESS"]  # (requeue_me's second run; a rejection calls no hook)
