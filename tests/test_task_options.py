"""Per-call and per-task options in a real worker: time limits and ignore_result given to
apply_async, shadow names in the worker's log, the parent and root ids of a job sent from a running
task, track_started (a running job reads PENDING when off), reject_on_worker_lost on a lost worker's
job, and the broker-only options a Celery call may pass. Checks without a server:
tests/unit/test_task_classes.py."""

from __future__ import annotations

import logging
import os
import socket
import threading

import pytest

from sqlq import App, SoftTimeLimitExceeded
from tests.apps.harness import claim_as_dead_worker, result_row, wait_for

TIMEOUT = 30


def test_time_limits_per_call_override_the_tasks(app, run_worker):
    @app.task(bind=True, soft_time_limit=30)
    def nap(self, seconds):
        # in 0.1 s steps: the soft limit is an exception raised in the task's thread, which one long
        # wait would only see when it returns
        for _ in range(int(seconds * 10)):
            threading.Event().wait(0.1)
        return self.request.timelimit

    cut = nap.apply_async((10,), soft_time_limit=0.3)
    quick = nap.apply_async((0,), time_limit=12)
    with run_worker(app):
        with pytest.raises(SoftTimeLimitExceeded, match=r"soft time limit \(0.3 s\)"):
            cut.get(timeout=TIMEOUT)
        assert quick.get(timeout=TIMEOUT) == [12.0, 30]


def test_async_task_time_limit_per_call(app, run_worker):
    import asyncio

    @app.task
    async def snooze(seconds):
        await asyncio.sleep(seconds)
        return "woke"

    cut = snooze.apply_async((10,), soft_time_limit=0.3)
    with run_worker(app), pytest.raises(SoftTimeLimitExceeded, match="cancelled"):
        cut.get(timeout=TIMEOUT)


def test_ignore_result_per_call(app, run_worker, raw_conn, schema):
    @app.task
    def value():
        return "stored"

    kept, dropped = value.delay(), value.apply_async(ignore_result=True)
    with run_worker(app):
        assert kept.get(timeout=TIMEOUT) == "stored"
        assert dropped.get(timeout=TIMEOUT) is None
    assert result_row(raw_conn, schema, dropped.id)["state"] == "SUCCESS"
    assert result_row(raw_conn, schema, dropped.id)["result"] is None


def test_the_task_sees_only_its_callers_headers(app, run_worker):
    @app.task(bind=True)
    def seen(self):
        return {"headers": self.request.headers, "shadow": self.request.shadow}

    result = seen.apply_async(headers={"trace": "t1"}, time_limit=20, shadow="seen[eu]")
    with run_worker(app):
        assert result.get(timeout=TIMEOUT) == {"headers": {"trace": "t1"}, "shadow": "seen[eu]"}


def test_shadow_names_the_job_in_the_workers_log(app, run_worker, caplog):
    @app.task
    def generic(kind):
        return kind

    with caplog.at_level(logging.INFO, logger="sqlq.worker"):
        result = generic.apply_async(("pdf",), shadow="render.pdf")
        with run_worker(app):
            assert result.get(timeout=TIMEOUT) == "pdf"
            wait_for(lambda: f"render.pdf[{result.id}] succeeded" in caplog.text, message=lambda: caplog.text)


def test_a_job_sent_from_a_task_knows_its_parent_and_root(app, run_worker):
    @app.task(bind=True)
    def leaf(self):
        return {"parent": self.request.parent_id, "root": self.request.root_id}

    @app.task(bind=True)
    def middle(self):
        child = leaf.delay()
        return {"child": child.id, "children": [r.id for r in self.request.children], "root": self.request.root_id}

    @app.task(bind=True)
    def top(self, detached):
        child = middle.apply_async(add_to_parent=not detached)
        return {"child": child.id, "children": [r.id for r in self.request.children]}

    first, second = top.delay(False), top.delay(True)
    with run_worker(app, concurrency=3):
        out = first.get(timeout=TIMEOUT)
        assert out["children"] == [out["child"]]  # add_to_parent (the default)
        mid = app.AsyncResult(out["child"]).get(timeout=TIMEOUT)
        assert mid["children"] == [mid["child"]] and mid["root"] == first.id
        assert app.AsyncResult(mid["child"]).get(timeout=TIMEOUT) == {"parent": out["child"], "root": first.id}
        detached = second.get(timeout=TIMEOUT)
        assert detached["children"] == []  # add_to_parent=False: not kept, the parent id still travels


