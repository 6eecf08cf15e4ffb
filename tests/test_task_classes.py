"""Task classes in a real worker: class-based tasks (sync and async), base classes with hooks
called with Celery's arguments, hooks that raise (logged, the outcome stands), throws= (expected
failures logged at INFO without a traceback), and conf defaults for the task attributes left None.
Without a server: tests/unit/test_task_classes.py."""

from __future__ import annotations

import logging
import threading

import pytest

from sqlq import App, SoftTimeLimitExceeded
from sqlq.task import ExceptionInfo
from tests.apps.harness import result_row, wait_for

TIMEOUT = 30


class Refused(Exception):
    """Importable, so the caller gets it back."""


def _recording_base(app: App, calls: list[tuple]) -> type:
    class Recorded(app.Task):
        def before_start(self, task_id, args, kwargs):
            calls.append(("before_start", task_id, list(args), dict(kwargs), self.request.id))

        def on_success(self, retval, task_id, args, kwargs):
            calls.append(("on_success", retval, task_id, list(args), dict(kwargs)))

        def on_failure(self, exc, task_id, args, kwargs, einfo):
            calls.append(("on_failure", type(exc).__name__, task_id, list(args), dict(kwargs), einfo))

        def on_retry(self, exc, task_id, args, kwargs, einfo):
            calls.append(("on_retry", type(exc).__name__, task_id, self.request.retries, einfo))

        def after_return(self, status, retval, task_id, args, kwargs, einfo):
            calls.append(("after_return", status, retval if status == "SUCCESS" else type(retval).__name__,
                          task_id, einfo is not None))

    return Recorded


def test_hooks_get_celerys_arguments_on_success_and_failure(app, run_worker):
    calls: list[tuple] = []
    base = _recording_base(app, calls)

    @app.task(base=base)
    def divide(x, y=1):
        if y == 0:
            raise Refused("no zero")
        return x / y

    ok = divide.delay(6, y=3)
    with run_worker(app, concurrency=1):
        assert ok.get(timeout=TIMEOUT) == 2
        wait_for(lambda: len(calls) == 3, message=lambda: f"hooks so far: {calls}")
        bad = divide.delay(1, y=0)
        with pytest.raises(Refused):
            bad.get(timeout=TIMEOUT)
        wait_for(lambda: len(calls) == 6, message=lambda: f"hooks so far: {calls}")
    assert calls[:3] == [
        ("before_start", ok.id, [6], {"y": 3}, ok.id),
        ("on_success", 2, ok.id, [6], {"y": 3}),
        ("after_return", "SUCCESS", 2, ok.id, False),
    ]
    before, failure, after = calls[3:]
    assert before[:4] == ("before_start", bad.id, [1], {"y": 0})
    assert failure[:5] == ("on_failure", "Refused", bad.id, [1], {"y": 0})
    einfo = failure[5]
    assert isinstance(einfo, ExceptionInfo) and einfo.type is Refused
    assert "Refused: no zero" in einfo.traceback and einfo.traceback == bad.traceback
    assert after == ("after_return", "FAILURE", "Refused", bad.id, True)


def test_on_retry_runs_for_retry_and_autoretry(app, run_worker):
    calls: list[tuple] = []
    base = _recording_base(app, calls)

    @app.task(base=base, bind=True, max_retries=1, default_retry_delay=0)
    def flaky(self):
        if self.request.retries == 0:
            raise self.retry(exc=ConnectionError("later"))
        return "done"

    @app.task(base=base, autoretry_for=(KeyError,), max_retries=1, retry_kwargs={"countdown": 0})
    def auto(n):
        raise KeyError(n)

    first, second = flaky.delay(), auto.delay(1)
    with run_worker(app):
        assert first.get(timeout=TIMEOUT) == "done"
        with pytest.raises(KeyError):
            second.get(timeout=TIMEOUT)
        wait_for(lambda: len([c for c in calls if c[0] == "after_return"]) == 4, message=lambda: f"{calls}")
    retries = {c[2]: c for c in calls if c[0] == "on_retry"}
    assert retries[first.id][1] == "ConnectionError" and retries[first.id][3] == 0
    assert retries[second.id][1] == "KeyError" and isinstance(retries[second.id][4], ExceptionInfo)
    statuses = sorted((c[3] == first.id, c[1]) for c in calls if c[0] == "after_return")
    assert statuses == [(False, "FAILURE"), (False, "RETRY"), (True, "RETRY"), (True, "SUCCESS")]


