"""Custom request classes (Celery's ``Task.Request``): per-job hooks in the process that manages
the job, ``from sqlq.worker.request import Request`` where Celery has ``celery.worker.request``.

Celery's guide subclasses its worker ``Request`` to see failures and hard time limits where the
worker decides them, outside the task's own code::

    class MyRequest(Request):
        def on_timeout(self, soft, timeout): ...
        def on_failure(self, exc_info, send_failed_event=True, return_ok=False): ...

    class MyTask(Task):
        Request = MyRequest          # or 'my.package:MyRequest'

sqlq calls those two hooks, with Celery's arguments, in the worker process that owns the job: the
``sqlq worker`` process itself in the threads and solo pools, and **the parent** in the prefork pool,
as in Celery, because that is where a job's end is known for certain: a child killed for its hard
time limit cannot run anything, and the parent sees every end the same way (``Worker._on_result``,
the one place every pool reports to). ``on_timeout(soft, timeout)`` comes first for a job that ended
on its soft (``soft=True``) or hard (``soft=False``) time limit, then ``on_failure(exc_info)`` for
every FAILURE (``exc_info`` is a ``sqlq.task.ExceptionInfo``: ``.exception`` rebuilt from the
outcome, ``.type``, ``.traceback`` text; ``return_ok`` is True for what the task raised and False
for a hard time limit, as Celery passes them). A soft limit the task caught and survived ends no job, so
no hook sees it. The outcome is recorded whatever a hook does: one that raises is logged.

Celery's other ``Request`` methods (``on_success``, ``on_retry``, ``on_accepted``, ``on_ack``,
``execute_using_pool``, ...) drive kombu messages and its pool; a class that overrides one of them
is refused when the task is defined, rather than silently never called.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .. import serialization
from ..errors import TaskDefinitionError
from ..loading import import_object
from ..store import ClaimedJob, Outcome
from ..task import CALL_HEADER, ExceptionInfo

if TYPE_CHECKING:
    from ..app import App
    from ..task import Task

log = logging.getLogger("sqlq.worker")

#: The exception types of the outcomes a time limit ends with (``on_timeout``'s ``soft`` for each).
_TIMEOUTS = {"sqlq.errors.SoftTimeLimitExceeded": True, "sqlq.errors.TimeLimitExceeded": False}

#: Methods of Celery's worker Request that sqlq does not call: overriding one is an error.
CELERY_ONLY_METHODS = frozenset({
    "on_success", "on_retry", "on_accepted", "on_ack", "on_reject", "acknowledge", "reject",
    "execute", "execute_using_pool", "terminate", "cancel", "revoked", "send_event", "maybe_expire",
})

#: The default of ``Task.Request``: the base class, whose hooks only log.
DEFAULT_PATH = "sqlq.worker.request:Request"


class Request:
    """One job as the worker process that owns it sees it, with the hooks a subclass overrides.

    ``id`` is the task id as the caller gave it, ``name`` the task's name, ``task`` the task,
    ``hostname`` the worker's, ``time_limits`` ``(hard, soft)`` in seconds as this job ran;
    ``args``/``kwargs`` are decoded when first read (the prefork parent never decodes them
    otherwise)."""

    def __init__(self, job: ClaimedJob, task: Task, *, hostname: str, worker_id: str,
                 time_limits: tuple[float | None, float | None], accept: list[str]):
        self.job = job
        self.task = task
        self.name: str = task.name
        self.hostname = hostname
        self.worker_id = worker_id
        self.time_limits = time_limits
        self._accept = accept
        self.id: str = str(self._call.get("id") or job.id)

    @cached_property
    def _call(self) -> dict[str, Any]:
        """The per-call options the job carries (time limits, the caller's task id)."""
        if not self.job.headers or self.job.headers == "{}":
            return {}
        try:
            call = serialization.json_loads(self.job.headers).get(CALL_HEADER)
        except (ValueError, TypeError, AttributeError):
            return {}
        return call if isinstance(call, dict) else {}

    @cached_property
    def _decoded(self) -> tuple[list[Any], dict[str, Any]]:
        job = self.job
        return serialization.decode_call(job.content_type, job.args, job.kwargs, job.payload, self._accept)

    @property
    def args(self) -> list[Any]:
        return self._decoded[0]

    @property
    def kwargs(self) -> dict[str, Any]:
        return self._decoded[1]

    @property
    def retries(self) -> int:
        return self.job.retries

    @property
    def queue(self) -> str:
        return self.job.queue

    def on_timeout(self, soft: bool, timeout: float | None) -> None:
        """The job ended on its soft (``soft=True``) or hard time limit of ``timeout`` seconds.
        Logs as Celery's does; the FAILURE is recorded by the worker either way."""
        if soft:
            log.warning("Soft time limit (%ss) exceeded for %s[%s]", timeout, self.name, self.id)
        else:
            log.error("Hard time limit (%ss) exceeded for %s[%s]", timeout, self.name, self.id)

    def on_failure(self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False) -> None:
        """The job ended in FAILURE with ``exc_info``. The worker has logged and records it, so the
        base class adds nothing: override it to report failures elsewhere (Celery's signature;
        ``send_failed_event`` and ``return_ok`` are given as Celery gives them)."""
        return None


def check_request_class(value: Any, task_name: str) -> None:
    """``Request=`` of a task: a subclass of this module's ``Request`` or a ``'module:Class'``
    path (checked when the worker resolves it); a class overriding a method sqlq never calls is
    refused now, naming it."""
    if isinstance(value, str):
        return
    if not (isinstance(value, type) and issubclass(value, Request)):
        raise TaskDefinitionError(
            f"Request= of task {task_name!r} must be a subclass of sqlq.worker.request.Request (or its "
            f"'module:Class' path), got {value!r}")
    unsupported = sorted(m for m in CELERY_ONLY_METHODS if callable(getattr(value, m, None)))
    if unsupported:
        raise TaskDefinitionError(
            f"Request class {value.__qualname__} of task {task_name!r} defines {', '.join(unsupported)}: "
            f"Celery's worker calls them, sqlq's calls only on_timeout and on_failure (a task's own "
            f"on_success/on_retry hooks run in the worker: define them on the task class)")


def resolve(value: Any, task_name: str) -> type[Request] | None:
    """The class ``Task.Request`` names, or None when it is the base class (nothing to call)."""
    if value is None or value == DEFAULT_PATH or value is Request:
        return None
    if isinstance(value, str):
        try:
            value = import_object(value)
        except (ImportError, AttributeError, ValueError) as exc:
            raise TaskDefinitionError(
                f"Request={value!r} of task {task_name!r} cannot be imported ({exc}); give "
                f"'module:Class' or 'module.Class'") from None
    check_request_class(value, task_name)
    return None if value is Request else value


class RequestHooks:
    """What a worker does with its tasks' request classes: for each outcome a pool reports, the
    hooks of the job's task's class, if it has one of its own (looked up once per task)."""

    def __init__(self, app: App, hostname: str, worker_id: str, accept: list[str]):
        self.app = app
        self.hostname = hostname
        self.worker_id = worker_id
        self.accept = accept
        self._classes: dict[str, type[Request] | None] = {}
        self._conf_limits = (app.conf.task_time_limit, app.conf.task_soft_time_limit)

    def _class(self, task: Task) -> type[Request] | None:
        try:
            return self._classes[task.name]
        except KeyError:
            pass
        try:
            found = resolve(getattr(task, "Request", None), task.name)
        except TaskDefinitionError as exc:
            log.error("%s; its request hooks are not called (the jobs' outcomes are recorded as usual)", exc)
            found = None
        self._classes[task.name] = found
        return found

    def outcome(self, job: ClaimedJob, result: object) -> None:
        """Call the hooks for ``result``, the end of ``job``; never raises."""
        if not isinstance(result, Outcome) or result.state != "FAILURE":
            return
        task = self.app.tasks.get(job.task)
        if task is None:
            return
        cls = self._class(task)
        if cls is None:
            return
        try:
            self._call(cls, job, task, result)
        except Exception:  # noqa: BLE001 - a hook's bug must not change what the job did
            log.exception("task %s[%s]: its Request class %s raised; the job's outcome stands", job.task, job.id,
                          cls.__qualname__)

    def _exc_args(self, result: Outcome) -> list[Any] | None:
        """The failure's exception arguments as the outcome carries them (``execution.failure``),
        so the rebuilt exception is ``KeyError('x')`` and not ``KeyError("'x'")``."""
        if result.result_content_type is None:
            return None
        try:
            args = serialization.decode(result.result_content_type, result.result, result.result_payload,
                                        self.accept)
        except Exception:  # noqa: BLE001 - then the message alone, as a reader does
            return None
        return args if isinstance(args, list) else None

    def _call(self, cls: type[Request], job: ClaimedJob, task: Task, result: Outcome) -> None:
        from ..result import rebuild_exception

        hard = task.time_limit if task.time_limit is not None else self._conf_limits[0]
        soft = task.soft_time_limit if task.soft_time_limit is not None else self._conf_limits[1]
        request = cls(job, task, hostname=self.hostname, worker_id=self.worker_id, time_limits=(hard, soft),
                      accept=self.accept)
        call = request._call
        hard, soft = call.get("time_limit", hard), call.get("soft_time_limit", soft)
        request.time_limits = (hard, soft)
        soft_timeout = _TIMEOUTS.get(result.exc_type or "")
        if soft_timeout is not None:
            request.on_timeout(soft_timeout, soft if soft_timeout else hard)
        exc = rebuild_exception(result.exc_type, result.exc_message, result.traceback, self._exc_args(result))
        # Celery's arguments: return_ok=True for what the task raised (its on_success(failed, ...)
        # path), False for a hard time limit, which the pool decides from outside the task
        request.on_failure(ExceptionInfo(exc, result.traceback or f"{result.exc_type}: {result.exc_message}\n"),
                           send_failed_event=True, return_ok=soft_timeout is not False)
