"""Task ids that are any string, as Celery allows (``task_id='report-2024-01'``): the job row
is written under the id's uuid5 (``sqlq.task.task_uuid``) and the string travels with the job, so
the task, the result handle and the worker's log all show the caller's id; reusing an id is a
DuplicateJobError while its job waits or runs, and runs the job again once it has finished."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sqlq.errors import DuplicateJobError
from sqlq.task import task_uuid
from tests.apps.harness import job_row, result_row, scalar, wait_for

TIMEOUT = 30


@pytest.fixture
def whoami(app):
    @app.task(bind=True)
    def whoami(self, tag=None):
        return {"id": self.request.id, "tag": tag}

    return whoami


def test_a_string_task_id_is_the_id_everywhere(app, whoami, run_worker, raw_conn, schema, caplog):
    result = whoami.apply_async(task_id="report-2024-01")
    assert result.id == "report-2024-01"
    row = job_row(raw_conn, schema, task_uuid("report-2024-01"))
    assert row is not None and row["headers"] == {"sqlq": {"id": "report-2024-01"}}
    with caplog.at_level(logging.INFO, logger="sqlq.worker"), run_worker(app):
        # a long safety poll: the handle must be woken by the FINISH notification of the row's id
        assert result.get(timeout=TIMEOUT, interval=120) == {"id": "report-2024-01", "tag": None}
        wait_for(lambda: "[report-2024-01] succeeded" in caplog.text, message=lambda: caplog.text)
    assert result_row(raw_conn, schema, task_uuid("report-2024-01"))["state"] == "SUCCESS"
    other = app.AsyncResult("report-2024-01")  # a fresh handle, from the id alone
    assert (other.state, other.result, other.id) == ("SUCCESS", {"id": "report-2024-01", "tag": None},
                                                     "report-2024-01")
    other.forget()
    assert app.AsyncResult("report-2024-01").state == "PENDING"
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.results", schema=schema) == 0


def test_send_task_and_async_sends_keep_the_string_id(app, whoami, run_worker):
    by_name = app.send_task(whoami.name, kwargs={"tag": "n"}, task_id="by-name")

    async def send():
        return await whoami.aapply_async(kwargs={"tag": "a"}, task_id="by-async")

    from_async = asyncio.run(send())
    unregistered = app.send_task("elsewhere.report", task_id="by-name-unknown")  # no local task
    assert (by_name.id, from_async.id, unregistered.id) == ("by-name", "by-async", "by-name-unknown")
    assert app.AsyncResult("by-name-unknown").state == "PENDING"
    with run_worker(app):
        assert by_name.get(timeout=TIMEOUT) == {"id": "by-name", "tag": "n"}
        assert from_async.get(timeout=TIMEOUT) == {"id": "by-async", "tag": "a"}


def test_a_string_task_id_can_be_revoked(app, whoami):
    result = whoami.apply_async(task_id="nightly-cleanup", countdown=600)
    assert app.AsyncResult("nightly-cleanup").revoke() is True
    assert result.state == "REVOKED"


def test_reusing_an_id_while_its_job_waits_is_a_clear_error(app, whoami, raw_conn, schema):
    whoami.apply_async(task_id="once-only")
    with pytest.raises(DuplicateJobError, match="already waiting or running"):
        whoami.apply_async(task_id="once-only")
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs", schema=schema) == 1


def test_reusing_an_id_after_its_job_finished_runs_it_again(app, whoami, run_worker):
    first = whoami.apply_async(("first",), task_id="daily-report")
    with run_worker(app) as worker:
        assert first.get(timeout=TIMEOUT)["tag"] == "first"
        again = whoami.apply_async(("second",), task_id="daily-report")
        wait_for(lambda: worker.app.AsyncResult("daily-report").result == {"id": "daily-report", "tag": "second"})
    assert again.get(timeout=TIMEOUT) == {"id": "daily-report", "tag": "second"}


def test_a_uuid_in_another_spelling_finds_the_same_job(app, whoami, run_worker):
    plain = whoami.delay()
    upper = plain.id.upper()
    assert app.AsyncResult(upper).state == "PENDING"
    with run_worker(app):
        assert plain.get(timeout=TIMEOUT)["id"] == plain.id
        assert app.AsyncResult(upper).get(timeout=TIMEOUT) == {"id": plain.id, "tag": None}
