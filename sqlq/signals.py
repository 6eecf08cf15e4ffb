"""Signals with Celery's names and arguments, so existing hooks (metrics, tracing, logging set-up,
cleanup) carry over.

A receiver that raises is logged and ignored: a broken metrics hook must not fail the job. Signals
sent for every job (publishing, receiving) cost nothing while nobody listens: their senders check
``has_receivers`` first.

What each signal is sent with (besides ``sender`` and ``signal``), and where; the README's "Signals"
paragraph lists them for users:

* ``before_task_publish`` (sender: the task name): ``body`` ``(args, kwargs, {})``, ``exchange``,
  ``routing_key``, ``headers``, ``properties``, ``declare`` (always ``[]``), ``retry_policy`` (None),
  just before the job row is written, in the producer. ``headers`` holds Celery's message headers
  (``id``, ``task``, ``eta``, ``expires``, ``retries``, ``group``, ...) and the job's own headers: keys a
  receiver adds or changes, other than Celery's, are stored with the job (``self.request.headers``).
* ``after_task_publish``: the same but ``declare``/``retry_policy``, once the row is written (in the
  caller's transaction when there is one: before its commit).
* ``task_received`` (sender: the worker): ``request``, for each job the worker claimed.
* ``task_revoked`` (sender: the task, or its name): ``request``, ``terminated``, ``signum``,
  ``expired``: by ``AsyncResult.revoke()`` in the revoking process, and in the worker for a job
  that expired before it started (``expired=True``).
* ``task_unknown`` (sender: the executor): ``name``, ``id``, ``message`` (the claimed job), ``exc``.
* ``task_rejected`` (sender: the executor): ``message``, ``exc``: a job that cannot run (its
  arguments do not decode or are not accepted, an impossible row).
* ``task_internal_error`` (sender: the task): ``task_id``, ``args``, ``kwargs``, ``request``,
  ``exception``, ``traceback``, ``einfo``: an error outside the task's own code.
* ``celeryd_init`` (sender: the hostname): ``instance``, ``conf``, ``options``; ``worker_init``;
  ``heartbeat_sent`` (sender: the worker); ``worker_before_create_process`` (sender: the pool, in the
  worker before each prefork child starts); ``worker_process_init`` and ``worker_process_shutdown``
  (``pid``, ``exitcode``), in each prefork child.
* ``setup_logging`` (``loglevel``, ``logfile``, ``format``, ``colorize``): when it has receivers,
  ``sqlq worker``/``sqlq beat`` and prefork children leave logging to them; ``after_setup_logger``
  and ``after_setup_task_logger`` (``logger``, the same four) after sqlq configured its ``sqlq`` and
  ``sqlq.task`` loggers.
* ``beat_init`` / ``beat_embedded_init`` (sender: the beat): when a beat starts (``sqlq beat``, or
  ``sqlq worker -B``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import App
    from .store import ClaimedJob, JobSpec
    from .task import Request

log = logging.getLogger("sqlq.signals")


class Signal:
    def __init__(self, name: str):
        self.name = name
        self._receivers: list[tuple[Callable[..., Any], Any]] = []
        self._uids: dict[Any, Callable[..., Any]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"

    def connect(self, receiver: Callable[..., Any] | None = None, *, sender: Any = None,
                dispatch_uid: Any = None) -> Any:
        """Register ``receiver``; usable as ``@signal.connect`` or ``@signal.connect(sender=task)``.

        ``sender`` is a task, a task name, or any object the signal is sent by; ``dispatch_uid``
        (Celery's) keeps a receiver connected once however often the connecting code runs, e.g. a
        module imported twice. Receivers are held strongly, as Celery's ``weak=False``."""
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            with self._lock:
                if dispatch_uid is not None:
                    if dispatch_uid in self._uids:
                        return fn
                    self._uids[dispatch_uid] = fn
                self._receivers.append((fn, sender))
            return fn

        return register(receiver) if receiver is not None else register

    def disconnect(self, receiver: Callable[..., Any] | None = None, *, dispatch_uid: Any = None) -> None:
        with self._lock:
            if dispatch_uid is not None:
                receiver = self._uids.pop(dispatch_uid, None)
            self._uids = {uid: fn for uid, fn in self._uids.items() if fn is not receiver}
            self._receivers = [(fn, s) for fn, s in self._receivers if fn is not receiver]

    @property
    def has_receivers(self) -> bool:
        return bool(self._receivers)

    def send(self, sender: Any = None, **kwargs: Any) -> list[tuple[Callable[..., Any], Any]]:
        responses = []
        for fn, wanted in list(self._receivers):
            if wanted is not None and wanted is not sender and getattr(sender, "name", sender) != wanted:
                continue  # (a task name matches the task, and the name a publish is sent with)
            try:
                responses.append((fn, fn(sender=sender, signal=self, **kwargs)))
            except Exception:  # noqa: BLE001 - receivers must not break the worker
                log.exception("receiver %r of signal %s raised", fn, self.name)
        return responses


task_prerun = Signal("task_prerun")
task_postrun = Signal("task_postrun")
task_success = Signal("task_success")
task_failure = Signal("task_failure")
task_retry = Signal("task_retry")
worker_ready = Signal("worker_ready")
worker_shutdown = Signal("worker_shutdown")

# publishing (sqlq/enqueue.py)
before_task_publish = Signal("before_task_publish")
after_task_publish = Signal("after_task_publish")
# a job's way through the worker (sqlq/worker/worker.py, sqlq/worker/execution.py, sqlq/result.py)
task_received = Signal("task_received")
task_revoked = Signal("task_revoked")
task_unknown = Signal("task_unknown")
task_rejected = Signal("task_rejected")
task_internal_error = Signal("task_internal_error")
# worker and prefork children (sqlq/worker/worker.py, prefork.py, child.py)
celeryd_init = Signal("celeryd_init")
worker_init = Signal("worker_init")
heartbeat_sent = Signal("heartbeat_sent")
worker_before_create_process = Signal("worker_before_create_process")
worker_process_init = Signal("worker_process_init")
worker_process_shutdown = Signal("worker_process_shutdown")
# logging (sqlq/cli.py, sqlq/worker/child.py)
setup_logging = Signal("setup_logging")
after_setup_logger = Signal("after_setup_logger")
after_setup_task_logger = Signal("after_setup_task_logger")
# beat (sqlq/periodic/beat.py)
beat_init = Signal("beat_init")
beat_embedded_init = Signal("beat_embedded_init")

#: Celery's message headers, given to the publish signals beside the job's own headers; a receiver's
#: changes to these are not stored (they are the job's columns: set them through apply_async).
CELERY_HEADERS = ("lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
                  "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result")


def _publish_arguments(spec: JobSpec) -> dict[str, Any]:
    """What Celery's publish signals are sent with, for one job about to be (or just) written."""
    from . import serialization
    from .task import CALL_HEADER

    user = serialization.json_loads(spec.headers) if spec.headers and spec.headers != "{}" else {}
    try:
        args, kwargs = serialization.decode_call(spec.content_type, spec.args, spec.kwargs, spec.payload,
                                                 [spec.content_type])
    except Exception:  # noqa: BLE001 - (encoded by sqlq just now; an exotic type may not come back)
        args, kwargs = None, None
    eta = spec.eta.isoformat() if spec.eta is not None else None
    expires = spec.expires_at.isoformat() if spec.expires_at is not None else spec.expires_in
    call = user.get(CALL_HEADER)  # the per-call options (sqlq.task.CALL_HEADER), where the call gave any
    call = call if isinstance(call, dict) else {}
    headers = {**user, "lang": "py", "task": spec.task, "id": call.get("id", spec.id),
               "shadow": call.get("shadow"), "eta": eta, "expires": expires, "group": spec.group_id,
               "group_index": None, "retries": 0,
               "timelimit": [call.get("time_limit"), call.get("soft_time_limit")],
               "root_id": call.get("root_id", spec.id), "parent_id": call.get("parent_id"),
               "argsrepr": call.get("argsrepr", repr(args)), "kwargsrepr": call.get("kwargsrepr", repr(kwargs)),
               "origin": None, "ignore_result": bool(call.get("ignore_result", False))}
    return {"body": (args, kwargs, {}), "exchange": spec.exchange or "",
            "routing_key": spec.routing_key if spec.exchange else spec.queue, "headers": headers,
            "properties": {"correlation_id": spec.id, "content_type": spec.content_type,
                           "priority": spec.priority}, "_user": user}


def send_before_publish(specs: Sequence[JobSpec]) -> None:
    """``before_task_publish`` for each job; headers a receiver added or changed (other than
    Celery's own, :data:`CELERY_HEADERS`) are written with the job. Call only when it has receivers."""
    from . import serialization

    for spec in specs:
        arguments = _publish_arguments(spec)
        user = arguments.pop("_user")
        headers = arguments["headers"]
        celery = {k: headers[k] for k in CELERY_HEADERS}
        before_task_publish.send(sender=spec.task, declare=[], retry_policy=None, **arguments)
        changed = sorted(k for k in CELERY_HEADERS if k in user or headers.get(k, None) != celery[k])
        if any(k not in user for k in changed):
            log.warning("a before_task_publish receiver changed header(s) %s of %s[%s]; sqlq keeps them as "
                        "the job's columns say (set them through apply_async options)",
                        ", ".join(k for k in changed if k not in user), spec.task, spec.id)
        own = {k: v for k, v in headers.items() if k not in CELERY_HEADERS or k in user}
        if own != user:
            spec.headers = serialization.json_dumps(own)


def send_after_publish(specs: Sequence[JobSpec]) -> None:
    """``after_task_publish`` for each written job. Call only when it has receivers."""
    for spec in specs:
        arguments = _publish_arguments(spec)
        arguments.pop("_user")
        after_task_publish.send(sender=spec.task, **arguments)


def job_request(job: ClaimedJob, hostname: str | None, worker_id: str | None,
                accept_content: Sequence[str]) -> Request:
    """A claimed job as the ``request`` a signal carries (args and kwargs None when they do not
    decode, or are not in ``accept_content``: the job then fails, saying why, when it runs)."""
    from . import serialization
    from .task import Request

    try:
        args, kwargs = serialization.decode_call(job.content_type, job.args, job.kwargs, job.payload,
                                                 accept_content)
    except Exception:  # noqa: BLE001 - a receiver learns of the job all the same
        args, kwargs = None, None
    try:
        headers = serialization.json_loads(job.headers) if job.headers else {}
    except Exception:  # noqa: BLE001
        headers = {}
    return Request(id=job.id, task=job.task, args=args, kwargs=kwargs,  # type: ignore[arg-type]
                   retries=job.retries, attempt=job.attempt, queue=job.queue, priority=job.priority,
                   headers=headers, group=job.group_id, hostname=hostname, worker_id=worker_id, is_eager=False)


def send_task_received(worker: Any, jobs: Sequence[ClaimedJob]) -> None:
    """``task_received`` for each claimed job. Call only when it has receivers."""
    accept = list(worker.app.conf.accept_content)
    for job in jobs:
        task_received.send(sender=worker, request=job_request(job, worker.hostname, worker.id, accept))


def send_revoked(app: App, ids: Sequence[str], task_name: str | None) -> None:
    """``task_revoked`` for jobs ``AsyncResult.revoke()`` cancelled. Call only when it has receivers."""
    from .task import Request

    task = app.tasks.get(task_name) if task_name else None
    for job_id in ids:
        task_revoked.send(sender=task if task is not None else task_name, terminated=False, signum=None,
                          expired=False, request=Request(id=job_id, task=task_name, is_eager=False))
