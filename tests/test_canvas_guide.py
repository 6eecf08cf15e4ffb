"""Celery's "Canvas: Designing Work-flows" guide (docs.celeryq.dev/en/stable/userguide/canvas.html),
its examples run with only the import changed (tests/celery_guides/canvas/tasks.py holds the guide's
tasks), on a real PostgreSQL with a worker thread; then the same canvases eagerly
(``task_always_eager``). ``get(timeout=1)``-style waits get a longer timeout (a shared 2-core
machine).

Left out, and why: ``group.skew()`` and ``res.parent.parent.graph`` (not in sqlq); the map
example's ``range(10)`` arguments are lists here (``range`` is not JSON, in Celery's json
serializer either); ``chord_unlock`` and the result-backend notes of "Important Notes" (the chord
counter is a row decremented in the member's finish transaction: nothing polls).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlq import chain, chord, group, signature
from sqlq.errors import ChordError
from tests.apps.harness import wait_for

GUIDE = Path(__file__).resolve().parent / "celery_guides" / "canvas"
TIMEOUT = 30


@pytest.fixture
def tasks(schema, monkeypatch) -> Iterator[object]:
    monkeypatch.syspath_prepend(str(GUIDE))
    sys.modules.pop("tasks", None)
    import tasks as module

    module.app.migrate()
    module.ERRORS.clear()
    yield module
    module.app.close()
    sys.modules.pop("tasks", None)


def test_signatures_and_partials(tasks, run_worker):
    add = tasks.add
    s = add.signature((2, 2), countdown=10)
    assert repr(s) == "tasks.add(2, 2)" and s.options == {"countdown": 10}
    assert signature("tasks.add", args=(2, 2), countdown=10) == s
    assert dict(add.s(2, 2)) == {"task": "tasks.add", "args": (2, 2), "kwargs": {}, "options": {},
                                 "immutable": False, "subtask_type": None}
    with run_worker(tasks.app):
        partial = add.s(2)
        assert partial.delay(4).get(timeout=TIMEOUT) == 6
        assert partial.apply_async((4,)).get(timeout=TIMEOUT) == 6
        assert ~add.s(2, 2) == 4


def test_callbacks(tasks, run_worker):
    add = tasks.add
    with run_worker(tasks.app):
        res = add.apply_async((2, 2), link=add.s(8))
        assert res.get(timeout=TIMEOUT) == 4
        child = wait_for(lambda: res.children, timeout=TIMEOUT)[0]
        assert child.get(timeout=TIMEOUT) == 12
        immutable = add.apply_async((2, 2), link=add.si(8, 8))
        assert wait_for(lambda: immutable.children, timeout=TIMEOUT)[0].get(timeout=TIMEOUT) == 16


def test_chains(tasks, run_worker):
    add, mul = tasks.add, tasks.mul
    with run_worker(tasks.app):
        res = chain(add.s(2, 2), add.s(4), add.s(8))()
        assert res.get(timeout=TIMEOUT) == 16
        assert res.parent.get(timeout=TIMEOUT) == 8
        assert res.parent.parent.get(timeout=TIMEOUT) == 4
        assert (add.s(2, 2) | add.s(4) | add.s(8))().get(timeout=TIMEOUT) == 16
        assert (add.si(2, 2) | add.si(4, 4) | add.si(8, 8))().get(timeout=TIMEOUT) == 16
        assert (add.s(4, 4) | mul.s(8)).delay().get(timeout=TIMEOUT) == 64
        res = add.apply_async((2, 2), link=mul.s(16))
        assert wait_for(lambda: res.children, timeout=TIMEOUT)[0].get(timeout=TIMEOUT) == 64


def test_groups(tasks, run_worker):
    add = tasks.add
    with run_worker(tasks.app, concurrency=4):
        res = group(add.s(2, 2), add.s(4, 4))()
        assert res.get(timeout=TIMEOUT) == [4, 8]
        res = group(add.s(i, i) for i in range(10))()
        assert res.get(timeout=TIMEOUT) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
        assert res.ready() and res.successful() and res.completed_count() == 10


def test_chords(tasks, run_worker):
    add, tsum, xsum, mul = tasks.add, tasks.tsum, tasks.xsum, tasks.mul
    with run_worker(tasks.app, concurrency=4):
        assert chord(add.s(i, i) for i in range(100))(tsum.s()).get(timeout=TIMEOUT) == 9900
        assert (group(add.s(i, i) for i in range(10)) | xsum.s())().get(timeout=TIMEOUT) == 90
        c = (group(add.s(i, i) for i in range(10)) | xsum.s())
        assert c.delay().get(timeout=TIMEOUT) == 90
        # "chains can be partial too" with a group in the middle
        c1 = (add.s(4) | mul.s(8))
        assert c1(16).get(timeout=TIMEOUT) == 160
        new_user_workflow = (add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s())
        assert new_user_workflow.delay().get(timeout=TIMEOUT) == 7


def test_chord_error_handling(tasks, run_worker):
    add, tsum, raising_task = tasks.add, tasks.tsum, tasks.raising_task
    with run_worker(tasks.app, concurrency=2):
        c = chord([add.s(4, 4), raising_task.s(), add.s(8, 8)])
        result = c(tsum.s())
        with pytest.raises(ChordError, match=r"Dependency .* raised ValueError: something something"):
            result.get(timeout=TIMEOUT)
        c = chord([add.s(4, 4), raising_task.s(), add.s(8, 8)], tsum.s().on_error(tasks.on_chord_error.s()))
        result = c.delay()
        wait_for(lambda: tasks.ERRORS, timeout=TIMEOUT, message="on_chord_error ran")
    assert tasks.ERRORS[0].startswith(f"Task {result.id!r} raised error: ChordError(")


def test_map_starmap_chunks(tasks, run_worker):
    add, tsum = tasks.add, tasks.tsum
    with run_worker(tasks.app, concurrency=4):
        assert ~tsum.map([list(range(10)), list(range(100))]) == [45, 4950]
        assert ~add.starmap(zip(range(10), range(10), strict=False)) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
        res = add.chunks(zip(range(100), range(100), strict=False), 10)()
        assert res.get(timeout=TIMEOUT) == [[2 * (10 * c + i) for i in range(10)] for c in range(10)]
        g = add.chunks(zip(range(100), range(100), strict=False), 10).group()
        assert len(g.tasks) == 10 and g.tasks[0].name == "celery.starmap"


def test_errbacks(tasks, run_worker):
    add, log_error = tasks.add, tasks.log_error
    with run_worker(tasks.app):
        add.s(2, 2).on_error(log_error.s()).delay().get(timeout=TIMEOUT)  # no error: no errback
        failing = tasks.raising_task.s().on_error(log_error.s()).delay()
        wait_for(lambda: tasks.ERRORS, timeout=TIMEOUT, message="log_error ran")
    assert tasks.ERRORS[0].startswith(f"--\n\n{failing.id} something something Traceback")


def test_the_same_canvases_eagerly(tasks):
    add, tsum, mul, raising_task = tasks.add, tasks.tsum, tasks.mul, tasks.raising_task
    tasks.app.conf.task_always_eager = True
    try:
        res = chain(add.s(2, 2), add.s(4), add.s(8))()
        assert res.get() == 16 and res.parent.get() == 8 and res.parent.parent.get() == 4
        assert (add.s(4, 4) | mul.s(8)).delay().get() == 64
        assert chord(add.s(i, i) for i in range(10))(tsum.s()).get() == 90
        assert (add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s()).delay().get() == 7
        failed = chord([add.s(4, 4), raising_task.s()], tsum.s()).delay()
        assert failed.state == "FAILURE" and isinstance(failed.result, ChordError)
        broken = chain(add.s(1, 1), raising_task.si(), add.s(1)).delay()
        assert broken.state == "FAILURE" and isinstance(broken.result, ValueError)
        callback = add.apply_async((2, 2), link=add.s(8))
        assert callback.get() == 4
        assert ~tsum.map([[1, 2], [3]]) == [3, 3]
        raising_task.s().on_error(tasks.log_error.s()).delay()
        assert tasks.ERRORS and "something something" in tasks.ERRORS[0]
    finally:
        tasks.app.conf.task_always_eager = False