def test_a_hook_that_raises_is_logged_and_the_outcome_stands(app, run_worker, raw_conn, schema, caplog):
    class Clumsy(app.Task):
        def on_success(self, retval, task_id, args, kwargs):
            raise RuntimeError("hook bug")

        def on_failure(self, exc, task_id, args, kwargs, einfo):
            raise RuntimeError("hook bug too")

    @app.task(base=Clumsy)
    def fine():
        return "kept"

    @app.task(base=Clumsy)
    def broken():
        raise Refused("the task's own error")

    with caplog.at_level(logging.ERROR, logger="sqlq.worker"):
        ok, bad = fine.delay(), broken.delay()
        with run_worker(app):
            assert ok.get(timeout=TIMEOUT) == "kept"
            with pytest.raises(Refused, match="the task's own error"):
                bad.get(timeout=TIMEOUT)
            wait_for(lambda: "its on_failure hook raised" in caplog.text, message=lambda: caplog.text)
    assert f"[{ok.id}]: its on_success hook raised; the job's outcome stands" in caplog.text
    assert "RuntimeError: hook bug" in caplog.text  # with its traceback
    assert result_row(raw_conn, schema, bad.id)["exc_type"] == "tests.test_task_classes.Refused"


def test_before_start_that_raises_fails_the_job(app, run_worker):
    ran = threading.Event()

    class Guarded(app.Task):
        def before_start(self, task_id, args, kwargs):
            raise PermissionError("not today")

    @app.task(base=Guarded)
    def guarded():
        ran.set()

    result = guarded.delay()
    with run_worker(app), pytest.raises(PermissionError, match="not today"):
        result.get(timeout=TIMEOUT)
    assert not ran.is_set()


def test_class_based_tasks_run_in_the_worker(app, run_worker):
    class Multiply(app.Task):
        name = "proj.multiply"
        queue = "math"

        def run(self, x, y):
            return {"product": x * y, "id": self.request.id, "queue": self.request.queue}

    class Fetch(app.Task):
        name = "proj.fetch"

        async def run(self, url):
            return f"fetched {url} as {self.name}"

    multiply, fetch = app.register_task(Multiply()), app.register_task(Fetch)
    first, second = multiply.delay(6, 7), fetch.delay("x")
    with run_worker(app, queues=["math", "default"]):
        assert first.get(timeout=TIMEOUT) == {"product": 42, "id": first.id, "queue": "math"}
        assert second.get(timeout=TIMEOUT) == "fetched x as proj.fetch"


def test_a_base_class_may_wrap_every_run_by_overriding_call(app, run_worker):
    class Wrapped(app.Task):
        def __call__(self, *args, **kwargs):
            return {"wrapped": super().__call__(*args, **kwargs)}

    @app.task(base=Wrapped)
    def inner(x):
        return x + 1

    assert inner(1) == {"wrapped": 2}
    with run_worker(app):
        assert inner.delay(2).get(timeout=TIMEOUT) == {"wrapped": 3}


