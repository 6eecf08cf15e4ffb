"""A ``django.tasks`` backend (Django 6's task API, DEP 14) on sqlq::

    TASKS = {"default": {"BACKEND": "sqlq.contrib.django.tasks.SqlqBackend",
                         "QUEUES": ["default", "emails"],
                         "OPTIONS": {"APP": "proj.celery:app", "DATABASE": "default"}}}

A ``@task`` function is a sqlq task named by its module path (``orders.tasks.send_receipt``),
registered in the project's app when the function is defined, so a worker that imports the module
(``autodiscover_tasks()`` imports every installed app's ``tasks.py``) runs it: ``manage.py sqlq
worker -Q default,emails``. ``enqueue`` is a sqlq job: ``priority`` (-100..100, higher first),
``queue_name`` (one of ``QUEUES``), ``run_after`` (its eta); ``get_result`` reads the job's row.

Transactions: inside ``transaction.atomic()`` the job is written on Django's connection (OPTIONS
``DATABASE``, default ``'default'``, which must be sqlq's database), so it commits and rolls back
with the block; outside one it is committed at once, on sqlq's own connection. Django 6 has no
``ENQUEUE_ON_COMMIT`` (django-tasks, the reference implementation, had one): a job written in the
transaction is never seen by a worker before the commit, so nothing needs deferring; a project
that wants the job only after a commit wraps the call,
``transaction.on_commit(partial(send_receipt.enqueue, order.pk))``.

OPTIONS: ``APP``, the sqlq app as ``sqlq -A`` names it (default: the current app, see
``project.get_app``); ``DATABASE``, the Django connection whose ``atomic()`` blocks a job joins.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.tasks import TaskContext, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import Task, TaskError
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from ... import serialization
from ...errors import SqlqError
from ...names import validate_queue
from ...store.records import JobRecord
from ...task import Request, task_uuid
from .database import psycopg_connection
from .project import get_app

#: sqlq's states as django.tasks' (REVOKED and EXPIRED jobs never ran: Django's "unable to start").
STATUSES: dict[str, TaskResultStatus] = {
    "available": TaskResultStatus.READY,
    "scheduled": TaskResultStatus.READY,
    "running": TaskResultStatus.RUNNING,
    "SUCCESS": TaskResultStatus.SUCCESSFUL,
    "FAILURE": TaskResultStatus.FAILED,
    "REVOKED": TaskResultStatus.FAILED,
    "EXPIRED": TaskResultStatus.FAILED,
}
#: The exception class a REVOKED or EXPIRED job's TaskError names.
_NEVER_RAN = {"REVOKED": "sqlq.errors.TaskRevokedError", "EXPIRED": "sqlq.errors.TaskExpiredError"}
_OPTIONS = frozenset({"APP", "DATABASE"})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SqlqTask(Task):
    """A ``django.tasks`` Task that is also a sqlq task (registered when it is made)."""

    def __post_init__(self) -> None:
        Task.__post_init__(self)
        backend = self.get_backend()
        if isinstance(backend, SqlqBackend):
            backend.register(self)


class SqlqBackend(BaseTaskBackend):
    """``django.tasks`` on sqlq; the capability flags are what sqlq does: jobs may wait for a
    ``run_after`` (an eta), run coroutine functions, have results read from any process, and are
    claimed highest priority first."""

    task_class = SqlqTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]):
        super().__init__(alias, params)
        unknown = set(self.options) - _OPTIONS
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS'] has unknown key(s) {', '.join(sorted(unknown))} for "
                f"sqlq's backend; it knows {', '.join(sorted(_OPTIONS))} (sqlq's own settings go in the "
                f"app's configuration)")
        for queue in self.queues:
            validate_queue(queue)
        self._app_path: str | None = self.options.get("APP")
        self.database: str = self.options.get("DATABASE", "default")

    @property
    def app(self) -> Any:
        return get_app(self._app_path)

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        try:
            validate_queue(task.queue_name)
        except SqlqError as exc:
            raise InvalidTask(str(exc)) from None

    def register(self, task: Task) -> None:
        """Make ``task`` a sqlq task of the app, named by its module path (once)."""
        app = self.app
        name = task.module_path
        if name in app.tasks:
            return

        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            return _run(name, self.request, args, kwargs)

        run.__module__, run.__qualname__ = task.func.__module__, task.func.__qualname__
        app.task(name=name, bind=True, typing=False)(run)

    # sending -----------------------------------------------------------------------------------

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Arguments must be JSON (django.tasks' contract, checked before anything is written).
        The result is the job's row read back (in the same transaction), so that it equals what
        ``get_result`` reads while the job waits: the database's ``enqueued_at``, not this clock's."""
        self.validate_task(task)
        self.register(task)
        args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        app = self.app
        connection = connections[self.database]
        in_transaction = connection.in_atomic_block
        result = app.send_task(task.module_path, args, kwargs, queue=task.queue_name, priority=task.priority,
                               eta=task.run_after, connection=connection if in_transaction else None)
        if in_transaction:
            record = app.store.job_record(psycopg_connection(connection), result.id)
        else:
            with app.connection() as conn:
                record = app.store.job_record(conn, result.id)
        return self._enqueued(task, result.id, record)

    async def aenqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Written on sqlq's async connection, committed at once (Django's ``atomic()`` is for
        synchronous code)."""
        self.validate_task(task)
        self.register(task)
        args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        app = self.app
        spec = app.build_job(task.module_path, args, kwargs, queue=task.queue_name,
                             priority=task.priority, eta=task.run_after)
        result = (await app.aenqueue([spec]))[0]
        async with app._async_pool().connection() as conn:
            record = await app.store.ajob_record(conn, result.id)
        return self._enqueued(task, result.id, record)

    def _enqueued(self, task: Task, job_id: str, record: JobRecord | None) -> TaskResult:
        """The TaskResult of a job just written (``record``: its row; None only when a worker
        already ran it and its result expired, which a sane ``result_expires`` never allows)."""
        task_result = self._result(job_id, record, task)
        task_enqueued.send(type(self), task_result=task_result)
        return task_result

    # results -----------------------------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult:
        app = self.app
        job_id = _job_id(result_id)
        with app.connection() as conn:
            record = app.store.job_record(conn, job_id)
        return self._result(result_id, record)

    async def aget_result(self, result_id: str) -> TaskResult:
        app = self.app
        job_id = _job_id(result_id)
        async with app._async_pool().connection() as conn:
            record = await app.store.ajob_record(conn, job_id)
        return self._result(result_id, record)

    def _result(self, result_id: str, record: JobRecord | None, task: Task | None = None) -> TaskResult:
        if record is None:
            raise TaskResultDoesNotExist(result_id)
        task = task or _django_task(record)
        if task is None:
            raise TaskResultDoesNotExist(f"{result_id} is a sqlq job of {record.task!r}, not a django.tasks task")
        accept = self.app.conf.accept_content
        args, kwargs = serialization.decode_call(record.content_type, record.args, record.kwargs, record.payload,
                                                 accept)
        errors = []
        if record.state == "FAILURE":
            errors.append(TaskError(exception_class_path=_class_path(record.exc_type),
                                    traceback=record.traceback or record.exc_message or ""))
        elif record.state in _NEVER_RAN:
            errors.append(TaskError(exception_class_path=_NEVER_RAN[record.state], traceback=record.exc_message or ""))
        started = record.started_at
        task_result = TaskResult(
            task=task, id=result_id, status=STATUSES[record.state], enqueued_at=record.enqueued_at,
            started_at=started, finished_at=record.finished_at, last_attempted_at=started, args=args,
            kwargs=kwargs, backend=self.alias, errors=errors,
            worker_ids=_worker_ids(record.worker_id, record.attempts))
        if record.state == "SUCCESS":
            value = (serialization.json_loads(record.result) if record.result_content_type in (None, serialization.JSON)
                     else serialization.decode(record.result_content_type, None, record.result_payload,
                                               accept))
            object.__setattr__(task_result, "_return_value", value)
        return task_result


def _class_path(exc_type: str | None) -> str:
    """An exception's class as an import path: sqlq names a builtin exception by its name alone."""
    if not exc_type:
        return "builtins.Exception"
    return exc_type if "." in exc_type else f"builtins.{exc_type}"


