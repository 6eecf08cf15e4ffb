"""The django.tasks backend (sqlq.contrib.django.tasks.SqlqBackend) against a real worker: results,
states, errors, priorities, queues, run_after, async forms and Django's transactions.

Django 6 needs Python 3.12: these tests run in .venv-django (make test runs them there)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest

pytest.importorskip("django", minversion="6.0")

from sqlq import App  # noqa: E402
from tests.apps import django_project  # noqa: E402
from tests.apps.harness import await_for, job_row, scalar, wait_for, wait_result  # noqa: E402


@pytest.fixture
def proj_app(database_url: str, schema: str) -> Iterator[App]:
    django_project.setup(database_url)
    from proj.celery import app

    app.close()
    app.migrate()
    yield app
    app.close()


@pytest.fixture
def tasks(proj_app: App):
    from tests.apps import django_tasks

    return django_tasks


def finished(task, result_id: str):
    def done():
        result = task.get_result(result_id)
        return result if result.is_finished else None
    return wait_for(done, message=f"task result {result_id} to finish")


def test_capabilities_are_what_sqlq_does(proj_app: App) -> None:
    from django.tasks import task_backends

    from sqlq.contrib.django.tasks import SqlqBackend

    backend = task_backends["default"]
    assert type(backend) is SqlqBackend
    assert backend.queues == {"default", "emails"}
    for flag in ("supports_defer", "supports_async_task", "supports_get_result", "supports_priority"):
        assert getattr(backend, flag) is True, flag


def test_enqueue_run_and_get_result(tasks, proj_app: App, run_worker, raw_conn: psycopg.Connection,
                                    schema: str) -> None:
    from django.tasks import TaskResultStatus

    result = tasks.add.enqueue(2, y=3)
    assert result.status == TaskResultStatus.READY and result.backend == "default"
    assert result.args == [2] and result.kwargs == {"y": 3}
    waiting = tasks.add.get_result(result.id)
    assert waiting.status == TaskResultStatus.READY and not waiting.is_finished
    assert job_row(raw_conn, schema, result.id)["task"] == "tests.apps.django_tasks.add"
    with run_worker(proj_app):
        done = finished(tasks.add, result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == 5
    assert done.args == [2] and done.kwargs == {"y": 3}
    assert done.enqueued_at <= done.started_at <= done.finished_at
    assert done.last_attempted_at == done.started_at
    assert done.attempts == 1 and len(done.worker_ids[0]) == 36
    result.refresh()  # the handle enqueue returned reads the same
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5


def test_failure_is_failed_with_the_exception_and_traceback(tasks, proj_app: App, run_worker) -> None:
    from django.tasks import TaskResultStatus

    result = tasks.fail.enqueue("boom")
    with run_worker(proj_app):
        done = finished(tasks.fail, result.id)
    assert done.status == TaskResultStatus.FAILED
    [error] = done.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "ValueError: boom" in error.traceback and "raise ValueError(message)" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        done.return_value  # noqa: B018


def test_priority_queue_and_run_after_reach_the_job(tasks, proj_app: App, raw_conn: psycopg.Connection,
                                                    schema: str) -> None:
    from django.tasks import TaskResultStatus
    from django.utils import timezone

    later = timezone.now() + dt.timedelta(hours=1)
    result = tasks.email.using(run_after=later).enqueue("ann@example.com")
    row = job_row(raw_conn, schema, result.id)
    assert (row["queue"], row["priority"], row["state"]) == ("emails", 10, "scheduled")
    assert abs((row["run_at"] - later).total_seconds()) < 0.001
    assert tasks.fail.enqueue("x") and scalar(
        raw_conn, f'SELECT priority FROM "{schema}".jobs WHERE task = %s', "tests.apps.django_tasks.fail") == -5
    read = tasks.email.get_result(result.id)
    assert read.status == TaskResultStatus.READY
    assert read.task.queue_name == "emails" and read.task.priority == 10


def test_higher_priority_runs_first(tasks, proj_app: App, run_worker) -> None:
    low = tasks.add.using(priority=-100).enqueue(0, 1)
    high = tasks.add.using(priority=100).enqueue(0, 2)
    with run_worker(proj_app, concurrency=1, pool="solo", prefetch_multiplier=1):  # one job per claim
        first, second = finished(tasks.add, high.id), finished(tasks.add, low.id)
    assert first.started_at < second.started_at


def test_an_unlisted_queue_is_refused(tasks, proj_app: App) -> None:
    from django.tasks.exceptions import InvalidTask

    with pytest.raises(InvalidTask, match="Queue 'reports' is not valid"):
        tasks.add.using(queue_name="reports")


def test_enqueue_inside_atomic_joins_the_transaction(tasks, proj_app: App, raw_conn: psycopg.Connection,
                                                     schema: str) -> None:
    from django.db import transaction
    from django.tasks.exceptions import TaskResultDoesNotExist

    with transaction.atomic():
        kept = tasks.add.enqueue(1, 1)
        assert job_row(raw_conn, schema, kept.id) is None  # not committed yet
    assert job_row(raw_conn, schema, kept.id) is not None
    with transaction.atomic():
        dropped = tasks.add.enqueue(1, 2)
        transaction.set_rollback(True)
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(dropped.id)


def test_takes_context_gets_the_attempt_and_id(tasks, proj_app: App, run_worker) -> None:
    result = tasks.attempt.enqueue(7)
    with run_worker(proj_app):
        done = finished(tasks.attempt, result.id)
    assert done.return_value == {"attempt": 1, "id": result.id, "n": 7}


def test_coroutine_task_runs(tasks, proj_app: App, run_worker) -> None:
    result = tasks.double_later.enqueue(21)
    with run_worker(proj_app):
        assert finished(tasks.double_later, result.id).return_value == 42


async def test_aenqueue_and_aget_result(tasks, proj_app: App, run_worker) -> None:
    from django.tasks import TaskResultStatus

    result = await tasks.add.aenqueue(20, 22)
    assert (await tasks.add.aget_result(result.id)).status == TaskResultStatus.READY
    seen = []

    async def finished_now() -> bool:
        seen.append(await tasks.add.aget_result(result.id))
        return seen[-1].is_finished

    with run_worker(proj_app):
        while not await finished_now():
            await await_for(lambda: True)  # (one turn of the loop between reads)
    assert seen[-1].return_value == 42


def test_revoked_job_reads_failed(tasks, proj_app: App) -> None:
    from django.tasks import TaskResultStatus

    result = tasks.add.enqueue(1, 2)
    assert proj_app.AsyncResult(result.id).revoke()
    read = tasks.add.get_result(result.id)
    assert read.status == TaskResultStatus.FAILED
    assert read.errors[0].exception_class_path == "sqlq.errors.TaskRevokedError"


def test_unknown_or_foreign_ids_do_not_exist(tasks, proj_app: App) -> None:
    from django.tasks import default_task_backend
    from django.tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch
    from orders.tasks import ship_order

    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("00000000-0000-7000-8000-000000000000")
    sqlq_job = ship_order.delay(1)  # a sqlq task, not a django.tasks one
    with pytest.raises(TaskResultDoesNotExist, match="not a django.tasks task"):
        default_task_backend.get_result(sqlq_job.id)
    other = tasks.add.enqueue(1, 1)
    with pytest.raises(TaskResultMismatch):
        tasks.email.get_result(other.id)


def test_worker_result_row_is_sqlq_result(tasks, proj_app: App, run_worker, raw_conn: psycopg.Connection,
                                          schema: str) -> None:
    """A django.tasks job is a sqlq job like any other: sqlq's AsyncResult reads it too."""
    result = tasks.add.enqueue(4, 4)
    with run_worker(proj_app):
        wait_result(raw_conn, schema, result.id)
    assert proj_app.AsyncResult(result.id).get(timeout=10) == 8


