"""A job whose task its worker does not know is never failed in silence (real PostgreSQL, real
workers): the worker logs it at ERROR with the task and its ``-A``, and hands the job back for a
live worker of the queue that publishes the task; only when none does (or after
``worker_unknown_task_handbacks`` hand-backs) is it recorded as FAILURE ``NotRegistered``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import psycopg
import pytest

from sqlq import App
from tests.apps.harness import WorkerProcess, job_row, scalar, wait_for, wait_result


@pytest.fixture
def other_app(schema: str, database_url: str) -> Iterator[App]:
    """A second app on the test's schema, whose workers know other tasks than ``app``'s."""
    application = App("knows", database_url=database_url, schema=schema)
    yield application
    application.close()


def test_no_live_worker_knows_it_so_it_fails_not_registered(ops_app: App, tmp_path, raw_conn, schema: str):
    worker = WorkerProcess(tmp_path / "worker.log", app_path="tests.apps.operations:app", concurrency=1)
    try:
        job = ops_app.send_task("billing.charge", (1,))
        row = wait_result(raw_conn, schema, job.id, timeout=60)
        wait_for(lambda: "billing.charge" in worker.output(), message="the worker's ERROR line")
        output = worker.output()
    finally:
        worker.stop()
    assert (row["state"], row["exc_type"]) == ("FAILURE", "sqlq.errors.NotRegistered")
    assert "'billing.charge' is not registered on any live worker of queue 'default'" in row["exc_message"]
    line = next(x for x in output.splitlines() if "billing.charge" in x)
    assert "ERROR" in line and "-A tests.apps.operations:app" in line


def _busy(raw_conn: psycopg.Connection, schema: str, job_id: str, worker_id: str) -> bool:
    row = job_row(raw_conn, schema, job_id)
    return row is not None and row["state"] == "running" and str(row["worker_id"]) == worker_id


def test_it_is_handed_back_to_the_worker_that_knows_it(app: App, other_app: App, run_worker, caplog,
                                                       raw_conn: psycopg.Connection, schema: str):
    caplog.set_level(logging.ERROR, logger="sqlq.worker")
    release = threading.Event()

    @other_app.task(name="t.hold")
    def hold():
        release.wait(60)

    @other_app.task(name="t.known")
    def known(i):
        return i

    try:
        # the knowing worker (one slot, no prefetch) is kept busy, so only the other claims at first
        with run_worker(other_app, concurrency=1, prefetch_multiplier=1, hostname="knows@test") as knowing:
            published = wait_for(lambda: scalar(raw_conn, "SELECT tasks FROM {s}.workers", schema=schema),
                                 message="the knowing worker's row")
            assert {"t.hold", "t.known"} <= set(published)
            blocker = other_app.send_task("t.hold")
            wait_for(lambda: _busy(raw_conn, schema, blocker.id, knowing.id), message="the knowing worker busy")
            with run_worker(app, concurrency=2, hostname="ignorant@test"):
                jobs = [other_app.send_task("t.known", (i,)) for i in range(5)]
                wait_for(lambda: scalar(raw_conn, "SELECT count(*) FROM {s}.jobs WHERE handbacks > 0",
                                        schema=schema), message="a hand-back")
                release.set()
                rows = [wait_result(raw_conn, schema, j.id) for j in jobs]
    finally:
        release.set()
    assert [(r["state"], str(r["worker_id"])) for r in rows] == [("SUCCESS", knowing.id)] * 5
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "t.known" in r.getMessage()]
    assert errors and "not registered in this worker's app (-A tests)" in errors[0]


def test_hand_backs_are_bounded(app: App, other_app: App, run_worker, raw_conn, schema: str):
    release = threading.Event()

    @other_app.task(name="t.hold")
    def hold():
        release.wait(60)

    other_app.task(name="t.known")(lambda: None)
    app.conf.update(worker_unknown_task_handbacks=2)
    try:
        with run_worker(other_app, concurrency=1, prefetch_multiplier=1, hostname="knows@test") as knowing:
            wait_for(lambda: scalar(raw_conn, "SELECT count(*) FROM {s}.workers", schema=schema) == 1,
                     message="the knowing worker registered")
            blocker = other_app.send_task("t.hold")
            wait_for(lambda: _busy(raw_conn, schema, blocker.id, knowing.id), message="the knowing worker busy")
            with run_worker(app, concurrency=1, hostname="ignorant@test"):
                job = other_app.send_task("t.known")
                row = wait_result(raw_conn, schema, job.id)
            release.set()
    finally:
        release.set()
    assert (row["state"], row["exc_type"]) == ("FAILURE", "sqlq.errors.NotRegistered")
    assert "(handed back 2 time(s))" in row["exc_message"]
    assert row["attempts"] == 1  # hand-backs spend no attempt: the last claim is the only one counted


def test_reload_publishes_tasks_registered_after_the_start(app: App, run_worker, raw_conn, schema: str):
    def published() -> set[str]:
        return set(scalar(raw_conn, "SELECT tasks FROM {s}.workers", schema=schema) or [])

    with run_worker(app) as worker:
        wait_for(lambda: scalar(raw_conn, "SELECT count(*) FROM {s}.workers", schema=schema) == 1,
                 message="the worker's row")
        assert "t.late" not in published()
        app.task(name="t.late")(lambda: None)
        worker.reload()
        assert "t.late" in published()
