"""``self.retry()``, ``autoretry_for`` with exponential backoff, the RETRY state
while a job waits, and retries running out into a FAILURE that carries the original exception."""

from __future__ import annotations

import datetime as dt

import pytest

from sqlq import MaxRetriesExceededError
from tests.apps.harness import job_row, result_row, scalar, wait_for


class Flaky(Exception):
    """Importable, so the FAILURE rebuilds as this type."""


def test_retry_waits_in_state_retry_then_runs_again(app, run_worker, raw_conn, schema):
    @app.task(bind=True)
    def once_more(self):
        if self.request.retries == 0:
            raise self.retry(exc=Flaky("not yet"), countdown=3600)
        return ("done", self.request.retries, self.request.attempt)

    result = once_more.delay()
    with run_worker(app):
        wait_for(lambda: result.state == "RETRY", message="the job to be waiting for its retry")
        row = job_row(raw_conn, schema, result.id)
        assert row["state"] == "scheduled" and row["worker_id"] is None
        assert row["retries"] == 1 and row["last_error"] == f"{__name__}.Flaky: not yet"
        waiting = app.AsyncResult(result.id)  # Celery's RETRY result: the exception of the last attempt
        assert isinstance(waiting.result, Flaky) and str(waiting.result) == "not yet"
        assert scalar(raw_conn, "SELECT run_at > now() + interval '50 minutes' FROM {s}.jobs WHERE id = %s",
                      result.id, schema=schema)
        # bring the retry forward instead of waiting an hour: the worker promotes and runs it
        raw_conn.execute(f'UPDATE "{schema}".jobs SET run_at = now() WHERE id = %s', (result.id,))
        assert result.get(timeout=30) == ["done", 1, 2]
    row = result_row(raw_conn, schema, result.id)
    assert row["state"] == "SUCCESS" and row["retries"] == 1 and row["attempts"] == 2


def test_exhausted_retries_fail_with_the_original_exception(app, run_worker, raw_conn, schema):
    @app.task(bind=True, max_retries=2)
    def always(self):
        raise self.retry(exc=Flaky(f"attempt {self.request.attempt}"), countdown=0)

    @app.task(bind=True)
    def no_exc(self):
        raise self.retry(countdown=0, max_retries=1)

    original = always.delay()
    bare = no_exc.delay()
    with run_worker(app):
        with pytest.raises(Flaky, match="attempt 3"):
            original.get(timeout=30)
        with pytest.raises(MaxRetriesExceededError, match="used up its 1 retries"):
            bare.get(timeout=30)
    row = result_row(raw_conn, schema, original.id)
    assert row["state"] == "FAILURE" and row["retries"] == 2 and row["attempts"] == 3
    assert row["exc_type"] == f"{__name__}.Flaky"
    assert result_row(raw_conn, schema, bare.id)["retries"] == 1


def test_autoretry_for_retries_matching_errors_with_backoff(app, run_worker, raw_conn, schema):
    @app.task(bind=True, autoretry_for=(Flaky,), retry_backoff=0.01, retry_kwargs={"max_retries": 3})
    def eventually(self, succeed_on):
        if self.request.attempt < succeed_on:
            raise Flaky(f"attempt {self.request.attempt}")
        return self.request.attempt

    @app.task(autoretry_for=(Flaky,), retry_backoff=0.01, retry_kwargs={"max_retries": 3})
    def other_error():
        raise KeyError("not retried")

    recovers = eventually.delay(3)
    gives_up = eventually.delay(99)
    wrong_type = other_error.delay()
    with run_worker(app):
        assert recovers.get(timeout=30) == 3
        with pytest.raises(Flaky, match="attempt 4"):
            gives_up.get(timeout=30)
        with pytest.raises(KeyError):
            wrong_type.get(timeout=30)
    assert result_row(raw_conn, schema, recovers.id)["retries"] == 2
    assert result_row(raw_conn, schema, gives_up.id)["retries"] == 3
    assert result_row(raw_conn, schema, wrong_type.id)["retries"] == 0


def test_retry_from_a_prefork_child(basic_app, run_worker, raw_conn, schema):
    from tests.apps import basic

    result = basic.flaky.delay(2)
    with run_worker(basic_app, pool="prefork", concurrency=1):
        assert result.get(timeout=60) == 2
    assert result_row(raw_conn, schema, result.id)["attempts"] == 3


def test_retry_at_an_eta_is_placed_at_that_moment_not_on_the_workers_clock(app, run_worker, raw_conn, schema):
    """retry(eta=) names a moment, as apply_async(eta=) does: run_at is that moment exactly (not
    the worker's idea of "now" plus a delay), and a moment already past means "run again now"."""
    moment = dt.datetime(2031, 5, 17, 9, 30, 15, 250_000, tzinfo=dt.UTC)

    @app.task(bind=True)
    def at_moment(self, naive):
        if self.request.retries == 0:
            raise self.retry(eta=moment.replace(tzinfo=None) if naive else moment)
        return "ran"

    @app.task(bind=True)
    def at_past(self):
        if self.request.retries == 0:
            raise self.retry(eta=dt.datetime(2001, 1, 1, tzinfo=dt.UTC))
        return self.request.retries

    aware, naive, past = at_moment.delay(False), at_moment.delay(True), at_past.delay()
    with run_worker(app):
        assert past.get(timeout=30) == 1
        for result in (aware, naive):
            wait_for(lambda result=result: result.state == "RETRY", message="the job to wait for its retry")
            row = job_row(raw_conn, schema, result.id)
            assert row["state"] == "scheduled" and row["run_at"] == moment