def test_throws_are_logged_at_info_without_traceback_and_still_fail(app, run_worker, raw_conn, schema, caplog):
    @app.task(throws=(Refused,))
    def expected():
        raise Refused("as designed")

    @app.task
    def unexpected():
        raise Refused("a surprise")

    with caplog.at_level(logging.INFO, logger="sqlq.worker"):
        a, b = expected.delay(), unexpected.delay()
        with run_worker(app):
            for handle in (a, b):
                with pytest.raises(Refused):
                    handle.get(timeout=TIMEOUT)
    by_id = {r.getMessage(): r for r in caplog.records if a.id in r.getMessage() or b.id in r.getMessage()}
    expected_line = next(r for m, r in by_id.items() if a.id in m and "raised expected" in m)
    assert expected_line.levelno == logging.INFO and expected_line.exc_info is None
    assert next(r for m, r in by_id.items() if b.id in m and "raised unexpected" in m).levelno == logging.ERROR
    assert result_row(raw_conn, schema, a.id)["state"] == "FAILURE"
    assert result_row(raw_conn, schema, a.id)["traceback"]  # the record keeps it; only the log leaves it out


def test_time_limit_and_ignore_result_default_to_the_apps_settings(database_url, schema, run_worker, raw_conn):
    app = App("tests", database_url=database_url, schema=schema, task_soft_time_limit=0.5,
              task_ignore_result=True, set_as_current=False)
    app.migrate()
    try:
        @app.task(bind=True)
        def limits(self):
            return self.request.timelimit

        @app.task(bind=True, ignore_result=False, soft_time_limit=20)
        def own(self):
            return self.request.timelimit

        ignored, kept = limits.delay(), own.delay()
        with run_worker(app):
            assert kept.get(timeout=TIMEOUT) == [None, 20]
            wait_for(lambda: ignored.state == "SUCCESS")
        assert result_row(raw_conn, schema, ignored.id)["result"] is None  # conf.task_ignore_result
    finally:
        app.close()


@pytest.fixture
def hooks_app(schema, raw_conn):
    """tests/apps/task_classes.py, migrated, with its side table."""
    from tests.apps import task_classes

    task_classes.app.close()  # drop connections made for a previous test's schema
    task_classes.app.migrate()
    task_classes.create_hook_table(raw_conn, schema)
    yield task_classes
    task_classes.app.close()


def test_hooks_string_ids_and_call_limits_in_prefork_children(hooks_app, run_worker, raw_conn, schema):
    """The prefork child runs the hooks, sees the caller's task id and the call's time limits
    (they travel in the job's headers)."""
    module = hooks_app
    ok = module.echo.apply_async(("v",), task_id="prefork-echo", time_limit=40)
    bad = module.refuse.delay("k")
    cut = module.nap.apply_async((30,), soft_time_limit=0.3)

    def calls(task_id):
        return raw_conn.execute(f'SELECT hook, detail, pid FROM "{schema}".hook_calls WHERE task_id = %s',
                                (task_id,)).fetchall()

    with run_worker(module.app, pool="prefork", concurrency=2, app_path="tests.apps.task_classes:app"):
        assert ok.get(timeout=TIMEOUT) == {"value": "v", "id": "prefork-echo", "timelimit": [40.0, None]}
        with pytest.raises(KeyError):
            bad.get(timeout=TIMEOUT)
        with pytest.raises(SoftTimeLimitExceeded):
            cut.get(timeout=TIMEOUT)
        for handle in (ok, bad, cut):
            wait_for(lambda h=handle: len(calls(h.id)) == 3, message=lambda h=handle: f"{calls(h.id)}")
    import os

    assert [c[:2] for c in calls("prefork-echo")] == [
        ("before_start", "['v']"), ("on_success", repr({"value": "v", "id": "prefork-echo",
                                                        "timelimit": [40.0, None]})), ("after_return", "SUCCESS")]
    assert {c[2] for c in calls("prefork-echo")} != {os.getpid()}  # in a child, not here
    assert [c[:2] for c in calls(bad.id)][1:] == [("on_failure", "KeyError"), ("after_return", "FAILURE")]
    assert [c[:2] for c in calls(cut.id)][1:] == [("on_failure", "SoftTimeLimitExceeded"),
                                                   ("after_return", "FAILURE")]