def _job_id(result_id: str) -> str:
    return task_uuid(result_id)


def _worker_ids(worker_id: str | None, attempts: int) -> list[str]:
    """sqlq keeps the id of the worker of a job's last attempt only: it stands for each attempt, so
    that ``TaskResult.attempts`` (the list's length) is the job's count of attempts."""
    return [worker_id] * attempts if worker_id else []


def _django_task(record: JobRecord) -> Task | None:
    """The ``django.tasks`` Task a job runs, with the job's queue and priority; None for a job of
    a sqlq task that is not one."""
    try:
        found = import_string(record.task)
    except ImportError:
        return None
    if not isinstance(found, Task):
        return None
    if found.queue_name != record.queue or found.priority != record.priority:
        try:
            return cast(Task, found.using(queue_name=record.queue, priority=record.priority))
        except InvalidTask:  # (a job sent to a queue or priority that the backend does not list)
            return found
    return found


def _run(name: str, request: Request, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A django.tasks task run by a sqlq worker: the function (a coroutine one too, through
    ``Task.call``), with a ``TaskContext`` first when it ``takes_context``; the return value as
    Django normalizes it (JSON)."""
    task = import_string(name)
    if task.takes_context:
        now = timezone.now()
        attempts = max(request.attempt, 1)
        running = TaskResult(task=task, id=request.id or "", status=TaskResultStatus.RUNNING, enqueued_at=None,
                             started_at=now, finished_at=None, last_attempted_at=now, args=list(args),
                             kwargs=dict(kwargs), backend=task.backend, errors=[],
                             worker_ids=[request.worker_id or request.hostname or ""] * attempts)
        value = task.call(TaskContext(task_result=running), *args, **kwargs)
    else:
        value = task.call(*args, **kwargs)
    return normalize_json(value)
