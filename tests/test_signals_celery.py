"""Celery's remaining signals, sent where Celery sends them and with its arguments: publishing, the
worker receiving, revoking, rejecting and failing jobs, the worker and prefork children starting and
stopping, logging set-up, heartbeats and beat. Every test uses a real PostgreSQL, a real worker or
a real beat; prefork children report through a file their receivers write (tests/apps/signal_app.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sqlq import App, signals
from sqlq.errors import ContentDisallowed, InvalidJobError, NotRegistered
from sqlq.periodic.beat import Beat
from sqlq.store import ClaimedJob
from sqlq.task import Request
from sqlq.worker.worker import Worker
from tests.apps.harness import wait_for


class Fatal(BaseException):
    """Escapes a signal receiver (which catches Exception): an error outside the task's own code."""


@pytest.fixture
def listen() -> Iterator:
    """``calls = listen('task_received', sender=...)``: the receiver's calls, as dicts; disconnected
    after the test (signals are process-wide)."""
    connected = []

    def connect(name: str, sender=None, action=None) -> list[dict]:
        calls: list[dict] = []
        signal = getattr(signals, name)

        def receiver(sender, signal, **kwargs):
            calls.append({"sender": sender, **kwargs})
            if action is not None:
                action(sender=sender, **kwargs)

        signal.connect(receiver, sender=sender)
        connected.append((signal, receiver))
        return calls

    yield connect
    for signal, receiver in connected:
        signal.disconnect(receiver)


def job_headers(conn: psycopg.Connection, schema: str, job_id: str) -> dict:
    return conn.execute(f'SELECT headers FROM "{schema}".jobs WHERE id = %s', (job_id,)).fetchone()[0]


# --- publishing -------------------------------------------------------------------------------------

def test_publish_signals_carry_celerys_message_and_a_receiver_can_add_headers(app: App, listen, run_worker,
                                                                             raw_conn, schema):
    @app.task(bind=True)
    def traced(self, x, y=0):
        return {"sum": x + y, "trace": self.request.headers.get("trace_id")}

    def add_trace(headers, **kwargs):
        headers["trace_id"] = f"trace-{headers['id']}"

    before = listen("before_task_publish", sender=traced.name, action=add_trace)
    after = listen("after_task_publish")
    result = traced.apply_async((1,), {"y": 2}, queue="default", headers={"tenant": "acme"})

    [sent] = before
    assert sent["sender"] == traced.name
    assert sent["body"] == ([1], {"y": 2}, {})
    headers = sent["headers"]
    assert (headers["id"], headers["task"], headers["retries"], headers["eta"]) == (result.id, traced.name, 0, None)
    assert headers["tenant"] == "acme" and sent["routing_key"] == "default" and sent["exchange"] == ""
    assert sent["properties"]["correlation_id"] == result.id
    assert sent["declare"] == [] and sent["retry_policy"] is None
    [done] = after
    assert done["sender"] == traced.name and done["headers"]["trace_id"] == f"trace-{result.id}"
    assert "declare" not in done

    stored = job_headers(raw_conn, schema, result.id)
    assert stored == {"tenant": "acme", "trace_id": f"trace-{result.id}"}  # Celery's own headers are columns
    with run_worker(app):
        assert result.get(timeout=30) == {"sum": 3, "trace": f"trace-{result.id}"}


def test_a_receiver_changing_celerys_headers_is_told_they_are_not_stored(app: App, listen, raw_conn, schema,
                                                                         caplog):
    def change_id(headers, **kwargs):
        headers["id"] = "something-else"

    listen("before_task_publish", action=change_id)
    result = app.send_task("tests.some.task", [1])
    assert result.id != "something-else" and job_headers(raw_conn, schema, result.id) == {}
    assert any("changed header(s) id" in r.getMessage() for r in caplog.records)


