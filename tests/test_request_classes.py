"""Custom request classes (Celery's ``Task.Request``, ``sqlq.worker.request.Request``): on_timeout
and on_failure run with Celery's arguments in the worker process that manages the job, the prefork
parent included; a class overriding a Celery-only method is refused when the task is defined."""

from __future__ import annotations

import os

import pytest

from sqlq import App, TimeLimitExceeded
from sqlq.errors import SoftTimeLimitExceeded, TaskDefinitionError
from sqlq.worker.request import Request
from tests.apps.harness import wait_for


@pytest.fixture
def classes_app(schema):
    from tests.apps import request_classes

    request_classes.app.close()
    request_classes.app.migrate()
    request_classes.seen.clear()
    yield request_classes
    request_classes.app.close()


def _hooks_of(module, task_id):
    return [entry for entry in list(module.seen) if entry[1] == task_id]


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_on_failure_runs_in_the_managing_process_with_celery_arguments(classes_app, run_worker, pool):
    m = classes_app
    with run_worker(m.app, pool=pool, concurrency=1):
        failed = m.fails.delay("nope")
        with pytest.raises(KeyError):
            failed.get(timeout=60)
        by_path = m.by_path.delay("bad")
        with pytest.raises(ValueError):
            by_path.get(timeout=60)
        child = m.succeeds.delay().get(timeout=60)
        wait_for(lambda: _hooks_of(m, failed.id) and _hooks_of(m, by_path.id), timeout=30,
                 message="on_failure was not called")
    [(hook, _, (type_name, message, has_traceback, args, return_ok), pid)] = _hooks_of(m, failed.id)
    assert (hook, type_name, message, has_traceback, args) == ("on_failure", "KeyError", "'nope'", True, ("nope",))
    assert return_ok is True  # what the task raised (Celery's on_success(failed, ...) path)
    assert pid == os.getpid()  # the worker process (the prefork parent), as in Celery
    if pool == "prefork":
        assert child != os.getpid()  # while the task itself ran in a child
    assert [h[0] for h in _hooks_of(m, by_path.id)] == ["on_failure"]  # Request='module:Class'
    assert _hooks_of(m, "") == []
    assert not any(entry[0] == "on_failure" and entry[2][0] == "int" for entry in m.seen)  # success: no hook


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_on_timeout_hard_then_on_failure(classes_app, run_worker, pool, caplog):
    m = classes_app
    with run_worker(m.app, pool=pool, concurrency=1):
        stuck = m.hard_limited.delay()
        with pytest.raises(TimeLimitExceeded):
            stuck.get(timeout=60)
        wait_for(lambda: len(_hooks_of(m, stuck.id)) == 2, timeout=30, message="the hooks were not called")
    timeout, failure = _hooks_of(m, stuck.id)
    assert timeout[0] == "on_timeout" and timeout[2] == (False, 1)
    assert failure[0] == "on_failure" and failure[2][0] == "TimeLimitExceeded"
    assert failure[2][4] is False  # decided from outside the task, as Celery's pool does
    assert {timeout[3], failure[3]} == {os.getpid()}
    assert "A hard timeout was enforced for task tests.apps.request_classes.hard_limited" in caplog.text
    assert "Hard time limit (1s) exceeded for tests.apps.request_classes.hard_limited" in caplog.text


def test_on_timeout_soft(classes_app, run_worker):
    m = classes_app
    with run_worker(m.app, pool="prefork", concurrency=1):
        stuck = m.soft_limited.delay()
        with pytest.raises(SoftTimeLimitExceeded):
            stuck.get(timeout=60)
        wait_for(lambda: len(_hooks_of(m, stuck.id)) == 2, timeout=30, message="the hooks were not called")
    timeout, failure = _hooks_of(m, stuck.id)
    assert timeout[0] == "on_timeout" and timeout[2] == (True, 0.3)
    assert failure[2][0] == "SoftTimeLimitExceeded" and failure[2][4] is True  # raised in the task


def test_a_hook_that_raises_leaves_the_outcome(app, run_worker, caplog):
    class Broken(Request):
        def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
            raise RuntimeError("hook bug")

    @app.task(Request=Broken)
    def fails():
        raise KeyError("x")

    @app.task
    def after():
        return "still working"

    with run_worker(app, pool="threads", concurrency=1):
        with pytest.raises(KeyError):
            fails.delay().get(timeout=30)
        assert after.delay().get(timeout=30) == "still working"
    assert "Broken raised; the job's outcome stands" in caplog.text


def test_bad_request_classes_are_refused_at_definition():
    app = App("tests.bad_request", set_as_current=False)

    class Acks(Request):
        def on_success(self, failed__retval__runtime, **kwargs):
            return None

    with pytest.raises(TaskDefinitionError, match="defines on_success: Celery's worker calls them, sqlq's calls only "
                                                  "on_timeout and on_failure"):
        app.task(Request=Acks, name="tests.acks")(lambda: None)
    with pytest.raises(TaskDefinitionError, match="must be a subclass of sqlq.worker.request.Request"):
        app.task(Request=object, name="tests.plain")(lambda: None)

    class Based(app.Task):  # on a base class, and for a class-based task, as in Celery's guide
        Request = Acks

    with pytest.raises(TaskDefinitionError, match="Request class .*Acks of task 'tests.based' defines on_success"):
        app.task(base=Based, name="tests.based")(lambda: None)

    class ClassBased(Based):
        name = "tests.class_based"

        def run(self):
            return None

    with pytest.raises(TaskDefinitionError, match="of task 'tests.class_based' defines on_success"):
        app.register_task(ClassBased())


def test_an_unimportable_request_path_is_logged_and_the_job_still_ends(app, run_worker, caplog):
    @app.task(Request="tests.apps.no_such_module:Nothing")
    def fails():
        raise KeyError("x")

    with run_worker(app, pool="threads", concurrency=1), pytest.raises(KeyError):
        fails.delay().get(timeout=30)
    wait_for(lambda: "cannot be imported" in caplog.text, timeout=10, message="no error was logged")
    assert "its request hooks are not called" in caplog.text


def test_a_task_registered_after_the_worker_started_gets_its_hooks(app, run_worker):
    seen = []

    class Late(Request):
        def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
            seen.append((self.name, exc_info.type.__name__))

    with run_worker(app, pool="threads", concurrency=1):
        @app.task(Request=Late, name="tests.late")
        def late():
            raise LookupError("late")

        with pytest.raises(LookupError):
            late.delay().get(timeout=30)
        wait_for(lambda: seen, timeout=10, message="on_failure was not called")
    assert seen == [("tests.late", "LookupError")]
