"""Callbacks and errbacks on a real database with real workers: ``apply_async(link=, link_error=)``,
``sig.link()``, ``sig.on_error()``, ``chain.on_error()``; a callback gets the result first (not an
immutable one); an errback gets Celery's ``(request, exc, traceback)`` built in the worker from the
failed job's results row, or ``(task_id)`` when it takes one argument (Celery's old style)."""

from __future__ import annotations

import pytest

from sqlq import chain
from tests.apps.harness import scalar, wait_for

TIMEOUT = 30


@pytest.fixture
def tasks(app):
    @app.task(name="proj.add")
    def add(x, y=0):
        return x + y

    @app.task(name="proj.boom")
    def boom(*args):
        raise KeyError(f"missing {list(args)}")

    @app.task(name="proj.new_style")
    def new_style(request, exc, traceback, tag="x"):
        return {"id": request.id, "task": request.task, "args": request.args, "exc": type(exc).__name__,
                "message": str(exc), "traceback": "KeyError" in (traceback or ""), "tag": tag}

    @app.task(name="proj.old_style")
    def old_style(task_id):
        return f"failed: {task_id}"

    return add, boom, new_style, old_style


def _by_task(raw_conn, schema, task):
    wait_for(lambda: scalar(raw_conn, "SELECT count(*) FROM {s}.results WHERE task = %s AND state = 'SUCCESS'",
                            task, schema=schema), timeout=TIMEOUT, message=f"{task} ran")
    return [r[0] for r in raw_conn.execute(f'SELECT result FROM "{schema}".results WHERE task = %s '
                                           f'ORDER BY finished_at', (task,)).fetchall()]


def test_link_runs_the_callback_with_the_result(app, run_worker, tasks, raw_conn, schema):
    add, *_ = tasks
    with run_worker(app):
        first = add.apply_async((2, 2), link=add.s(16))
        assert first.get(timeout=TIMEOUT) == 4
        [child] = wait_for(lambda: first.children, timeout=TIMEOUT, message="the callback's job")
        assert child.get(timeout=TIMEOUT) == 20 and child.parent.id == first.id
        sig = add.s(1, 1)
        sig.link(add.si(100, 1))  # immutable: takes no result
        sig.link(add.s(10))
        done = sig.delay()
        wait_for(lambda: len(done.children) == 2, timeout=TIMEOUT, message="both callbacks")
        assert sorted(c.get(timeout=TIMEOUT) for c in done.children) == [12, 101]
        # send_task by name takes link= too
        named = app.send_task("proj.add", (3, 3), link=add.s(1))
        wait_for(lambda: named.children, timeout=TIMEOUT)
        assert named.children[0].get(timeout=TIMEOUT) == 7


def test_a_callback_does_not_run_when_the_task_fails(app, run_worker, tasks, raw_conn, schema):
    add, boom, *_ = tasks
    with run_worker(app):
        failed = boom.apply_async((1,), link=add.s(1))
        with pytest.raises(KeyError):
            failed.get(timeout=TIMEOUT)
        assert failed.children == []


def test_an_errback_gets_request_exception_and_traceback(app, run_worker, tasks, raw_conn, schema):
    _, boom, new_style, _ = tasks
    with run_worker(app):
        failed = boom.apply_async((7,), link_error=new_style.s(tag="t"))
        with pytest.raises(KeyError):
            failed.get(timeout=TIMEOUT)
        [got] = _by_task(raw_conn, schema, "sqlq.errback")
    assert got == {"id": failed.id, "task": "proj.boom", "args": [7], "exc": "KeyError",
                   "message": "'missing [7]'", "traceback": True, "tag": "t"}


def test_an_old_style_errback_is_sent_the_task_id(app, run_worker, tasks, raw_conn, schema):
    _, boom, _, old_style = tasks
    with run_worker(app):
        failed = boom.s(1).on_error(old_style.s()).delay()
        assert _by_task(raw_conn, schema, "proj.old_style") == [f"failed: {failed.id}"]


def test_chain_on_error_runs_for_the_step_that_failed_only(app, run_worker, tasks, raw_conn, schema):
    add, boom, _, old_style = tasks
    with run_worker(app):
        result = chain(add.s(1, 1), boom.s(), add.s(1)).on_error(old_style.s()).delay()
        with pytest.raises(KeyError):
            result.get(timeout=TIMEOUT)
        got = _by_task(raw_conn, schema, "proj.old_style")
    assert got == [f"failed: {result.parent.id}"]  # the failed step's id, once
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.results WHERE task = 'sqlq.errback'", schema=schema) == 1


def test_link_on_the_chain_runs_after_its_last_step(app, run_worker, tasks):
    add, *_ = tasks
    with run_worker(app):
        c = chain(add.s(1, 1), add.s(1))
        c.link(add.s(1000))
        result = c.delay()
        assert result.get(timeout=TIMEOUT) == 3
        wait_for(lambda: result.children, timeout=TIMEOUT)
        assert result.children[0].get(timeout=TIMEOUT) == 1003