def test_track_started_false_reads_pending_while_running(app, run_worker):
    running, release = threading.Event(), threading.Event()

    @app.task
    def tracked():
        running.set()
        release.wait(TIMEOUT)

    @app.task(track_started=False)
    def quiet():
        running.set()
        release.wait(TIMEOUT)

    with run_worker(app, concurrency=1):
        for task, expected in ((tracked, "STARTED"), (quiet, "PENDING")):
            running.clear()
            release.clear()
            handle = task.delay()
            assert running.wait(TIMEOUT)
            assert handle.state == expected
            if expected == "STARTED":  # Celery's info of a started task: who runs it
                assert handle.info == {"pid": os.getpid(), "hostname": "sqlq@" + socket.gethostname()}
            else:
                assert handle.info is None  # as for any PENDING job
            release.set()
            wait_for(lambda h=handle: h.state == "SUCCESS")


def test_conf_track_started_false_applies_to_tasks_that_say_nothing(database_url, schema, run_worker):
    app = App("tests", database_url=database_url, schema=schema, task_track_started=False, set_as_current=False)
    app.migrate()
    running, release = threading.Event(), threading.Event()
    try:
        @app.task
        def plain():
            running.set()
            release.wait(TIMEOUT)

        @app.task(track_started=True)
        def loud():
            running.set()
            release.wait(TIMEOUT)

        with run_worker(app, concurrency=1):
            for task, expected in ((plain, "PENDING"), (loud, "STARTED")):
                running.clear()
                release.clear()
                handle = task.delay()
                assert running.wait(TIMEOUT)
                assert handle.state == expected
                release.set()
                wait_for(lambda h=handle: h.state == "SUCCESS")
    finally:
        app.close()


def test_reject_on_worker_lost_false_records_the_lost_job_as_failure(app, run_worker, raw_conn, schema):
    @app.task(acks_late=True)
    def rerun():
        return "ran again"

    @app.task(acks_late=True, reject_on_worker_lost=False)
    def once():
        return "never"

    again, lost = rerun.delay(), once.delay()
    dead = claim_as_dead_worker(app, again, lost)
    raw_conn.execute(f"UPDATE \"{schema}\".workers SET heartbeat_at = now() - interval '1 hour' WHERE id = %s",
                     (dead,))
    with run_worker(app):
        assert again.get(timeout=TIMEOUT) == "ran again"
        wait_for(lambda: lost.state == "FAILURE")
    assert result_row(raw_conn, schema, lost.id)["exc_type"] == "sqlq.errors.WorkerLostError"


def test_broker_options_of_a_celery_call_are_accepted(app, run_worker):
    @app.task
    def echo(x):
        return x

    result = echo.apply_async((1,), exchange_type="direct", delivery_mode=2, mandatory=False, compression="gzip",
                              retry=True, retry_policy={"max_retries": 3, "interval_start": 0})
    with run_worker(app):
        assert result.get(timeout=TIMEOUT) == 1


def test_sqlq_call_with_arguments_that_do_not_fit_prints_one_line(app, raw_conn, schema):
    """`sqlq call` of a registered task checks the arguments (typing) and says what is wrong in one
    line, without a traceback, and writes nothing."""
    from click.testing import CliRunner

    from sqlq.cli import main
    from tests.apps import routed

    routed.app.close()  # (forget a previous test's schema)
    try:
        result = CliRunner().invoke(main, ["-A", "tests.apps.routed", "call", "tests.routed.echo"])
    finally:
        routed.app.close()
    assert result.exit_code == 1
    assert "tests.routed.echo(value): missing a required argument: 'value'" in result.output
    assert "Traceback" not in result.output
    assert raw_conn.execute(f'SELECT count(*) FROM "{schema}".jobs').fetchone()[0] == 0
