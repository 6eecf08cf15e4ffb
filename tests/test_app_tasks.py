"""The App and @app.task against a server: send_task, AsyncResult handles, calling a task here,
task options in the job row, bind/ignore_result, autoretry, time limits, tasks defined in __main__.
Settings, the registry, discovery and definition checks need no server: tests/unit/test_app_config.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import psycopg
import pytest

from sqlq import App, SoftTimeLimitExceeded
from sqlq.errors import (
    ConfigurationError,
    InvalidNameError,
    TimeLimitExceeded,
)

TIMEOUT = 60


def _job_row(conn: psycopg.Connection, schema: str, job_id: str) -> dict:
    cur = conn.execute(f'SELECT *, extract(epoch FROM expires_at - enqueued_at) AS expires_after '
                       f'FROM "{schema}".jobs WHERE id = %s', (job_id,))
    names = [d.name for d in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


# --- registry, discovery, send_task, AsyncResult ------------------------------------------------

def test_send_task_by_name_without_the_code(app: App, database_url: str, run_worker):
    """The producer never imported the task; a worker whose app has it runs the job."""
    worker_app = App("tests", database_url=database_url, schema=app.conf.schema)

    @worker_app.task(name="remote.multiply")
    def multiply(x, y, factor=1):
        return x * y * factor

    assert "remote.multiply" not in app.tasks
    result = app.send_task("remote.multiply", (3, 4), {"factor": 2}, queue="remote", priority=2)
    assert result.task_name == "remote.multiply"
    try:
        with run_worker(worker_app, queues=["remote"]):
            assert result.get(timeout=TIMEOUT) == 24
    finally:
        worker_app.close()


def test_send_task_validates_the_name_and_options(app: App, raw_conn: psycopg.Connection):
    with pytest.raises(InvalidNameError, match="invalid task name"):
        app.send_task("not a name")
    with pytest.raises(ConfigurationError, match="unknown option.*no_such_option"):
        app.send_task("remote.x", (), {}, no_such_option=1)
    assert raw_conn.execute(f'SELECT count(*) FROM "{app.conf.schema}".jobs').fetchone()[0] == 0


def test_app_async_result_handle(app: App):
    task_id = str(uuid.uuid4())
    result = app.AsyncResult(task_id)
    assert result.id == task_id and result.app is app
    assert result.state == "PENDING"
    assert result == app.AsyncResult(task_id)


# --- @app.task ----------------------------------------------------------------------------------

def test_calling_the_task_runs_it_here(app: App, raw_conn: psycopg.Connection):
    calls = []

    @app.task
    def record(x, y=0):
        calls.append((x, y))
        return x + y

    assert record(1, y=2) == 3
    assert calls == [(1, 2)]
    assert raw_conn.execute(f'SELECT count(*) FROM "{app.conf.schema}".jobs').fetchone()[0] == 0


def test_task_options_shape_the_job(app: App, raw_conn: psycopg.Connection):
    @app.task(queue="reports", priority=9, expires=60, acks_late=False, serializer="msgpack")
    def report(n):
        return n

    row = _job_row(raw_conn, app.conf.schema, report.delay(1).id)
    assert (row["queue"], row["priority"], row["acks_late"]) == ("reports", 9, False)
    assert row["expires_after"] == 60
    assert row["content_type"] == "application/x-msgpack" and row["args"] is None and row["payload"]
    override = _job_row(raw_conn, app.conf.schema, report.apply_async((2,), queue="other", priority=1).id)
    assert (override["queue"], override["priority"]) == ("other", 1)


def test_bind_ignore_result_and_request(app: App, run_worker):
    seen = {}

    @app.task(bind=True, ignore_result=True)
    def introspect(self, x):
        seen.update(task=self, id=self.request.id, args=self.request.args, eager=self.request.is_eager)
        return x

    result = introspect.delay(5)
    with run_worker(app):
        assert result.get(timeout=TIMEOUT) is None  # the outcome is stored, the value is not
    assert result.state == "SUCCESS"
    assert seen == {"task": introspect, "id": result.id, "args": [5], "eager": False}


def test_autoretry_for_with_max_retries(app: App, run_worker):
    attempts = []

    @app.task(autoretry_for=(ValueError,), max_retries=2, default_retry_delay=0)
    def flaky():
        attempts.append(1)
        raise ValueError("still broken")

    result = flaky.delay()
    with run_worker(app):
        with pytest.raises(ValueError, match="still broken"):
            result.get(timeout=TIMEOUT)
    assert len(attempts) == 3 and result.retries == 2


def _busy(seconds: float) -> None:
    """Pure-Python waiting, so an exception raised into this thread arrives promptly."""
    done = threading.Event()
    for _ in range(int(seconds * 20)):
        done.wait(0.05)


def test_soft_time_limit(app: App, run_worker):
    @app.task(soft_time_limit=0.3)
    def cleanup():
        try:
            _busy(TIMEOUT)
        except SoftTimeLimitExceeded:
            return "cleaned up"
        return "ran to the end"

    result = cleanup.delay()
    with run_worker(app):
        assert result.get(timeout=TIMEOUT * 2) == "cleaned up"


def test_time_limit(app: App, run_worker):
    @app.task(time_limit=0.3)
    def endless():
        _busy(TIMEOUT)
        return "ran to the end"

    result = endless.delay()
    with run_worker(app):
        with pytest.raises(TimeLimitExceeded):
            result.get(timeout=TIMEOUT * 2)


# --- tasks defined in __main__ ------------------------------------------------------------------

def _run_python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


_MAIN_TASK = textwrap.dedent("""
    from sqlq import App
    app = App({main})

    @app.task{options}
    def job():
        return 1

    print(job.name)
""")


def test_task_in_main_without_an_importable_name_is_refused():
    proc = _run_python("-c", _MAIN_TASK.format(main="", options=""))
    assert proc.returncode != 0
    assert "TaskDefinitionError" in proc.stderr and "pass name='yourmodule.job'" in proc.stderr


def test_task_in_main_named_after_the_app():
    proc = _run_python("-c", _MAIN_TASK.format(main="'proj.jobs'", options=""))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "proj.jobs.job"


def test_task_in_main_with_explicit_name():
    proc = _run_python("-c", _MAIN_TASK.format(main="", options="(name='proj.explicit')"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "proj.explicit"


def test_task_in_main_run_with_dash_m(tmp_path: Path):
    pkg = tmp_path / "mainpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "runner.py").write_text(_MAIN_TASK.format(main="", options=""))
    proc = _run_python("-m", "mainpkg.runner", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "mainpkg.runner.job"
