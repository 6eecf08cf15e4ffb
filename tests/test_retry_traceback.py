"""A job waiting for its retry keeps the traceback of the attempt that asked for it, so that
``AsyncResult(id).traceback`` of a RETRY job is its last attempt's, as in Celery (a thread worker and
a prefork worker process, whose child sends it to the parent with the retry)."""

from __future__ import annotations

from sqlq import App
from tests.apps.harness import WorkerProcess, job_row, wait_for


def _retrying(raw_conn, schema: str, job_id: str):
    row = job_row(raw_conn, schema, job_id)
    return row is not None and row["retries"] == 1 and row["state"] == "scheduled" and row


def test_a_retry_keeps_its_attempts_traceback(app: App, run_worker, raw_conn, schema: str):
    @app.task(bind=True, name="t.flaky", max_retries=3, autoretry_for=(ZeroDivisionError,),
              retry_backoff=60, retry_jitter=False)
    def flaky(self):
        return 1 / 0

    @app.task(bind=True, name="t.explicit", max_retries=3)
    def explicit(self):
        try:
            {}["missing"]
        except KeyError as exc:
            raise self.retry(exc=exc, countdown=60) from exc

    with run_worker(app):
        auto, called = flaky.delay(), explicit.delay()
        wait_for(lambda: _retrying(raw_conn, schema, auto.id), message="the autoretry to be scheduled")
        wait_for(lambda: _retrying(raw_conn, schema, called.id), message="the retry to be scheduled")
    assert auto.state == "RETRY"
    assert "return 1 / 0" in auto.traceback and "ZeroDivisionError: division by zero" in auto.traceback
    assert isinstance(auto.result, ZeroDivisionError)
    assert called.state == "RETRY"
    assert "KeyError: 'missing'" in called.traceback and "self.retry(exc=exc, countdown=60)" in called.traceback
    assert auto.result.remote_traceback == auto.traceback  # (the rebuilt exception carries its text)


def test_a_prefork_childs_retry_keeps_its_traceback(ops_app: App, tmp_path, raw_conn, schema: str):
    from tests.apps import operations

    worker = WorkerProcess(tmp_path / "worker.log", app_path="tests.apps.operations:app", concurrency=1)
    try:
        result = operations.retry_later.delay()
        wait_for(lambda: _retrying(raw_conn, schema, result.id), timeout=60, message="the retry to be scheduled")
    finally:
        worker.stop()
    assert result.state == "RETRY"
    assert "KeyError: 'missing'" in result.traceback and "retry_later" in result.traceback