def test_bulk_enqueue_sends_the_publish_signals_for_each_job(app: App, listen, raw_conn, schema):
    @app.task
    def item(n):
        return n

    before, after = listen("before_task_publish"), listen("after_task_publish")
    results = item.delay_many([(n,) for n in range(100)])  # enough to use COPY were nobody listening
    assert [c["body"][0] for c in before] == [[n] for n in range(100)]
    assert [c["headers"]["id"] for c in after] == [r.id for r in results]


def test_publish_receiver_for_another_task_is_not_called(app: App, listen):
    calls = listen("before_task_publish", sender="tests.other")
    app.send_task("tests.this", [])
    assert calls == []


# --- a job's way through the worker ------------------------------------------------------------------

def test_task_received_for_each_claimed_job(app: App, listen, run_worker):
    @app.task
    def double(x):
        return 2 * x

    received = listen("task_received")
    results = [double.delay(n) for n in range(3)]
    with run_worker(app) as worker:
        assert [r.get(timeout=30) for r in results] == [0, 2, 4]
    by_id = {c["request"].id: c for c in received}
    assert set(by_id) == {r.id for r in results}
    first = by_id[results[1].id]
    assert first["sender"] is worker and isinstance(first["request"], Request)
    assert (first["request"].task, first["request"].args, first["request"].queue) == (double.name, [1], "default")


def test_task_received_also_for_rate_limited_and_concurrency_limited_claims(app: App, listen, run_worker):
    """Limited tasks' jobs come through their own claim statements: the signal fires for them as for
    the others (one hand-over for every claim path)."""
    @app.task(rate_limit="1000/s")
    def paced(x):
        return x

    @app.task(concurrency_limit=5)
    def bounded(x):
        return x

    @app.task
    def plain(x):
        return x

    received = listen("task_received")
    results = [paced.delay(1), bounded.delay(2), plain.delay(3)]
    with run_worker(app):
        assert [r.get(timeout=30) for r in results] == [1, 2, 3]
    assert {c["request"].id for c in received} == {r.id for r in results}


