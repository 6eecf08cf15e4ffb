"""Graceful shutdown. Warm: prefetched jobs go back at once, running ones finish,
exit 0. Cold: running jobs go back at once. A worker process does the same on SIGTERM."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from sqlq.worker.worker import Worker
from tests.apps.harness import WorkerProcess, create_runs_table, job_row, result_row, scalar, wait_for


class Running:
    """A Worker on a thread of its own, keeping the exit code ``run()`` returns."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.exit_code = self.worker.run()

    def join(self, timeout: float = 30) -> int | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not stop"
        return self.exit_code


@pytest.fixture
def gate():
    """Blocks tasks until the test opens it; always opened at the end so no thread is left hanging."""
    event = threading.Event()
    yield event
    event.set()


def test_warm_stop_hands_back_unstarted_jobs_at_once_and_finishes_running_ones(app, raw_conn, schema, gate):
    started = threading.Event()

    @app.task
    def hold():
        started.set()
        gate.wait(60)
        return "finished"

    running = hold.delay()
    queued = [hold.delay() for _ in range(3)]
    run = Running(Worker(app, pool="threads", concurrency=1, prefetch_multiplier=4))
    assert started.wait(30)
    wait_for(lambda: all(job_row(raw_conn, schema, r.id)["state"] == "running" for r in queued),
             message="the worker to prefetch the other three")
    run.worker.stop()

    def handed_back() -> bool:
        return all(job_row(raw_conn, schema, r.id)["worker_id"] is None for r in queued)

    wait_for(handed_back, message="the prefetched jobs to be handed back while the first still runs")
    for r in queued:
        row = job_row(raw_conn, schema, r.id)
        assert row["state"] == "available" and row["attempt"] == 0  # not started: no attempt spent
    assert job_row(raw_conn, schema, running.id)["state"] == "running"

    gate.set()
    assert run.join() == 0
    assert running.get(timeout=5) == "finished"
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs WHERE state = 'available'", schema=schema) == 3


def test_cold_stop_hands_back_running_jobs_at_once(app, run_worker, raw_conn, schema, gate):
    started = threading.Event()

    @app.task
    def hold():
        started.set()
        gate.wait(60)
        return hold.request.attempt

    result = hold.delay()
    run = Running(Worker(app, pool="threads", concurrency=1))
    assert started.wait(30)
    run.worker.stop(cold=True)
    assert run.join() == 0  # without waiting for the task, which is still blocked
    row = job_row(raw_conn, schema, result.id)
    assert row["state"] == "available" and row["worker_id"] is None and row["attempt"] == 1
    gate.set()

    started.clear()
    with run_worker(app):
        assert result.get(timeout=30) == 2


def test_cold_stop_kills_prefork_children(basic_app, raw_conn, schema):
    from tests.apps import basic

    create_runs_table(raw_conn, schema)
    result = basic.slow_first_attempt.delay(120)
    run = Running(Worker(basic_app, pool="prefork", concurrency=1))
    child = wait_for(lambda: scalar(raw_conn, "SELECT pid FROM {s}.runs", schema=schema), timeout=60,
                     message="the task to start in a child")
    run.worker.stop(cold=True)
    assert run.join() == 0
    assert not Path(f"/proc/{child}").exists()
    row = job_row(raw_conn, schema, result.id)
    assert row["state"] == "available" and row["worker_id"] is None


def test_sigterm_lets_the_running_task_finish_then_exits_zero(basic_app, raw_conn, schema, tmp_path):
    from tests.apps import basic

    create_runs_table(raw_conn, schema)
    result = basic.recorded.delay(3)
    worker = WorkerProcess(tmp_path / "worker.log", pool="prefork", concurrency=1)
    try:
        wait_for(lambda: scalar(raw_conn, "SELECT count(*) FROM {s}.runs", schema=schema), timeout=60,
                 message="the task to start")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(60) == 0
    finally:
        worker.stop()
    assert result_row(raw_conn, schema, result.id)["state"] == "SUCCESS"
    assert "warm shutdown" in worker.output()
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.workers", schema=schema) == 0


def test_second_sigterm_turns_cold_and_hands_the_job_back(basic_app, raw_conn, schema, tmp_path):
    from tests.apps import basic

    create_runs_table(raw_conn, schema)
    result = basic.recorded.delay(120)
    worker = WorkerProcess(tmp_path / "worker.log", pool="prefork", concurrency=1)
    try:
        wait_for(lambda: scalar(raw_conn, "SELECT count(*) FROM {s}.runs", schema=schema), timeout=60,
                 message="the task to start")
        worker.process.send_signal(signal.SIGTERM)
        wait_for(lambda: "warm shutdown" in worker.output(), message="the warm shutdown to begin")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(60) == 0
    finally:
        worker.stop()
    assert "cold shutdown" in worker.output()
    row = job_row(raw_conn, schema, result.id)
    assert row["state"] == "available" and row["worker_id"] is None


def test_a_second_stop_while_the_first_is_still_logging_is_cold(app):
    """The race behind a once-flaky process test: the second SIGTERM's handler runs nested inside the
    first one, after "warm shutdown" was logged; it must turn the shutdown cold, not warm again."""
    import logging

    worker = Worker(app, pool="threads", concurrency=1)
    modes: list[str | None] = []
    pressed = []

    class SecondSignal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "warm shutdown" in record.getMessage() and not pressed:
                pressed.append(True)
                worker.stop()  # what the nested signal handler does
                modes.append(worker._stop_mode)

    handler = SecondSignal()
    logger = logging.getLogger("sqlq.worker")
    logger.addHandler(handler)
    try:
        worker.stop()
    finally:
        logger.removeHandler(handler)
    assert modes == ["cold"] and worker._stop_mode == "cold"
