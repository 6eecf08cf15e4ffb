"""``self.update_state`` on a real database with a real worker: a running job's reported state and
meta are read from ``AsyncResult.state``/``.info``/``.result`` while it runs, the outcome replaces
them, another job's state can be set by id, a retried job shows no progress of its earlier
attempt, and what is refused (a job not running, an outcome's state name, meta that is not JSON)
is refused with a message. In eager mode the running call's result changes and no database is used."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from sqlq import eager
from sqlq.errors import ConfigurationError, SerializationError
from tests.apps.harness import wait_for


def test_progress_is_read_while_the_job_runs_and_the_outcome_replaces_it(app, run_worker):
    gate = threading.Event()

    @app.task(name="proj.long", bind=True, track_started=False)
    def long(self, n):
        for i in range(n):
            self.update_state(state="PROGRESS", meta={"current": i + 1, "total": n})
        assert gate.wait(30)
        return "done"

    r = long.delay(3)
    with run_worker(app):
        # (the three updates follow each other: a read may come between two of them)
        wait_for(lambda: r.state == "PROGRESS" and r.info == {"current": 3, "total": 3},
                 message=lambda: f"the job to report its last PROGRESS (state {r.state}, info {r.info})")
        assert r.result == {"current": 3, "total": 3}
        assert not r.ready() and r.status == "PROGRESS"
        gate.set()
        assert r.get(timeout=30) == "done"
    assert (r.state, r.info) == ("SUCCESS", "done")


def test_a_task_sets_another_running_jobs_state_by_id(app, run_worker):
    gate = threading.Event()

    @app.task(name="proj.waiting")
    def waiting():
        assert gate.wait(30)
        return 1

    @app.task(name="proj.reporter", bind=True)
    def reporter(self, other_id):
        self.update_state(task_id=other_id, state="CUSTOM", meta=[1, "two"])
        return other_id

    target = waiting.delay()
    with run_worker(app, concurrency=2):
        wait_for(lambda: target.state == "STARTED", message="the target job to start")
        assert reporter.delay(target.id).get(timeout=30) == target.id
        assert (target.state, target.info) == ("CUSTOM", [1, "two"])
        gate.set()
        assert target.get(timeout=30) == 1


def test_a_retried_job_does_not_show_its_earlier_attempts_progress(app, run_worker):
    gate = threading.Event()

    @app.task(name="proj.flaky", bind=True, max_retries=1)
    def flaky(self):
        if self.request.retries == 0:
            self.update_state(state="PROGRESS", meta={"step": "first try"})
            raise self.retry(countdown=0)
        assert gate.wait(30)
        return "second try"

    r = flaky.delay()
    with run_worker(app):
        wait_for(lambda: r.retries == 1 and r.state == "STARTED", message="the second attempt to start")
        # STARTED's own info (the worker running it), not the first attempt's meta
        assert r.info == {"pid": os.getpid(), "hostname": f"sqlq@{socket.gethostname()}"}
        gate.set()
        assert r.get(timeout=30) == "second try"


def test_what_update_state_refuses(app):
    @app.task(name="proj.plain", bind=True)
    def plain(self):
        return None

    waiting = plain.delay()
    with pytest.raises(ConfigurationError, match=rf"task {waiting.id}: the job is not running"):
        plain.update_state(task_id=waiting.id, state="PROGRESS", meta={"i": 1})
    assert waiting.state == "PENDING" and waiting.info is None
    for state in ("SUCCESS", "FAILURE", "REVOKED", "PENDING", "RETRY"):
        with pytest.raises(ConfigurationError, match=f"cannot set '{state}'"):
            plain.update_state(task_id=waiting.id, state=state)
    with pytest.raises(ConfigurationError, match="needs a state name"):
        plain.update_state(task_id=waiting.id, state="")
    with pytest.raises(SerializationError, match="must be JSON-serializable"):
        plain.update_state(task_id=waiting.id, state="PROGRESS", meta={"handle": object()})
    with pytest.raises(ConfigurationError, match="needs a task id"):
        plain.update_state(state="PROGRESS")
    with pytest.raises(ConfigurationError, match="not backend"):
        plain.update_state(task_id=waiting.id, state="PROGRESS", backend=None)


def test_in_eager_mode_update_state_changes_the_running_calls_result(app):
    seen = []

    @app.task(name="proj.eager_long", bind=True)
    def eager_long(self, n):
        assert eager.current_result().state == "STARTED"
        for i in range(n):
            self.update_state(state="PROGRESS", meta={"current": i + 1})
            seen.append((eager.current_result().state, eager.current_result().info))
        with pytest.raises(ConfigurationError, match="cannot set 'SUCCESS'"):
            self.update_state(state="SUCCESS")
        return n

    app.conf.task_always_eager = True
    app.close()  # no database from here on: an eager call must not need one
    r = eager_long.delay(2)
    assert seen == [("PROGRESS", {"current": 1}), ("PROGRESS", {"current": 2})]
    assert (r.state, r.get(), r.info) == ("SUCCESS", 2, 2)
    assert eager.current_result() is None