def test_task_revoked_by_revoke_and_for_an_expired_job(app: App, listen, run_worker):
    @app.task
    def never():
        return "ran"

    revoked = listen("task_revoked")
    waiting = never.delay()
    assert waiting.revoke()
    [by_hand] = revoked
    assert by_hand["sender"] is never and by_hand["request"].id == waiting.id
    assert (by_hand["terminated"], by_hand["signum"], by_hand["expired"]) == (False, None, False)
    assert not waiting.revoke() and len(revoked) == 1  # nothing revoked: no signal

    late = never.apply_async(expires=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    with run_worker(app):
        wait_for(lambda: late.state == "EXPIRED", message="the expired job's EXPIRED outcome")
    [expired] = revoked[1:]
    assert expired["sender"] is never and expired["request"].id == late.id and expired["expired"] is True


def test_group_revoke_signals_each_revoked_job(app: App, listen):
    from sqlq.result import GroupResult

    revoked = listen("task_revoked")
    a, b = app.send_task("tests.a", []), app.send_task("tests.b", [])
    assert GroupResult(None, [a, b], app).revoke() == 2
    assert sorted(c["request"].id for c in revoked) == sorted([a.id, b.id])


def test_task_unknown_rejected_and_internal_error(app: App, listen, run_worker):
    @app.task
    def fine(x):
        return x

    @app.task
    def doomed():
        return "never returns"

    def fatal_for_doomed(sender, **kwargs):
        if sender is doomed:
            raise Fatal("a receiver's BaseException")

    unknown, rejected, internal = listen("task_unknown"), listen("task_rejected"), listen("task_internal_error")
    listen("task_prerun", action=fatal_for_doomed)
    nobody = app.send_task("tests.nobody.knows", [1])
    pickled = fine.apply_async((1,), serializer="pickle")  # the worker accepts only json
    broken = doomed.delay()
    with run_worker(app) as worker:
        for result in (nobody, pickled, broken):
            wait_for(lambda r=result: r.state == "FAILURE", message=f"FAILURE of {result.id}")

    [u] = unknown
    assert (u["name"], u["id"]) == ("tests.nobody.knows", nobody.id)
    assert isinstance(u["exc"], NotRegistered) and isinstance(u["message"], ClaimedJob)
    assert u["sender"].hostname == worker.hostname
    [r] = rejected
    assert r["message"].id == pickled.id and isinstance(r["exc"], ContentDisallowed)
    [i] = internal
    assert i["sender"] is doomed and i["task_id"] == broken.id and isinstance(i["exception"], Fatal)
    assert i["request"].id == broken.id and i["args"] == [] and "Fatal" in i["einfo"]


def test_task_rejected_for_an_impossible_row(app: App, listen, run_worker, raw_conn, schema):
    rejected = listen("task_rejected")
    result = app.send_task("tests.any", [])
    raw_conn.execute(f'UPDATE "{schema}".jobs SET retries = -5 WHERE id = %s', (result.id,))
    with run_worker(app):
        wait_for(lambda: result.state == "FAILURE", message="the impossible row's FAILURE")
    [r] = rejected
    assert r["message"].id == result.id and isinstance(r["exc"], InvalidJobError)


# --- the worker's life -------------------------------------------------------------------------------

def test_celeryd_init_worker_init_and_heartbeat_sent(app: App, listen, run_worker):
    init, started, beats = listen("celeryd_init"), listen("worker_init"), listen("heartbeat_sent")
    app.conf.worker_heartbeat_interval = 0.2
    with run_worker(app, hostname="signals@test", queues=["a", "b"]) as worker:
        wait_for(lambda: len(beats) >= 2, message="two heartbeats")
    [i] = init
    assert i["sender"] == "signals@test" and i["instance"] is worker and i["conf"] is app.conf
    assert i["options"]["queues"] == ["a", "b"] and i["options"]["pool"] == "threads"
    assert [c["sender"] for c in started] == [worker]
    assert all(c["sender"] is worker for c in beats)


@pytest.fixture
def signal_app(schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[App, Path]]:
    """tests/apps/signal_app.py, migrated, with its children's signal log."""
    from tests.apps import signal_app as module

    log_file = tmp_path / "signals.log"
    monkeypatch.setenv("SQLQ_SIGNAL_LOG", str(log_file))
    module.app.close()
    module.app.migrate()
    yield module.app, log_file
    module.app.close()


def lines(path: Path, word: str) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.split()[0] == word]


def test_prefork_children_send_process_signals_in_the_child(signal_app, listen, run_worker):
    app, log_file = signal_app
    from tests.apps.signal_app import where

    before_create = listen("worker_before_create_process")
    results = [where.delay() for _ in range(4)]
    wt = run_worker(app, pool="prefork", concurrency=2, app_path="tests.apps.signal_app:app")
    with wt:
        pids = {r.get(timeout=60) for r in results}
        wait_for(lambda: len(lines(log_file, "worker_process_init")) == 2, message="two children's init")
    assert len(before_create) == 2 and all(c["sender"] is wt.worker.pool for c in before_create)
    inits = lines(log_file, "worker_process_init")
    child_pids = {int(line[1]) for line in inits}
    assert os.getpid() not in child_pids and pids <= child_pids
    assert all(line[2] == "sender=None" for line in inits)
    shutdowns = lines(log_file, "worker_process_shutdown")
    assert {int(line[1]) for line in shutdowns} == child_pids
    assert all(line[2:] == ["exitcode=0", "same_pid=True"] for line in shutdowns)
    # no setup_logging receiver in the children: sqlq set their logging up, then told the receivers
    assert {int(line[1]) for line in lines(log_file, "after_setup_logger")} == child_pids
    assert all(line[2] == "sqlq" for line in lines(log_file, "after_setup_logger"))
    assert {line[2] for line in lines(log_file, "after_setup_task_logger")} == {"sqlq.task"}