def test_arguments_that_are_not_json_are_refused_before_writing(tasks, proj_app: App,
                                                                raw_conn: psycopg.Connection, schema: str) -> None:
    """django.tasks' contract (sqlq's JSON would carry a datetime, Django's results could not)."""
    with pytest.raises(TypeError, match="Unsupported type"):
        tasks.add.enqueue(dt.datetime.now(), 1)
    assert scalar(raw_conn, f'SELECT count(*) FROM "{schema}".jobs') == 0


def test_a_project_without_a_sqlq_app_runs_its_tasks(database_url: str, schema: str,
                                                     raw_conn: psycopg.Connection) -> None:
    """No proj/celery.py and no import of sqlq: the backend's app is made from the Django settings,
    and `manage.py sqlq worker` finds the tasks by autodiscovery."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.apps.django_bare.settings", BARE_DATABASE_URL=database_url,
               PYTHONPATH=str(django_project.ROOT))
    env.pop("SQLQ_DATABASE_URL")  # DATABASES['default'] it is
    sent = subprocess.run([sys.executable, "-c", (
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('sqlq', 'migrate')\n"
        "from tests.apps.django_bare.tasks import shout\n"
        "print(shout.enqueue('hi').id)\n")], env=env, capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0, sent.stderr
    job_id = sent.stdout.split()[-1]
    worked = subprocess.run([sys.executable, "-m", "django", "sqlq", "worker", "--pool", "threads", "--burst"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert worked.returncode == 0, worked.stderr
    row = wait_result(raw_conn, schema, job_id)
    assert row["state"] == "SUCCESS" and row["result"] == "HI", row
