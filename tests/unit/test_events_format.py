"""The events stream's pure logic: a worker's batch elements and their expansion back into
Celery's event dicts, dump lines, --since, State's counts."""

from __future__ import annotations

import json
import time

import pytest

from sqlq.errors import ConfigurationError
from sqlq.events import State, expand, parse_since
from sqlq.events.monitor import dump_line, summary
from sqlq.events.worker import WorkerEvents, exception_repr
from sqlq.store import ClaimedJob, EventRow, Outcome, RetryRequest, Unregistered


def _job(i: int = 1, task: str = "proj.add") -> ClaimedJob:
    return ClaimedJob(f"00000000-0000-4000-8000-00000000000{i}", i, task, "default", 0, "[2, 3]", "{}", None,
                      "application/json", "{}", False, 1, 0, True, None)


def _row(elements: list[str]) -> EventRow:
    return EventRow(7, "batch", None, None, "w@test", 0.0, {}, json.loads("[" + ",".join(elements) + "]"))


def test_a_finished_batch_expands_into_celerys_events():
    events = WorkerEvents(store=None, hostname="w@test", heartbeat_interval=5.0, quiet=frozenset())  # type: ignore[arg-type]
    ok = Outcome(_job(1).id, 1, "SUCCESS", "5", started=100.0, runtime=0.5)
    bad = Outcome(_job(2).id, 1, "FAILURE", exc_type="builtins.ValueError", exc_message="boom",
                  traceback="Traceback ...\nValueError: boom", started=101.0, runtime=0.25)
    retry = RetryRequest(_job(3).id, 1, 1.0, "ValueError: again", traceback="tb")
    back, done = events.finished([(_job(1), ok), (_job(2), bad), (_job(3), retry), (_job(4), Unregistered(
        _job(4).id, 1, "proj.add"))])
    got = expand(_row(done))
    per_job = {uuid: [e for e in got if e["uuid"] == uuid] for uuid in {e["uuid"] for e in got}}
    started, succeeded = per_job[_job(1).id]
    assert [started["type"], succeeded["type"]] == ["task-started", "task-succeeded"]
    assert succeeded["result"] == 5 and succeeded["runtime"] == 0.5 and succeeded["timestamp"] == 100.5
    assert started["timestamp"] == 100.0 and started["hostname"] == "w@test" and started["clock"] == 7
    assert started["name"] == succeeded["name"] == "proj.add" and started["pid"] > 0
    assert "started" not in succeeded and "pid" not in succeeded
    started, failed = per_job[_job(2).id]
    assert [started["type"], failed["type"]] == ["task-started", "task-failed"]
    assert failed["exception"] == "ValueError('boom')" and failed["traceback"].endswith("ValueError: boom")
    assert "started" not in failed and started["timestamp"] == 101.0
    early = expand(_row(back))
    assert [e["type"] for e in early] == ["task-retried", "task-rejected"]
    assert early[0]["retries"] == 1 and early[1]["requeue"] is True


def test_a_claim_is_one_columnar_element():
    events = WorkerEvents(store=None, hostname="w@test", heartbeat_interval=5.0, quiet=frozenset())  # type: ignore[arg-type]
    events.received([_job(1), _job(2, "proj.mul")])
    got = expand(_row(list(events.queued)))
    assert [(e["type"], e["uuid"][-1], e["name"], e["args"], e["kwargs"], e["retries"]) for e in got] == [
        ("task-received", "1", "proj.add", [2, 3], {}, 0), ("task-received", "2", "proj.mul", [2, 3], {}, 0)]
    assert got[0]["timestamp"] == got[1]["timestamp"] and events.due_in() is not None


def test_quiet_tasks_send_nothing():
    events = WorkerEvents(store=None, hostname="w", heartbeat_interval=5.0, quiet=frozenset({"proj.hush"}))  # type: ignore[arg-type]
    job = _job(1, "proj.hush")
    assert events.finished([(job, Outcome(job.id, 1, "SUCCESS", "null", started=1.0, runtime=0.1))]) == ([], [])


def test_exception_repr_and_dump_lines():
    assert exception_repr("builtins.ZeroDivisionError", "division by zero") == "ZeroDivisionError('division by zero')"
    assert exception_repr("proj.Oops", None) == "Oops()"
    line = dump_line({"type": "task-failed", "uuid": "u1", "name": "proj.div", "hostname": "w@test",
                      "timestamp": 0.0, "clock": 3, "exception": "ZeroDivisionError()", "traceback": "a\nb",
                      "runtime": 0.001})
    assert line == ('1970-01-01 00:00:00.000 task-failed uuid=u1 name=proj.div exception=ZeroDivisionError() '
                    'runtime=0.001 traceback="a\\nb" hostname=w@test')


def test_since():
    now = time.time()
    assert abs(parse_since("10m") - (now - 600)) < 5
    assert abs(parse_since(90) - (now - 90)) < 5
    assert parse_since("2026-12-04T03:10:00+00:00") == 1796353800.0
    assert parse_since(None) is None
    with pytest.raises(ConfigurationError, match="since='yesterday' is not a time"):
        parse_since("yesterday")


def test_state_counts_each_task_once_in_its_latest_state():
    state = State(max_tasks=2)
    for kind, uuid in [("task-received", "a"), ("task-started", "a"), ("task-succeeded", "a"),
                       ("task-received", "b"), ("task-failed", "b"), ("task-received", "c")]:
        state.event({"type": kind, "uuid": uuid, "timestamp": 1.0})
    assert dict(state.counts) == {"RECEIVED": 1, "STARTED": 0, "SUCCESS": 0, "FAILURE": 1}  # a evicted (max_tasks)
    state.event({"type": "worker-heartbeat", "hostname": "w", "timestamp": time.time(), "freq": 2.0})
    assert [w["hostname"] for w in state.alive_workers()] == ["w"]
    state.event({"type": "worker-offline", "hostname": "w", "timestamp": time.time()})
    assert state.alive_workers() == []
    assert "workers=0" in summary(state) and "failure=1" in summary(state)