def test_a_setup_logging_receiver_in_a_child_takes_logging_over(signal_app, run_worker, monkeypatch):
    app, log_file = signal_app
    from tests.apps.signal_app import where

    monkeypatch.setenv("SQLQ_SIGNAL_SETUP_LOGGING", "1")
    with run_worker(app, pool="prefork", concurrency=1, app_path="tests.apps.signal_app:app"):
        where.delay().get(timeout=60)
    [line] = lines(log_file, "setup_logging")
    assert line[2] == f"loglevel={logging.getLogger('sqlq').getEffectiveLevel()}"
    assert line[3] == "sqlq_handlers=0"  # sqlq added no handler of its own
    assert lines(log_file, "after_setup_logger") == []


# --- logging set-up of sqlq worker / sqlq beat ----------------------------------------------------------

@pytest.fixture
def sqlq_logger() -> Iterator[logging.Logger]:
    """The ``sqlq`` logger, restored after a test configures it as a command would."""
    logger = logging.getLogger("sqlq")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_setup_logging_receiver_means_sqlq_configures_nothing(listen, sqlq_logger):
    from sqlq.cli import setup_logging

    before = sqlq_logger.handlers[:]
    calls, after = listen("setup_logging"), listen("after_setup_logger")
    setup_logging("warning")
    [call] = calls
    assert call["loglevel"] == logging.WARNING and call["logfile"] is None and "%(message)s" in call["format"]
    assert call["colorize"] is False
    assert sqlq_logger.handlers == before and after == []


def test_after_setup_logger_and_task_logger_follow_sqlqs_own_set_up(listen, sqlq_logger):
    from sqlq.cli import setup_logging

    logger_calls, task_calls = listen("after_setup_logger"), listen("after_setup_task_logger")
    setup_logging("debug")
    [call] = logger_calls
    assert call["logger"] is sqlq_logger and call["loglevel"] == logging.DEBUG
    assert len(sqlq_logger.handlers) == 1 and sqlq_logger.level == logging.DEBUG
    [task_call] = task_calls
    assert task_call["logger"].name == "sqlq.task"


def test_the_worker_command_imports_the_app_before_logging(signal_app, sqlq_logger, listen):
    """``sqlq worker`` sets logging up after importing the app, so receivers in it count."""
    from click.testing import CliRunner

    from sqlq.cli import main

    app, _ = signal_app
    order: list[str] = []
    listen("setup_logging", action=lambda **kwargs: order.append("setup_logging"))
    listen("celeryd_init", action=lambda **kwargs: order.append("celeryd_init"))
    result = CliRunner().invoke(main, ["-A", "tests.apps.signal_app", "worker", "--burst", "-P", "solo"])
    assert result.exit_code == 0, result.output
    assert order == ["setup_logging", "celeryd_init"]


# --- beat -------------------------------------------------------------------------------------------

def test_beat_init_and_beat_embedded_init(app: App, listen):
    standalone, embedded = listen("beat_init"), listen("beat_embedded_init")
    beat = Beat(app, sleep=lambda seconds: beat.stop())
    assert beat.run() == 0
    assert [c["sender"] for c in standalone] == [beat] and embedded == []

    in_worker = Beat(app)
    thread = in_worker.start_thread()
    wait_for(lambda: embedded, message="beat_embedded_init")
    in_worker.stop()
    thread.join(10)
    assert [c["sender"] for c in embedded] == [in_worker] and len(standalone) == 1


def test_nobody_listening_costs_no_signal_work(app: App, monkeypatch):
    """With no receivers the per-job signals are not even built (the publish helpers never run)."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a per-job signal was prepared with nobody listening")

    monkeypatch.setattr(signals, "send_before_publish", forbidden)
    monkeypatch.setattr(signals, "send_after_publish", forbidden)
    monkeypatch.setattr(signals, "send_task_received", forbidden)
    assert not signals.before_task_publish.has_receivers and not signals.task_received.has_receivers

    @app.task
    def quick(x):
        return x

    results = [quick.delay(1), *quick.delay_many([(n,) for n in range(70)])]
    worker = Worker(app, pool="solo", burst=True)
    assert worker.run() == 0
    assert all(r.state == "SUCCESS" for r in results)
