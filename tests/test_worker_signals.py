"""The Celery-named signals fire with the right arguments, a broken receiver does
not break the job, and the worker logs through the ``sqlq`` logger with task name and id."""

from __future__ import annotations

import logging
import types
from collections.abc import Iterator

import pytest

from sqlq import signals
from sqlq.task import Request


class Boom(Exception):
    pass


@pytest.fixture
def received() -> Iterator[dict[str, list[dict]]]:
    """Every signal's calls, by signal name; receivers are disconnected afterwards."""
    calls: dict[str, list[dict]] = {}
    connected = []
    for name in ("task_prerun", "task_postrun", "task_success", "task_failure", "task_retry",
                 "worker_ready", "worker_shutdown"):
        signal = getattr(signals, name)

        def receiver(sender, signal, _name=name, **kwargs):
            calls.setdefault(_name, []).append({"sender": sender, **kwargs})

        signal.connect(receiver)
        connected.append((signal, receiver))
    yield calls
    for signal, receiver in connected:
        signal.disconnect(receiver)


def test_signals_fire_with_their_arguments(app, run_worker, received):
    @app.task
    def ok(x, y=1):
        return x + y

    @app.task
    def bad(x):
        raise Boom(f"bad {x}")

    @app.task(bind=True)
    def again(self):
        if self.request.retries == 0:
            raise self.retry(exc=Boom("once more"), countdown=0)
        return "second time"

    good, failed, retried = ok.apply_async((1,), {"y": 2}), bad.delay(7), again.delay()
    with run_worker(app) as worker:
        assert good.get(timeout=30) == 3
        with pytest.raises(Boom):
            failed.get(timeout=30)
        assert retried.get(timeout=30) == "second time"

    assert [c["sender"] for c in received["worker_ready"]] == [worker]
    assert [c["sender"] for c in received["worker_shutdown"]] == [worker]

    prerun = {c["task_id"]: c for c in received["task_prerun"]}
    assert prerun[good.id]["sender"] is ok and prerun[good.id]["task"] is ok
    assert prerun[good.id]["args"] == [1] and prerun[good.id]["kwargs"] == {"y": 2}

    postrun = [(c["task_id"], c["state"], c["retval"]) for c in received["task_postrun"]]
    assert (good.id, "SUCCESS", 3) in postrun
    assert (failed.id, "FAILURE", None) in postrun
    assert (retried.id, "RETRY", None) in postrun and (retried.id, "SUCCESS", "second time") in postrun

    assert sorted((c["sender"].name, c["result"]) for c in received["task_success"]) == sorted(
        [(ok.name, 3), (again.name, "second time")])

    [failure] = received["task_failure"]
    assert failure["sender"] is bad and failure["task_id"] == failed.id
    assert isinstance(failure["exception"], Boom) and str(failure["exception"]) == "bad 7"
    assert failure["args"] == [7] and failure["kwargs"] == {}
    assert isinstance(failure["traceback"], types.TracebackType) and "Boom: bad 7" in failure["einfo"]

    [retry] = received["task_retry"]
    assert retry["sender"] is again and isinstance(retry["request"], Request)
    assert retry["request"].id == retried.id and retry["request"].retries == 0
    assert isinstance(retry["reason"], Boom) and str(retry["reason"]) == "once more"


def test_signal_for_one_task_only_and_a_raising_receiver_does_not_fail_the_job(app, run_worker, caplog):
    seen = []

    @app.task
    def watched():
        return "watched"

    @app.task
    def other():
        return "other"

    def only_watched(sender, **kwargs):
        seen.append(sender.name)

    def broken(sender, **kwargs):
        raise RuntimeError("metrics backend down")

    signals.task_success.connect(only_watched, sender=watched)
    signals.task_prerun.connect(broken)
    try:
        w, o = watched.delay(), other.delay()
        with run_worker(app):
            assert w.get(timeout=30) == "watched" and o.get(timeout=30) == "other"
    finally:
        signals.task_success.disconnect(only_watched)
        signals.task_prerun.disconnect(broken)
    assert seen == [watched.name]
    assert any("task_prerun raised" in r.getMessage() and r.name.startswith("sqlq") for r in caplog.records)


def test_worker_logs_through_sqlq_with_task_name_and_id(app, run_worker, caplog):
    caplog.set_level(logging.INFO, logger="sqlq")

    @app.task
    def fine():
        return 1

    @app.task
    def broken():
        raise Boom("logged")

    @app.task(bind=True)
    def retried(self):
        if self.request.retries == 0:
            raise self.retry(countdown=0)

    ok, bad, again = fine.delay(), broken.delay(), retried.delay()
    with run_worker(app):
        ok.get(timeout=30)
        again.get(timeout=30)
        with pytest.raises(Boom):
            bad.get(timeout=30)

    sqlq_lines = [r for r in caplog.records if r.name == "sqlq" or r.name.startswith("sqlq.")]
    messages = [r.getMessage() for r in sqlq_lines]
    for task, result, word in ((fine, ok, "succeeded"), (broken, bad, "raised unexpected"), (retried, again, "retry")):
        assert any(f"{task.name}[{result.id}]" in m and word in m for m in messages), (word, messages)
    assert any("ready" in m for m in messages) and any("stopped" in m for m in messages)
    failure = next(r for r in sqlq_lines if "raised unexpected" in r.getMessage())
    assert failure.levelno == logging.ERROR
